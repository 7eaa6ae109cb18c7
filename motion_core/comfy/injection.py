"""Running the modules inside the UNet: the MotionLayer wrapper, the weight cache and the set_injections pair.

`set_injections` inserts a `MotionLayer` into `input_blocks[k]` / `middle_block` / `output_blocks[k]` when
ComfyUI loads the clone and removes it again when it unloads it (and after every sampling run, through the
ON_CLEANUP callback in `inflate`), so between runs the shared UNet holds no foreign modules. A
`forward_timestep_embed` patch for the MotionLayer class hands it `transformer_options`, from which the frame count
per clip is `x.shape[0] // len(cond_or_uncond)` (ComfyUI batches cond and uncond clips). v1 only: the base
resnets' GroupNorms normalise across frames (`FrameGroupNorm`), swapped in by the same injection (not an object
patch) so that the GroupNorm weights keep their names while ComfyUI patches weights.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

import comfy.ldm.modules.attention as comfy_attention
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from ..errors import MotionFormatError
from ..norms import FrameGroupNorm
from ..precision import motion_dtype
from .placement import MotionSlot


FRAMES_KEY = "admk_num_frames"  # transformer_options override for callers outside ComfyUI's sampler (training)
# transformer_options entry set by the Motion Strength Schedule node (motion_scale.py): a callable
# (block group "down"/"mid"/"up", transformer_options) -> factor multiplying the layer's strength.
SCALE_KEY = "admk_motion_scale"
# transformer_options entry set only for the contrast pass of Motion Contrast Guidance (contrast.py): an object with
# `module(name, device, dtype)` giving the contrast motion module's weights for the layer `name`.
ALT_KEY = "admk_motion_alt"


def frames_per_cond(x: torch.Tensor, transformer_options: Optional[dict]) -> int:
    """Frames in one clip: ComfyUI stacks one clip per entry of cond_or_uncond (cond, uncond, area conds...).

    Callers that run the UNet themselves (training: B clips of F frames) set transformer_options[FRAMES_KEY] = F.
    """
    options = transformer_options or {}
    if options.get(FRAMES_KEY):
        frames = int(options[FRAMES_KEY])
        if x.shape[0] % frames:
            raise MotionFormatError(f"The UNet got {x.shape[0]} latents, not a whole number of {frames}-frame clips.")
        return frames
    clips = len(options.get("cond_or_uncond") or ()) or 1
    if x.shape[0] % clips:
        raise MotionFormatError(
            f"The UNet got a batch of {x.shape[0]} latents for {clips} conditionings, which is not a whole number "
            "of clips. Sample animations with one latent per frame (the latent batch is the frame count).")
    return x.shape[0] // clips


class _RunState:
    """Mutable per-inflation state read by the layers while the UNet runs (frame count of the current call)."""

    def __init__(self):
        self.frames: Optional[int] = None


class MotionLayer(nn.Module):
    """A temporal module placed in the UNet; `forward(x, transformer_options)` returns x + strength * delta.

    It is only ever called through the forward_timestep_embed patch (ComfyUI would otherwise call it with x
    alone and no frame count).
    """

    def __init__(self, name: str, module: nn.Module, strength: float):
        super().__init__()
        self.name = name
        self.module = module  # the (cast) TemporalModule; registered so hooks and .parameters() see it
        self.strength = float(strength)

    @property
    def group(self) -> str:
        """"down" / "mid" / "up", from the official module name (down_blocks.i..., mid_block..., up_blocks.i...)."""
        return {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}.get(self.name.split(".", 1)[0], "mid")

    def forward(self, x: torch.Tensor, transformer_options: Optional[dict] = None) -> torch.Tensor:
        strength = self.strength
        scale = (transformer_options or {}).get(SCALE_KEY)
        if scale is not None:  # absent unless a Motion Strength Schedule is set: the plain scalar path below
            strength = strength * scale(self.group, transformer_options)
        if strength == 0.0:
            return x
        frames = frames_per_cond(x, transformer_options)
        module = self.module
        weight = next(module.parameters())
        alt = (transformer_options or {}).get(ALT_KEY)
        if alt is not None:  # the contrast pass: another module's weights, same device and dtype as ours
            module = alt.module(self.name, weight.device, weight.dtype)
        inp = x if x.dtype == weight.dtype else x.to(weight.dtype)
        # Looked up at call time so ComfyUI's attention backend flags (xformers, sage, pytorch...) are honoured.
        delta = module.delta(inp, frames, attn_fn=comfy_attention.optimized_attention)
        if strength != 1.0:
            delta = delta * strength
        return x + delta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.name}, strength={self.strength}"


def _motion_layer_handler(layer, x, emb, context, transformer_options, *args, **kwargs):
    return layer(x, transformer_options)


class _WeightCache:
    """The motion weights on the device/dtype the UNet computes in, made on first use and never written back.

    When the user's module already has that device and dtype it is used as is (no copy; training relies on
    this to get gradients into its own module). Copies on an accelerator live as long as the UNet's weights
    stay on it (ComfyUI ejects our layers after every run and detaches the model when it switches to another
    clone of the same UNet; keeping the copy then avoids re-uploading the weights) and are dropped when
    ComfyUI unloads the UNet's weights from the device; CPU copies are kept.
    """

    def __init__(self, motion_module: nn.Module, precision: str = "auto"):
        self.source = motion_module
        self.precision = precision  # motion_core.precision: "auto" keeps the UNet's dtype
        self.copies: Dict[Tuple[str, torch.dtype], nn.Module] = {}

    def get(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        dtype = motion_dtype(self.precision, device, dtype)
        ref = next(self.source.parameters())
        if ref.device == device and ref.dtype == dtype:
            return self.source
        key = (str(device), dtype)
        if key not in self.copies:
            # deepcopy with a memo pre-filled with converted tensors: no transient second full-precision copy.
            memo = {}
            for t in list(self.source.parameters()) + list(self.source.buffers()):
                moved = t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
                memo[id(t)] = nn.Parameter(moved, requires_grad=False) if isinstance(t, nn.Parameter) else moved
            self.copies[key] = copy.deepcopy(self.source, memo)
        return self.copies[key]

    def drop_accelerator_copies(self) -> None:
        for key in [k for k in self.copies if not k[0].startswith("cpu")]:
            del self.copies[key]

    def on_detach(self, _patcher, unpatch_all: bool) -> None:
        """ComfyUI's ON_DETACH callback. It detaches with unpatch_all=False when it only switches to another clone
        of the same UNet (its weights stay on the GPU: a plain KSampler beside the animation): the copies stay
        then, or every prompt would upload the motion weights again; they go when the UNet leaves the device."""
        if unpatch_all:
            self.drop_accelerator_copies()


def _compute_dtype(model) -> torch.dtype:
    return getattr(model, "manual_cast_dtype", None) or model.get_dtype()


def _unet_device(model_patcher) -> torch.device:
    device = getattr(model_patcher.model, "device", None)
    return torch.device(device) if device is not None else model_patcher.offload_device


class _MotionInjection:
    """inject/eject for ModelPatcher.set_injections: inserts MotionLayers (and v1's FrameGroupNorms)."""

    def __init__(self, pairs: List[Tuple[str, MotionSlot]], weights: _WeightCache, strength: float,
                 state: _RunState, frame_norms: bool):
        self.pairs = pairs
        self.weights = weights
        self.strength = strength
        self.state = state
        self.frame_norms = frame_norms
        self.inserted: List[Tuple[nn.Sequential, MotionLayer]] = []
        self.swapped: List[Tuple[nn.Module, str, nn.Module, nn.Module]] = []

    def inject(self, model_patcher) -> None:
        if self.inserted or self.swapped:  # already in (injection objects are shared between clones)
            return
        unet = model_patcher.model.diffusion_model
        module_set = self.weights.get(_unet_device(model_patcher), _compute_dtype(model_patcher.model))
        # Insert from the back of each block so earlier positions stay valid.
        for name, slot in sorted(self.pairs, key=lambda p: -p[1].position):
            container = unet.middle_block if slot.block == "middle_block" else getattr(unet, slot.block)[slot.block_index]
            layer = MotionLayer(name, module_set.get_submodule(name), self.strength)
            container.insert(slot.position, layer)
            self.inserted.append((container, layer))
        if self.frame_norms:
            frames_fn = lambda: self.state.frames  # noqa: E731
            for res in [m for m in unet.modules() if isinstance(m, ResBlock)]:
                for seq in (res.in_layers, res.out_layers):
                    if isinstance(seq[0], nn.GroupNorm):
                        self._swap(seq, "0", FrameGroupNorm(seq[0], frames_fn))
            out = getattr(unet, "out", None)
            if out is not None and len(out) and isinstance(out[0], nn.GroupNorm):
                self._swap(out, "0", FrameGroupNorm(out[0], frames_fn))

    def _swap(self, parent: nn.Module, child: str, new: nn.Module) -> None:
        old = parent._modules[child]
        parent._modules[child] = new
        self.swapped.append((parent, child, old, new))

    def eject(self, model_patcher) -> None:
        for parent, child, old, new in reversed(self.swapped):
            if parent._modules.get(child) is new:
                parent._modules[child] = old
        self.swapped.clear()
        for container, layer in reversed(self.inserted):
            for i, existing in enumerate(container):
                if existing is layer:
                    del container[i]
                    break
        self.inserted.clear()


def _frames_tracker(state: _RunState):
    """DIFFUSION_MODEL wrapper recording the frames per clip of the current UNet call (for FrameGroupNorm)."""

    def wrapper(executor, x, *args, **kwargs):
        options = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
        state.frames = frames_per_cond(x, options)
        try:
            return executor(x, *args, **kwargs)
        finally:
            state.frames = None

    return wrapper
