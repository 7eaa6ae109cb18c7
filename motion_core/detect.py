"""What kind of file a state dict is, so a wrong file gets an error that says what it is and where it goes."""
from __future__ import annotations

MOTION_MODULE = "motion_module"
MOTION_LORA = "motion_lora"
DOMAIN_ADAPTER = "domain_adapter"
SD_CHECKPOINT = "sd_checkpoint"
SPARSECTRL = "sparsectrl"
CONTROLNET = "controlnet"
IMAGE_LORA = "image_lora"
UNKNOWN = "unknown"

DESCRIPTIONS = {
    MOTION_MODULE: "an AnimateDiff motion module (load it with Load Motion Module; folder models/animatediff_models)",
    MOTION_LORA: "a MotionLoRA (camera motion; use Apply MotionLoRA; folder models/animatediff_motion_lora)",
    DOMAIN_ADAPTER: "the v3 domain adapter, an image LoRA on spatial attention (connect it to Inflate Model's "
                    "domain_adapter input, not to a MotionLoRA or motion-module loader)",
    SD_CHECKPOINT: "a full Stable Diffusion checkpoint (load it with Load Checkpoint; folder models/checkpoints)",
    SPARSECTRL: "a SparseCtrl ControlNet (keyframe control, not a motion module: load it with Load SparseCtrl and "
                "connect it to Apply SparseCtrl; folder models/controlnet)",
    CONTROLNET: "a ControlNet (load it with core Load ControlNet Model; folder models/controlnet)",
    IMAGE_LORA: "an image LoRA (load it with core Load LoRA; folder models/loras)",
    UNKNOWN: "not an AnimateDiff file this pack knows",
}


def classify(keys) -> str:
    keys = list(keys)
    has = lambda s: any(s in k for k in keys)  # noqa: E731
    if has("controlnet_cond_embedding") or has("controlnet_down_blocks"):
        return SPARSECTRL if has("motion_modules") else CONTROLNET
    if any(k.startswith(("control_model.", "input_hint_block.")) for k in keys) or has("zero_convs."):
        return CONTROLNET
    if any(k.startswith(("model.diffusion_model.", "diffusion_model.")) for k in keys):
        return SD_CHECKPOINT
    if any(k.startswith(("lora_unet_", "lora_te_")) for k in keys):
        # kohya's flattened names: a MotionLoRA when they name motion modules, an image LoRA otherwise
        return MOTION_LORA if has("_motion_modules_") else IMAGE_LORA
    lora_like = has("_lora.") or has(".lora_A.") or has(".lora_B.") or has("lora_down") or has("lora_up")
    temporal = has("motion_modules") or has("temporal_attentions")
    if lora_like and temporal:
        return MOTION_LORA
    if lora_like and (has(".attentions.") or has(".attn1.") or has(".attn2.")):
        return DOMAIN_ADAPTER
    if temporal:
        return MOTION_MODULE
    return UNKNOWN


def describe(kind: str) -> str:
    return DESCRIPTIONS.get(kind, DESCRIPTIONS[UNKNOWN])
