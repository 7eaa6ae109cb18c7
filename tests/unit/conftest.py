"""Fixtures of the unit tests (helpers live in manifest_weights.py)."""
import pytest
import torch

from manifest_weights import manifest_state_dict


@pytest.fixture(scope="module")
def no_grad():
    """Autograd off for one test module (inference-only maths), on again after it. A module-level
    torch.set_grad_enabled(False) would switch it off for the whole session from collection on, training
    tests included."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="session")
def v2_state_dict():
    """Five modules of the official v2 file, one per channel width and block kind."""
    return manifest_state_dict("mm_sd_v15_v2", seed=1, prefixes=[
        "down_blocks.0.motion_modules.", "down_blocks.1.motion_modules.", "mid_block.", "up_blocks.0.motion_modules.0.",
        "up_blocks.3.motion_modules.2."])
