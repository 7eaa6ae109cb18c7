"""Noise schedules the motion modules were trained with.

AnimateDiff v1-v3 trained on betas linear in beta (`linspace(0.00085, 0.012, 1000)`, ComfyUI's `sqrt_linear`);
SD's own schedule is linear in sqrt(beta) (ComfyUI's `linear`) and gives washed-out results with these modules.
The SDXL beta module used SDXL's scaled-linear schedule ending at 0.020.
"""
from __future__ import annotations

import torch

# name -> (ComfyUI beta_schedule name, linear_start, linear_end, description)
SCHEDULES = {
    "animatediff_linear": ("sqrt_linear", 0.00085, 0.012, "AnimateDiff v1/v2/v3: betas linear 0.00085->0.012"),
    "sd_default": ("linear", 0.00085, 0.012, "Stable Diffusion's scaled-linear schedule (sqrt-linear betas)"),
    "sdxl": ("linear", 0.00085, 0.020, "SDXL motion modules: scaled-linear 0.00085->0.020"),
    "lcm": ("sqrt_linear", 0.00085, 0.012, "AnimateLCM: AnimateDiff betas with LCM sampling"),
}
TIMESTEPS = 1000


def betas(name: str, timesteps: int = TIMESTEPS) -> torch.Tensor:
    """float64 betas for a schedule name in SCHEDULES."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown beta schedule '{name}'; choose one of {sorted(SCHEDULES)}.")
    kind, start, end, _ = SCHEDULES[name]
    if kind == "sqrt_linear":
        return torch.linspace(start, end, timesteps, dtype=torch.float64)
    return torch.linspace(start ** 0.5, end ** 0.5, timesteps, dtype=torch.float64) ** 2


def auto_schedule(version: str, base: str) -> str:
    """The schedule a module was trained with, from its detected version/base."""
    if version == "animatelcm":
        return "lcm"
    if version == "hotshotxl":  # trained on SDXL's own schedule
        return "sd_default"
    if base == "sdxl":
        return "sdxl"
    return "animatediff_linear"


def alphas_cumprod(name: str, timesteps: int = TIMESTEPS) -> torch.Tensor:
    return torch.cumprod(1.0 - betas(name, timesteps), dim=0)
