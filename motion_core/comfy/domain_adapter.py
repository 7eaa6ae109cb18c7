"""The v3 domain adapter as ordinary ComfyUI LoRA patches (strength = the user's scale, applied by add_patches)."""
from __future__ import annotations

from ..errors import MotionFormatError


def _adapter_patches(model_patcher, adapter) -> dict:
    """The domain adapter as ComfyUI LoRA patches ({weight key: LoRAAdapter}), strength applied by add_patches."""
    from comfy.weight_adapter.lora import LoRAAdapter

    unet = model_patcher.model.diffusion_model
    unet_keys = model_patcher.model_state_dict(filter_prefix="diffusion_model.").keys()
    raw = adapter.comfy_lora_patches(unet_keys, num_res_blocks=int(unet.num_res_blocks[0]))
    # Same names but other widths (another UNet family): ComfyUI would fail (or skip) the patch mid-load.
    weights = model_patcher.model_state_dict(filter_prefix="diffusion_model.")
    wrong = [f"{k}: adapter {up.shape[0]}x{down.shape[1]}, UNet {tuple(weights[k].shape)}"
             for k, (up, down, _) in raw.items() if tuple(weights[k].shape[:2]) != (up.shape[0], down.shape[1])]
    if wrong:
        raise MotionFormatError(
            f"The domain adapter does not fit this UNet: {len(wrong)} of its {len(raw)} weights have other shapes "
            f"(e.g. {wrong[0]}). The v3 adapter (v3_sd15_adapter.ckpt) is for SD1.5 checkpoints: use it with one, "
            "or set domain_adapter to none.")
    patches = {}
    for key, (up, down, scale) in raw.items():
        # ComfyUI scales a LoRA by alpha / rank: alpha = scale * rank carries the file's own scale (1 officially).
        alpha = None if scale == 1.0 else float(scale) * down.shape[0]
        patches[key] = LoRAAdapter(set(), (up, down, alpha, None, None, None))
    return patches
