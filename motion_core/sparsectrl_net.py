"""The SparseCtrl network (AnimateDiff v3's keyframe ControlNet), with the official key names.

What it computes, as in the authors' `SparseControlNetModel` (every layer acts on each frame on its own except
the motion modules, so it runs on ComfyUI's `[(B*F), C, H, W]` layout and only those see `num_frames`):
  noisy latent -> zeros (`set_noisy_sample_input_to_zero`) -> conv_in, plus the embedded condition
  (condition concatenated with a 1-channel keyframe mask; RGB: one 3x3 conv over the VAE latent, scribble: the
  ControlNet conv stack over the image) -> down blocks (resnet -> spatial transformer -> motion module, then a
  stride-2 conv) -> mid block (resnet, transformer, resnet; no motion module) -> one 1x1 conv per skip and one
  for the mid output, each times the conditioning scale.
The authors' "InflatedGroupNorm" folds frames into the batch before a plain GroupNorm: statistics per frame,
which is what nn.GroupNorm on the flat layout gives. The motion modules are the shared TemporalModule with one
attention per block. The structure (levels, widths, attention/motion/downsample presence) is read from the keys,
so reduced test files work the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionFn, sdpa_attention
from .temporal import NORM_PER_FRAME, FeedForward, TemporalModule

RESNET_EPS = 1e-5       # the SD1.5 UNet config's norm_eps (resnets)
TRANSFORMER_EPS = 1e-6  # Transformer2D's GroupNorm
HEADS = 8               # SD1.5 attention_head_dim (= number of heads in that diffusers version)


@dataclass(frozen=True)
class LevelSpec:
    channels: int
    layers: int
    attention: bool
    motion: bool
    downsample: bool


@dataclass(frozen=True)
class NetSpec:
    latent_channels: int            # conv_in input (4)
    cond_channels: int              # condition channels without the mask (RGB: 4, scribble: 3)
    simplified_embedding: bool      # RGB: a single conv; scribble: the conv stack
    embedding_channels: Tuple[int, ...]  # the conv stack widths (scribble)
    levels: Tuple[LevelSpec, ...]
    context_dim: int
    max_frames: int
    motion_attention_blocks: int = 1

    @property
    def base_channels(self) -> int:
        return self.levels[0].channels

    @property
    def skips(self) -> int:
        return 1 + sum(level.layers + int(level.downsample) for level in self.levels)


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers Timesteps(dim, flip_sin_to_cos=True, freq_shift=0): [cos(t w), sin(t w)], w_i = 10000^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepMLP(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=RESNET_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(32, cout, eps=RESNET_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor], attn_fn: AttentionFn) -> torch.Tensor:
        context = x if context is None else context
        return self.to_out[0](attn_fn(self.to_q(x), self.to_k(context), self.to_v(context), HEADS))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context, attn_fn):
        x = self.attn1(self.norm1(x), None, attn_fn) + x
        x = self.attn2(self.norm2(x), context, attn_fn) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=TRANSFORMER_EPS)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, context_dim)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, context, attn_fn):
        n, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n, h * w, c)
        for block in self.transformer_blocks:
            tokens = block(tokens, context, attn_fn)
        return self.proj_out(tokens.reshape(n, h, w, c).permute(0, 3, 1, 2)) + x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class DownBlock(nn.Module):
    def __init__(self, cin: int, level: LevelSpec, temb: int, context_dim: int, max_frames: int, motion_blocks: int):
        super().__init__()
        c = level.channels
        self.resnets = nn.ModuleList(ResnetBlock(cin if i == 0 else c, c, temb) for i in range(level.layers))
        self.attentions = nn.ModuleList(Transformer2D(c, context_dim) for _ in range(level.layers)) if level.attention else None
        self.motion_modules = nn.ModuleList(
            TemporalModule(c, heads=HEADS, max_len=max_frames, norm_mode=NORM_PER_FRAME, attention_blocks=motion_blocks)
            for _ in range(level.layers)) if level.motion else None
        self.downsamplers = nn.ModuleList([Downsample(c)]) if level.downsample else None

    def forward(self, h, temb, context, num_frames, attn_fn, temporal_attn_fn):
        outs = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h, context, attn_fn)
            if self.motion_modules is not None:
                h = self.motion_modules[i](h, num_frames, attn_fn=temporal_attn_fn)
            outs.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            outs.append(h)
        return h, outs


class MidBlock(nn.Module):
    def __init__(self, c: int, temb: int, context_dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c, c, temb), ResnetBlock(c, c, temb)])
        self.attentions = nn.ModuleList([Transformer2D(c, context_dim)])

    def forward(self, h, temb, context, attn_fn):
        h = self.resnets[0](h, temb)
        return self.resnets[1](self.attentions[0](h, context, attn_fn), temb)


class ConditioningEmbedding(nn.Module):
    """The scribble model's image encoder: conv_in, (conv, stride-2 conv) per width step, conv_out; SiLU between."""

    def __init__(self, cin: int, widths: Tuple[int, ...], cout: int):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, widths[0], 3, padding=1)
        blocks = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Conv2d(a, a, 3, padding=1), nn.Conv2d(a, b, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(widths[-1], cout, 3, padding=1)

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class SparseControlNet(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        base = spec.base_channels
        temb = base * 4
        self.conv_in = nn.Conv2d(spec.latent_channels, base, 3, padding=1)
        if spec.simplified_embedding:
            self.controlnet_cond_embedding = nn.Conv2d(spec.cond_channels + 1, base, 3, padding=1)
        else:
            self.controlnet_cond_embedding = ConditioningEmbedding(spec.cond_channels + 1, spec.embedding_channels, base)
        self.time_embedding = TimestepMLP(base, temb)
        blocks, cin = [], base
        for level in spec.levels:
            blocks.append(DownBlock(cin, level, temb, spec.context_dim, spec.max_frames, spec.motion_attention_blocks))
            cin = level.channels
        self.down_blocks = nn.ModuleList(blocks)
        skip_channels = [base] + [lv.channels for lv in spec.levels for _ in range(lv.layers + int(lv.downsample))]
        self.controlnet_down_blocks = nn.ModuleList(nn.Conv2d(c, c, 1) for c in skip_channels)
        self.mid_block = MidBlock(cin, temb, spec.context_dim)
        self.controlnet_mid_block = nn.Conv2d(cin, cin, 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, condition: torch.Tensor,
                mask: torch.Tensor, num_frames: int, conditioning_scale: float = 1.0,
                attn_fn: Optional[AttentionFn] = None, temporal_attn_fn: Optional[AttentionFn] = None,
                ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """x [(B*F), 4, h, w] (only its shape is used: the authors zero it), timesteps [(B*F)] or [B] or scalar,
        context [(B*F) or 1, tokens, 768], condition [(B*F), C, H, W] and mask [(B*F), 1, H, W] (zeros on frames
        without a keyframe). Returns the skip residuals in UNet input order and the mid residual."""
        attn_fn = attn_fn or sdpa_attention
        rows = x.shape[0]
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(rows)
        elif t.numel() != rows:
            t = t.repeat_interleave(rows // t.numel())
        dtype = self.conv_in.weight.dtype
        temb = self.time_embedding(timestep_embedding(t, self.spec.base_channels).to(dtype))
        if context.shape[0] != rows:
            context = context.repeat_interleave(rows // context.shape[0], dim=0)
        # set_noisy_sample_input_to_zero: both official files are conditioned on the keyframes alone.
        h = self.conv_in(torch.zeros_like(x, dtype=dtype))
        h = h + self.controlnet_cond_embedding(torch.cat([condition, mask], dim=1).to(dtype))
        skips = [h]
        for block in self.down_blocks:
            h, outs = block(h, temb, context.to(dtype), num_frames, attn_fn, temporal_attn_fn)
            skips += outs
        h = self.mid_block(h, temb, context.to(dtype), attn_fn)
        residuals = [conv(s) for conv, s in zip(self.controlnet_down_blocks, skips)]
        mid = self.controlnet_mid_block(h)
        if conditioning_scale != 1.0:
            residuals = [r * conditioning_scale for r in residuals]
            mid = mid * conditioning_scale
        return residuals, mid
