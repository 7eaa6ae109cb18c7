"""Group normalisation over frames.

The official SD1.5 motion modules normalise each frame on its own, but the original v1 release ran the base
UNet's resnet GroupNorms on 5-D video tensors, i.e. with statistics over all frames of a clip; the SDXL motion
modules normalise across frames too. These helpers compute those statistics on ComfyUI's `[(B*F), C, H, W]` layout.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm_across_frames(x: torch.Tensor, num_frames: int, groups: int, weight, bias, eps: float) -> torch.Tensor:
    """GroupNorm whose statistics span all frames of each clip (as a 5-D `b c f h w` GroupNorm does)."""
    bf, c, h, w = x.shape
    if num_frames <= 1 or bf % num_frames:
        return F.group_norm(x, groups, weight, bias, eps)
    b = bf // num_frames
    video = x.reshape(b, num_frames, c, h, w).transpose(1, 2)  # b c f h w
    out = F.group_norm(video, groups, weight, bias, eps)
    return out.transpose(1, 2).reshape(bf, c, h, w)


class FrameGroupNorm(nn.Module):
    """Drop-in replacement for a base UNet GroupNorm that normalises across the frames of each clip.

    `frames_fn()` returns the current frame count per clip (or None to behave as the wrapped GroupNorm). The
    wrapped module's parameters are shared, not copied, so weight patches (LoRAs) on it still apply.
    """

    def __init__(self, gn: nn.GroupNorm, frames_fn: Callable[[], Optional[int]]):
        super().__init__()
        self.gn = gn
        self.frames_fn = frames_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.frames_fn()
        if not frames or frames <= 1:
            return self.gn(x)
        # lowvram offloading can leave the norm's weights on another device than x
        weight = self.gn.weight.to(device=x.device, dtype=x.dtype) if self.gn.weight is not None else None
        bias = self.gn.bias.to(device=x.device, dtype=x.dtype) if self.gn.bias is not None else None
        return group_norm_across_frames(x, frames, self.gn.num_groups, weight, bias, self.gn.eps)
