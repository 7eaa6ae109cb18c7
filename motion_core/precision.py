"""Which dtype the motion module computes in: the `precision` choice of Inflate Model.

`auto` is the UNet's compute dtype (what every release did: bit-identical). `fp32`, `bf16`, `fp16` ask for that
dtype for the motion module alone; the UNet is not touched. A reduced precision is used only where the device
computes in it natively (bf16: CPUs with AVX512-BF16 or AMX, CUDA GPUs that report bf16; fp16: any CUDA/MPS
GPU). Elsewhere it would be slower than fp32 (emulated), so the UNet's dtype is used instead and a warning says
so. Whatever the choice, the temporal GroupNorm computes its statistics in fp32 (TemporalTransformer3DModel
.normalize) and the module's output is cast back to the UNet's dtype before it is added.
"""
from __future__ import annotations

import functools
import logging
import platform
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = {
    "auto": "the UNet's own dtype (exact, as before)",
    "fp32": "float32 even when the UNet runs in half precision (slower, for checks)",
    "bf16": "bfloat16 where the hardware has it (CPUs with AVX512-BF16/AMX, recent GPUs): faster, ~1e-2 relative "
            "error in the motion layers",
    "fp16": "float16 on GPUs: faster, ~1e-3 relative error in the motion layers",
}
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 (oneDNN then runs bf16 matmuls at ~2x the fp32 rate); Linux flags only."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def native(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `device` computes matmuls in `dtype` natively (not emulated through fp32)."""
    if dtype == torch.float32:
        return True
    kind = torch.device(device).type
    if kind == "cuda":
        return dtype == torch.float16 or (dtype == torch.bfloat16 and torch.cuda.is_bf16_supported())
    if kind == "mps":
        return dtype == torch.float16
    if kind == "cpu":
        return dtype == torch.bfloat16 and cpu_has_native_bf16()
    return False


def motion_dtype(precision: str, device, unet_dtype: torch.dtype, warn: bool = True) -> torch.dtype:
    """The dtype the motion module runs in for this choice on this device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return unet_dtype
    wanted = _DTYPES[precision]
    if native(wanted, device):
        return wanted
    if warn:
        log.warning("AnimateDiff MotionKit: %s is not native on %s (it would be slower than fp32 there); the motion "
                    "module runs in the UNet's dtype (%s) instead.", precision, torch.device(device),
                    str(unet_dtype).replace("torch.", ""))
    return unet_dtype

