"""SparseCtrl inside ComfyUI: a `ControlBase` subclass, so it sits in the conditioning's control chain like any
core ControlNet (chains through `previous_controlnet`, honours strength and start/end percent, is loaded and
offloaded by ComfyUI's model management through its own ModelPatcher) and is windowed by our context windows.

The keyframe condition is built once per run and clip length, at the latent's size (RGB keyframes are
VAE-encoded then, as core ControlNets with a VAE do), and shared by the window copies, each of which takes the
rows of its frames (`select_frames`): a window without a keyframe gets zero condition and mask.
"""
from __future__ import annotations

from typing import List, Optional

import torch

import comfy.latent_formats
import comfy.ldm.modules.attention as comfy_attention
import comfy.model_management as mm
import comfy.model_patcher
from comfy.controlnet import ControlBase

from ..errors import MotionFormatError
from ..sparsectrl import (KIND_RGB, SparseCtrl, fit_keyframes, keyframe_condition, normalize_scribble,
                          parse_keyframe_indices)
from .windows import WINDOW_INFO_KEY


def _storage_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The file's precision where the device computes in it; float32 otherwise (ComfyUI's rule for UNets: CPUs
    keep fp16/bf16 weights as fp32)."""
    if dtype == torch.float16 and mm.should_use_fp16(device, prioritize_performance=False):
        return dtype
    if dtype == torch.bfloat16 and mm.should_use_bf16(device, prioritize_performance=False):
        return dtype
    return torch.float32 if dtype != torch.float32 else dtype


class SparseCtrlModel:
    """What Load SparseCtrl outputs: the network (loaded once) and the ModelPatcher ComfyUI loads and offloads."""

    def __init__(self, net: SparseCtrl, name: str = "SparseCtrl", load_device: Optional[torch.device] = None):
        # ComfyUI's device unless told (as core's ControlNet takes load_device): it must be the UNet's device
        load_device = load_device if load_device is not None else mm.get_torch_device()
        dtype = _storage_dtype(net.conv_in.weight.dtype, load_device)
        if dtype != net.conv_in.weight.dtype:
            net = net.to(dtype)
        self.net = net
        self.info = net.info
        self.name = name
        self.patcher = comfy.model_patcher.ModelPatcher(net, load_device=load_device,
                                                        offload_device=mm.unet_offload_device())


def check_model(model, sparsectrl: SparseCtrlModel) -> None:
    """Refuse a base model SparseCtrl was not made for (SDXL and other families), naming the fix."""
    unet_config = getattr(getattr(model, "model_config", None), "unet_config", {}) or {}
    context = unet_config.get("context_dim")
    sd15_latent = isinstance(getattr(model, "latent_format", None), comfy.latent_formats.SD15)
    if not sd15_latent or (context is not None and context != sparsectrl.net.spec.context_dim):
        family = "SDXL" if isinstance(getattr(model, "latent_format", None), comfy.latent_formats.SDXL) else \
            type(model).__name__
        raise MotionFormatError(
            f"{sparsectrl.name} is a SparseCtrl for SD1.5 models, but this MODEL is {family}. Load an SD1.5 "
            "checkpoint (with an SD1.5 motion module such as v3_sd15_mm.ckpt), or remove Apply SparseCtrl.")


class SparseCtrlControl(ControlBase):
    def __init__(self, sparsectrl: SparseCtrlModel, images: torch.Tensor, keyframe_indices: str, frames: int = 0):
        """images [K, H, W, C] in [0, 1] (ComfyUI IMAGE); `frames` 0 = the animation's length."""
        super().__init__()
        self.sparsectrl = sparsectrl
        self.images = images
        self.keyframe_indices = keyframe_indices
        self.frames = int(frames)
        self.frame_rows: Optional[List[int]] = None   # set on window copies: the clip frames this copy serves
        self.model_sampling_current = None
        self._conditions: dict = {}                  # shared with window copies (copy.copy keeps the dict)

    # -- ControlBase plumbing ------------------------------------------------------------------------------
    def copy(self):
        c = SparseCtrlControl(self.sparsectrl, self.images, self.keyframe_indices, self.frames)
        self.copy_to(c)
        return c

    def get_models(self):
        return super().get_models() + [self.sparsectrl.patcher]

    def pre_run(self, model, percent_to_timestep_function):
        check_model(model, self.sparsectrl)  # before the first step
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self):
        self._conditions.clear()
        self.model_sampling_current = None
        super().cleanup()

    def select_frames(self, idx) -> None:
        """Called on a context window's copy of this control: serve the condition rows of frames `idx`."""
        self.frame_rows = list(idx)

    # -- the condition -------------------------------------------------------------------------------------
    def check_frames(self, num_frames: int) -> List[int]:
        """The keyframes' frame indices for an animation of `num_frames`; raises MotionFormatError naming the fix.
        Called before the first step on inflated models (checks.check_controls) and when the condition is made."""
        if self.frames and self.frames != num_frames:
            raise MotionFormatError(
                f"Apply SparseCtrl was set for {self.frames} frames but the animation has {num_frames}. Set its "
                f"frames to {num_frames} (or 0 to follow the animation).")
        return parse_keyframe_indices(self.keyframe_indices, int(self.images.shape[0]), num_frames)

    def _condition(self, num_frames: int, height: int, width: int, device, dtype):
        key = (num_frames, height, width, str(device), dtype)
        if key not in self._conditions:
            indices = self.check_frames(num_frames)
            pixels = fit_keyframes(self.images[..., :3].movedim(-1, 1).float(), height * 8, width * 8)
            if self.sparsectrl.info.kind == KIND_RGB:
                if self.vae is None:
                    raise MotionFormatError("The RGB SparseCtrl needs a VAE to encode its keyframes: connect the "
                                            "checkpoint's VAE to Apply SparseCtrl's vae input.")
                loaded = mm.loaded_models(only_currently_used=True)
                latent = self.vae.encode(pixels.movedim(1, -1))
                mm.load_models_gpu(loaded)  # the VAE encode may have pushed the UNet out
                keyframes = comfy.latent_formats.SD15().process_in(latent.float())
            else:  # the authors' normalize_condition_images for scribbles
                keyframes = normalize_scribble(pixels)
            cond, mask = keyframe_condition(keyframes, indices, num_frames)
            self._conditions[key] = (cond.to(device=device, dtype=dtype), mask.to(device=device, dtype=dtype))
        return self._conditions[key]

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        control_prev = None
        if self.previous_controlnet is not None:
            control_prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        if self.timestep_range is not None and (t[0] > self.timestep_range[0] or t[0] < self.timestep_range[1]):
            return control_prev

        net = self.sparsectrl.net
        frames = x_noisy.shape[0] // max(int(batched_number), 1)
        window = (transformer_options or {}).get(WINDOW_INFO_KEY)
        num_frames = window.num_frames if window is not None else frames
        rows = self.frame_rows if self.frame_rows is not None else list(range(frames))
        if len(rows) != frames:
            raise MotionFormatError(f"SparseCtrl got {frames} frames per clip for {len(rows)} frame rows.")
        if frames > net.spec.max_frames:
            raise MotionFormatError(
                f"{frames} frames in one pass exceed SparseCtrl's limit of {net.spec.max_frames} (its position table "
                "length): connect Context Options (sliding windows of 16) to Sample Animation or Inflate Model.")
        dtype = net.conv_in.weight.dtype
        condition, mask = self._condition(num_frames, x_noisy.shape[2], x_noisy.shape[3], x_noisy.device, dtype)
        index = torch.tensor(rows, device=x_noisy.device)
        condition = condition[index].repeat(batched_number, 1, 1, 1)  # one clip per cond/uncond entry
        mask = mask[index].repeat(batched_number, 1, 1, 1)
        context = cond.get("crossattn_controlnet", cond["c_crossattn"])
        timestep = self.model_sampling_current.timestep(t)
        attn = comfy_attention.optimized_attention  # looked up now: the user's attention backend flags
        residuals, mid = net(x_noisy, timestep, mm.cast_to_device(context, x_noisy.device, dtype), condition, mask,
                             num_frames=frames, attn_fn=attn, temporal_attn_fn=attn)
        return self.control_merge({"input": [], "middle": [mid], "output": residuals}, control_prev, None)


def sparsectrl_control(sparsectrl: SparseCtrlModel, images: torch.Tensor, keyframe_indices: str, frames: int = 0
                       ) -> SparseCtrlControl:
    """The control Apply SparseCtrl chains into the conditioning (its set_cond_hint gives strength and range)."""
    return SparseCtrlControl(sparsectrl, images, keyframe_indices, frames)

