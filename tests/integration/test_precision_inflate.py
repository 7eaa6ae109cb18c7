"""Inflate Model's `precision`: auto is exactly today's path, bf16 runs the motion layers in bf16 within a stated
tolerance, and the UNet itself is never touched (real in-process ComfyUI sampler, the tiny UNet of test_inflate)."""
from __future__ import annotations

import pytest
import torch

from test_inflate import CPU, inflate, motion, patcher, run  # noqa: F401 (boots ComfyUI; shared fixtures)

from motion_core import precision
from motion_core.comfy import MotionLayer
from motion_core.comfy import injection as comfy_injection
from motion_core.errors import MotionFormatError

pytestmark = pytest.mark.integration


def _layer_dtypes(model):
    """Dtypes of the motion weights each MotionLayer computes with, recorded while the UNet runs."""
    seen = []

    def hook(layer, args):
        seen.append(next(layer.module.parameters()).dtype)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, a: hook(m, a) if isinstance(m, MotionLayer) else None)
    return seen, handle


def test_auto_is_todays_path_bit_for_bit(patcher, motion):
    cache = comfy_injection._WeightCache(motion, "auto")
    assert cache.get(CPU, torch.float32) is motion  # no copy, no cast: the module as loaded
    half = cache.get(CPU, torch.float16)
    assert next(half.parameters()).dtype == torch.float16
    assert all(torch.equal(a, b.half()) for a, b in zip(half.parameters(), motion.parameters()))
    assert torch.equal(run(inflate(patcher, motion), seed=3), run(inflate(patcher, motion, precision="auto"), seed=3))


def test_bf16_motion_layers_within_tolerance_of_fp32(patcher, motion, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # bf16 maths is exact on any CPU, only slower
    plain = run(patcher, seed=4)
    fp32 = run(inflate(patcher, motion, precision="fp32"), seed=4)
    seen, handle = _layer_dtypes(patcher)
    try:
        bf16 = run(inflate(patcher, motion, precision="bf16"), seed=4)
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    err = (bf16 - fp32).abs().max().item()
    motion_effect = (fp32 - plain).abs().max().item()
    # Stated tolerance: bf16 keeps 8 mantissa bits (~4e-3 relative per op); after 2 steps the error stays under
    # 5 % of what the motion module changes, and it is not zero (bf16 really ran).
    assert 0 < err < 0.05 * motion_effect, (err, motion_effect)
    assert all(p.dtype == torch.float32 for p in patcher.model.parameters())  # the UNet is untouched


def test_unknown_precision_is_refused_before_sampling(patcher, motion):
    with pytest.raises(MotionFormatError, match="precision must be one of auto, fp32, bf16, fp16"):
        inflate(patcher, motion, precision="fp8")
