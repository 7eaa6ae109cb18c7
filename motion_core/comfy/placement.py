"""Where the motion modules go in a ComfyUI UNet.

Placement is read from the UNet's structure (levels are delimited by Downsample/Upsample blocks), not from a
table, so SD1.5, SDXL and reduced SD1.5-family UNets are all served by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch.nn as nn

import comfy.supported_models
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample

from ..errors import MotionFormatError


@dataclass(frozen=True)
class MotionSlot:
    """One place in a ComfyUI UNet that takes a temporal module (same kind/level/index as MotionLocation)."""

    kind: str        # "down" | "mid" | "up"
    level: int
    index: int
    block: str       # "input_blocks" | "middle_block" | "output_blocks"
    block_index: int  # index into input_blocks / output_blocks (0 for the middle block)
    position: int    # insertion index inside that TimestepEmbedSequential
    channels: int


def _first_resblock(block) -> Optional[ResBlock]:
    return next((layer for layer in block if isinstance(layer, ResBlock)), None)


def _is_resample(layer, cls) -> bool:
    # resblock_updown UNets resample with a ResBlock(up/down=True) instead of an Upsample/Downsample layer.
    return isinstance(layer, cls) or (isinstance(layer, ResBlock) and getattr(layer, "updown", False))


def unet_slots(unet: nn.Module) -> List[MotionSlot]:
    """Every place a motion module can go in a ComfyUI UNet, in execution order.

    Down: after each input block holding a resnet (levels end at a Downsample block). Mid: between the middle
    block's attention and its second resnet. Up: in each output block, after resnet + attention and before
    the Upsample (a level ends with the block that upsamples).
    """
    if not all(hasattr(unet, name) for name in ("input_blocks", "output_blocks")):
        raise MotionFormatError(
            f"This model's diffusion model ({type(unet).__name__}) is not a UNet: AnimateDiff motion modules only "
            "fit SD1.5-family and SDXL UNets. Load an SD1.5 (or SDXL, for SDXL modules) checkpoint.")
    slots: List[MotionSlot] = []
    level = index = 0
    for k, block in enumerate(unet.input_blocks):
        if k == 0:
            continue  # conv_in
        if len(block) and all(_is_resample(layer, Downsample) for layer in block):
            level, index = level + 1, 0
            continue
        res = _first_resblock(block)
        if res is None:
            continue
        slots.append(MotionSlot("down", level, index, "input_blocks", k, len(block), res.out_channels))
        index += 1
    mid = getattr(unet, "middle_block", None)
    if mid is not None and len(mid) >= 3 and isinstance(mid[-1], ResBlock):
        slots.append(MotionSlot("mid", 0, 0, "middle_block", 0, len(mid) - 1, mid[-1].out_channels))
    level = index = 0
    for k, block in enumerate(unet.output_blocks):
        res = _first_resblock(block)
        if res is None:
            continue
        layers = list(block)
        up_at = next((i for i, layer in enumerate(layers) if i > 0 and _is_resample(layer, Upsample)), None)
        slots.append(MotionSlot("up", level, index, "output_blocks", k,
                                len(layers) if up_at is None else up_at, res.out_channels))
        index += 1
        if up_at is not None:
            level, index = level + 1, 0
    return slots


def model_base(model_patcher) -> Optional[str]:
    """'sd15' | 'sdxl' | None for the model family of a ModelPatcher (None: neither)."""
    config = getattr(model_patcher.model, "model_config", None)
    sm = comfy.supported_models
    if isinstance(config, (sm.SDXL, sm.SDXLRefiner)):
        return "sdxl"
    if isinstance(config, sm.SD15):
        return "sd15"
    return None


_BASE_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL", None: "neither SD1.5 nor SDXL"}


def _module_title(mm) -> str:
    info = mm.info
    return f"this {_BASE_NAMES.get(info.base, info.base)} motion module (AnimateDiff {info.version})"


def match_slots(model_patcher, motion_module) -> List[Tuple[str, MotionSlot]]:
    """[(module name, slot)] for every temporal module; raises MotionFormatError when the module does not fit."""
    info = motion_module.info
    base = model_base(model_patcher)
    config_name = type(getattr(model_patcher.model, "model_config", None)).__name__
    if base != info.base:
        if base is None:
            raise MotionFormatError(
                f"The MODEL is a {config_name} model, which AnimateDiff motion modules do not support; "
                f"{_module_title(motion_module)} needs an {_BASE_NAMES[info.base]} checkpoint.")
        want = "an SD1.5 motion module (e.g. mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt)" if base == "sd15" else \
            "an SDXL motion module (e.g. mm_sdxl_v10_beta.ckpt)"
        raise MotionFormatError(
            f"{_module_title(motion_module)[0].upper()}{_module_title(motion_module)[1:]} cannot animate an "
            f"{_BASE_NAMES[base]} model ({config_name}). Use {want}, or load an {_BASE_NAMES[info.base]} "
            "checkpoint for this module.")
    slots = {(s.kind, s.level, s.index): s for s in unet_slots(model_patcher.model.diffusion_model)}
    pairs, problems = [], []
    for loc in motion_module.locations():
        slot = slots.get((loc.kind, loc.level, loc.index))
        if slot is None:
            problems.append(f"{loc.name} has no place in this UNet")
        elif slot.channels != loc.channels:
            problems.append(f"{loc.name} has {loc.channels} channels but the UNet has {slot.channels} there "
                            f"({slot.block}.{slot.block_index})")
        else:
            pairs.append((loc.name, slot))
    used = {(s.kind, s.level, s.index) for _, s in pairs}
    # The mid module exists only in v2; HotshotXL puts temporal layers only next to attention blocks.
    uncovered = [s for key, s in slots.items() if key not in used and s.kind != "mid"]
    if uncovered and info.version != "hotshotxl" and not problems:
        problems.append(f"{len(uncovered)} of the UNet's {len(slots)} places get no temporal module "
                        f"(first: {uncovered[0].block}.{uncovered[0].block_index})")
    if problems:
        raise MotionFormatError(
            f"{_module_title(motion_module)[0].upper()}{_module_title(motion_module)[1:]} does not fit this "
            f"{_BASE_NAMES[base]} UNet: " + "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if
                                                                        len(problems) > 4 else "")
            + ". The checkpoint and the motion module were made for different UNet layouts: use a motion module "
              "made for this checkpoint's architecture.")
    return pairs
