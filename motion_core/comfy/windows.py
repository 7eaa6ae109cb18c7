"""Windowed evaluation of a long clip, as a ComfyUI `calc_cond_batch` wrapper (no ComfyUI import: duck-typed).

ComfyUI's sampler calls `calc_cond_batch(model, conds, x, timestep, model_options)` once per step with the whole
latent batch `x` = all frames. The wrapper installed here splits that call into one call per context window and
blends the results, so the motion layers only ever see `len(window)` frames (the adapter derives the frame count
from `x.shape[0] // len(cond_or_uncond)`, so slicing `x` is all they need) and peak activation memory depends on
the window length, not on the clip length.

What a window gets, for frames `idx` of an `N`-frame clip (what core 0.3.75's context windows get wrong is noted):
- `x[idx]`, and `timestep[idx]` when the timestep is per frame.
- every per-latent conditioning tensor indexed by `idx`: cross-attention conds (prompt travel), concat latents,
  ADM vectors - anything ComfyUI would repeat/narrow to the batch (`model_conds` entries with a `.cond` tensor).
  Core leaves these whole, so ComfyUI then narrows them to the first `len(window)` rows: every window gets the
  prompts of frames 0..L-1.
- per-frame masks indexed by `idx` (core: first frames again).
- a copy of each control in a ControlNet chain whose `cond_hint_original` (and `extra_concat_orig`) rows are those
  of the window's frames; core passes the whole hint batch and ComfyUI keeps its first `len(window)` images, so
  window k is driven by the depth maps of frames 0..L-1. A control with `select_frames(idx)` (SparseCtrl) is
  told its window instead: its keyframe condition and mask are clip-long and it takes the window's rows.
A tensor with batch b > 1 that is not N is indexed with `i % b`: that is exactly how ComfyUI broadcasts such a
batch to N latents without windows, so windowing never changes which row drives which frame.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

import torch

from ..context import ContextOptions, check_context_fits
from ..freenoise import reschedule_noise

# Plain strings, equal to comfy.patcher_extension.WrappersMP.CALC_COND_BATCH / PREPARE_SAMPLING (no comfy import).
CALC_COND_BATCH = "calc_cond_batch"
PREPARE_SAMPLING = "prepare_sampling"
OUTER_SAMPLE = "outer_sample"
WRAPPER_KEY = "admk_context"
# transformer_options key under which each window's WindowInfo travels to the motion layers.
WINDOW_INFO_KEY = "admk_context_window"


@dataclass(frozen=True)
class WindowInfo:
    """The window being evaluated: absolute frame indices, the clip length, and its place in the schedule."""

    indices: tuple[int, ...]
    num_frames: int
    window_index: int
    window_count: int


def _rows(idx: list[int], batch: int) -> list[int] | None:
    """Rows of a batch-`batch` tensor that belong to frames `idx`; None when the tensor is shared (batch 1)."""
    if batch <= 1:
        return None
    return [i % batch for i in idx]


def _take(t, idx: list[int], num_frames: int):
    """Index a per-frame tensor's first dim for the window; anything else is returned unchanged."""
    if not isinstance(t, torch.Tensor) or t.ndim == 0:
        return t
    rows = _rows(idx, t.shape[0])
    if rows is None:
        return t
    if rows == list(range(t.shape[0])):
        return t
    return t[torch.tensor(rows, device=t.device)]


def window_control(control, idx: list[int], memo: dict):
    """A copy of a ControlNet chain whose hints are those of frames `idx` (memoised: one copy per original).

    `copy.copy` keeps whatever `pre_run` set up (model_sampling_current, timestep_range, a ControlLora's built
    model) and works for every ControlBase subclass; the resized-hint caches are reset so the copy resizes its
    own slice on first use. The same original must map to the same copy so ComfyUI can still batch the positive
    and negative conds together (it only batches conds whose control is the same object).
    """
    if control is None:
        return None
    key = id(control)
    if key in memo:
        return memo[key]
    dup = copy.copy(control)
    hint = getattr(control, "cond_hint_original", None)
    if isinstance(hint, torch.Tensor) and hint.ndim > 0 and hint.shape[0] > 1:
        dup.cond_hint_original = hint[torch.tensor(_rows(idx, hint.shape[0]), device=hint.device)]
        dup.cond_hint = None
        if hasattr(dup, "control_input"):  # T2IAdapter caches its encoded hint separately
            dup.control_input = None
    extra = getattr(control, "extra_concat_orig", None)
    if isinstance(extra, list) and extra:
        dup.extra_concat_orig = [_take(e, idx, 0) for e in extra]
        dup.extra_concat = None
    select = getattr(dup, "select_frames", None)
    if callable(select):  # SparseCtrl: its keyframe condition and mask rows are those of frames idx
        select(idx)
    previous = getattr(control, "previous_controlnet", None)
    if previous is not None:
        dup.previous_controlnet = window_control(previous, idx, memo)
    memo[key] = dup
    return dup


def _window_model_cond(value, idx: list[int]):
    inner = getattr(value, "cond", None)
    if isinstance(inner, torch.Tensor) and hasattr(value, "_copy_with"):
        taken = _take(inner, idx, 0)
        return value if taken is inner else value._copy_with(taken)
    if isinstance(inner, list) and hasattr(value, "_copy_with") and all(isinstance(c, torch.Tensor) for c in inner):
        return value._copy_with([_take(c, idx, 0) for c in inner])  # CONDList
    return value


def window_cond(cond: dict, idx: list[int], memo: dict) -> dict:
    """One cond dict (as ComfyUI's sampler holds it) restricted to frames `idx`; the original is not touched."""
    out = dict(cond)
    for key, value in cond.items():
        if key == "model_conds" and isinstance(value, dict):
            out[key] = {k: _window_model_cond(v, idx) for k, v in value.items()}
        elif key == "control":
            out[key] = window_control(value, idx, memo)
        elif isinstance(value, torch.Tensor):  # "mask" and any other per-latent tensor
            out[key] = _take(value, idx, 0)
    return out


def _check_interrupt() -> None:
    # Lets Cancel stop a long clip between windows; looked up, not imported (motion_core stays ComfyUI-free).
    mm = sys.modules.get("comfy.model_management")
    if mm is not None and hasattr(mm, "throw_exception_if_processing_interrupted"):
        mm.throw_exception_if_processing_interrupted()


class ContextWindowWrapper:
    """The `calc_cond_batch` wrapper: `(executor, model, conds, x, timestep, model_options) -> list[Tensor]`."""

    def __init__(self, options: ContextOptions, max_frames: int | None = None):
        self.options = options
        self.max_frames = max_frames
        self._windows: dict[int, list[list[int]]] = {}

    def windows(self, num_frames: int) -> list[list[int]]:
        if num_frames not in self._windows:
            if self.max_frames is not None:
                check_context_fits(self.max_frames, self.options, num_frames)
            self._windows[num_frames] = self.options.windows(num_frames)
        return self._windows[num_frames]

    def __call__(self, executor, model, conds, x_in, timestep, model_options):
        num_frames = x_in.shape[0]
        windows = self.windows(num_frames)
        if len(windows) == 1 and len(windows[0]) == num_frames:
            return executor(model, conds, x_in, timestep, model_options)

        totals = None
        weight_sum = torch.zeros((num_frames,) + (1,) * (x_in.ndim - 1), dtype=x_in.dtype, device=x_in.device)
        for k, idx in enumerate(windows):
            _check_interrupt()
            index = torch.tensor(idx, device=x_in.device)
            memo: dict = {}
            sub_conds = [None if c is None else [window_cond(d, idx, memo) for d in c] for c in conds]
            sub_t = _take(timestep, idx, num_frames)
            sub_options = dict(model_options)
            sub_options["transformer_options"] = dict(model_options.get("transformer_options", {}))
            sub_options["transformer_options"][WINDOW_INFO_KEY] = WindowInfo(tuple(idx), num_frames, k, len(windows))

            outs = executor(model, sub_conds, x_in[index], sub_t, sub_options)

            w = self.options.weights(len(idx)).to(device=x_in.device, dtype=x_in.dtype)
            w = w.view((len(idx),) + (1,) * (x_in.ndim - 1))
            if totals is None:
                totals = [torch.zeros_like(x_in) for _ in outs]
            for total, out in zip(totals, outs):
                total.index_add_(0, index, out.to(x_in.dtype) * w)
            weight_sum.index_add_(0, index, w)
            del outs, sub_conds, memo  # drop this window's control copies (and their resized hints) now
        for total in totals:
            total /= weight_sum
        return totals


class _PrepareSamplingWrapper:
    """Makes ComfyUI budget memory for one window, not the whole clip (it sizes the load from the noise shape)."""

    def __init__(self, options: ContextOptions):
        self.options = options

    def __call__(self, executor, model, noise_shape, *args, **kwargs):
        shape = list(noise_shape)
        if shape:
            shape[0] = min(shape[0], self.options.length)
        return executor(model, shape, *args, **kwargs)


class FreeNoiseWrapper:
    """OUTER_SAMPLE wrapper: the FreeNoise layout (motion_core/freenoise.py) of the sampler's initial noise.

    OUTER_SAMPLE gets the noise every sampler node made from its seed (Sample Animation, core KSampler,
    SamplerCustom...) together with that seed, so the layout is the same whichever node runs the model.
    """

    def __init__(self, options: ContextOptions):
        self.options = options

    def __call__(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                 disable_pbar=False, seed=None, *args, **kwargs):
        if isinstance(noise, torch.Tensor) and not noise.is_nested and noise.ndim >= 1:
            noise = reschedule_noise(noise, self.options, 0 if seed is None else seed)
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                        *args, **kwargs)


def remove_freenoise(model_patcher) -> None:
    """Take the FreeNoise wrapper off an (already cloned) patcher: for callers that lay the noise out themselves."""
    model_patcher.remove_wrappers_with_key(OUTER_SAMPLE, WRAPPER_KEY)


def install_context_windows(model_patcher, options: ContextOptions, max_frames: int | None = None) -> None:
    """Register windowed evaluation on an already-cloned ModelPatcher (replaces an earlier install on it).

    `max_frames`: the motion module's limit (position-table length); windows longer than it are refused here and
    at sampling time. Works on a plain model too (each window is then an independent batch).
    """
    # Duck-typed: the pack's copy of ContextOptions and a top-level `motion_core` import are different classes.
    if not all(hasattr(options, name) for name in ("length", "windows", "weights")):
        raise TypeError(f"install_context_windows needs ContextOptions (from the Context Options node), got "
                        f"{type(options).__name__}.")
    if max_frames is not None:
        check_context_fits(max_frames, options)
    for kind, wrapper in ((CALC_COND_BATCH, ContextWindowWrapper(options, max_frames)),
                          (PREPARE_SAMPLING, _PrepareSamplingWrapper(options))):
        model_patcher.remove_wrappers_with_key(kind, WRAPPER_KEY)
        model_patcher.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)
    remove_freenoise(model_patcher)  # options given later (Sample Animation) replace Inflate Model's layout too
    if getattr(options, "noise", "default") == "freenoise":
        model_patcher.add_wrapper_with_key(OUTER_SAMPLE, WRAPPER_KEY, FreeNoiseWrapper(options))
