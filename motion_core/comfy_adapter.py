"""The one place that touches ComfyUI: put a MotionModuleSet into a ComfyUI UNet without changing the user's model.

`inflate(model_patcher, motion_module, ...)` returns a *clone* of the ModelPatcher; the user's MODEL and
ADMK_MOTION_MODULE are never modified. Everything goes through ComfyUI's own patcher mechanisms, so unloading,
model switching, other packs and interrupted runs behave like any core model patch:

- `set_injections`: a `MotionLayer` is inserted into `input_blocks[k]` / `middle_block` / `output_blocks[k]`
  when ComfyUI loads the clone and removed again when it unloads it. The injection is also ejected when a
  sampling run ends (finished, failed or cancelled, ComfyUI's `cleanup` callback), so between runs the shared
  UNet holds no foreign modules; ComfyUI re-injects on the next load. Weights are patched (LoRAs, the v3
  domain adapter) while injections are out, so the UNet's weight names never change under a patch.
- a `forward_timestep_embed` patch for the MotionLayer class hands it `transformer_options`, from which the
  frame count per clip is `x.shape[0] // len(cond_or_uncond)` (ComfyUI batches cond and uncond clips).
- `add_object_patch("model_sampling", ...)`: the beta schedule the module was trained with.
- v1 only: the base resnets' GroupNorms normalise across frames (`FrameGroupNorm`), also swapped in by an
  injection (not an object patch) so that the GroupNorm weights keep their names while ComfyUI patches weights.
- `add_patches`: the v3 domain adapter as ordinary LoRA patches with strength = the user's scale.

Placement is read from the UNet's structure (levels are delimited by Downsample/Upsample blocks), not from a
table, so SD1.5, SDXL and reduced SD1.5-family UNets are all served by the same code.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

import comfy.ldm.modules.attention as comfy_attention
import comfy.model_sampling
import comfy.patcher_extension
import comfy.supported_models
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample

from .context import check_context_fits
from .errors import MotionFormatError
from .norms import FrameGroupNorm
from .schedules import SCHEDULES, auto_schedule, betas


KEY = "admk_motion"  # key of every injection / wrapper / callback / attachment this adapter registers
BETA_SCHEDULES = ("auto", "animatediff_linear", "sd_default", "sdxl", "lcm")
BETA_SCHEDULE_HELP = {
    "auto": "what the motion module was trained with (AnimateDiff linear-beta for SD1.5 modules, SDXL's for "
            "SDXL modules, LCM for AnimateLCM)",
    "animatediff_linear": SCHEDULES["animatediff_linear"][3],
    "sd_default": "keep the checkpoint's own schedule untouched (SD's scaled-linear); washed out with v1-v3",
    "sdxl": SCHEDULES["sdxl"][3],
    "lcm": SCHEDULES["lcm"][3],
}


# ----------------------------------------------------------------------------------------------------------
# Where the motion modules go


@dataclass(frozen=True)
class MotionSlot:
    """One place in a ComfyUI UNet that takes a temporal module (same kind/level/index as MotionLocation)."""

    kind: str        # "down" | "mid" | "up"
    level: int
    index: int
    block: str       # "input_blocks" | "middle_block" | "output_blocks"
    block_index: int  # index into input_blocks / output_blocks (0 for the middle block)
    position: int    # insertion index inside that TimestepEmbedSequential
    channels: int


def _first_resblock(block) -> Optional[ResBlock]:
    return next((layer for layer in block if isinstance(layer, ResBlock)), None)


def _is_resample(layer, cls) -> bool:
    # resblock_updown UNets resample with a ResBlock(up/down=True) instead of an Upsample/Downsample layer.
    return isinstance(layer, cls) or (isinstance(layer, ResBlock) and getattr(layer, "updown", False))


def unet_slots(unet: nn.Module) -> List[MotionSlot]:
    """Every place a motion module can go in a ComfyUI UNet, in execution order.

    Down: after each input block holding a resnet (levels end at a Downsample block). Mid: between the middle
    block's attention and its second resnet. Up: in each output block, after resnet + attention and before
    the Upsample (a level ends with the block that upsamples).
    """
    if not all(hasattr(unet, name) for name in ("input_blocks", "output_blocks")):
        raise MotionFormatError(
            f"This model's diffusion model ({type(unet).__name__}) is not a UNet: AnimateDiff motion modules only "
            "fit SD1.5-family and SDXL UNets. Load an SD1.5 (or SDXL, for SDXL modules) checkpoint.")
    slots: List[MotionSlot] = []
    level = index = 0
    for k, block in enumerate(unet.input_blocks):
        if k == 0:
            continue  # conv_in
        if len(block) and all(_is_resample(layer, Downsample) for layer in block):
            level, index = level + 1, 0
            continue
        res = _first_resblock(block)
        if res is None:
            continue
        slots.append(MotionSlot("down", level, index, "input_blocks", k, len(block), res.out_channels))
        index += 1
    mid = getattr(unet, "middle_block", None)
    if mid is not None and len(mid) >= 3 and isinstance(mid[-1], ResBlock):
        slots.append(MotionSlot("mid", 0, 0, "middle_block", 0, len(mid) - 1, mid[-1].out_channels))
    level = index = 0
    for k, block in enumerate(unet.output_blocks):
        res = _first_resblock(block)
        if res is None:
            continue
        layers = list(block)
        up_at = next((i for i, layer in enumerate(layers) if i > 0 and _is_resample(layer, Upsample)), None)
        slots.append(MotionSlot("up", level, index, "output_blocks", k,
                                len(layers) if up_at is None else up_at, res.out_channels))
        index += 1
        if up_at is not None:
            level, index = level + 1, 0
    return slots


def model_base(model_patcher) -> Optional[str]:
    """'sd15' | 'sdxl' | None for the model family of a ModelPatcher (None: neither)."""
    config = getattr(model_patcher.model, "model_config", None)
    sm = comfy.supported_models
    if isinstance(config, (sm.SDXL, sm.SDXLRefiner)):
        return "sdxl"
    if isinstance(config, sm.SD15):
        return "sd15"
    return None


_BASE_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL", None: "neither SD1.5 nor SDXL"}


def _module_title(mm) -> str:
    info = mm.info
    return f"this {_BASE_NAMES.get(info.base, info.base)} motion module (AnimateDiff {info.version})"


def match_slots(model_patcher, motion_module) -> List[Tuple[str, MotionSlot]]:
    """[(module name, slot)] for every temporal module; raises MotionFormatError when the module does not fit."""
    info = motion_module.info
    base = model_base(model_patcher)
    config_name = type(getattr(model_patcher.model, "model_config", None)).__name__
    if base != info.base:
        if base is None:
            raise MotionFormatError(
                f"The MODEL is a {config_name} model, which AnimateDiff motion modules do not support; "
                f"{_module_title(motion_module)} needs an {_BASE_NAMES[info.base]} checkpoint.")
        want = "an SD1.5 motion module (e.g. mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt)" if base == "sd15" else \
            "an SDXL motion module (e.g. mm_sdxl_v10_beta.ckpt)"
        raise MotionFormatError(
            f"{_module_title(motion_module)[0].upper()}{_module_title(motion_module)[1:]} cannot animate an "
            f"{_BASE_NAMES[base]} model ({config_name}). Use {want}, or load an {_BASE_NAMES[info.base]} "
            "checkpoint for this module.")
    slots = {(s.kind, s.level, s.index): s for s in unet_slots(model_patcher.model.diffusion_model)}
    pairs, problems = [], []
    for loc in motion_module.locations():
        slot = slots.get((loc.kind, loc.level, loc.index))
        if slot is None:
            problems.append(f"{loc.name} has no place in this UNet")
        elif slot.channels != loc.channels:
            problems.append(f"{loc.name} has {loc.channels} channels but the UNet has {slot.channels} there "
                            f"({slot.block}.{slot.block_index})")
        else:
            pairs.append((loc.name, slot))
    used = {(s.kind, s.level, s.index) for _, s in pairs}
    # The mid module exists only in v2; HotshotXL puts temporal layers only next to attention blocks.
    uncovered = [s for key, s in slots.items() if key not in used and s.kind != "mid"]
    if uncovered and info.version != "hotshotxl" and not problems:
        problems.append(f"{len(uncovered)} of the UNet's {len(slots)} places get no temporal module "
                        f"(first: {uncovered[0].block}.{uncovered[0].block_index})")
    if problems:
        raise MotionFormatError(
            f"{_module_title(motion_module)[0].upper()}{_module_title(motion_module)[1:]} does not fit this "
            f"{_BASE_NAMES[base]} UNet: " + "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if
                                                                        len(problems) > 4 else "")
            + ". The checkpoint and the motion module were made for different UNet layouts: use a motion module "
              "made for this checkpoint's architecture.")
    return pairs


# ----------------------------------------------------------------------------------------------------------
# Running the modules


FRAMES_KEY = "admk_num_frames"  # transformer_options override for callers outside ComfyUI's sampler (training)


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

    def __init__(self, name: str, module: nn.Module, strength: float, state: _RunState):
        super().__init__()
        self.name = name
        self.module = module  # the (cast) TemporalModule; registered so hooks and .parameters() see it
        self.strength = float(strength)
        self.state = state

    def forward(self, x: torch.Tensor, transformer_options: Optional[dict] = None) -> torch.Tensor:
        if self.strength == 0.0:
            return x
        frames = frames_per_cond(x, transformer_options)
        weight = next(self.module.parameters())
        inp = x if x.dtype == weight.dtype else x.to(weight.dtype)
        # Looked up at call time so ComfyUI's attention backend flags (xformers, sage, pytorch...) are honoured.
        delta = self.module.delta(inp, frames, attn_fn=comfy_attention.optimized_attention)
        if self.strength != 1.0:
            delta = delta * self.strength
        return x + delta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.name}, strength={self.strength}"


def _motion_layer_handler(layer, x, emb, context, transformer_options, *args, **kwargs):
    return layer(x, transformer_options)


class _WeightCache:
    """The motion weights on the device/dtype the UNet computes in, made on first use and never written back.

    When the user's module already has that device and dtype it is used as is (no copy; training relies on
    this to get gradients into its own module). Copies on an accelerator live as long as ComfyUI keeps the
    UNet loaded (it ejects our layers after every run, so keeping the copy avoids re-uploading the weights)
    and are dropped when ComfyUI detaches the model to free memory; CPU copies are kept.
    """

    def __init__(self, motion_module: nn.Module):
        self.source = motion_module
        self.copies: Dict[Tuple[str, torch.dtype], nn.Module] = {}

    def get(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
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
            layer = MotionLayer(name, module_set.get_submodule(name), self.strength, self.state)
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


# ----------------------------------------------------------------------------------------------------------
# Beta schedules


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

    kind, start, end, _ = SCHEDULES[schedule]
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


# ----------------------------------------------------------------------------------------------------------
# Domain adapter


def _adapter_patches(model_patcher, adapter) -> dict:
    """The domain adapter as ComfyUI LoRA patches ({weight key: LoRAAdapter}), strength applied by add_patches."""
    from comfy.weight_adapter.lora import LoRAAdapter

    unet = model_patcher.model.diffusion_model
    unet_keys = model_patcher.model_state_dict(filter_prefix="diffusion_model.").keys()
    raw = adapter.comfy_lora_patches(unet_keys, num_res_blocks=int(unet.num_res_blocks[0]))
    patches = {}
    for key, (up, down, scale) in raw.items():
        # ComfyUI scales a LoRA by alpha / rank: alpha = scale * rank carries the file's own scale (1 officially).
        alpha = None if scale == 1.0 else float(scale) * down.shape[0]
        patches[key] = LoRAAdapter(set(), (up, down, alpha, None, None, None))
    return patches


# ----------------------------------------------------------------------------------------------------------
# Public API


@dataclass
class MotionAttachment:
    """What an inflated MODEL carries (ModelPatcher attachment KEY): read by the sampling nodes."""

    info: object
    strength: float
    beta_schedule: str
    context_options: object = None
    slots: List[Tuple[str, MotionSlot]] = field(default_factory=list)

    @property
    def max_frames(self) -> int:
        return int(self.info.max_frames)


def motion_attachment(model_patcher) -> Optional[MotionAttachment]:
    getter = getattr(model_patcher, "get_attachment", None)
    return getter(KEY) if getter else None


CORE_CONTEXT_HANDLER = "context_handler"  # model_options key of core's "Context Windows (Manual)" node


def refuse_core_context_windows(model_options: dict) -> None:
    """Raise MotionFormatError when core's context windows are set on an animating model.

    Core 0.3.75's IndexListContextHandler (node "Context Windows (Manual)") slices the latents but not the
    per-frame conditioning (it only subsets model_conds tensors with fewer dims than its dim, i.e. never at
    dim 0) nor the ControlNet hints, so every window is driven by the prompts and hints of the first frames,
    and batch-mismatched conds can fail inside the UNet. Our windows (ADMK_ContextOptions) slice all of them.
    """
    if model_options.get(CORE_CONTEXT_HANDLER) is None:
        return
    raise MotionFormatError(
        "The MODEL went through core's \"Context Windows (Manual)\" node, which does not work with AnimateDiff: "
        "its windows do not slice per-frame prompts (Prompt Travel) or ControlNet hints, so every window would "
        "get the first frames' conditioning (or sampling fails). Remove that node and connect this pack's Context "
        "Options node (ADMK_ContextOptions) to Sample Animation or Inflate Model instead.")


def check_frames(model_patcher, num_frames: int, context=None, model_options: Optional[dict] = None) -> None:
    """Raise MotionFormatError before sampling when one pass would see more frames than the module can, or when
    core's context windows are set on the model. `context`: our ContextOptions for this run (default: the ones
    given to Inflate Model); `model_options`: the options the sampler runs with (default: the patcher's)."""
    attachment = motion_attachment(model_patcher)
    if attachment is None:
        return
    refuse_core_context_windows(model_patcher.model_options if model_options is None else model_options)
    context = context if context is not None else attachment.context_options
    name = f"the {attachment.info.version} motion module"
    try:
        check_context_fits(attachment.max_frames, context, int(num_frames), module_name=name)
    except MotionFormatError:
        raise
    except ValueError as exc:
        raise MotionFormatError(str(exc)) from None


def check_conditioning_rows(name: str, tensors, frames: int) -> None:
    """Refuse conditioning whose rows are neither shared by every frame (1) nor one per frame (`frames`).

    ComfyUI would silently repeat or cut such a batch to the frame count, so e.g. a 32-frame prompt schedule
    on a 48-frame run would drive frames 32-47 with the schedule's first rows.
    """
    for cond in tensors:
        if not isinstance(cond, torch.Tensor) or cond.ndim == 0:
            continue
        rows = int(cond.shape[0])
        if rows not in (1, frames):
            raise MotionFormatError(
                f"The {name} conditioning has {rows} rows (one per frame, e.g. a Prompt Travel schedule made for "
                f"{rows} frames) but this animation has {frames} frame{'s' if frames != 1 else ''}. Set frames to "
                f"{frames} in Prompt Travel (or whatever made the {name} conditioning), or make the animation "
                f"{rows} frames long.")


def _frame_check_wrapper(executor, noise, *args, **kwargs):
    """OUTER_SAMPLE wrapper: frame limit and per-frame conditioning are checked before the first step, whichever
    sampler node runs (Sample Animation, core KSampler, SamplerCustom...)."""
    guider = executor.class_obj
    frames = int(noise.shape[0])
    check_frames(guider.model_patcher, frames, model_options=guider.model_options)
    for name, conds in (getattr(guider, "conds", None) or {}).items():
        check_conditioning_rows(name, [c.get("cross_attn") for c in conds or () if isinstance(c, dict)], frames)
    return executor(noise, *args, **kwargs)


def _eject_after_run(model_patcher) -> None:
    # ON_CLEANUP runs in sampling's `finally`: even a cancelled run leaves the shared UNet without our layers.
    model_patcher.eject_model()


def inflate(model_patcher, motion_module, *, adapter=None, adapter_scale: float = 1.0, motion_strength: float = 1.0,
            beta_schedule: str = "auto", context_options=None):
    """A clone of `model_patcher` that runs `motion_module` in its UNet. Inputs are left untouched.

    Raises MotionFormatError (before any sampling) when the module and the model do not belong together.
    """
    if getattr(motion_module, "info", None) is None:
        raise MotionFormatError("The motion module has no detected version/base: load it with Load Motion Module.")
    refuse_core_context_windows(model_patcher.model_options)
    if motion_attachment(model_patcher) is not None:
        raise MotionFormatError(
            "This MODEL already has a motion module (it went through Inflate Model before). Connect the "
            "un-inflated MODEL from the checkpoint loader (apply MotionLoRAs to the motion module with Apply "
            "MotionLoRA instead).")
    pairs = match_slots(model_patcher, motion_module)
    schedule = resolve_beta_schedule(beta_schedule, motion_module)
    info = motion_module.info
    if context_options is not None:
        try:
            check_context_fits(info.max_frames, context_options, module_name=f"the {info.version} motion module")
        except ValueError as exc:
            raise MotionFormatError(str(exc)) from None

    patched = model_patcher.clone()
    state = _RunState()
    injection = _MotionInjection(pairs, _WeightCache(motion_module), motion_strength, state,
                                 frame_norms=(info.version == "v1"))
    patched.set_injections(KEY, [comfy.patcher_extension.PatcherInjection(injection.inject, injection.eject)])
    patched.set_model_forward_timestep_embed_patch((MotionLayer, _motion_layer_handler))
    if injection.frame_norms:
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, _frames_tracker(state))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, _frame_check_wrapper)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, KEY, _eject_after_run)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, KEY,
                                  lambda _patcher, _unpatch_all: injection.weights.drop_accelerator_copies())

    sampling = model_sampling_for(patched, schedule)
    if sampling is not None:
        patched.add_object_patch("model_sampling", sampling)

    if adapter is not None and adapter_scale != 0.0:
        patches = _adapter_patches(patched, adapter)
        applied = patched.add_patches(patches, strength_patch=float(adapter_scale))
        if len(applied) != len(patches):
            missing = sorted(set(patches) - set(applied))
            raise MotionFormatError(
                f"The domain adapter does not fit this UNet: {len(missing)} of its {len(patches)} weights have no "
                f"match (first: {missing[0]}). The v3 adapter (v3_sd15_adapter.ckpt) is for SD1.5 checkpoints.")

    if context_options is not None:
        from .windows import install_context_windows
        install_context_windows(patched, context_options, max_frames=info.max_frames)

    patched.set_attachments(KEY, MotionAttachment(info=info, strength=float(motion_strength), beta_schedule=schedule,
                                                  context_options=context_options, slots=pairs))
    return patched


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
