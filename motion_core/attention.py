"""The one attention function of the motion module.

Every temporal attention call goes through `temporal_attention`, which splits the (B*H*W) sequence batch into
chunks: a 512 px frame batch holds 4096 sequences per frame batch and more at larger sizes, which is what breaks
some kernels ("invalid configuration argument") and spikes memory. Standalone it uses PyTorch SDPA; inside
ComfyUI the adapter passes ComfyUI's `optimized_attention` so the user's attention backend flags are honoured.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

# ComfyUI's optimized_attention signature: (q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False),
# tensors [batch, tokens, heads*dim] in and out.
AttentionFn = Callable[..., torch.Tensor]

# 4096 sequences x 8 heads = 32768 kernel batches: under the 65535 grid limit of the kernels that fail on large
# batches, and a bounded score tensor (4096 * 8 * F * F floats) whatever the frame size.
DEFAULT_CHUNK = 4096


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask=None,
                   attn_precision=None, skip_reshape: bool = False) -> torch.Tensor:
    """Plain multi-head attention (scale head_dim**-0.5, no mask) with ComfyUI's calling convention."""
    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None)
    return out.transpose(1, 2).reshape(b, n, c)


def chunk_ranges(total: int, chunk_size: Optional[int]):
    """Yields (start, stop) slices of at most chunk_size items (one slice when chunk_size is None or <= 0)."""
    step = total if not chunk_size or chunk_size <= 0 else int(chunk_size)
    step = max(step, 1)
    for start in range(0, total, step):
        yield start, min(start + step, total)


def temporal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                       attn_fn: Optional[AttentionFn] = None, chunk_size: Optional[int] = DEFAULT_CHUNK) -> torch.Tensor:
    """Self-attention over frames for a batch of sequences `[N, F, C]`, chunked along N."""
    fn = attn_fn or sdpa_attention
    n = q.shape[0]
    if chunk_size is None or chunk_size <= 0 or n <= chunk_size:
        return fn(q, k, v, heads)
    out = torch.empty_like(q)
    for start, stop in chunk_ranges(n, chunk_size):
        out[start:stop] = fn(q[start:stop], k[start:stop], v[start:stop], heads)
    return out
