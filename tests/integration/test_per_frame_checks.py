"""Every per-frame input is checked against the frames actually sampled, before the first step (OUTER_SAMPLE
wrapper of an inflated model, so core KSampler / comfy.sample.sample is covered), with and without context windows.

ComfyUI itself would silently repeat or wrap a batch of the wrong length (a 3-image ControlNet hint on 4 frames
drives frame 3 with hint 0), so each case asserts the error names both counts, and that no UNet call happened.
"""
from __future__ import annotations

import pytest
import torch

from tools.comfy_host import import_comfy

try:
    import_comfy()
except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)

import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402

from harness.tiny_models import fill_seeded, tiny_controlnet, tiny_unet  # noqa: E402
from motion_core.comfy import inflate  # noqa: E402
from motion_core.context import ContextOptions  # noqa: E402
from motion_core.errors import MotionFormatError  # noqa: E402
from motion_core.motion_module import MotionModuleSet, build_from_state_dict  # noqa: E402

pytestmark = pytest.mark.integration

CTX = 8
FRAMES = 6


@pytest.fixture(scope="module")
def tiny():
    """The one-level tiny UNet, its ControlNet and a v2-like motion module that fits the UNet."""
    mm = MotionModuleSet([[32]], [[32, 32]], 32, 32, "per_frame")
    fill_seeded(mm, 2)
    return tiny_unet(CTX, seed=0), tiny_controlnet(CTX, seed=1), build_from_state_dict(mm.state_dict())


@pytest.fixture(scope="module")
def unet(tiny):
    return tiny[0]


@pytest.fixture(scope="module")
def controlnet(tiny):
    return tiny[1]


@pytest.fixture(scope="module")
def motion(tiny):
    return tiny[2]


def conds(pos_extra=None, rows=1):
    g = torch.Generator().manual_seed(3)
    return ([[torch.randn(rows, 4, CTX, generator=g), dict(pos_extra or {})]], [[torch.zeros(1, 4, CTX), {}]])


def with_hint(controlnet, n):
    hint = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(n))
    control = controlnet.copy().set_cond_hint(hint, 0.8, (0.0, 1.0))
    return conds({"control": control})


def sample(model, positive, negative, frames=FRAMES, noise_mask=None):
    calls = []
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_count",
                               lambda executor, *a, **k: calls.append(1) or executor(*a, **k))
    latent = torch.zeros(frames, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 0)
    try:
        comfy.sample.sample(model, noise, 1, 4.0, "euler", "normal", positive, negative, latent,
                            noise_mask=noise_mask, disable_pbar=True, seed=0)
    finally:
        sample.calls = len(calls)


@pytest.fixture(params=["whole clip", "context windows"])
def model(request, unet, motion):
    context = ContextOptions(length=4, overlap=1) if request.param == "context windows" else None
    return inflate(unet, motion, beta_schedule="sd_default", context_options=context)


def _refused(model, positive, negative, match, **kw):
    with pytest.raises(MotionFormatError, match=match):
        sample(model, positive, negative, **kw)
    assert sample.calls == 0  # refused before the first step


def test_controlnet_hint_batch_must_be_one_or_the_frame_count(model, controlnet):
    _refused(model, *with_hint(controlnet, 4), match=r"ControlNet hint .* 4 frames .* samples 6 frames.*Apply ControlNet")
    for n in (1, FRAMES):  # the two batches that mean something
        sample(model, *with_hint(controlnet, n))
        assert sample.calls > 0


def test_chained_controlnet_is_checked_too(model, controlnet):
    positive, negative = with_hint(controlnet, FRAMES)
    bad = controlnet.copy().set_cond_hint(torch.rand(2, 3, 64, 64), 0.5, (0.0, 1.0))
    positive[0][1]["control"].set_previous_controlnet(bad)
    _refused(model, positive, negative, match=r"ControlNet hint .* 2 frames")


def test_area_mask_batch(model):
    _refused(model, *conds({"mask": torch.ones(5, 8, 8), "set_area_to_bounds": False, "mask_strength": 1.0}),
             match=r"positive conditioning's mask has 5 frames .* 6 frame")


def test_per_frame_prompt_rows(model):
    _refused(model, *conds(rows=4), match=r"positive conditioning has 4 rows .* 6 frames")


def test_latent_noise_mask_batch(model):
    _refused(model, *conds(), match=r"noise mask .* 3 frames .* samples 6 frames", noise_mask=torch.ones(3, 1, 64, 64))
    sample(model, *conds(), noise_mask=torch.ones(FRAMES, 1, 64, 64))
    assert sample.calls > 0


def test_plain_model_is_not_checked(unet, controlnet):
    """The checks belong to animations: an un-inflated model keeps core's behaviour (a batch of images)."""
    sample(unet, *with_hint(controlnet, 4))
    assert sample.calls > 0
