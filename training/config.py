"""Training configuration: nested dataclasses with the paper's defaults, loaded from YAML plus
`section.key=value` command-line overrides.

Every field is documented here and in training/configs/*.yaml; unknown keys are an error (a typo in a
config must not silently train with a default).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

STAGES = ("adapter", "motion", "motionlora")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and what to do."""


@dataclass
class DataConfig:
    root: str = ""  # folder holding the videos (and/or still images)
    captions: str = "captions.csv"  # CSV with header `file,caption`, or JSON (list of {file, caption} or {file: caption})
    frames: int = 16  # frames per clip (paper: 16)
    stride: int = 4  # frame stride inside a clip (paper: 4); lowered for videos too short for it
    size: int = 256  # output side in pixels: resize the short side, then centre crop (paper: 256)
    flip: bool = True  # random horizontal flip (off for MotionLoRA: a flip reverses pans)
    empty_prompt_prob: float = 0.1  # captions replaced by "" so classifier-free guidance works (paper: 10 %)
    cached_latents: str = ""  # folder of <video stem>.safetensors latents made by --cache-latents; "" reads pixels
    camera_motion: str = ""  # motionlora: rule-based camera motion applied to every clip (see augment.CAMERA_MOTIONS;
    # "pan_left/pan_right" and the other augment.SIGNED_PAIRS: one LoRA for both moves, by its strength's sign)
    camera_strength: float = 0.5  # motionlora: how far the camera moves over a clip (zoom factor 1+s, pan s of the side)
    num_workers: int = 0  # DataLoader worker processes (0 = decode in the training process)


@dataclass
class ModelConfig:
    checkpoint: str = ""  # SD1.5-family checkpoint loaded with ComfyUI's load_checkpoint_guess_config
    text_embeddings: str = ""  # safetensors of caption embeddings (TextCache format); used before/without CLIP
    comfyui_root: str = ""  # ComfyUI folder; "" = $COMFYUI_ROOT, the ComfyUI holding this pack, or .host/ComfyUI
    motion_module: str = ""  # motion stage: optional init; motionlora stage: the (frozen) module the LoRA adapts
    motion_layout: str = "auto"  # motion stage without init: "auto" = one module per res block matching the base
    motion_pe_length: int = 32  # frames the new module's position table holds (v2/v3: 32)
    motion_mid_block: bool = False  # motion stage without init: add a mid-block module (v2 style)
    domain_adapter: str = ""  # motion/motionlora: a trained adapter applied (frozen) to the spatial layers
    domain_adapter_scale: float = 1.0
    adapter_rank: int = 128  # adapter stage: LoRA rank on spatial attention (official v3 adapter: 128)
    motion_lora_rank: int = 64  # motionlora stage: LoRA rank on the motion attention (official files: 64)


@dataclass
class ScheduleConfig:
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "linear"  # "linear" = linear in beta (AnimateDiff); "scaled_linear" = SD's sqrt-space one
    num_train_timesteps: int = 1000
    latent_scale: float = 0.0  # VAE latents x this; 0 = the checkpoint's own (SD1.5: 0.18215, SDXL: 0.13025)
    timestep_skew: float = 1.0  # 1 = uniform training timesteps (paper); s > 1 favours high noise: t = N(1 - u^s)


LR_SCHEDULES = ("constant", "cosine")  # optim.lr_schedule (training.optim.lr_factor computes them)


@dataclass
class OptimConfig:
    lr: float = 1e-4
    lr_schedule: str = "constant"  # constant (paper) | cosine: decays to lr x lr_final at the last step
    lr_final: float = 0.1  # the cosine schedule's last learning rate, as a fraction of lr
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps to lr over this many steps
    weight_decay: float = 1e-2
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    snr_gamma: float = 0.0  # > 0: Min-SNR-gamma loss weights (5 is the published choice); 0 = plain MSE (paper)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    batch_size: int = 4  # clips per process per step (the global batch is batch_size x world size)
    max_steps: int = 1000
    seed: int = 42
    mixed_precision: str = "auto"  # auto (fp16 on CUDA, off on CPU) | fp16 | bf16 | no
    gradient_checkpointing: str = "auto"  # auto (on for CUDA, off on CPU) | on | off


@dataclass
class RunConfig:
    output_dir: str = "output/training/run"  # output/ is git-ignored
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)
    save_every: int = 500  # write the stage's weights + a resumable training state every N steps (0: only at the end)
    sample_every: int = 500  # write a sample animation (GIF) every N steps (0: never)
    sample_prompts: list = field(default_factory=lambda: ["a red circle moving left"])
    sample_steps: int = 20  # DDIM steps for the preview samples
    sample_cfg: float = 7.5
    sample_frames: int = 0  # 0 = data.frames
    resume: str = "auto"  # auto (latest state in output_dir) | path to a state file | "" (start fresh)
    log_every: int = 10  # lines appended to train_log.jsonl
    progress: bool = True  # tqdm progress bar (rank 0 only)
    output_name: str = ""  # final weights file name; "" = <stage>.safetensors


@dataclass
class TrainConfig:
    stage: str = "motion"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _section_types() -> dict:
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert a YAML value to the type of the field's default (YAML reads 1e-4 as a string)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if as_float != int(as_float):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, str):
        return "" if value is None else str(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, list):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    return value


def _apply(cfg: TrainConfig, data: dict, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping of sections, got {type(data).__name__}")
    for key, value in data.items():
        if key == "stage":
            cfg.stage = str(value)
            continue
        if key not in _section_types():
            raise ConfigError(f"{source}: unknown section {key!r}; valid: stage, "
                              + ", ".join(f.name for f in dataclasses.fields(TrainConfig) if f.name != "stage"))
        section = getattr(cfg, key)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section {key!r} must be a mapping of keys, got {value!r}")
        valid = {f.name for f in dataclasses.fields(section)}
        for sub, sub_value in value.items():
            if sub not in valid:
                raise ConfigError(f"{source}: unknown key {key}.{sub}; valid keys in {key}: {', '.join(sorted(valid))}")
            setattr(section, sub, _coerce(sub_value, getattr(section, sub), f"{source}: {key}.{sub}"))


def parse_override(text: str) -> dict:
    """`optim.lr=3e-4` -> {"optim": {"lr": 3e-4}}; the value is parsed as YAML (lists, bools, numbers)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. optim.lr=3e-4)")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if parts == ["stage"]:
        return {"stage": value}
    if len(parts) != 2:
        raise ConfigError(f"override {text!r}: the key must be section.key (e.g. data.frames=8)")
    return {parts[0]: {parts[1]: value}}


def validate(cfg: TrainConfig) -> TrainConfig:
    if cfg.stage not in STAGES:
        raise ConfigError(f"stage {cfg.stage!r} is not one of {', '.join(STAGES)}")
    if cfg.data.frames < 1 or cfg.data.stride < 1 or cfg.data.size < 8 or cfg.data.size % 8:
        raise ConfigError("data.frames and data.stride must be >= 1 and data.size a multiple of 8 (the VAE factor)")
    if cfg.stage == "adapter" and cfg.data.frames != 1:
        # The domain adapter is an image LoRA: it learns from single frames (paper stage 1).
        cfg.data.frames = 1
    if not 0.0 <= cfg.data.empty_prompt_prob <= 1.0:
        raise ConfigError("data.empty_prompt_prob must be within [0, 1]")
    if cfg.optim.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"optim.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.optim.lr_schedule!r}")
    if not 0 <= cfg.optim.lr_final <= 1 or cfg.optim.warmup_steps < 0:
        raise ConfigError("optim.lr_final must be within [0, 1] and optim.warmup_steps >= 0")
    if cfg.optim.snr_gamma < 0:
        raise ConfigError("optim.snr_gamma must be >= 0 (0 = plain MSE, 5 = Min-SNR-5 weighting)")
    if cfg.schedule.timestep_skew <= 0:
        raise ConfigError("schedule.timestep_skew must be > 0 (1 = uniform timesteps, 2 = favour high noise)")
    from . import motion_core  # the pack's copy inside ComfyUI (no top-level motion_core there)

    BETA_KINDS = motion_core("schedules").BETA_KINDS

    if cfg.schedule.beta_schedule not in BETA_KINDS:
        raise ConfigError("schedule.beta_schedule must be 'linear' (AnimateDiff) or 'scaled_linear' (SD)")
    # YAML reads on/off/yes/no as booleans: accept them for the two switch-like settings.
    cfg.optim.mixed_precision = {"false": "no", "off": "no", "none": "no"}.get(
        str(cfg.optim.mixed_precision).lower(), str(cfg.optim.mixed_precision).lower())
    cfg.optim.gradient_checkpointing = {"true": "on", "false": "off", "yes": "on", "no": "off"}.get(
        str(cfg.optim.gradient_checkpointing).lower(), str(cfg.optim.gradient_checkpointing).lower())
    if cfg.optim.mixed_precision not in ("auto", "fp16", "bf16", "no"):
        raise ConfigError("optim.mixed_precision must be auto, fp16, bf16 or no")
    if cfg.optim.gradient_checkpointing not in ("auto", "on", "off"):
        raise ConfigError("optim.gradient_checkpointing must be auto, on or off")
    if cfg.optim.batch_size < 1 or cfg.optim.max_steps < 1:
        raise ConfigError("optim.batch_size and optim.max_steps must be >= 1")
    if cfg.stage == "motionlora" and not cfg.model.motion_module:
        raise ConfigError("stage motionlora adapts an existing motion module: set model.motion_module=<file>")
    if cfg.stage == "motionlora" and cfg.data.camera_motion:
        from .augment import CAMERA_MOTIONS, SIGNED_PAIRS, signed_pair  # validates names before any model loads
        names = [n.strip() for n in cfg.data.camera_motion.split(",") if n.strip()]
        if any("/" in n for n in names):
            if len(names) != 1 or signed_pair(names[0]) is None:
                raise ConfigError(f"data.camera_motion {cfg.data.camera_motion!r}: a signed pair stands alone and is "
                                  f"one of {', '.join(SIGNED_PAIRS)}")
        else:
            for name in names:
                if name not in CAMERA_MOTIONS:
                    raise ConfigError(f"data.camera_motion {name!r} is unknown; choose from "
                                      f"{', '.join(CAMERA_MOTIONS)} or a signed pair ({', '.join(SIGNED_PAIRS)})")
    return cfg


def load_config(path: Optional[str] = None, overrides: Optional[list] = None,
                stage: Optional[str] = None) -> TrainConfig:
    """Defaults <- YAML file <- overrides (<- --stage). Relative paths resolve against the working directory."""
    cfg = TrainConfig()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} not found")
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        _apply(cfg, data, path)
    for text in overrides or []:
        _apply(cfg, parse_override(text), f"override {text!r}")
    if stage:
        cfg.stage = stage
    return validate(cfg)


def save_config(cfg: TrainConfig, path: str) -> None:
    data = cfg.to_dict()
    data["optim"]["betas"] = list(data["optim"]["betas"])
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
