"""Checks that run before the first sampling step (from the nodes and from the OUTER_SAMPLE wrapper)."""
from __future__ import annotations

import logging
from typing import Optional

import torch

from ..context import check_context_fits
from ..errors import MotionFormatError
from ..guardrails import few_frames
from .attachment import motion_attachment


log = logging.getLogger(__name__)

CORE_CONTEXT_HANDLER = "context_handler"  # model_options key of core's "Context Windows (Manual)" node


def refuse_core_context_windows(model_options: dict) -> None:
    """Raise MotionFormatError when core's context windows are set on an animating model.

    Core 0.3.75's IndexListContextHandler (node "Context Windows (Manual)") slices the latents but not the
    per-frame conditioning (it only subsets model_conds tensors with fewer dims than its dim, i.e. never at
    dim 0) nor the ControlNet hints, so every window is driven by the prompts and hints of the first frames,
    and batch-mismatched conds can fail inside the UNet. Our windows (ADMK_ContextOptions) slice all of them.
    """
    if model_options.get(CORE_CONTEXT_HANDLER) is None:
        return
    raise MotionFormatError(
        "The MODEL went through core's \"Context Windows (Manual)\" node, which does not work with AnimateDiff: "
        "its windows do not slice per-frame prompts (Prompt Travel) or ControlNet hints, so every window would "
        "get the first frames' conditioning (or sampling fails). Remove that node and connect this pack's Context "
        "Options node (ADMK_ContextOptions) to Sample Animation or Inflate Model instead.")


def check_frames(model_patcher, num_frames: int, context=None, model_options: Optional[dict] = None) -> None:
    """Raise MotionFormatError before sampling when one pass would see more frames than the module can, or when
    core's context windows are set on the model. `context`: our ContextOptions for this run (default: the ones
    given to Inflate Model); `model_options`: the options the sampler runs with (default: the patcher's)."""
    attachment = motion_attachment(model_patcher)
    if attachment is None:
        return
    refuse_core_context_windows(model_patcher.model_options if model_options is None else model_options)
    context = context if context is not None else attachment.context_options
    name = f"the {attachment.info.version} motion module"
    try:
        check_context_fits(attachment.max_frames, context, int(num_frames), module_name=name)
    except MotionFormatError:
        raise
    except ValueError as exc:
        raise MotionFormatError(str(exc)) from None


def check_conditioning_rows(name: str, tensors, frames: int) -> None:
    """Refuse conditioning whose rows are neither shared by every frame (1) nor one per frame (`frames`).

    ComfyUI would silently repeat or cut such a batch to the frame count, so e.g. a 32-frame prompt schedule
    on a 48-frame run would drive frames 32-47 with the schedule's first rows.
    """
    for cond in tensors:
        if not isinstance(cond, torch.Tensor) or cond.ndim == 0:
            continue
        rows = int(cond.shape[0])
        if rows not in (1, frames):
            raise MotionFormatError(
                f"The {name} conditioning has {rows} rows (one per frame, e.g. a Prompt Travel schedule made for "
                f"{rows} frames) but this animation has {frames} frame{'s' if frames != 1 else ''}. Set frames to "
                f"{frames} in Prompt Travel (or whatever made the {name} conditioning), or make the animation "
                f"{rows} frames long.")


# Tensors in a cond entry that carry one row per frame (or 1 row shared by all); ComfyUI repeats or wraps any
# other count to the batch without a word. Name shown in the error -> what makes it and how to fix it.
_PER_FRAME_COND = {
    "mask": ("mask", "the mask given to Conditioning (Set Mask)"),
    "pooled_output": ("pooled prompt", "the text encoder / prompt schedule"),
    "concat_latent_image": ("inpaint latent", "the IMAGE given to InpaintModelConditioning"),
    "concat_mask": ("inpaint mask", "the MASK given to InpaintModelConditioning"),
}


def _frames_error(what: str, rows: int, frames: int, fix: str) -> MotionFormatError:
    return MotionFormatError(
        f"The {what} has {rows} frames but this animation samples {frames} frame{'s' if frames != 1 else ''}: "
        f"give 1 (shared by every frame) or exactly {frames} (one per frame). {fix}")


def _core_controls(control):
    """Core ControlNet/T2IAdapter/ControlLoRA objects of a chain. Controls from other modules (e.g. SparseCtrl,
    whose few keyframe hints are mapped to frames by their own code) are left to that code."""
    seen = set()
    while control is not None and id(control) not in seen:
        seen.add(id(control))
        if type(control).__module__.startswith("comfy."):
            yield control
        control = getattr(control, "previous_controlnet", None)


def check_per_frame_inputs(conds: dict, frames: int, denoise_mask=None) -> None:
    """Refuse every per-frame input whose batch is neither 1 nor the sampled frame count, naming both counts and
    the fix: ControlNet hints, area masks, pooled prompts, inpaint latents/masks and the latent's noise mask.
    With context windows `frames` is still the whole clip (the windows slice these inputs per window)."""
    for name, entries in (conds or {}).items():
        entries = [c for c in entries or () if isinstance(c, dict)]
        check_conditioning_rows(name, [c.get("cross_attn") for c in entries], frames)
        for c in entries:
            for key, (what, source) in _PER_FRAME_COND.items():
                value = c.get(key)
                if isinstance(value, torch.Tensor) and value.ndim >= 3 and int(value.shape[0]) not in (1, frames):
                    raise _frames_error(f"{name} conditioning's {what}", int(value.shape[0]), frames,
                                        f"Make {source} {frames} frames long, or the animation "
                                        f"{int(value.shape[0])} frames.")
            for control in _core_controls(c.get("control")):
                hint = getattr(control, "cond_hint_original", None)
                if isinstance(hint, torch.Tensor) and hint.ndim == 4 and int(hint.shape[0]) not in (1, frames):
                    raise _frames_error(
                        f"ControlNet hint ({type(control).__name__} on the {name} conditioning)", int(hint.shape[0]),
                        frames, f"Connect {frames} hint images to Apply ControlNet (e.g. one preprocessed image per "
                        f"frame), or set the animation to {int(hint.shape[0])} frames.")
    if isinstance(denoise_mask, torch.Tensor) and denoise_mask.ndim >= 3 and int(denoise_mask.shape[0]) not in (1, frames):
        raise _frames_error("latent's noise mask (Set Latent Noise Mask / VAE Encode for Inpaint)",
                            int(denoise_mask.shape[0]), frames,
                            f"Give a mask batch of {frames} (or a single mask), or sample {int(denoise_mask.shape[0])} frames.")


def _frame_check_wrapper(executor, noise, *args, **kwargs):
    """OUTER_SAMPLE wrapper: frame limit and every per-frame input are checked before the first step, whichever
    sampler node runs (Sample Animation, core KSampler, SamplerCustom...)."""
    guider = executor.class_obj
    frames = int(noise.shape[0])
    check_frames(guider.model_patcher, frames, model_options=guider.model_options)
    denoise_mask = args[3] if len(args) > 3 else kwargs.get("denoise_mask")
    check_per_frame_inputs(getattr(guider, "conds", None), frames, denoise_mask)
    attachment = motion_attachment(guider.model_patcher)
    if attachment is not None:  # Sample Animation shows it on the node; core KSampler users get it in the log
        context = attachment.context_options
        warning = few_frames(attachment.info, frames, context.length if context else None)
        if warning:
            log.warning("AnimateDiff MotionKit: %s", warning)
    check_controls([c.get("control") for conds in (getattr(guider, "conds", None) or {}).values()
                    for c in conds or () if isinstance(c, dict)], frames)
    return executor(noise, *args, **kwargs)


def check_controls(controls, frames: int) -> None:
    """Controls that know the clip they need (SparseCtrl's keyframe indices, its `frames`) check it now."""
    for control in controls:
        while control is not None:
            check = getattr(control, "check_frames", None)
            if callable(check):
                check(frames)
            control = getattr(control, "previous_controlnet", None)
