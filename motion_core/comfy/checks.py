"""Checks that run before the first sampling step (from the nodes and from the OUTER_SAMPLE wrapper)."""
from __future__ import annotations

from typing import Optional

import torch

from ..context import check_context_fits
from ..errors import MotionFormatError
from .attachment import motion_attachment


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


def _frame_check_wrapper(executor, noise, *args, **kwargs):
    """OUTER_SAMPLE wrapper: frame limit and per-frame conditioning are checked before the first step, whichever
    sampler node runs (Sample Animation, core KSampler, SamplerCustom...)."""
    guider = executor.class_obj
    frames = int(noise.shape[0])
    check_frames(guider.model_patcher, frames, model_options=guider.model_options)
    for name, conds in (getattr(guider, "conds", None) or {}).items():
        check_conditioning_rows(name, [c.get("cross_attn") for c in conds or () if isinstance(c, dict)], frames)
        check_controls([c.get("control") for c in conds or () if isinstance(c, dict)], frames)
    return executor(noise, *args, **kwargs)


def check_controls(controls, frames: int) -> None:
    """Controls that know the clip they need (SparseCtrl's keyframe indices, its `frames`) check it now."""
    for control in controls:
        while control is not None:
            check = getattr(control, "check_frames", None)
            if callable(check):
                check(frames)
            control = getattr(control, "previous_controlnet", None)
