"""Noise schedules the motion modules were trained with: the one beta-schedule implementation (Inflate Model's
beta_schedule and the training stages both compute their betas here).

Beta kinds carry the names of the authors' configs (diffusers' `beta_schedule`):
- "linear": betas linear in beta, `linspace(start, end, T)`. AnimateDiff v1-v3 (and AnimateLCM) were trained and
  are sampled with `beta_schedule: "linear"`, 0.00085 -> 0.012 (guoyww/AnimateDiff configs/inference/*.yaml,
  configs/training/v1/training.yaml).
- "scaled_linear": betas linear in sqrt(beta), `linspace(sqrt(start), sqrt(end), T) ** 2`: Stable Diffusion's own
  schedule; it gives washed-out results with the SD1.5 motion modules. The SDXL beta module used it up to 0.020.
ComfyUI names the two the other way round (its `sqrt_linear` is linear in beta, its `linear` linear in sqrt(beta));
no code here uses ComfyUI's names.
"""
from __future__ import annotations

import torch

TIMESTEPS = 1000
BETA_KINDS = ("linear", "scaled_linear")

# name (Inflate Model's beta_schedule option) -> (beta kind, beta_start, beta_end, description)
SCHEDULES = {
    "animatediff_linear": ("linear", 0.00085, 0.012, "AnimateDiff v1/v2/v3: betas linear 0.00085->0.012"),
    "sd_default": ("scaled_linear", 0.00085, 0.012, "Stable Diffusion's scaled-linear schedule (linear in sqrt(beta))"),
    "sdxl": ("scaled_linear", 0.00085, 0.020, "SDXL motion modules: scaled-linear 0.00085->0.020"),
    "lcm": ("linear", 0.00085, 0.012, "AnimateLCM: AnimateDiff betas with LCM sampling"),
}


def betas_between(kind: str, start: float, end: float, timesteps: int = TIMESTEPS) -> torch.Tensor:
    """float64 betas of a beta kind ("linear" = linear in beta, "scaled_linear" = linear in sqrt(beta))."""
    if kind == "linear":
        return torch.linspace(start, end, timesteps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(start ** 0.5, end ** 0.5, timesteps, dtype=torch.float64) ** 2
    raise ValueError(f"Unknown beta kind {kind!r}: use 'linear' (linear in beta, AnimateDiff's) or 'scaled_linear' "
                     f"(linear in sqrt(beta), Stable Diffusion's).")


def betas(name: str, timesteps: int = TIMESTEPS) -> torch.Tensor:
    """float64 betas for a schedule name in SCHEDULES."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown beta schedule '{name}'; choose one of {sorted(SCHEDULES)}.")
    kind, start, end, _ = SCHEDULES[name]
    return betas_between(kind, start, end, timesteps)


def auto_schedule(version: str, base: str) -> str:
    """The schedule a module was trained with, from its detected version/base."""
    if version == "animatelcm":
        return "lcm"
    if version == "hotshotxl":  # trained on SDXL's own schedule
        return "sd_default"
    if base == "sdxl":
        return "sdxl"
    return "animatediff_linear"
