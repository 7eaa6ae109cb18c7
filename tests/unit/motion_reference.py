"""An independent, functional re-statement of the official AnimateDiff temporal module, written from the
published forward pass on 5-D video tensors `b c f h w` (as the authors' code runs it), for the tests to compare
motion_core against. Kept deliberately naive: explicit softmax attention, einops rearranges, no chunking.
"""
import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange


@functools.lru_cache(maxsize=None)
def _sinusoid(length, channels):
    pe = torch.zeros(1, length, channels)
    for p in range(length):
        for i in range(0, channels, 2):
            angle = p * math.exp(-i * math.log(10000.0) / channels)
            pe[0, p, i] = math.sin(angle)
            pe[0, p, i + 1] = math.cos(angle)
    return pe


def sinusoid(length, channels):
    return _sinusoid(length, channels).clone()


def reference_module(w, x5, norm_across_frames, heads=8, attention_blocks=2):
    """w: {suffix after 'temporal_transformer.': tensor}; x5: [b, c, f, h, w]; returns the module output 5-D.
    `attention_blocks`: 2 in motion modules (Temporal_Self x2), 1 in SparseCtrl's."""
    b, c, f, h, wd = x5.shape
    if norm_across_frames:  # SDXL branch: GroupNorm on the 5-D tensor
        normed = F.group_norm(x5, 32, w["norm.weight"], w["norm.bias"], 1e-6)
        normed = rearrange(normed, "b c f h w -> (b f) c h w")
    else:  # SD1.5 main branch: each frame on its own
        normed = F.group_norm(rearrange(x5, "b c f h w -> (b f) c h w"), 32, w["norm.weight"], w["norm.bias"], 1e-6)
    hidden = rearrange(normed, "bf c h w -> bf (h w) c")
    hidden = hidden @ w["proj_in.weight"].T + w["proj_in.bias"]
    blk = "transformer_blocks.0."
    for a in range(attention_blocks):
        att = f"{blk}attention_blocks.{a}."
        n = F.layer_norm(hidden, (c,), w[f"{blk}norms.{a}.weight"], w[f"{blk}norms.{a}.bias"], 1e-5)
        n = rearrange(n, "(b f) d c -> (b d) f c", f=f)
        n = n + w[f"{att}pos_encoder.pe"][:, :f]
        q, k, v = (n @ w[f"{att}to_{t}.weight"].T for t in "qkv")
        q, k, v = (rearrange(t, "n f (hd d) -> n hd f d", hd=heads) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) * (c // heads) ** -0.5
        out = scores.softmax(dim=-1) @ v
        out = rearrange(out, "n hd f d -> n f (hd d)")
        out = out @ w[f"{att}to_out.0.weight"].T + w[f"{att}to_out.0.bias"]
        out = rearrange(out, "(b d) f c -> (b f) d c", d=h * wd)
        hidden = out + hidden
    n = F.layer_norm(hidden, (c,), w[f"{blk}ff_norm.weight"], w[f"{blk}ff_norm.bias"], 1e-5)
    proj = n @ w[f"{blk}ff.net.0.proj.weight"].T + w[f"{blk}ff.net.0.proj.bias"]
    u, g = proj.chunk(2, dim=-1)
    ff = (u * 0.5 * g * (1.0 + torch.erf(g / math.sqrt(2.0)))) @ w[f"{blk}ff.net.2.weight"].T + w[f"{blk}ff.net.2.bias"]
    hidden = ff + hidden
    hidden = hidden @ w["proj_out.weight"].T + w["proj_out.bias"]
    hidden = rearrange(hidden, "bf (h w) c -> bf c h w", h=h)
    out = hidden + rearrange(x5, "b c f h w -> (b f) c h w")
    return rearrange(out, "(b f) c h w -> b c f h w", f=f)


def module_weights(state_dict, prefix):
    """The weights of one module (`<prefix>.temporal_transformer.*`) keyed by the suffix."""
    p = prefix + ".temporal_transformer."
    return {k[len(p):]: v.float() for k, v in state_dict.items() if k.startswith(p)}
