"""Motion strength over block groups and sampling steps: a MotionScale travels to the MotionLayers in
transformer_options (injection.SCALE_KEY), so it applies under Sample Animation, core KSampler and any sampler
that runs the model, and the user's MODEL is left untouched (a clone carries it)."""
from __future__ import annotations

from ..errors import MotionFormatError
from ..motion_scale import MotionScale, step_progress
from .attachment import motion_attachment
from .injection import SCALE_KEY


class StepScale:
    """The callable the layers call: (group, transformer_options) -> factor, progress read from ComfyUI's
    transformer_options ("sigmas": this call's sigma, "sample_sigmas": the run's schedule)."""

    def __init__(self, scale: MotionScale):
        self.scale = scale
        self._memo: tuple = (None, None, 0.0)  # (sample_sigmas object, sigma value, progress): one call's layers

    def progress(self, transformer_options: dict) -> float:
        sigmas, sample = transformer_options.get("sigmas"), transformer_options.get("sample_sigmas")
        if sigmas is None or sample is None:  # outside ComfyUI's sampler (e.g. training): the start value
            return 0.0
        sigma = float(sigmas.max()) if hasattr(sigmas, "max") else float(sigmas)
        if self._memo[0] is not sample or self._memo[1] != sigma:
            self._memo = (sample, sigma, step_progress(sigma, sample.tolist() if hasattr(sample, "tolist") else sample))
        return self._memo[2]

    def __call__(self, group: str, transformer_options: dict) -> float:
        return self.scale.factor(group, self.progress(transformer_options))

    def __deepcopy__(self, memo):  # ModelPatcher.clone deep-copies model_options; the scale is immutable
        return StepScale(self.scale)


def with_motion_scale(model_patcher, scale: MotionScale):
    """A clone of an inflated `model_patcher` whose motion layers use `scale` (an identity scale removes any)."""
    if motion_attachment(model_patcher) is None:
        raise MotionFormatError(
            "Motion Strength Schedule needs an inflated MODEL: connect it after Inflate Model (it scales the "
            "motion module that Inflate Model put into the UNet).")
    patched = model_patcher.clone()
    options = dict(patched.model_options.get("transformer_options", {}))
    options.pop(SCALE_KEY, None)
    if not scale.is_identity:
        options[SCALE_KEY] = StepScale(scale)
    patched.model_options["transformer_options"] = options
    return patched
