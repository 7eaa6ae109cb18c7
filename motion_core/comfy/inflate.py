"""`inflate`: the one entry point that turns a ModelPatcher into an animating clone; `sampling_model`: the MODEL
Sample Animation samples; `attach_context_windows`: the one way context windows get onto a model (both use it)."""
from __future__ import annotations

import dataclasses

import comfy.patcher_extension

from ..context import check_context_fits
from ..errors import MotionFormatError
from ..precision import PRECISIONS
from .attachment import KEY, MotionAttachment, motion_attachment
from .checks import _frame_check_wrapper, refuse_core_context_windows
from .domain_adapter import _adapter_patches
from .injection import MotionLayer, _frames_tracker, _motion_layer_handler, _MotionInjection, _RunState, _WeightCache
from .placement import match_slots
from .schedules import model_sampling_for, resolve_beta_schedule
from .windows import install_context_windows


def _eject_after_run(model_patcher) -> None:
    # ON_CLEANUP runs in sampling's `finally`: even a cancelled run leaves the shared UNet without our layers.
    model_patcher.eject_model()


def inflate(model_patcher, motion_module, *, adapter=None, adapter_scale: float = 1.0, motion_strength: float = 1.0,
            beta_schedule: str = "auto", context_options=None, precision: str = "auto"):
    """A clone of `model_patcher` that runs `motion_module` in its UNet. Inputs are left untouched.

    Raises MotionFormatError (before any sampling) when the module and the model do not belong together.
    """
    if getattr(motion_module, "info", None) is None:
        raise MotionFormatError("The motion module has no detected version/base: load it with Load Motion Module.")
    refuse_core_context_windows(model_patcher.model_options)
    if motion_attachment(model_patcher) is not None:
        raise MotionFormatError(
            "This MODEL already has a motion module (it went through Inflate Model before). Connect the "
            "un-inflated MODEL from the checkpoint loader (apply MotionLoRAs to the motion module with Apply "
            "MotionLoRA instead).")
    if precision not in PRECISIONS:
        raise MotionFormatError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    pairs = match_slots(model_patcher, motion_module)
    schedule = resolve_beta_schedule(beta_schedule, motion_module)
    info = motion_module.info

    patched = model_patcher.clone()
    state = _RunState()
    # motion_strength scales only the temporal residual; at 0 the model is the un-inflated one (under the
    # module's schedule), so v1's across-frame GroupNorm, part of the motion, is off as well.
    injection = _MotionInjection(pairs, _WeightCache(motion_module, precision), motion_strength, state,
                                 frame_norms=(info.version == "v1" and float(motion_strength) != 0.0))
    patched.set_injections(KEY, [comfy.patcher_extension.PatcherInjection(injection.inject, injection.eject)])
    patched.set_model_forward_timestep_embed_patch((MotionLayer, _motion_layer_handler))
    if injection.frame_norms:
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, _frames_tracker(state))
    _add_pre_sampling_checks(patched)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, KEY, _eject_after_run)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, KEY, injection.weights.on_detach)

    sampling = model_sampling_for(patched, schedule)
    if sampling is not None:
        patched.add_object_patch("model_sampling", sampling)

    if adapter is not None and adapter_scale != 0.0:
        patches = _adapter_patches(patched, adapter)
        applied = patched.add_patches(patches, strength_patch=float(adapter_scale))
        if len(applied) != len(patches):
            missing = sorted(set(patches) - set(applied))
            raise MotionFormatError(
                f"The domain adapter does not fit this UNet: {len(missing)} of its {len(patches)} weights have no "
                f"match (first: {missing[0]}). The v3 adapter (v3_sd15_adapter.ckpt) is for SD1.5 checkpoints.")

    patched.set_attachments(KEY, MotionAttachment(info=info, strength=float(motion_strength), beta_schedule=schedule,
                                                  slots=pairs))
    if context_options is not None:
        attach_context_windows(patched, context_options)
    return patched


def _add_pre_sampling_checks(patched) -> None:
    # OUTER_SAMPLE runs before the first step of any sampler node; replaced, never stacked, on a re-prepared clone.
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, _frame_check_wrapper)


def attach_context_windows(patched, context_options) -> None:
    """Sample `patched` (a clone the caller owns) in the windows of `context_options`, replacing any it had.

    On an inflated model the windows must fit the motion module (MotionFormatError otherwise) and its
    MotionAttachment is replaced by one that records them, which the frame checks read; a plain model gets the
    windows alone (each window is then an independent batch).
    """
    attachment = motion_attachment(patched)
    max_frames = attachment.max_frames if attachment is not None else None
    if attachment is not None:
        try:
            check_context_fits(max_frames, context_options, module_name=f"the {attachment.info.version} motion module")
        except ValueError as exc:
            raise MotionFormatError(str(exc)) from None
    install_context_windows(patched, context_options, max_frames=max_frames)
    if attachment is not None:
        patched.set_attachments(KEY, dataclasses.replace(attachment, context_options=context_options))


def sampling_model(model_patcher, context_options=None):
    """The clone Sample Animation samples: the pre-sampling checks (frame limit, per-frame inputs; an un-inflated
    MODEL gets them too) and, when given, `context_options` windows that replace the ones from Inflate Model."""
    patched = model_patcher.clone()
    _add_pre_sampling_checks(patched)
    if context_options is not None:
        attach_context_windows(patched, context_options)
    return patched
