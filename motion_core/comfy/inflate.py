"""`inflate`: the one entry point that turns a ModelPatcher into an animating clone."""
from __future__ import annotations

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
    if context_options is not None:
        try:
            check_context_fits(info.max_frames, context_options, module_name=f"the {info.version} motion module")
        except ValueError as exc:
            raise MotionFormatError(str(exc)) from None

    patched = model_patcher.clone()
    state = _RunState()
    injection = _MotionInjection(pairs, _WeightCache(motion_module, precision), motion_strength, state,
                                 frame_norms=(info.version == "v1"))
    patched.set_injections(KEY, [comfy.patcher_extension.PatcherInjection(injection.inject, injection.eject)])
    patched.set_model_forward_timestep_embed_patch((MotionLayer, _motion_layer_handler))
    if injection.frame_norms:
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, _frames_tracker(state))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, _frame_check_wrapper)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, KEY, _eject_after_run)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, KEY,
                                  lambda _patcher, _unpatch_all: injection.weights.drop_accelerator_copies())

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

    if context_options is not None:
        install_context_windows(patched, context_options, max_frames=info.max_frames)

    patched.set_attachments(KEY, MotionAttachment(info=info, strength=float(motion_strength), beta_schedule=schedule,
                                                  context_options=context_options, slots=pairs))
    return patched
