"""FreeInit on ComfyUI's sampler: N sampling passes, the noise of each pass re-initialised from the last result.

The maths (masks, frequency mix, coarse-to-fine steps) is motion_core/freeinit.py; this is the loop around
comfy.sample.sample. Diffusing back uses ComfyUI's own forward process at the first sigma of the next pass
(`model_sampling.noise_scaling`, which is what the sampler itself does to start from `noise`), so it holds for
eps, v-prediction and flow models, for denoise < 1 and for an input latent:
    x_diffused = noise_scaling(sigma0, first_noise, result)       (the authors reuse the first pass's noise)
    x_fresh    = noise_scaling(sigma0, fresh_noise, latent_image)
    x_start    = lowpass(x_diffused) + highpass(x_fresh)
and the pass is then given the noise that noise_scaling turns into x_start (it is affine in the noise).
One progress bar spans every pass (with live previews), and Cancel is honoured between passes and steps.
"""
from __future__ import annotations

import math

import torch

from ..freeinit import FreeInitOptions, mix_frames
from ..freenoise import reschedule_noise
from .windows import OUTER_SAMPLE, WRAPPER_KEY, remove_freenoise


def _freenoise_options(model_patcher):
    """The context options of the FreeNoise wrapper on this model, or None when its noise is not rescheduled."""
    wrappers = model_patcher.get_wrappers(OUTER_SAMPLE, WRAPPER_KEY)
    return getattr(wrappers[0], "options", None) if wrappers else None


def reinit_noise(model_sampling, sigma0: float, max_denoise: bool, result: torch.Tensor, first_noise: torch.Tensor,
                 fresh_noise: torch.Tensor, latent_image: torch.Tensor, options: FreeInitOptions) -> torch.Tensor:
    """The noise for the next pass (all tensors in the model's latent space, frame-major `[F, C, H, W]`)."""
    sigma = torch.tensor([float(sigma0)], dtype=torch.float32)
    scale = lambda n, latent: model_sampling.noise_scaling(sigma, n.float(), latent.float(), max_denoise)  # noqa: E731
    x_start = mix_frames(scale(first_noise, result), scale(fresh_noise, latent_image), options)
    zero = torch.zeros_like(x_start)
    gain = scale(torch.ones_like(x_start[:1]), zero[:1]) - scale(zero[:1], zero[:1])  # noise multiplier
    return (x_start - scale(zero, latent_image)) / gain


def sample_freeinit(model, positive, negative, latent_image: torch.Tensor, noise: torch.Tensor, *, seed: int,
                    steps: int, cfg: float, sampler_name: str, scheduler: str, denoise: float, noise_mask=None,
                    batch_index=None, options: FreeInitOptions, disable_pbar: bool = False) -> torch.Tensor:
    """`options.iterations` passes of comfy.sample.sample; returns the last pass's samples."""
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import latent_preview

    layout = _freenoise_options(model)
    base = model.clone()
    remove_freenoise(base)  # the noise is laid out here, so the wrapper must not shuffle the mixed noise again

    def laid_out(n: torch.Tensor, s: int) -> torch.Tensor:
        return n if layout is None else reschedule_noise(n, layout, s)

    per_pass = [options.steps_for(i, steps) for i in range(1, options.iterations + 1)]
    preview = latent_preview.prepare_callback(model, sum(per_pass))
    model_sampling = model.get_model_object("model_sampling")
    latent_format = model.get_model_object("latent_format")
    latent_in = latent_format.process_in(latent_image) if torch.count_nonzero(latent_image) > 0 else latent_image
    first_noise = laid_out(noise, seed)
    current, samples, done = first_noise, None, 0
    for i, n_steps in enumerate(per_pass, start=1):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if i > 1:
            pass_seed = seed + options.seed_offset * (i - 1)
            fresh = laid_out(comfy.sample.prepare_noise(latent_image, pass_seed, batch_index), pass_seed)
            sigmas = comfy.samplers.KSampler(base, n_steps, "cpu", sampler_name, scheduler, denoise,
                                             model_options=base.model_options).sigmas
            sigma0 = float(sigmas[0])
            max_sigma = float(model_sampling.sigma_max)  # as comfy.samplers.KSAMPLER.max_denoise decides it
            max_denoise = math.isclose(max_sigma, sigma0, rel_tol=1e-05) or sigma0 > max_sigma
            current = reinit_noise(model_sampling, sigma0, max_denoise, latent_format.process_in(samples.float()),
                                   first_noise, fresh, latent_in, options).to(noise.dtype)

        def callback(step, x0, x, total_steps, offset=done):
            preview(offset + step, x0, x, sum(per_pass))

        samples = comfy.sample.sample(base, current, n_steps, cfg, sampler_name, scheduler, positive, negative,
                                      latent_image, denoise=denoise, noise_mask=noise_mask, callback=callback,
                                      disable_pbar=disable_pbar, seed=seed)
        done += n_steps
    return samples
