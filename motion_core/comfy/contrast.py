"""Motion Contrast Guidance: at each step, also run the UNet with another motion module (the contrast) and push the
result away from it: `denoised + scale * (denoised - contrast)`, both with the same CFG.

Why: a MotionLoRA's effect at strength +s is its wanted motion plus side effects common to any change of the
module. With the contrast set to the same LoRA at -s (or to the opposite LoRA, e.g. PanRight against PanLeft) the
difference keeps only what tells the two apart, the direction, and the guidance amplifies that alone; raising
the LoRA's strength amplifies both. It is classifier-free guidance where the "condition" is the motion module.

The contrast pass is one extra `calc_cond_batch` per step (like core's Skip Layer Guidance), made with the
transformer_options entry `ALT_KEY`, which the MotionLayers read to use the contrast module's weights for that
call only. The user's MODEL and both motion modules are left untouched; a clone carries the post-CFG function.
"""
from __future__ import annotations

import comfy.patcher_extension
import comfy.samplers

from ..errors import MotionFormatError
from .attachment import KEY, motion_attachment
from .injection import ALT_KEY, _WeightCache
from .placement import match_slots

CONTRAST_KEY = KEY + "_contrast"  # key of the ON_DETACH callback that drops the contrast weights' device copies


class ContrastWeights:
    """The contrast module's weights per MotionLayer name, on the device and dtype the caller's layer runs in."""

    def __init__(self, motion_module):
        self.cache = _WeightCache(motion_module, "auto")  # "auto": exactly the dtype asked for

    def module(self, name: str, device, dtype):
        return self.cache.get(device, dtype).get_submodule(name)

    def __deepcopy__(self, memo):  # it rides in the contrast pass's transformer_options, which a wrapper may
        return self                # deep-copy: share the weights instead of copying a whole motion module


def check_contrast_module(model_patcher, contrast_module) -> None:
    attachment = motion_attachment(model_patcher)
    if attachment is None:
        raise MotionFormatError(
            "Motion Contrast Guidance needs an inflated MODEL: connect it after Inflate Model (it contrasts the "
            "motion module Inflate Model put into the UNet with another one).")
    if getattr(contrast_module, "info", None) is None:
        raise MotionFormatError("The contrast motion module has no detected version/base: load it with Load Motion "
                                "Module (and Apply MotionLoRA for a LoRA at another strength).")
    ours = sorted(name for name, _ in attachment.slots)
    theirs = sorted(name for name, _ in match_slots(model_patcher, contrast_module))
    if ours != theirs:
        raise MotionFormatError(
            f"The contrast motion module ({contrast_module.info.version}, {len(theirs)} modules) does not sit where "
            f"the model's ({attachment.info.version}, {len(ours)} modules) does. Use the same motion module file "
            "for both (e.g. the same loader into two Apply MotionLoRA nodes).")
    if int(contrast_module.info.max_frames) < attachment.max_frames:
        raise MotionFormatError(
            f"The contrast motion module handles {contrast_module.info.max_frames} frames per pass, the model's "
            f"{attachment.max_frames}. Use the same motion module file for both.")


def with_motion_contrast(model_patcher, contrast_module, scale: float, start_percent: float = 0.0,
                         end_percent: float = 1.0):
    """A clone of an inflated `model_patcher` guided away from `contrast_module` between start and end percent
    of the sampling (0 = first step). scale 0 returns a plain clone (bit-identical sampling)."""
    check_contrast_module(model_patcher, contrast_module)
    if not 0.0 <= start_percent <= end_percent <= 1.0:
        raise MotionFormatError(f"start_percent {start_percent} and end_percent {end_percent}: give 0 <= start <= "
                                "end <= 1.")
    patched = model_patcher.clone()
    if scale == 0.0:
        return patched
    sampling = patched.get_model_object("model_sampling")
    sigma_start, sigma_end = sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)
    weights = ContrastWeights(contrast_module)

    def post_cfg(args):
        denoised = args["denoised"]
        sigma = float(args["sigma"].flatten()[0])
        if not sigma_end <= sigma <= sigma_start:
            return denoised
        options = args["model_options"].copy()
        options["transformer_options"] = dict(options.get("transformer_options", {}), **{ALT_KEY: weights})
        cond, uncond = args["cond"], args["uncond"]
        if uncond is None:  # CFG 1 (ComfyUI skips the uncond pass): the contrast is the cond prediction
            (other,) = comfy.samplers.calc_cond_batch(args["model"], [cond], args["input"], args["sigma"], options)
        else:
            c, u = comfy.samplers.calc_cond_batch(args["model"], [cond, uncond], args["input"], args["sigma"], options)
            other = u + (c - u) * args["cond_scale"]
        return denoised + (denoised - other) * scale

    patched.set_model_sampler_post_cfg_function(post_cfg)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, CONTRAST_KEY, weights.cache.on_detach)
    return patched
