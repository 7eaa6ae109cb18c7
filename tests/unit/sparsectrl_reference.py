"""An independent, functional re-statement of the authors' SparseControlNetModel.forward, on 5-D video tensors
`b c f h w` as their code runs it (InflatedConv3d / InflatedGroupNorm = fold frames into the batch, a 2-D op,
unfold), with explicit softmax attention and the structure spelled out from their block classes
(CrossAttnDownBlock3D: resnet -> Transformer3DModel -> motion module; DownBlock3D: resnet -> motion module;
UNetMidBlock3DCrossAttn: resnet, transformer, resnet). Written from the published code for the tests to compare
motion_core against; deliberately naive and independent of motion_core.
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from motion_reference import reference_module


def _inflate(fn, x5):
    """InflatedConv3d / InflatedGroupNorm: b c f h w -> (b f) c h w -> op -> back."""
    f = x5.shape[2]
    out = fn(rearrange(x5, "b c f h w -> (b f) c h w"))
    return rearrange(out, "(b f) c h w -> b c f h w", f=f)


def _conv(w, p, x5, stride=1):
    weight = w[f"{p}.weight"]
    pad = weight.shape[-1] // 2
    return _inflate(lambda x: F.conv2d(x, weight, w[f"{p}.bias"], stride=stride, padding=pad), x5)


def _gn(w, p, x5, eps):
    return _inflate(lambda x: F.group_norm(x, 32, w[f"{p}.weight"], w[f"{p}.bias"], eps), x5)


def _resnet(w, p, x5, temb):
    h = _conv(w, f"{p}.conv1", F.silu(_gn(w, f"{p}.norm1", x5, 1e-5)))
    t = F.silu(temb) @ w[f"{p}.time_emb_proj.weight"].T + w[f"{p}.time_emb_proj.bias"]
    h = h + t[:, :, None, None, None]
    h = _conv(w, f"{p}.conv2", F.silu(_gn(w, f"{p}.norm2", h, 1e-5)))
    if f"{p}.conv_shortcut.weight" in w:
        x5 = _conv(w, f"{p}.conv_shortcut", x5)
    return x5 + h


def _attention(w, p, x, ctx, heads=8):
    q = x @ w[f"{p}.to_q.weight"].T
    k = ctx @ w[f"{p}.to_k.weight"].T
    v = ctx @ w[f"{p}.to_v.weight"].T
    q, k, v = (rearrange(t, "n l (hd d) -> n hd l d", hd=heads) for t in (q, k, v))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    out = rearrange(scores.softmax(dim=-1) @ v, "n hd l d -> n l (hd d)")
    return out @ w[f"{p}.to_out.0.weight"].T + w[f"{p}.to_out.0.bias"]


def _ln(w, p, x):
    return F.layer_norm(x, (x.shape[-1],), w[f"{p}.weight"], w[f"{p}.bias"], 1e-5)


def _transformer3d(w, p, x5, context):
    """Transformer3DModel: frames folded into the batch, text repeated per frame, per-frame spatial attention."""
    b, c, f, h, wd = x5.shape
    x = rearrange(x5, "b c f h w -> (b f) c h w")
    ctx = repeat(context, "b n c -> (b f) n c", f=f)
    res = x
    x = F.group_norm(x, 32, w[f"{p}.norm.weight"], w[f"{p}.norm.bias"], 1e-6)
    x = F.conv2d(x, w[f"{p}.proj_in.weight"], w[f"{p}.proj_in.bias"])
    x = rearrange(x, "n c h w -> n (h w) c")
    blk = f"{p}.transformer_blocks.0"
    x = _attention(w, f"{blk}.attn1", _ln(w, f"{blk}.norm1", x), _ln(w, f"{blk}.norm1", x)) + x
    x = _attention(w, f"{blk}.attn2", _ln(w, f"{blk}.norm2", x), ctx) + x
    n = _ln(w, f"{blk}.norm3", x)
    u, g = (n @ w[f"{blk}.ff.net.0.proj.weight"].T + w[f"{blk}.ff.net.0.proj.bias"]).chunk(2, dim=-1)
    x = (u * F.gelu(g)) @ w[f"{blk}.ff.net.2.weight"].T + w[f"{blk}.ff.net.2.bias"] + x
    x = rearrange(x, "n (h w) c -> n c h w", h=h)
    x = F.conv2d(x, w[f"{p}.proj_out.weight"], w[f"{p}.proj_out.bias"]) + res
    return rearrange(x, "(b f) c h w -> b c f h w", f=f)


def _motion(w, p, x5):
    sub = {k[len(p) + len(".temporal_transformer."):]: v for k, v in w.items()
           if k.startswith(f"{p}.temporal_transformer.")}
    if "transformer_blocks.0.attention_blocks.0.pos_encoder.pe" not in sub:  # non-persistent in the authors' code
        from motion_reference import sinusoid
        sub["transformer_blocks.0.attention_blocks.0.pos_encoder.pe"] = sinusoid(32, x5.shape[1])
    return reference_module(sub, x5, norm_across_frames=False, attention_blocks=1)


def _time_embedding(w, t, dim):
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / half
    emb = t.float()[:, None] * torch.exp(exponent)[None]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)  # flip_sin_to_cos=True
    emb = F.silu(emb @ w["time_embedding.linear_1.weight"].T + w["time_embedding.linear_1.bias"])
    return emb @ w["time_embedding.linear_2.weight"].T + w["time_embedding.linear_2.bias"]


def reference_sparsectrl(w, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_mask,
                         conditioning_scale=1.0):
    """sample [b, 4, f, h, w]; timestep scalar; encoder_hidden_states [b, n, 768]; controlnet_cond
    [b, C, f, H, W]; conditioning_mask [b, 1, f, H, W]. Returns (12 down residuals, mid residual), 5-D."""
    sample = torch.zeros_like(sample)  # set_noisy_sample_input_to_zero
    b = sample.shape[0]
    base = w["conv_in.weight"].shape[0]
    emb = _time_embedding(w, torch.tensor([timestep]).repeat(b), base)
    sample = _conv(w, "conv_in", sample)
    cond = torch.cat([controlnet_cond, conditioning_mask], dim=1)
    if "controlnet_cond_embedding.weight" in w:  # use_simplified_condition_embedding (RGB)
        cond = _conv(w, "controlnet_cond_embedding", cond)
    else:
        cond = F.silu(_conv(w, "controlnet_cond_embedding.conv_in", cond))
        i = 0
        while f"controlnet_cond_embedding.blocks.{i}.weight" in w:
            cond = F.silu(_conv(w, f"controlnet_cond_embedding.blocks.{i}", cond, stride=2 if i % 2 else 1))
            i += 1
        cond = _conv(w, "controlnet_cond_embedding.conv_out", cond)
    sample = sample + cond
    res = [sample]
    level = 0
    while f"down_blocks.{level}.resnets.0.conv1.weight" in w:
        p = f"down_blocks.{level}"
        j = 0
        while f"{p}.resnets.{j}.conv1.weight" in w:
            sample = _resnet(w, f"{p}.resnets.{j}", sample, emb)
            if f"{p}.attentions.{j}.proj_in.weight" in w:
                sample = _transformer3d(w, f"{p}.attentions.{j}", sample, encoder_hidden_states)
            if f"{p}.motion_modules.{j}.temporal_transformer.proj_in.weight" in w:
                sample = _motion(w, f"{p}.motion_modules.{j}", sample)
            res.append(sample)
            j += 1
        if f"{p}.downsamplers.0.conv.weight" in w:
            sample = _conv(w, f"{p}.downsamplers.0.conv", sample, stride=2)
            res.append(sample)
        level += 1
    sample = _resnet(w, "mid_block.resnets.0", sample, emb)
    sample = _transformer3d(w, "mid_block.attentions.0", sample, encoder_hidden_states)
    sample = _resnet(w, "mid_block.resnets.1", sample, emb)
    down = [_conv(w, f"controlnet_down_blocks.{i}", r) * conditioning_scale for i, r in enumerate(res)]
    mid = _conv(w, "controlnet_mid_block", sample) * conditioning_scale
    return down, mid
