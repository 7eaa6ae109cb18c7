"""One official AnimateDiff temporal module ("VanillaTemporalModule"), with the official attribute names.

Maths, as in the authors' code (see docs/architecture.md and the reference notes):
  GroupNorm(32, eps 1e-6) -> tokens [(B*H*W), F, C] -> proj_in -> 2 x (LayerNorm -> +PE -> self-attention over
  frames -> +residual) -> LayerNorm -> GEGLU feed-forward -> +residual -> proj_out -> back to [(B*F), C, H, W]
  -> + input.
The position table is added to the normed attention input only; q/k/v have no bias; 8 heads.
Every step after the GroupNorm acts on each (pixel) sequence on its own, so the whole token pipeline is run in
chunks of sequences: identical results, bounded memory.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionFn, DEFAULT_CHUNK, chunk_ranges, temporal_attention
from .norms import group_norm_across_frames

NORM_PER_FRAME = "per_frame"
NORM_ACROSS_FRAMES = "across_frames"


def sinusoidal_table(length: int, channels: int) -> torch.Tensor:
    """pe[p, 2i] = sin(p * exp(-2i ln(10000) / C)), pe[p, 2i+1] = cos(...); shape [1, length, channels]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, length, channels)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class PositionalEncoding(nn.Module):
    def __init__(self, channels: int, max_len: int):
        super().__init__()
        if torch.empty(0).device.type == "meta":  # built for a file's weights (fill_from_state_dict): the table
            # comes from the file or is computed there; meta arange runs in Python refs (2.2 s of a v2 load)
            self.register_buffer("pe", torch.empty(1, max_len, channels))
        else:
            self.register_buffer("pe", sinusoidal_table(max_len, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(channels, max_len)

    def forward(self, x: torch.Tensor, attn_fn: Optional[AttentionFn] = None) -> torch.Tensor:
        """x: normed tokens [N, F, C]; returns the attention output (without the residual)."""
        x = self.pos_encoder(x)
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        out = temporal_attention(q, k, v, self.heads, attn_fn=attn_fn, chunk_size=None)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(channels, channels * mult), nn.Dropout(0.0), nn.Linear(channels * mult, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, attention_blocks: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(channels, heads, max_len) for _ in range(attention_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(attention_blocks))
        self.ff = FeedForward(channels)
        self.ff_norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, attn_fn: Optional[AttentionFn] = None) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), attn_fn) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, norm_mode: str, num_blocks: int = 1,
                 attention_blocks: int = 2):
        super().__init__()
        self.norm_mode = norm_mode
        self.norm = nn.GroupNorm(32, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(TemporalTransformerBlock(channels, heads, max_len, attention_blocks)
                                                for _ in range(num_blocks))
        self.proj_out = nn.Linear(channels, channels)

    def normalize(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # Statistics in float32: fp16/bf16 variance of large activations is what produces inf/NaN frames.
        weight, bias = self.norm.weight.float(), self.norm.bias.float()
        if self.norm_mode == NORM_ACROSS_FRAMES:
            out = group_norm_across_frames(x.float(), num_frames, 32, weight, bias, self.norm.eps)
        else:
            out = F.group_norm(x.float(), 32, weight, bias, self.norm.eps)
        return out.to(x.dtype)

    def tokens_forward(self, tokens: torch.Tensor, attn_fn: Optional[AttentionFn] = None) -> torch.Tensor:
        h = self.proj_in(tokens)
        for block in self.transformer_blocks:
            h = block(h, attn_fn)
        return self.proj_out(h)

    def forward(self, x: torch.Tensor, num_frames: int, attn_fn: Optional[AttentionFn] = None,
                chunk_size: Optional[int] = DEFAULT_CHUNK) -> torch.Tensor:
        """The residual branch: x [(B*F), C, H, W] -> body(x), same shape."""
        bf, c, h, w = x.shape
        if num_frames < 1 or bf % num_frames:
            raise ValueError(f"batch {bf} is not a multiple of num_frames={num_frames}")
        b = bf // num_frames
        normed = self.normalize(x, num_frames)
        # [(b f), c, h, w] -> [(b h w), f, c]: one sequence over frames per pixel.
        tokens = normed.reshape(b, num_frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, num_frames, c)
        n = tokens.shape[0]
        if chunk_size is None or chunk_size <= 0 or n <= chunk_size:
            out = self.tokens_forward(tokens, attn_fn)
        else:
            out = torch.empty_like(tokens)
            for start, stop in chunk_ranges(n, chunk_size):
                out[start:stop] = self.tokens_forward(tokens[start:stop], attn_fn)
        return out.reshape(b, h * w, num_frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)


class TemporalModule(nn.Module):
    """`VanillaTemporalModule`: `module(x, num_frames)` returns x + body(x) for x of shape [(B*F), C, H, W].

    `attention_blocks`: temporal self-attentions per transformer block - two in the motion modules, one in
    SparseCtrl's (its config: attention_block_types ["Temporal_Self"])."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, norm_mode: str = NORM_PER_FRAME,
                 attention_blocks: int = 2):
        super().__init__()
        if channels % 32 or channels % heads:
            raise ValueError(f"channels={channels} must be divisible by 32 (GroupNorm) and by heads={heads}")
        self.channels = channels
        self.max_frames = max_len
        self.temporal_transformer = TemporalTransformer3DModel(channels, heads, max_len, norm_mode,
                                                               attention_blocks=attention_blocks)

    def check_frames(self, num_frames: int) -> None:
        if num_frames > self.max_frames:
            raise ValueError(
                f"{num_frames} frames in one pass exceed this motion module's limit of {self.max_frames} "
                "(its position table length): use context options (sliding windows) for longer animations."
            )

    def delta(self, x: torch.Tensor, num_frames: int, attn_fn: Optional[AttentionFn] = None,
              chunk_size: Optional[int] = DEFAULT_CHUNK) -> torch.Tensor:
        """The residual branch alone, so callers can scale the motion (strength 0 = the image model)."""
        self.check_frames(num_frames)
        return self.temporal_transformer(x, num_frames, attn_fn=attn_fn, chunk_size=chunk_size)

    def forward(self, x: torch.Tensor, num_frames: int, attn_fn: Optional[AttentionFn] = None,
                chunk_size: Optional[int] = DEFAULT_CHUNK) -> torch.Tensor:
        return x + self.delta(x, num_frames, attn_fn=attn_fn, chunk_size=chunk_size)
