"""Beta schedules: the `model_sampling` object patch that gives a model the schedule its motion module was trained with."""
from __future__ import annotations

import torch

import comfy.model_sampling

from ..errors import MotionFormatError
from ..schedules import SCHEDULES, auto_schedule, betas

BETA_SCHEDULES = ("auto", "animatediff_linear", "sd_default", "sdxl", "lcm")
BETA_SCHEDULE_HELP = {
    "auto": "what the motion module was trained with (AnimateDiff linear-beta for SD1.5 modules, SDXL's for "
            "SDXL modules, LCM for AnimateLCM)",
    "animatediff_linear": SCHEDULES["animatediff_linear"][3],
    "sd_default": "keep the checkpoint's own schedule untouched (SD's scaled-linear); washed out with v1-v3",
    "sdxl": SCHEDULES["sdxl"][3],
    "lcm": SCHEDULES["lcm"][3],
}



def _prediction_class(model_sampling) -> type:
    for cls in type(model_sampling).__mro__:
        if cls in (comfy.model_sampling.EPS, comfy.model_sampling.V_PREDICTION, comfy.model_sampling.X0,
                   comfy.model_sampling.EDM):
            return cls
    return comfy.model_sampling.EPS


def resolve_beta_schedule(name: str, motion_module) -> str:
    if name not in BETA_SCHEDULES:
        raise MotionFormatError(f"Unknown beta schedule '{name}'; choose one of {', '.join(BETA_SCHEDULES)}.")
    if name == "auto":
        return auto_schedule(motion_module.info.version, motion_module.info.base)
    return name


def model_sampling_for(model_patcher, schedule: str):
    """A model_sampling object for `schedule` that keeps the model's prediction type; None for 'sd_default'."""
    if schedule == "sd_default":
        return None
    current = model_patcher.get_model_object("model_sampling")
    if not isinstance(current, comfy.model_sampling.ModelSamplingDiscrete):
        raise MotionFormatError(
            f"This model samples with {type(current).__name__}, not a discrete DDPM schedule, so the "
            f"'{schedule}' beta schedule cannot be applied. Set beta_schedule to sd_default.")
    if schedule == "lcm":
        from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscreteDistilled
        base, prediction = ModelSamplingDiscreteDistilled, LCM
    else:
        base, prediction = comfy.model_sampling.ModelSamplingDiscrete, _prediction_class(current)

    class AnimateDiffModelSampling(base, prediction):
        pass

    _kind, start, end, _ = SCHEDULES[schedule]
    sampling = AnimateDiffModelSampling(model_patcher.model.model_config)
    sampling._register_schedule(given_betas=betas(schedule), linear_start=start, linear_end=end,
                                zsnr=getattr(current, "zsnr", False))
    if schedule == "lcm":
        sampling = _redistill(sampling)
    return sampling


def _redistill(sampling):
    """ModelSamplingDiscreteDistilled picks its 50 sigmas in __init__; redo it on the re-registered schedule."""
    full = sampling.sigmas.clone()
    steps = sampling.original_timesteps
    skip = len(full) // steps
    valid = torch.stack([full[len(full) - 1 - x * skip] for x in range(steps)][::-1])
    sampling.skip_steps = skip
    sampling.set_sigmas(valid)
    return sampling
