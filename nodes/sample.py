"""Sample Animation: denoise a batch of latents as the frames of one clip with an inflated MODEL.

The sampling itself is ComfyUI's (comfy.sample + latent_preview), so progress, live previews, cancellation and
every sampler/scheduler behave exactly as in KSampler; this node adds the frame latents, video-to-video input
and context windows. The checks before the first step (frame limit, per-frame inputs) are the adapter's, run by
its pre-sampling wrapper (motion_core.comfy.checks), so they hold for core samplers too.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.v0_0_2 import io, ui

from ..motion_core import comfy as comfy_adapter
from ..motion_core import guardrails
from . import frame_count
from .common import CATEGORY, ContextOptions, FreeInitSettings

MAX_SIZE = 8192


def initial_latent(model, frames: int, width: int, height: int, latent=None, image=None, vae=None) -> dict:
    """The latent batch to denoise: the given LATENT, the encoded IMAGE frames, or `frames` empty latents."""
    if latent is not None:
        return dict(latent)
    if image is not None:
        if vae is None:
            raise ValueError("Sample Animation got IMAGE frames but no VAE: connect the checkpoint's VAE so the "
                             "frames can be encoded (or connect a LATENT instead).")
        return {"samples": vae.encode(image[:, :, :, :3])}
    if width % 8 or height % 8:
        raise ValueError(f"width and height must be multiples of 8 (got {width}x{height}): set them to e.g. "
                         f"{max(8, width // 8 * 8)}x{max(8, height // 8 * 8)}.")
    channels = model.get_model_object("latent_format").latent_channels
    samples = torch.zeros([frames, channels, height // 8, width // 8],
                          device=comfy.model_management.intermediate_device())
    return {"samples": samples}


def sample_latent(model, positive, negative, latent: dict, seed: int, steps: int, cfg: float, sampler_name: str,
                  scheduler: str, denoise: float, freeinit=None) -> dict:
    """What core KSampler does (noise from the seed, preview callback, progress bar) on the whole frame batch;
    with FreeInit settings of more than one iteration, the adapter's multi-pass loop instead."""
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    if freeinit is not None and freeinit.iterations > 1:
        samples = comfy_adapter.sample_freeinit(
            model, positive, negative, latent_image, noise, seed=seed, steps=steps, cfg=cfg,
            sampler_name=sampler_name, scheduler=scheduler, denoise=denoise, noise_mask=latent.get("noise_mask"),
            batch_index=latent.get("batch_index"), options=freeinit, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)
        return dict(latent, samples=samples)
    callback = latent_preview.prepare_callback(model, steps)
    samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                                  denoise=denoise, noise_mask=latent.get("noise_mask"), callback=callback,
                                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    out = dict(latent)
    out["samples"] = samples
    return out


class SampleAnimation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_SampleAnimation",
            display_name="Sample Animation",
            category=CATEGORY,
            description=(
                "Denoises `frames` latents as one animation with an inflated MODEL (text-to-video), or the given "
                "LATENT / IMAGE frames (video-to-video, with denoise < 1). Output: one latent per frame; decode "
                "with VAE Decode and save with Save Animation."),
            inputs=[
                io.Model.Input("model", tooltip="Model from Inflate Model."),
                io.Conditioning.Input("positive", tooltip="What the animation shows (CLIP Text Encode, or a prompt "
                                                          "schedule)."),
                io.Conditioning.Input("negative", tooltip="What to avoid."),
                io.Int.Input("frames", default=16, min=1, max=4096,
                             tooltip="Number of frames (ignored when a LATENT or IMAGE input is connected). More "
                                     "than the module's limit (24 for v1, 32 for v2/v3) needs context options; "
                                     "16 is what the modules were trained on."),
                io.Int.Input("width", default=512, min=64, max=MAX_SIZE, step=8,
                             tooltip="Frame width in pixels (ignored with a LATENT or IMAGE input)."),
                io.Int.Input("height", default=512, min=64, max=MAX_SIZE, step=8,
                             tooltip="Frame height in pixels (ignored with a LATENT or IMAGE input)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Random seed for the initial noise (each frame gets its own noise)."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Number of denoising steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (AnimateLCM: 1-2)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler_ancestral",
                               tooltip="Sampling algorithm (AnimateLCM: lcm)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="How the noise levels are spaced over the steps."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="1.0 for text-to-video; lower keeps more of the input LATENT/IMAGE frames "
                                       "(video-to-video, e.g. 0.6)."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Optional frames to start from (video-to-video); its batch is the frame "
                                        "count."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional IMAGE frames to start from (video-to-video); needs the VAE input."),
                io.Vae.Input("vae", optional=True, tooltip="VAE used to encode the IMAGE frames."),
                ContextOptions.Input("context_options", optional=True,
                                     tooltip="Optional sliding context windows (overrides the ones given to "
                                             "Inflate Model)."),
                FreeInitSettings.Input("freeinit", optional=True,
                                       tooltip="Optional FreeInit settings: several sampling passes, each starting "
                                               "from the low frequencies of the last (steadier objects; costs a "
                                               "pass each)."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT", tooltip="The denoised frames, one latent per frame.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, frames: int, width: int, height: int, seed: int, steps: int,
                cfg: float, sampler_name: str, scheduler: str, denoise: float, latent=None, image=None, vae=None,
                context_options=None, freeinit=None) -> io.NodeOutput:
        start = initial_latent(model, frames, width, height, latent, image, vae)
        # Windows given here replace Inflate Model's; an impossible frame count or a per-frame input of another
        # length then fails in the adapter's pre-sampling check, before the first step.
        frame_count.check(int(start["samples"].shape[0]), "Sample Animation", positive=positive, negative=negative)
        model = comfy_adapter.sampling_model(model, context_options)
        samples = sample_latent(model, positive, negative, start, seed, steps, cfg, sampler_name, scheduler, denoise,
                               freeinit)
        attachment = comfy_adapter.motion_attachment(model)
        context = attachment.context_options if attachment else None
        warning = attachment and guardrails.few_frames(attachment.info, start["samples"].shape[0],
                                                       context.length if context else None)
        return io.NodeOutput(samples, ui=ui.PreviewText(warning) if warning else None)


NODES = [SampleAnimation]
