"""Epsilon-prediction diffusion maths shared by the training stages: noising, the loss, and a small DDIM
sampler for preview animations.

The noise schedule is read from the ModelPatcher's `model_sampling` (ComfyUI stores sigma_t =
sqrt((1 - abar_t) / abar_t)), i.e. the very object sampling will use, including the beta schedule the motion
adapter installs. The UNet is called the way ComfyUI's `BaseModel._apply_model` calls it for an
epsilon model: input `sqrt(abar) x0 + sqrt(1 - abar) eps` (= ComfyUI's `calculate_input`), integer timestep,
CLIP context, and transformer_options carrying the patcher's patches and wrappers (that is how the injected
motion layers get their frame count). The betas themselves come from motion_core.schedules, the same code
Inflate Model's beta_schedule uses.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


def min_snr_weights(abar_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights for epsilon prediction (Hang et al. 2023): min(SNR, gamma) / SNR with
    SNR = abar / (1 - abar). They cap the weight of nearly clean timesteps, whose epsilon loss is mostly cheap
    local denoising, so more of the signal comes from the noisy steps where layout (and a clip's motion) is set."""
    a = abar_t.float()
    snr = a / (1 - a)
    return torch.clamp(snr, max=gamma) / snr


def alphas_cumprod_of(model_sampling) -> torch.Tensor:
    """abar_t from a ComfyUI ModelSamplingDiscrete (float32, length = its number of timesteps)."""
    sigmas = model_sampling.sigmas.detach().double().cpu()
    return (1.0 / (1.0 + sigmas ** 2)).float()


def transformer_options_for(patcher, clips: int, sigmas: Optional[torch.Tensor] = None) -> dict:
    """What ComfyUI's sampler hands the UNet: the patcher's transformer_options (patches), its wrappers and
    callbacks, and one `cond_or_uncond` entry per clip in the batch."""
    import comfy.patcher_extension

    base = patcher.model_options.get("transformer_options", {})
    to = dict(base)
    if "patches" in base:
        to["patches"] = {k: list(v) for k, v in base["patches"].items()}
    for name in ("wrappers", "callbacks"):  # as comfy.sampler_helpers.prepare_model_patcher merges them
        to[name] = comfy.patcher_extension.merge_nested_dicts(base.get(name, {}), getattr(patcher, name),
                                                              copy_dict1=True)
    to["cond_or_uncond"] = [0] * clips
    to["uuids"] = [None] * clips
    if sigmas is not None:
        to["sigmas"] = sigmas
    return to


def predict_eps(patcher, xt: torch.Tensor, t: torch.Tensor, context: torch.Tensor, clips: int,
                sigmas: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """UNet epsilon for DDPM inputs xt `[(clips*F), 4, h, w]` at integer timesteps t `[(clips*F)]`.
    y: SDXL's size/pooled-text vector per row (`adm_conditioning`), None for SD1.5."""
    unet = patcher.model.diffusion_model
    to = transformer_options_for(patcher, clips, sigmas)
    extra = {} if y is None else {"y": y.to(device=xt.device, dtype=xt.dtype)}
    return unet(xt, t.float(), context=context, control=None, transformer_options=to, **extra)


def adm_conditioning(model, pooled: Optional[torch.Tensor], height_px: int, width_px: int) -> Optional[torch.Tensor]:
    """ComfyUI's `encode_adm` for the model (SDXL: pooled text + size embeddings; SD1.5: None)."""
    if pooled is None:
        return None
    return model.encode_adm(pooled_output=pooled, width=width_px, height=height_px, target_width=width_px,
                            target_height=height_px, crop_w=0, crop_h=0)


def noisy(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    a = abar.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@torch.no_grad()
def ddim_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, abar: torch.Tensor,
                steps: int = 20, generator: Optional[torch.Generator] = None,
                device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from pure noise. eps_fn(xt, t_int_tensor) returns the (guided) epsilon."""
    n = abar.shape[0]
    ts = torch.linspace(n - 1, 0, steps).round().long().unique_consecutive()
    x = torch.randn(shape, generator=generator).to(device)
    for i, t in enumerate(ts):
        a_t = abar[t].to(device)
        a_prev = abar[ts[i + 1]].to(device) if i + 1 < len(ts) else torch.tensor(1.0, device=device)
        eps = eps_fn(x, t.repeat(shape[0]).to(device)).float()
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x
