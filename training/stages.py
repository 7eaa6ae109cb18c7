"""What each training stage trains, how it is put into ComfyUI's UNet, and how its result is saved.

- adapter: LoRA on every spatial attention projection (the v3 domain adapter), attached as ComfyUI weight
  wrappers on a clone of the base ModelPatcher; trained on single frames; saved in the official adapter layout.
- motion: a motion module (new, laid out to match the base UNet's levels, or loaded to continue training),
  inserted with the pack's adapter (`motion_core.comfy.inflate`, the same injection sampling uses);
  only `motion_modules.*` train; saved as an official motion-module file (PE tables included).
- motionlora: LoRA on to_q/k/v/out of every temporal attention of a frozen motion module; saved with the
  official MotionLoRA keys.
In every stage the base UNet (and the text encoder/VAE, which only run without gradients) is frozen, an
optional earlier domain adapter is applied frozen through `add_patches`, and the noise schedule is the one
configured (a `model_sampling` object patch on the clone).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

MOTION_NAME_PREFIXES = ("down_blocks.", "mid_block.", "up_blocks.")


@dataclass
class BaseModels:
    """The frozen base: a ComfyUI ModelPatcher plus text/pixel encoders (CLIP and VAE, or stand-ins)."""

    patcher: object
    encode_text: Callable[[str], torch.Tensor]          # caption -> [tokens, context_dim]
    encode_pixels: Callable[[torch.Tensor], torch.Tensor]  # [N,3,H,W] in [-1,1] -> model-space latents
    decode_latents: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # latents -> [N,3,H,W] in [0,1]
    source: str = "in-memory"


@dataclass
class Stage:
    name: str
    patcher: object                 # the clone that trains (patched in place of the user's object)
    trainables: nn.Module           # exactly the parameters that train
    frames: int                     # frames per clip the UNet sees
    official_state_dict: Callable[[], Dict[str, torch.Tensor]]
    metadata: Dict[str, str] = field(default_factory=dict)
    motion_module: Optional[nn.Module] = None


def _model_sampling(patcher, schedule_cfg):
    """A discrete epsilon schedule with the configured betas (what the motion adapter's schedules produce)."""
    import comfy.model_sampling

    from . import motion_core

    betas_between = motion_core("schedules").betas_between

    current = patcher.get_model_object("model_sampling")
    if not isinstance(current, comfy.model_sampling.ModelSamplingDiscrete):
        raise ValueError(f"this model samples with {type(current).__name__}, not a discrete DDPM schedule; "
                         "AnimateDiff training needs an epsilon-prediction SD1.5-family checkpoint")

    class TrainingModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    sampling = TrainingModelSampling(patcher.model.model_config)
    betas = betas_between(schedule_cfg.beta_schedule, schedule_cfg.beta_start, schedule_cfg.beta_end,
                          schedule_cfg.num_train_timesteps)
    # float64 betas, as Inflate Model registers them: the noise levels trained on are the ones sampled with.
    sampling._register_schedule(given_betas=betas, linear_start=schedule_cfg.beta_start,
                                linear_end=schedule_cfg.beta_end)
    return sampling


def _load_adapter(cfg):
    if not cfg.model.domain_adapter:
        return None
    from . import motion_core

    mlora = motion_core("lora")  # the pack's loader (official adapter files and ours)

    return mlora.load_domain_adapter(cfg.model.domain_adapter)


def new_motion_module(unet: nn.Module, pe_length: int = 32, mid: bool = False, seed: int = 0, base: str = "sd15"):
    """A fresh MotionModuleSet with one module per UNet slot (the official layout for SD1.5 and SDXL; the
    reduced equivalent for smaller UNets), default Linear init and zeroed proj_out (official
    `zero_initialize`), so the inflated model starts exactly as the image model. SD1.5 modules normalise each
    frame on its own, SDXL ones across frames (as the official code of each branch)."""
    from . import motion_core

    unet_slots = motion_core("comfy").unet_slots
    MotionModuleInfo, MotionModuleSet = (motion_core("motion_module").MotionModuleInfo,
                                         motion_core("motion_module").MotionModuleSet)
    NORM_ACROSS_FRAMES, NORM_PER_FRAME = motion_core("temporal").NORM_ACROSS_FRAMES, motion_core("temporal").NORM_PER_FRAME

    slots = unet_slots(unet)
    down: list = []
    up: list = []
    mid_channels = None
    for s in slots:
        if s.kind == "mid":
            mid_channels = s.channels
            continue
        target = down if s.kind == "down" else up
        while len(target) <= s.level:
            target.append([])
        target[s.level].append(s.channels)
    if not down or not up:
        raise ValueError("this UNet has no places for motion modules (no resnet blocks found)")
    fork = torch.random.fork_rng(devices=[])
    with fork:
        torch.manual_seed(seed)
        norm = NORM_ACROSS_FRAMES if base == "sdxl" else NORM_PER_FRAME
        mm = MotionModuleSet(down, up, mid_channels if mid else None, pe_length, norm)
    with torch.no_grad():
        for _, module in mm.temporal_modules():
            module.temporal_transformer.proj_out.weight.zero_()
            module.temporal_transformer.proj_out.bias.zero_()
    has_mid = bool(mid and mid_channels)
    version = "sdxl" if base == "sdxl" else ("v2" if has_mid else "v3")
    mm.info = MotionModuleInfo(version=version, base=base, max_frames=pe_length,
                               source_format="original", has_mid=has_mid, has_pe=True, norm_mode=norm,
                               num_modules=len(mm.locations()), down_channels=tuple(level[0] for level in down),
                               params=sum(p.numel() for p in mm.parameters()))
    return mm


def _inflate(base_patcher, motion_module, cfg):
    from . import motion_core

    inflate = motion_core("comfy").inflate

    adapter = _load_adapter(cfg)
    # The schedule is installed below from the config (the adapter's own choice would be the same by default).
    # precision fp32: the layers must compute with the trained module itself. "auto" follows the UNet's dtype,
    # which on a GPU is fp16/bf16, and would compute with a converted copy that gradients never reach (autocast
    # still runs the matmuls in half precision).
    return inflate(base_patcher, motion_module, adapter=adapter, adapter_scale=cfg.model.domain_adapter_scale,
                   beta_schedule="sd_default", precision="fp32")


def build_stage(cfg, base: BaseModels, device: torch.device, motion_module: Optional[nn.Module] = None) -> Stage:
    """The stage's trainable parts on a clone of the base. `motion_module` (motionlora): an already loaded
    module (what the Train MotionLoRA node gets) instead of `cfg.model.motion_module`'s file; it is copied,
    never changed."""
    from . import motion_core

    model_base = motion_core("comfy").model_base
    unet = base.patcher.model.diffusion_model
    seed = cfg.optim.seed
    family = model_base(base.patcher)
    if family is None and cfg.stage != "adapter":
        raise ValueError(f"{type(base.patcher.model.model_config).__name__} models have no AnimateDiff motion "
                         "modules: use an SD1.5-family or SDXL checkpoint")
    if cfg.stage == "adapter" and cfg.model.domain_adapter:
        raise ValueError("model.domain_adapter is for the motion stages; the adapter stage trains a new one")
    if cfg.stage == "adapter":
        from .lora_layers import SpatialAdapter

        adapter = SpatialAdapter(unet, cfg.model.adapter_rank, seed=seed).to(device)
        patcher = base.patcher.clone()
        adapter.attach(patcher)
        stage = Stage("adapter", patcher, adapter, 1, adapter.official_state_dict,
                      {"admk_kind": "domain_adapter", "rank": str(cfg.model.adapter_rank)})
    elif cfg.stage == "motion":
        load_motion_module = motion_core("motion_module").load_motion_module
        if cfg.model.motion_module:
            mm = load_motion_module(cfg.model.motion_module, base_hint=family).copy()
        else:
            mm = new_motion_module(unet, cfg.model.motion_pe_length, cfg.model.motion_mid_block, seed=seed,
                                   base=family)
        if cfg.data.frames > mm.info.max_frames:
            raise ValueError(f"data.frames={cfg.data.frames} exceeds the motion module's position table "
                             f"({mm.info.max_frames}); lower data.frames or raise model.motion_pe_length")
        mm = mm.to(device)
        patcher = _inflate(base.patcher, mm, cfg)

        def motion_state():
            return {k: v.detach().float().cpu().contiguous() for k, v in mm.state_dict().items()}

        stage = Stage("motion", patcher, mm, cfg.data.frames, motion_state,
                      {"admk_kind": "motion_module", "version": mm.info.version}, motion_module=mm)
    elif cfg.stage == "motionlora":
        from .augment import signed_pair
        from .lora_layers import MotionLoRA

        load_motion_module = motion_core("motion_module").load_motion_module

        if motion_module is None:
            motion_module = load_motion_module(cfg.model.motion_module, base_hint=family)
        # a float32 copy: the loaded one stays untouched (Load Motion Module keeps an fp16 file's precision) and
        # the LoRA trains against float32 weights, as with load_motion_module's default
        mm = motion_module.copy().to(torch.float32)
        if cfg.data.frames > mm.info.max_frames:
            raise ValueError(f"data.frames={cfg.data.frames} exceeds the motion module's {mm.info.max_frames} "
                             "frames; lower data.frames")
        lora = MotionLoRA(mm, cfg.model.motion_lora_rank, seed=seed)
        lora.attach()
        mm = mm.to(device)
        patcher = _inflate(base.patcher, mm, cfg)
        meta = {"admk_kind": "motion_lora", "rank": str(cfg.model.motion_lora_rank),
                "camera_motion": cfg.data.camera_motion}
        pair = signed_pair(cfg.data.camera_motion) if "/" in cfg.data.camera_motion else None
        if pair:  # tells a user which sign of Apply MotionLoRA's strength gives which move
            meta["admk_strength_sign"] = f"positive: {pair[0]}, negative: {pair[1]}"
        stage = Stage("motionlora", patcher, lora, cfg.data.frames, lora.official_state_dict, meta, motion_module=mm)
    else:
        raise ValueError(f"unknown stage {cfg.stage!r}")
    stage.patcher.add_object_patch("model_sampling", _model_sampling(stage.patcher, cfg.schedule))
    return stage
