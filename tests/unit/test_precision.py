"""The motion module's precision choice: which dtype each choice gives on which device, and fp32 GroupNorm stats."""
import logging

import pytest
import torch
import torch.nn.functional as F

from motion_core import precision
from motion_core.temporal import TemporalModule

CPU = torch.device("cpu")


def test_auto_is_the_unets_dtype_everywhere():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert precision.motion_dtype("auto", CPU, dtype) is dtype
        assert precision.motion_dtype("auto", torch.device("cuda"), dtype) is dtype


def test_bf16_on_cpu_only_where_it_is_native(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.motion_dtype("bf16", CPU, torch.float32) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert precision.motion_dtype("bf16", CPU, torch.float32) == torch.float32
    assert "bf16 is not native on cpu" in caplog.text


def test_fp16_falls_back_on_cpu_and_fp32_is_always_granted():
    assert precision.motion_dtype("fp16", CPU, torch.float32, warn=False) == torch.float32
    assert precision.motion_dtype("fp32", CPU, torch.bfloat16) == torch.float32
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        precision.motion_dtype("int8", CPU, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_group_norm_statistics_stay_fp32_in_half_precision(dtype):
    torch.manual_seed(0)
    module = TemporalModule(64).to(dtype)
    tt = module.temporal_transformer
    # A large common offset: half-precision statistics of such activations lose the variance entirely.
    x = (300.0 + torch.randn(4, 64, 4, 4)).to(dtype)
    expected = F.group_norm(x.float(), 32, tt.norm.weight.float(), tt.norm.bias.float(), tt.norm.eps).to(dtype)
    assert torch.equal(tt.normalize(x, 4), expected)
    in_dtype = F.group_norm(x, 32, tt.norm.weight, tt.norm.bias, tt.norm.eps)
    assert not torch.equal(in_dtype, expected)  # the check above would catch statistics taken in `dtype`
