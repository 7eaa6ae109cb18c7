"""Trainable low-rank deltas in the official processor-LoRA convention: W' = W + scale * up @ down,
down [r, in] (random, std 1/r), up [out, r] (zeros, so training starts from the unchanged model).

Two ways of attaching them, both without touching anything the user owns:
- spatial attention of ComfyUI's UNet (domain adapter): as a ComfyUI weight wrapper
  (`ModelPatcher.add_weight_wrapper`), the mechanism ComfyUI's own LoRA trainer uses; the UNet's weights stay
  untouched and the delta is added when a layer casts its weight;
- temporal attention of a MotionModuleSet (MotionLoRA): a torch parametrization on the training copy of the
  motion module (the loaded module itself is never modified).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

PROJECTIONS = (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out.0", "to_out"))


class LoRADelta(nn.Module):
    """Callable on a weight: returns weight + scale * up @ down (in the weight's dtype)."""

    def __init__(self, in_features: int, out_features: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        rank = max(1, min(rank, in_features, out_features))
        self.down = nn.Parameter(torch.randn(rank, in_features, generator=generator) / rank)
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = 1.0

    def delta(self) -> torch.Tensor:
        return self.up @ self.down

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.delta() * self.scale).to(device=weight.device, dtype=weight.dtype)


def _safe(name: str) -> str:
    return name.replace(".", "__")


# --- domain adapter on the UNet's spatial attention ------------------------------------------------------------

def spatial_attention_names(unet: nn.Module) -> List[Tuple[str, str]]:
    """[(comfy module path of each attention projection, official adapter key stem)], e.g.
    ("input_blocks.1.1.transformer_blocks.0.attn1.to_q",
     "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora").

    Blocks are named the diffusers/official way from their place in the UNet (level, index inside the level),
    read with the motion adapter's own slot finder, so reduced SD1.5-family UNets get consistent names.
    """
    from comfy.ldm.modules.attention import SpatialTransformer

    from . import motion_core

    unet_slots = motion_core("comfy").unet_slots

    out = []
    for slot in unet_slots(unet):
        if slot.block == "middle_block":
            container, official = unet.middle_block, "mid_block.attentions.0"
        elif slot.block == "input_blocks":
            container, official = unet.input_blocks[slot.block_index], f"down_blocks.{slot.level}.attentions.{slot.index}"
        else:
            container, official = unet.output_blocks[slot.block_index], f"up_blocks.{slot.level}.attentions.{slot.index}"
        prefix = "middle_block" if slot.block == "middle_block" else f"{slot.block}.{slot.block_index}"
        for i, layer in enumerate(container):
            if not isinstance(layer, SpatialTransformer):
                continue
            for d, _ in enumerate(layer.transformer_blocks):
                for attn in ("attn1", "attn2"):
                    for comfy_proj, official_proj in PROJECTIONS:
                        out.append((f"{prefix}.{i}.transformer_blocks.{d}.{attn}.{comfy_proj}",
                                    f"{official}.transformer_blocks.{d}.{attn}.processor.{official_proj}_lora"))
    # The UNet's middle block is not a motion slot unless it has 3 layers; its attention is still adapted.
    mid = getattr(unet, "middle_block", None)
    if mid is not None and not any(p.startswith("middle_block.") for p, _ in out):
        for i, layer in enumerate(mid):
            if isinstance(layer, SpatialTransformer):
                for d, _ in enumerate(layer.transformer_blocks):
                    for attn in ("attn1", "attn2"):
                        for comfy_proj, official_proj in PROJECTIONS:
                            out.append((f"middle_block.{i}.transformer_blocks.{d}.{attn}.{comfy_proj}",
                                        f"mid_block.attentions.0.transformer_blocks.{d}.{attn}.processor."
                                        f"{official_proj}_lora"))
    return out


class SpatialAdapter(nn.Module):
    """The trainable domain adapter: one LoRADelta per spatial attention projection of a ComfyUI UNet."""

    def __init__(self, unet: nn.Module, rank: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.names = spatial_attention_names(unet)
        if not self.names:
            raise ValueError("this UNet has no spatial attention layers for a domain adapter")
        self.deltas = nn.ModuleDict()
        for comfy_path, _ in self.names:
            linear = unet.get_submodule(comfy_path)
            self.deltas[_safe(comfy_path)] = LoRADelta(linear.in_features, linear.out_features, rank, g)

    def attach(self, patcher) -> None:
        """Register every delta as a weight wrapper on `patcher` (a clone; applied when ComfyUI loads it)."""
        for comfy_path, _ in self.names:
            patcher.add_weight_wrapper(f"diffusion_model.{comfy_path}.weight", self.deltas[_safe(comfy_path)])

    def official_state_dict(self) -> Dict[str, torch.Tensor]:
        out = {}
        for comfy_path, stem in self.names:
            d = self.deltas[_safe(comfy_path)]
            out[f"{stem}.down.weight"] = d.down.detach().float().cpu().contiguous()
            out[f"{stem}.up.weight"] = d.up.detach().float().cpu().contiguous()
        return out


# --- MotionLoRA on a motion module's temporal attention --------------------------------------------------------

def motion_attention_projections(motion_module: nn.Module) -> Iterator[Tuple[str, nn.Linear, str]]:
    """(module path, Linear, official key stem) for to_q/k/v/out of every temporal attention."""
    for loc in motion_module.locations():
        block = motion_module.get_submodule(f"{loc.name}.temporal_transformer.transformer_blocks.0")
        for j, _ in enumerate(block.attention_blocks):
            base = f"{loc.name}.temporal_transformer.transformer_blocks.0.attention_blocks.{j}"
            for proj, official in PROJECTIONS:
                yield (f"{base}.{proj}", motion_module.get_submodule(f"{base}.{proj}"),
                       f"{base}.processor.{official}_lora")


class _AddDelta(nn.Module):
    def __init__(self, delta: LoRADelta):
        super().__init__()
        self.lora = delta

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.lora(weight)


class MotionLoRA(nn.Module):
    """Trainable MotionLoRA deltas, parametrizing the attention weights of a (training copy of a) motion module."""

    def __init__(self, motion_module: nn.Module, rank: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.stems: Dict[str, str] = {}
        self.deltas = nn.ModuleDict()
        self._targets = []
        for path, linear, stem in motion_attention_projections(motion_module):
            self.deltas[_safe(path)] = LoRADelta(linear.in_features, linear.out_features, rank, g)
            self.stems[_safe(path)] = stem
            self._targets.append((linear, _safe(path)))

    def set_scale(self, scale: float) -> None:
        """Every delta's factor: -1 trains the opposite move of a signed pair (augment.SIGNED_PAIRS)."""
        for d in self.deltas.values():
            d.scale = float(scale)

    def attach(self) -> None:
        for linear, key in self._targets:
            parametrize.register_parametrization(linear, "weight", _AddDelta(self.deltas[key]), unsafe=True)

    def official_state_dict(self) -> Dict[str, torch.Tensor]:
        out = {}
        for key, stem in self.stems.items():
            d = self.deltas[key]
            out[f"{stem}.down.weight"] = d.down.detach().float().cpu().contiguous()
            out[f"{stem}.up.weight"] = d.up.detach().float().cpu().contiguous()
        return out
