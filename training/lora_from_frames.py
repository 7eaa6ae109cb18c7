"""Train a MotionLoRA from frames held in memory: what the Train MotionLoRA node runs (nodes/train_motionlora.py).

It is `python -m training.train --stage motionlora` with the inputs a ComfyUI graph has instead of files: the
MODEL and VAE of a loaded checkpoint, a loaded MOTION_MODULE, one CONDITIONING, and IMAGE frames (one reference
clip, or still images that a camera preset moves over). The same TrainConfig, ClipDataset and Trainer run; only
where the models and frames come from differs. Everything is checked before any training step; the weights are
written to a temporary folder and moved into place only when training finished (an interrupted run leaves no
file); the caller's MODEL and MOTION_MODULE are never changed.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from .augment import CAMERA_MOTIONS, SIGNED_PAIRS

NO_CAMERA = "none"
CAMERA_PRESETS = (NO_CAMERA,) + tuple(CAMERA_MOTIONS) + tuple(SIGNED_PAIRS)
MIN_CLIP_FRAMES = 4  # fewer frames show too little motion to learn from
MIN_SIZE = 64  # pixels: the smallest side the UNet's 8x downsampling and the VAE handle well
SPACE_MARGIN = 16 * 2 ** 20


class TrainingInputError(ValueError):
    """An input that cannot train; the message names the problem and the fix."""


@dataclass
class Request:
    """What to train. frames: uint8 [N, H, W, 3]; camera: a CAMERA_PRESETS name."""

    frames: np.ndarray
    camera: str = NO_CAMERA
    camera_strength: float = 0.5
    clip_frames: int = 16
    rank: int = 64
    steps: int = 300
    learning_rate: float = 5e-4
    batch_size: int = 1
    seed: int = 0


CPU_BF16_ENV = "ADMK_CPU_BF16"  # "0": train in float32 on the CPU even where bf16 units exist; "1": bf16 anyway


def bf16_is_faster() -> bool:
    """bf16 autocast roughly halves CPU training time on CPUs with bf16 units (AVX512-BF16, AMX) and slows it
    elsewhere. Decided from the CPU's flags (a timing would depend on the machine's load); the environment
    variable ADMK_CPU_BF16=0/1 overrides that on the CPU (e.g. to compare, or to get float32 results). On a GPU
    bf16 is used wherever the GPU supports it."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{CPU_BF16_ENV}={forced!r}: use 0 (float32 on the CPU), 1 (bf16) or leave it unset (auto)")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def precision_for(device: torch.device) -> str:
    """optim.mixed_precision for a device: bf16 where it is supported (and faster), fp16 on older GPUs."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and bf16_is_faster() else "no"


# --- checks before training -------------------------------------------------------------------------------------

def frames_from_images(images) -> np.ndarray:
    """ComfyUI IMAGE batches ([N, H, W, C] in 0..1; one tensor or a list of them) -> uint8 [N, H, W, 3].
    Raises TrainingInputError for batches of different sizes."""
    batches = list(images) if isinstance(images, (list, tuple)) else [images]
    batches = [b if b.dim() == 4 else b.unsqueeze(0) for b in batches if b is not None]
    if not batches:
        raise TrainingInputError("Train MotionLoRA got no frames: connect Load Frames (or Load Video / Load Image).")
    sizes = sorted({(int(b.shape[1]), int(b.shape[2])) for b in batches})
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sizes)
        raise TrainingInputError(f"The frames have different sizes ({listed}). Give every frame the same size, "
                                 "e.g. with Load Frames' width/height or an Upscale Image node before Train MotionLoRA.")
    x = torch.cat([b[..., :3].float() for b in batches]).clamp(0, 1)
    return (x.cpu().numpy() * 255).round().astype(np.uint8)


def training_size(frames: np.ndarray) -> int:
    side = min(frames.shape[1], frames.shape[2]) // 8 * 8
    if side < MIN_SIZE:
        raise TrainingInputError(f"The frames are {frames.shape[2]}x{frames.shape[1]}; training needs at least "
                                 f"{MIN_SIZE} px on the short side. Load them larger (Load Frames width/height).")
    return side


def clip_length(request: Request, max_frames: int) -> int:
    """Frames per training clip: clip_frames, capped by the module's position table and by the clip itself."""
    n = request.frames.shape[0]
    length = min(request.clip_frames, max_frames)
    if request.camera == NO_CAMERA:
        if n < MIN_CLIP_FRAMES:
            raise TrainingInputError(
                f"Train MotionLoRA got {n} frame(s); a reference clip needs at least {MIN_CLIP_FRAMES}. Load more "
                "frames of the video, or pick a camera preset to make the motion from a still image.")
        length = min(length, n)
    if length < MIN_CLIP_FRAMES:
        raise TrainingInputError(f"clip_frames={request.clip_frames} is below {MIN_CLIP_FRAMES}; raise it "
                                 "(16 is what AnimateDiff modules were trained on).")
    return length


def check_models(model, motion_module) -> None:
    """An SDXL model with an SD1.5 module (and the like) fails here, with the adapter's own message."""
    from . import motion_core

    motion_core("comfy").match_slots(model, motion_module)


def lora_bytes(motion_module, rank: int) -> int:
    from .lora_layers import motion_attention_projections

    total = 0
    for _, linear, _ in motion_attention_projections(motion_module):
        r = max(1, min(rank, linear.in_features, linear.out_features))
        total += r * (linear.in_features + linear.out_features) * 4
    return total


def check_space(folder: str, needed: int, what: str) -> None:
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN:
        raise TrainingInputError(f"Not enough disk space for {what} in {folder}: {free / 2 ** 20:.0f} MB free, "
                                 f"about {(needed + SPACE_MARGIN) / 2 ** 20:.0f} MB needed. Free some space (or "
                                 "lower rank) and run again.")


def target_path(folder: str, name: str) -> str:
    name = name.strip()
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise TrainingInputError(f"lora_name {name!r} must be a plain file name such as 'my_motion' (it is saved "
                                 "in models/animatediff_motion_lora).")
    if not name.lower().endswith(".safetensors"):
        name += ".safetensors"
    return os.path.join(folder, name)


# --- training ---------------------------------------------------------------------------------------------------

def config_for(request: Request, size: int, frames: int, output_dir: str, device: torch.device):
    """The CLI's motionlora config with this request's values (the CLI defaults for everything else)."""
    from .config import load_config

    overrides = [
        f"data.frames={frames}", "data.stride=1", f"data.size={size}", "data.flip=false",
        "data.empty_prompt_prob=0",  # one conditioning, no text encoder: nothing to drop the caption to
        f"data.camera_motion={'' if request.camera == NO_CAMERA else request.camera}",
        f"data.camera_strength={request.camera_strength}",
        "model.motion_module=<the MOTION_MODULE input>", f"model.motion_lora_rank={request.rank}",
        f"optim.lr={request.learning_rate}", f"optim.max_steps={request.steps}",
        f"optim.batch_size={request.batch_size}", f"optim.seed={request.seed}",
        f"optim.mixed_precision={precision_for(device)}",
        f"run.output_dir={output_dir}", f"run.device={device.type if device.index is None else str(device)}",
        "run.save_every=0", "run.sample_every=0", "run.sample_prompts=[]", "run.resume=", "run.progress=false",
        "run.log_every=1"]
    return load_config(None, overrides, stage="motionlora")


def dataset_for(request: Request, cfg, caption: str):
    from .data import ClipDataset, memory_entries

    stills = request.camera != NO_CAMERA
    return ClipDataset(memory_entries(request.frames, caption, stills), frames=cfg.data.frames,
                       stride=cfg.data.stride, size=cfg.data.size, flip=False, empty_prompt_prob=0.0,
                       camera_motion=cfg.data.camera_motion, camera_strength=cfg.data.camera_strength,
                       seed=cfg.optim.seed)


CONDITIONING_KEY = "<conditioning>"


def text_cache_for(conditioning):
    """A TextCache holding the CONDITIONING (its first entry) as the clip's caption."""
    from .config import ConfigError
    from .train import TextCache

    if not conditioning:
        raise TrainingInputError("Train MotionLoRA needs a conditioning: connect CLIP Text Encode with a caption "
                                 "of the clip (an empty text trains the motion for any prompt).")
    cond, extra = conditioning[0][0], conditioning[0][1] if len(conditioning[0]) > 1 else {}

    def no_encoder(caption):
        raise ConfigError(f"no text encoder here for {caption!r}")

    cache = TextCache(no_encoder)
    # clones: ComfyUI made them under inference_mode, and autograd cannot save such tensors
    cache.cache[CONDITIONING_KEY] = cond[0].float().cpu().clone()
    pooled = extra.get("pooled_output") if isinstance(extra, dict) else None
    if pooled is not None:
        cache.pooled_cache[CONDITIONING_KEY] = pooled[0].float().cpu().clone()
    return cache


@dataclass
class Result:
    path: str
    losses: List[float]
    seconds: float
    size: int
    clip_frames: int


def train_from_frames(model, vae, motion_module, conditioning, request: Request, out_path: str,
                      device: torch.device, on_step: Optional[Callable[[int, float], None]] = None) -> Result:
    """Train, then move the weights to out_path (official MotionLoRA keys). Raises TrainingInputError before
    any work for inputs that cannot train; an exception from on_step (a cancel) leaves no file at out_path."""
    from .train import Trainer, base_from_comfy

    if request.camera not in CAMERA_PRESETS:
        raise TrainingInputError(f"camera {request.camera!r} is unknown; choose one of {', '.join(CAMERA_PRESETS)}")
    if request.steps < 1 or request.rank < 1 or not request.learning_rate > 0:
        raise TrainingInputError("steps and rank must be >= 1 and learning_rate > 0")
    check_models(model, motion_module)
    size = training_size(request.frames)
    frames = clip_length(request, motion_module.info.max_frames)
    size_needed = lora_bytes(motion_module, request.rank)
    check_space(os.path.dirname(out_path) or ".", 2 * size_needed, "the MotionLoRA file")
    work = tempfile.mkdtemp(prefix="admk_train_motionlora_")
    try:
        check_space(work, 5 * size_needed, "the training state")  # weights, optimizer moments, final file
        cfg = config_for(request, size, frames, work, device)
        grad_flags = {name: p.requires_grad for name, p in model.model.named_parameters()}
        trainer = Trainer(cfg, base=base_from_comfy(model, None, vae), text_cache=text_cache_for(conditioning),
                          motion_module=motion_module)
        try:
            result = trainer.train(dataset_for(request, cfg, CONDITIONING_KEY), on_step=on_step)
        finally:
            for name, p in model.model.named_parameters():  # the Trainer froze the shared UNet: put it back
                if p.requires_grad != grad_flags.get(name, p.requires_grad):
                    with torch.inference_mode(p.is_inference()):  # how it was made (ComfyUI: inference mode)
                        p.requires_grad_(grad_flags[name])
            del trainer
        tmp = out_path + ".tmp"
        try:
            shutil.copyfile(result["output"], tmp)
            os.replace(tmp, out_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return Result(out_path, list(result["losses"]), float(result["seconds"]), size, frames)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def loss_plot(losses: Sequence[float], width: int = 512, height: int = 256) -> torch.Tensor:
    """IMAGE [1, H, W, 3] of the loss per step (grey) and its running mean over 10 steps (white)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    pad = 28
    values = np.asarray([v for v in losses if math.isfinite(v)], dtype=np.float64)
    if values.size:
        smooth = np.convolve(values, np.ones(10) / 10, mode="valid") if values.size >= 10 else values
        lo, hi = float(values.min()), float(values.max())
        span = max(hi - lo, 1e-12)

        def xy(i, v, n):
            x = pad + (width - 2 * pad) * (i / max(n - 1, 1))
            return x, height - pad - (height - 2 * pad) * (v - lo) / span

        draw.line([xy(i, v, values.size) for i, v in enumerate(values)], fill=(110, 110, 120), width=1)
        offset = values.size - smooth.size
        draw.line([xy(i + offset, v, values.size) for i, v in enumerate(smooth)], fill=(240, 240, 240), width=2)
        draw.text((pad, 6), f"loss {smooth[0]:.4f} -> {smooth[-1]:.4f} over {values.size} steps", fill=(240, 240, 240))
        draw.text((4, pad - 4), f"{hi:.3f}", fill=(160, 160, 170))
        draw.text((4, height - pad - 6), f"{lo:.3f}", fill=(160, 160, 170))
    else:
        draw.text((pad, height // 2), "no steps", fill=(240, 240, 240))
    draw.rectangle([pad, pad, width - pad, height - pad], outline=(80, 80, 90))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
