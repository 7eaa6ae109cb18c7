"""Tiny in-process SD1.5-family models built with ComfyUI's own classes (ComfyUI must already be imported):
a one-level UNet, a matching ControlNet and a small CLIP-L, all with seeded weights.

ComfyUI's ops leave weights uninitialised (torch.empty), so every builder fills them from a seeded generator:
runs are reproducible and activations stay finite.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

CPU = torch.device("cpu")


def unet_config(context_dim: int) -> dict:
    """One level, one res block with attention, 32 channels: a UNet SD15 accepts, ~1 M parameters."""
    return {
        "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [1], "channel_mult": [1],
        "transformer_depth": [1], "transformer_depth_output": [1, 1], "transformer_depth_middle": 1,
        "context_dim": context_dim, "use_linear_in_transformer": False, "adm_in_channels": None,
        "use_temporal_attention": False, "use_spatial_transformer": True, "legacy": False,
        "num_head_channels": -1, "num_heads": 4, "image_size": 32, "dtype": torch.float32,
    }


def fill_seeded(module: torch.nn.Module, seed: int, scale: float = 0.05,
                loud: Optional[Callable[[str], bool]] = None, loud_factor: float = 4.0) -> None:
    """N(0, scale) weights from a generator seeded with `seed`, in parameter order; parameters whose name
    `loud` accepts get `loud_factor` times larger weights (e.g. so that a hint or a prompt visibly matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = scale * loud_factor if loud is not None and loud(name) else scale
            p.copy_(torch.randn(p.shape, generator=g) * std)


def tiny_unet(context_dim: int, seed: int = 0, loud: Optional[Callable[[str], bool]] = None,
              loud_factor: float = 4.0):
    """A ModelPatcher (CPU) over an SD15 model with the tiny UNet."""
    import comfy.model_patcher
    import comfy.supported_models

    model = comfy.supported_models.SD15(unet_config(context_dim)).get_model({})
    fill_seeded(model, seed, loud=loud, loud_factor=loud_factor)
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


CONTROL_OUTPUTS = ("input_hint_block", "zero_convs", "middle_block_out")


def tiny_controlnet(context_dim: int, seed: int = 1):
    """A core ControlNet (comfy.controlnet.ControlNet) for the tiny UNet; its hint input and output convs get 4x
    larger weights so the hint visibly moves the UNet output."""
    import comfy.cldm.cldm
    import comfy.controlnet

    cfg = {k: v for k, v in unet_config(context_dim).items()
           if k not in ("out_channels", "transformer_depth_output", "use_temporal_attention", "dtype")}
    control_model = comfy.cldm.cldm.ControlNet(hint_channels=3, **cfg)
    fill_seeded(control_model, seed, loud=lambda name: name.startswith(CONTROL_OUTPUTS))
    return comfy.controlnet.ControlNet(control_model, load_device=CPU)


def tiny_clip(width: int, seed: int = 0):
    """comfy.sd.CLIP with the real SD1 tokenizer and a 2-layer CLIP-L text model of hidden size `width`."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    config = {"hidden_size": width, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
              "projection_dim": width}
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": config, "dtype": torch.float32})
    fill_seeded(clip.cond_stage_model, seed, scale=0.1)
    return clip
