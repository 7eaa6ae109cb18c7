"""A tiny in-process SD1.5-structured model (ComfyUI's own UNet class with 32 channels) whose text/pixel
encoders are cheap stand-ins, so a training step takes milliseconds. The real-checkpoint path (ComfyUI's
loader) is covered by test_cli_ddp.py."""
import hashlib
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY_CONTEXT = 32


def tiny_unet_config(num_res_blocks=2, channel_mult=(1, 2), model_channels=32):
    n = len(channel_mult)
    return {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": model_channels,
            "num_res_blocks": [num_res_blocks] * n, "transformer_depth": [1] * (num_res_blocks * n),
            "transformer_depth_output": [1] * ((num_res_blocks + 1) * n), "channel_mult": list(channel_mult),
            "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": TINY_CONTEXT,
            "num_heads": 8, "num_head_channels": -1, "use_temporal_resblock": False,
            "use_temporal_attention": False}


def text_stub(caption: str) -> torch.Tensor:
    """A fixed random embedding per caption ("" included), [77, 32]."""
    seed = int.from_bytes(hashlib.sha256(caption.encode()).digest()[:6], "little")
    return torch.randn(77, TINY_CONTEXT, generator=torch.Generator().manual_seed(seed))


def pixels_stub(pixels: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in [-1,1] -> [N,4,H/8,W/8]: 8x8 averages plus their mean (a linear 'VAE')."""
    avg = torch.nn.functional.avg_pool2d(pixels.float(), 8)
    return torch.cat([avg, avg.mean(1, keepdim=True)], 1)


def decode_stub(latents: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(latents[:, :3].float(), scale_factor=8).add(1).div(2).clamp(0, 1)


def make_tiny_base(seed=0, **kw):
    from tools.comfy_host import import_comfy

    import_comfy(cpu=True)
    import comfy.model_patcher
    import comfy.supported_models

    from training.base_model import init_unet_
    from training.stages import BaseModels

    config = comfy.supported_models.SD15(tiny_unet_config(**kw))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=torch.device("cpu"))
    init_unet_(model.diffusion_model, seed)
    # open the zero-initialised output layers a little so the base is not a constant function
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.02)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    return BaseModels(patcher, text_stub, pixels_stub, decode_stub, source="tiny")




def pooled_stub(caption: str) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(("pooled" + caption).encode()).digest()[:6], "little")
    return torch.randn(1280, generator=torch.Generator().manual_seed(seed))


def make_tiny_sdxl_base(seed=0):
    """ComfyUI's SDXL model class with a 32-channel UNet: exercises the pooled-text/size (`y`) conditioning."""
    from tools.comfy_host import import_comfy

    import_comfy(cpu=True)
    import comfy.model_patcher
    import comfy.supported_models

    from training.base_model import init_unet_
    from training.stages import BaseModels

    # SDXL's class fixes 64-channel attention heads: 64 model channels give 1 and 2 heads per level.
    unet_config = dict(tiny_unet_config(model_channels=64), adm_in_channels=2816, num_classes="sequential",
                       use_linear_in_transformer=True)
    config = comfy.supported_models.SDXL(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=torch.device("cpu"))
    init_unet_(model.diffusion_model, seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.02)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    return BaseModels(patcher, lambda c: (text_stub(c), pooled_stub(c)), pixels_stub, decode_stub, source="tiny-sdxl")
