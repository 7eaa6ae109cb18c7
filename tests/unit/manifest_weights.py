"""Seeded stand-ins for official files, built from the key/shape manifests in tests/data/formats.

A plain module (not conftest.py): `from conftest import ...` resolves to whichever conftest.py is imported
under that name first, which depends on what else the run collects.
"""
import json
from pathlib import Path

import torch

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"


def manifest(name):
    return json.loads((FORMATS / f"{name}.json").read_text())


def manifest_state_dict(name, seed=0, dtype=torch.float32, std=0.02, real_pe=True, prefixes=None, random_only=None):
    """Random weights in the exact official keys/shapes; norms near 1/0 and (optionally) the true PE table.

    `prefixes` keeps only the keys starting with one of them (a few modules are enough for maths tests).
    `random_only` (prefixes): only those keys get random values, the rest zeros - full-size layout tests stay
    fast (zeros cost nothing to make) while still comparing real values where they check them."""
    from motion_reference import sinusoid

    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in manifest(name)["keys"].items():
        if prefixes and not key.startswith(tuple(prefixes)):
            continue
        if random_only is not None and not key.startswith(tuple(random_only)):
            out[key] = torch.zeros(shape, dtype=dtype)
        elif key.endswith(("pos_encoder.pe", "pos_embed.pe")) and real_pe:
            out[key] = sinusoid(shape[1], shape[2]).to(dtype)
        elif "norm" in key and key.endswith(".weight") and len(shape) == 1:
            out[key] = (1.0 + 0.1 * torch.randn(shape, generator=g)).to(dtype)
        elif len(shape) == 1:
            out[key] = (0.05 * torch.randn(shape, generator=g)).to(dtype)
        else:
            out[key] = (std * torch.randn(shape, generator=g)).to(dtype)
    return out
