"""The one place that touches ComfyUI: put a MotionModuleSet into a ComfyUI UNet without changing the user's model.

`inflate(model_patcher, motion_module, ...)` returns a *clone* of the ModelPatcher; the user's MODEL and
ADMK_MOTION_MODULE are never modified. Everything goes through ComfyUI's own patcher mechanisms, so unloading,
model switching, other packs and interrupted runs behave like any core model patch. The package is split along
what it does:

- placement.py       where the modules go (`unet_slots`, `match_slots`, `model_base`)
- injection.py       `MotionLayer`, the weight cache and the `set_injections` pair (v1's FrameGroupNorm too)
- schedules.py       the `model_sampling` object patch with the module's beta schedule
- domain_adapter.py  the v3 domain adapter as LoRA weight patches
- attachment.py      `MotionAttachment`: what an inflated MODEL carries for the sampling nodes
- checks.py          checks before the first step (frame limit, per-frame conditioning, core context windows)
- windows.py         context windows as a `calc_cond_batch` wrapper, FreeNoise as an `outer_sample` wrapper
- sparsectrl.py      SparseCtrl as a ControlBase control (chains, strength/percent, offload, windows)
- freeinit.py        FreeInit: the sampling passes around comfy.sample.sample
- motion_scale.py    motion strength over block groups and steps (read by MotionLayer from transformer_options)
- contrast.py        Motion Contrast Guidance: a post-CFG pass with another motion module, guided away from it
- inflate.py         `inflate()`, which wires all of the above onto a clone; `sampling_model()` (what Sample
                     Animation samples) and `attach_context_windows()`, the one way windows get onto a model

Everything else in motion_core is ComfyUI-free (tests/unit/test_package_import.py checks it).
"""
from .attachment import KEY, MotionAttachment, motion_attachment
from .contrast import check_contrast_module, with_motion_contrast
from .checks import (CORE_CONTEXT_HANDLER, check_conditioning_rows, check_frames,
                     refuse_core_context_windows)
from .freeinit import sample_freeinit
from .inflate import attach_context_windows, inflate, sampling_model
from .injection import ALT_KEY, FRAMES_KEY, SCALE_KEY, MotionLayer, frames_per_cond
from .motion_scale import StepScale, with_motion_scale
from .placement import MotionSlot, match_slots, model_base, unet_slots
from .schedules import BETA_SCHEDULE_HELP, BETA_SCHEDULES, model_sampling_for, resolve_beta_schedule
from .windows import WINDOW_INFO_KEY, WindowInfo, install_context_windows

__all__ = [
    "KEY", "MotionAttachment", "motion_attachment", "CORE_CONTEXT_HANDLER", "check_conditioning_rows",
    "check_frames", "refuse_core_context_windows", "attach_context_windows", "inflate", "sampling_model",
    "FRAMES_KEY", "MotionLayer", "frames_per_cond",
    "MotionSlot", "match_slots", "model_base", "unet_slots", "BETA_SCHEDULE_HELP", "BETA_SCHEDULES",
    "model_sampling_for", "resolve_beta_schedule", "WINDOW_INFO_KEY", "WindowInfo", "install_context_windows",
    "sample_freeinit", "SCALE_KEY", "StepScale", "with_motion_scale", "ALT_KEY", "check_contrast_module",
    "with_motion_contrast",
]
