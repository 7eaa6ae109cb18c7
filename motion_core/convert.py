"""Key renaming from the other published layouts to the original AnimateDiff names.

- diffusers MotionAdapter: `X.motion_modules.J.{norm,proj_in,proj_out}` (no `temporal_transformer.`),
  `transformer_blocks.0.attn{1,2}` for `attention_blocks.{0,1}`, `norm1/norm2/norm3` for `norms.0/norms.1/ff_norm`,
  and one `transformer_blocks.0.pos_embed.pe` per module shared by both attentions.
- HotshotXL: `X.temporal_attentions.J.` for `X.motion_modules.J.temporal_transformer.`,
  `pos_encoder.positional_encoding` for `pos_encoder.pe`.
"""
from __future__ import annotations

import re

_DIFFUSERS_MODULE = re.compile(r"^((?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+)\.(.*)$")
_HOTSHOT_MODULE = re.compile(r"^((?:down_blocks\.\d+|up_blocks\.\d+|mid_block))\.temporal_attentions\.(\d+)\.(.*)$")

_DIFFUSERS_INNER = [
    (re.compile(r"^transformer_blocks\.(\d+)\.attn1\."), r"transformer_blocks.\1.attention_blocks.0."),
    (re.compile(r"^transformer_blocks\.(\d+)\.attn2\."), r"transformer_blocks.\1.attention_blocks.1."),
    (re.compile(r"^transformer_blocks\.(\d+)\.norm1\."), r"transformer_blocks.\1.norms.0."),
    (re.compile(r"^transformer_blocks\.(\d+)\.norm2\."), r"transformer_blocks.\1.norms.1."),
    (re.compile(r"^transformer_blocks\.(\d+)\.norm3\."), r"transformer_blocks.\1.ff_norm."),
]


def is_diffusers_layout(keys) -> bool:
    return any(".motion_modules." in k and ".temporal_transformer." not in k for k in keys) and not any(
        ".temporal_transformer." in k for k in keys)


def is_hotshot_layout(keys) -> bool:
    return any(".temporal_attentions." in k for k in keys)


def diffusers_to_original(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        m = _DIFFUSERS_MODULE.match(key)
        if not m:
            out[key] = value
            continue
        prefix, inner = m.groups()
        pe = re.match(r"^transformer_blocks\.(\d+)\.pos_embed\.pe$", inner)
        if pe:  # one shared table in diffusers; the original stores it in each attention block
            for a in (0, 1):
                out[f"{prefix}.temporal_transformer.transformer_blocks.{pe.group(1)}.attention_blocks.{a}.pos_encoder.pe"] = value
            continue
        for pattern, repl in _DIFFUSERS_INNER:
            inner = pattern.sub(repl, inner)
        out[f"{prefix}.temporal_transformer.{inner}"] = value
    return out


def hotshot_to_original(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        m = _HOTSHOT_MODULE.match(key)
        if not m:
            out[key] = value
            continue
        block, index, inner = m.groups()
        inner = inner.replace("pos_encoder.positional_encoding", "pos_encoder.pe")
        out[f"{block}.motion_modules.{index}.temporal_transformer.{inner}"] = value
    return out
