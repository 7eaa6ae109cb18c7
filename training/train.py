"""Training CLI: `python -m training.train --stage adapter|motion|motionlora --config file.yaml [section.key=value ...]`

Under `torchrun --nproc_per_node N -m training.train ...` it trains data-parallel (NCCL on GPU, gloo on CPU):
every process draws its share of the same global batch (see training.data), gradients are averaged by
DistributedDataParallel, and only rank 0 writes files. `--cache-latents` encodes the dataset once with the
checkpoint's VAE (point data.cached_latents at the folder to use them).

Outputs in run.output_dir: `<stage>.safetensors` (official key layout), `checkpoints/step_N.safetensors`,
`training_state.pt` (optimizer + step, for resuming), `samples/step_N_*.gif`, `train_log.jsonl`, `config.yaml`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .config import ConfigError, TrainConfig, load_config, save_config
from .optim import adamw, lr_factor
from .stages import BaseModels, Stage, build_stage

STATE_FILE = "training_state.pt"
MEMO_BYTES = 512 * 2 ** 20  # latents of recurring frames (video frames, stills under a camera motion) kept in memory


# --- processes and devices -------------------------------------------------------------------------------------

@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return info


def resolve_device(requested: str, info: DistInfo) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("run.device asks for CUDA but torch sees no GPU; set run.device=cpu")
        index = info.local_rank if info.enabled or requested == "cuda" else int(requested.split(":")[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(f"this process wants GPU {index} but torch sees {torch.cuda.device_count()}: start at "
                              "most one process per GPU (torchrun --nproc_per_node), or set run.device=cpu")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


# --- the frozen base -------------------------------------------------------------------------------------------

def load_base(cfg: TrainConfig, device: torch.device) -> BaseModels:
    """The SD1.5-family checkpoint through ComfyUI's own loader (CLIP and VAE included)."""
    from tools.comfy_host import import_comfy

    import_comfy(cfg.model.comfyui_root, cpu=device.type == "cpu")
    import comfy.sd

    if not cfg.model.checkpoint or not os.path.isfile(cfg.model.checkpoint):
        raise ConfigError(f"model.checkpoint {cfg.model.checkpoint!r} is not a file: point it at an SD1.5 "
                          ".safetensors/.ckpt checkpoint")
    # Weights stay float32: mixed precision is done with autocast, which needs float32 master weights.
    # With precomputed text embeddings the text encoder is not loaded at all.
    patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
        cfg.model.checkpoint, output_vae=True, output_clip=not cfg.model.text_embeddings,
        model_options={"dtype": torch.float32})
    return base_from_comfy(patcher, clip, vae, cfg.schedule.latent_scale, source=cfg.model.checkpoint)


def base_from_comfy(patcher, clip, vae, latent_scale: float = 0.0, source: str = "in-memory") -> BaseModels:
    own = float(getattr(getattr(patcher.model, "latent_format", None), "scale_factor", 0.18215))
    if not latent_scale:
        latent_scale = own
    elif abs(own - latent_scale) > 1e-6:
        print(f"note: the checkpoint's latent scale is {own}, the config says {latent_scale}; using the config",
              file=sys.stderr)

    def encode_text(caption: str) -> torch.Tensor:
        if clip is None:
            raise ConfigError(f"caption {caption!r} has no precomputed embedding in model.text_embeddings (and "
                              "the text encoder is not loaded when that file is given): unset model.text_embeddings "
                              "to encode captions with the checkpoint's CLIP")
        with torch.inference_mode():
            cond, pooled = clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)
        return cond[0].float().cpu().clone(), (pooled[0].float().cpu().clone() if pooled is not None else None)

    # ComfyUI's VAE and CLIP run under inference_mode, as in ComfyUI: they move to the GPU on use, and a model made
    # in inference mode (any model a ComfyUI loader node made) that is moved outside it raises "Inference tensors
    # do not track version counter" at its next use in ComfyUI. The clones are plain tensors for autograd.
    def encode_pixels(pixels: torch.Tensor) -> torch.Tensor:
        # comfy VAE takes [N, H, W, 3] in [0, 1] and returns raw latents; the UNet sees them x latent_scale.
        with torch.inference_mode():
            latents = vae.encode(pixels.permute(0, 2, 3, 1).add(1).div(2).cpu()).float() * latent_scale
        return latents.clone()

    def decode_latents(latents: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            pixels = vae.decode(latents.float().cpu() / latent_scale).float().permute(0, 3, 1, 2).clamp(0, 1)
        return pixels.clone()

    return BaseModels(patcher, encode_text, encode_pixels, decode_latents if vae is not None else None, source)


class TextCache:
    """Caption -> conditioning (and pooled text vector, which SDXL needs), computed once (the text encoder is
    frozen) and optionally stored on disk as safetensors (`c<i>`/`p<i>` tensors, captions in the metadata)."""

    def __init__(self, encode, path: str = ""):
        self.encode = encode  # caption -> cond [tokens, dim] or (cond, pooled or None)
        self.cache: Dict[str, torch.Tensor] = {}
        self.pooled_cache: Dict[str, torch.Tensor] = {}
        if path and os.path.isfile(path):
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(path, "pt") as f:
                names = json.loads(f.metadata().get("captions", "{}"))
            tensors = load_file(path)
            for key, caption in names.items():
                self.cache[caption] = tensors[key]
                if "p" + key[1:] in tensors:
                    self.pooled_cache[caption] = tensors["p" + key[1:]]

    def _fill(self, caption: str) -> None:
        out = self.encode(caption)
        cond, pooled = out if isinstance(out, tuple) else (out, None)
        self.cache[caption] = cond
        if pooled is not None:
            self.pooled_cache[caption] = pooled

    def __call__(self, caption: str) -> torch.Tensor:
        if caption not in self.cache:
            self._fill(caption)
        return self.cache[caption]

    def pooled(self, caption: str) -> Optional[torch.Tensor]:
        self(caption)
        return self.pooled_cache.get(caption)

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        keys = {f"c{i}": c for i, c in enumerate(self.cache)}
        tensors = {k: self.cache[c].contiguous() for k, c in keys.items()}
        tensors.update({"p" + k[1:]: self.pooled_cache[c].contiguous() for k, c in keys.items()
                        if c in self.pooled_cache})
        save_file(tensors, path, metadata={"captions": json.dumps(keys)})


# --- the loss --------------------------------------------------------------------------------------------------

class StepModule(nn.Module):
    """What DistributedDataParallel wraps: it owns the trainable parameters (so DDP averages exactly their
    gradients) and its forward computes the stage's loss through the patched ComfyUI UNet."""

    def __init__(self, trainer: "Trainer"):
        super().__init__()
        self.trainables = trainer.stage.trainables
        self._trainer = [trainer]  # a list, so the Trainer is not registered as a submodule

    def forward(self, batch: dict) -> torch.Tensor:
        return self._trainer[0].loss(batch)


def sample_randomness(seed: int, sample_ids: torch.Tensor, shape, num_timesteps: int, skew: float = 1.0):
    """Per-sample timestep and noise from a generator seeded by (seed, global sample number): the same sample
    gets the same noise whatever the process count (what makes 1- and N-process runs comparable).

    skew 1 draws timesteps uniformly (the paper); skew s > 1 draws t = N (1 - u^s), so P(t > xN) = (1 - x)^(1/s):
    more of the high-noise steps where a clip's layout over time is decided (s = 2: 71 % above N/2 instead of
    50 %), while every timestep keeps some weight."""
    ts, noise = [], []
    for k in sample_ids.tolist():
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(k) * 7919 + 17) % (2 ** 63))
        if skew == 1.0:
            ts.append(int(torch.randint(0, num_timesteps, (1,), generator=g)))
        else:
            u = float(torch.rand((1,), generator=g))
            ts.append(min(num_timesteps - 1, int(num_timesteps * (1.0 - u ** skew))))
        noise.append(torch.randn(shape, generator=g))
    return torch.tensor(ts), torch.stack(noise)


class Trainer:
    def __init__(self, cfg: TrainConfig, base: Optional[BaseModels] = None, text_cache: Optional[TextCache] = None,
                 motion_module: Optional[nn.Module] = None):
        self.cfg = cfg
        self.dist = init_distributed("cuda" if cfg.run.device.startswith("cuda") or (
            cfg.run.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(cfg.run.device, self.dist)
        self.base = base or load_base(cfg, self.device)
        self.text = text_cache or TextCache(self.base.encode_text, cfg.model.text_embeddings)
        self.stage: Stage = build_stage(cfg, self.base, self.device, motion_module)
        self.amp_dtype = self._amp_dtype()
        self.checkpointing = cfg.optim.gradient_checkpointing == "on" or (
            cfg.optim.gradient_checkpointing == "auto" and self.device.type == "cuda")
        self.abar: Optional[torch.Tensor] = None
        self.step = 0
        self.log_rows: List[dict] = []
        self.latent_memo: Dict[str, torch.Tensor] = {}  # frame key -> latent [4, h, w] (see latents_of)
        self.memo_bytes = 0

    def _amp_dtype(self):
        mp = self.cfg.optim.mixed_precision
        if mp == "auto":
            mp = "fp16" if self.device.type == "cuda" else "no"
        if mp == "fp16" and self.device.type != "cuda":
            raise ConfigError("optim.mixed_precision=fp16 needs a GPU; use 'no' (or 'bf16' on CPUs with bf16 "
                              "support) on CPU")
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "no": None}[mp]

    # -- model state ------------------------------------------------------------------------------------------

    def _gradient_checkpointing(self) -> None:
        """Recompute each UNet layer in the backward pass (object patches on the clone: undone on unpatch)."""
        from comfy.ldm.modules.attention import SpatialTransformer
        from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
        import torch.utils.checkpoint

        unet = self.stage.patcher.model.diffusion_model
        for name, module in unet.named_modules():
            if isinstance(module, (ResBlock, SpatialTransformer)):
                original = module.forward

                def checkpointed(*args, _f=original, **kwargs):
                    return torch.utils.checkpoint.checkpoint(_f, *args, use_reentrant=False, **kwargs)

                self.stage.patcher.add_object_patch(f"diffusion_model.{name}.forward", checkpointed)

    def _patch(self) -> None:
        patcher = self.stage.patcher
        patcher.model.requires_grad_(False)
        if self.checkpointing:
            self._gradient_checkpointing()
        self._swap_inference_tensors()  # before the move: ComfyUI's own tensors must never move outside inference mode
        patcher.patch_model(device_to=self.device)
        self.stage.trainables.to(self.device)
        self.stage.trainables.requires_grad_(True)
        self.abar = None

    def _swap_inference_tensors(self) -> None:
        """A model loaded inside ComfyUI's executor (the Train MotionLoRA node) holds inference-mode tensors,
        which autograd cannot save for the backward pass: train on plain copies of those, put back by _unpatch
        (as ComfyUI's own patch_model swaps patched weights in and out). Done before the model moves to the
        training device, so the originals stay where they are, untouched. Models loaded by the CLI have none."""
        import comfy.utils

        model = self.stage.patcher.model
        self._swapped = []
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if tensor.is_inference():
                self._swapped.append((name, tensor))
                put = comfy.utils.set_attr_param if isinstance(tensor, nn.Parameter) else comfy.utils.set_attr
                put(model, name, tensor.clone())

    def _unpatch(self) -> None:
        import comfy.utils

        self.stage.patcher.unpatch_model(device_to=self.stage.patcher.offload_device)
        for name, tensor in reversed(getattr(self, "_swapped", [])):  # the originals, never moved
            comfy.utils.set_attr(self.stage.patcher.model, name, tensor)
        self._swapped = []

    def alphas(self) -> torch.Tensor:
        if self.abar is None:
            from .diffusion import alphas_cumprod_of

            self.abar = alphas_cumprod_of(self.stage.patcher.get_model_object("model_sampling"))
        return self.abar

    # -- one loss evaluation ----------------------------------------------------------------------------------

    def latents_of(self, batch: dict) -> torch.Tensor:
        """[B, F, 4, h, w] model-space latents of a batch (cached, or encoded without gradients).

        Frames with a key (see ClipDataset) are encoded once and memoised up to MEMO_BYTES: the VAE encodes each
        frame on its own, so a memoised latent equals a fresh one. In the demo's motion stage 39 % of the drawn
        video frames recur, and encoding was a quarter of a step."""
        if "latents" in batch:
            return batch["latents"].to(self.device)
        pixels = batch["pixels"]
        b, f = pixels.shape[:2]
        flat = pixels.reshape(b * f, *pixels.shape[2:])
        if not batch.get("frame_keys"):
            with torch.no_grad():
                lat = self.base.encode_pixels(flat)
            return lat.reshape(b, f, *lat.shape[1:]).to(self.device)
        keys = [k for clip in batch["frame_keys"] for k in clip]
        todo: Dict[str, int] = {}  # key -> first position in this batch, for keys not memoised yet
        for i, k in enumerate(keys):
            if k not in self.latent_memo and k not in todo:
                todo[k] = i
        fresh: Dict[str, torch.Tensor] = {}
        if todo:
            with torch.no_grad():
                lat = self.base.encode_pixels(flat[list(todo.values())])
            for k, z in zip(todo, lat):
                fresh[k] = z
                if self.memo_bytes + z.numel() * z.element_size() <= MEMO_BYTES:
                    self.latent_memo[k] = z.clone()  # a clone: a view would keep the whole batch alive
                    self.memo_bytes += z.numel() * z.element_size()
        out = torch.stack([fresh[k] if k in fresh else self.latent_memo[k] for k in keys])
        return out.reshape(b, f, *out.shape[1:]).to(self.device)

    def loss(self, batch: dict) -> torch.Tensor:
        """The batch's denoising loss. A signed camera pair's batch (data.ClipDataset, "lora_sign") is run as
        its +1 clips with the LoRA at +1 and its -1 clips with the LoRA at -1 (augment.SIGNED_PAIRS)."""
        signs = batch.get("lora_sign")
        if signs is None:
            return self._loss(batch)
        from .data import subset

        if not hasattr(self.stage.trainables, "set_scale"):
            raise ConfigError(f"a signed camera pair trains a MotionLoRA, not a {self.stage.name} stage")
        total = 0.0
        try:
            for sign in (1.0, -1.0):
                keep = signs == sign
                if bool(keep.any()):
                    self.stage.trainables.set_scale(sign)
                    total = total + self._loss(subset(batch, keep)) * (int(keep.sum()) / len(signs))
        finally:
            self.stage.trainables.set_scale(1.0)
        return total

    def _loss(self, batch: dict, timestep: Optional[int] = None) -> torch.Tensor:
        """timestep: every clip at this one instead of its drawn timestep (for measuring, e.g. pan_probe)."""
        from .diffusion import min_snr_weights, noisy, predict_eps

        x0 = self.latents_of(batch)
        b, f = x0.shape[:2]
        abar = self.alphas()
        # "noise_id": the two clips of a signed pair share their timestep and noise
        t, eps = sample_randomness(self.cfg.optim.seed, batch.get("noise_id", batch["sample"]), x0.shape[1:],
                                   abar.shape[0], self.cfg.schedule.timestep_skew)
        if timestep is not None:
            t = torch.full_like(t, int(timestep))
        eps = eps.to(self.device)
        # one timestep per clip (all its frames share the noise level), as in the official training
        t_frames = t.repeat_interleave(f).to(self.device)
        xt = noisy(x0.reshape(b * f, *x0.shape[2:]), eps.reshape(b * f, *eps.shape[2:]), abar[t_frames.cpu()])
        ctx = torch.stack([self.text(c) for c in batch["caption"]]).to(self.device)
        ctx = ctx.repeat_interleave(f, dim=0)
        y = self.adm(batch["caption"], x0.shape[-2] * 8, x0.shape[-1] * 8)
        y = y.repeat_interleave(f, dim=0) if y is not None else None
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            pred = predict_eps(self.stage.patcher, xt, t_frames, ctx, clips=b, y=y)
        err = (pred.float() - eps.reshape(b * f, *eps.shape[2:]).float()) ** 2
        gamma = self.cfg.optim.snr_gamma
        if gamma <= 0:
            return err.mean()
        w = min_snr_weights(abar[t], gamma).to(err.device)  # one weight per clip (its frames share t)
        per_clip = err.reshape(b, -1).mean(dim=1)
        return (per_clip * w).mean()

    def adm(self, captions, height_px: int, width_px: int) -> Optional[torch.Tensor]:
        """SDXL's `y` per caption (pooled text + size embeddings); None for models without one (SD1.5)."""
        model = self.stage.patcher.model
        if not getattr(model, "adm_channels", 0):
            return None
        from .diffusion import adm_conditioning

        pooled = [self.text.pooled(c) for c in captions]
        if any(p is None for p in pooled):
            raise ConfigError("this model needs pooled text embeddings (SDXL): use a checkpoint with its text "
                              "encoders, or text embeddings saved with their pooled vectors")
        with torch.no_grad():
            return adm_conditioning(model, torch.stack(pooled), height_px, width_px).to(self.device)

    # -- preview samples --------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, prompt: str, frames: int, seed: int = 0, steps: Optional[int] = None) -> torch.Tensor:
        """[F, 3, H, W] in [0, 1]: a DDIM sample with classifier-free guidance through the training model."""
        from .diffusion import ddim_sample, predict_eps

        size = self.cfg.data.size // 8
        cond = self.text(prompt).to(self.device)
        uncond = self.text("").to(self.device)
        ctx = torch.cat([cond.expand(frames, *cond.shape), uncond.expand(frames, *uncond.shape)])
        y = self.adm([prompt, ""], size * 8, size * 8)
        y = y.repeat_interleave(frames, dim=0) if y is not None else None
        guidance = self.cfg.run.sample_cfg

        def eps_fn(x, t):
            out = predict_eps(self.stage.patcher, torch.cat([x, x]), torch.cat([t, t]), ctx, clips=2, y=y).float()
            c, u = out.chunk(2)
            return u + guidance * (c - u)

        g = torch.Generator().manual_seed(seed)
        z = ddim_sample(eps_fn, (frames, 4, size, size), self.alphas(), steps or self.cfg.run.sample_steps, g,
                        self.device)
        if self.base.decode_latents is None:
            return z[:, :3].sigmoid().cpu()
        return self.base.decode_latents(z)

    def write_samples(self, step: int) -> List[str]:
        frames = self.cfg.run.sample_frames or self.stage.frames
        if self.stage.name == "adapter":
            frames = 1
        out_dir = os.path.join(self.cfg.run.output_dir, "samples")
        os.makedirs(out_dir, exist_ok=True)
        paths = []
        for i, prompt in enumerate(self.cfg.run.sample_prompts):
            video = self.sample(prompt, frames, seed=i)
            path = os.path.join(out_dir, f"step_{step:06d}_{i}.gif")
            save_gif(video, path)
            paths.append(path)
        return paths

    # -- files ------------------------------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        from . import motion_core

        save_state_dict = motion_core("state_dict_io").save_state_dict

        meta = dict(self.stage.metadata)
        meta.update({"admk_stage": self.stage.name, "admk_step": str(self.step), "admk_base": os.path.basename(
            self.base.source)})
        tmp = path + ".tmp"
        save_state_dict(self.stage.official_state_dict(), tmp, metadata=meta)
        os.replace(tmp, path)

    def save_state(self, optimizer, scaler) -> None:
        state = {"step": self.step, "trainables": {k: v.detach().cpu() for k, v in
                                                   self.stage.trainables.state_dict().items()},
                 "optimizer": optimizer.state_dict(), "stage": self.stage.name,
                 "scaler": scaler.state_dict() if scaler is not None else {}}
        path = os.path.join(self.cfg.run.output_dir, STATE_FILE)
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)

    def resume_path(self) -> str:
        r = self.cfg.run.resume
        if r == "auto":
            p = os.path.join(self.cfg.run.output_dir, STATE_FILE)
            return p if os.path.isfile(p) else ""
        if r and not os.path.isfile(r):
            raise ConfigError(f"run.resume={r!r} is not a file (use 'auto', '' or a training_state.pt path)")
        return r

    def load_state(self, path: str, optimizer, scaler) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
        if state.get("stage") != self.stage.name:
            raise ConfigError(f"{path} is a {state.get('stage')} training state, not {self.stage.name}; "
                              "use another run.output_dir or run.resume=''")
        self.stage.trainables.load_state_dict(state["trainables"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])

    def log(self, row: dict) -> None:
        self.log_rows.append(row)
        if self.dist.is_main:
            with open(os.path.join(self.cfg.run.output_dir, "train_log.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    # -- the loop ---------------------------------------------------------------------------------------------

    def train(self, dataset=None, on_step=None) -> dict:
        """Train to cfg.optim.max_steps. on_step(step, loss) runs after every step (the Train MotionLoRA node's
        progress bar and cancel: an exception it raises stops training before the final weights are written)."""
        from .data import build_dataset, build_loader

        cfg = self.cfg
        main = self.dist.is_main
        if main:
            os.makedirs(cfg.run.output_dir, exist_ok=True)
            save_config(cfg, os.path.join(cfg.run.output_dir, "config.yaml"))
        dataset = dataset or build_dataset(cfg.data, cfg.optim.seed, frames=self.stage.frames)
        # Every caption is encoded up front: the text encoder is frozen and the set of captions is known.
        # "" and the sample prompts only when used (the Train MotionLoRA node has conditioning, no text encoder).
        samples = set(cfg.run.sample_prompts) | {""} if cfg.run.sample_every else set()
        empty = {""} if cfg.data.empty_prompt_prob > 0 else set()
        for caption in sorted({e.caption for e in dataset.entries} | empty | samples):
            self.text(caption)

        params = [p for p in self.stage.trainables.parameters()]
        optimizer = adamw(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=tuple(cfg.optim.betas),
                          eps=cfg.optim.eps)
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        resume = self.resume_path()
        if resume:
            self.load_state(resume, optimizer, scaler)
        start = self.step
        self._patch()
        module = StepModule(self)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            module = DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        loader = build_loader(dataset, cfg.optim.batch_size, self.dist.rank, self.dist.world_size, start,
                              cfg.optim.max_steps, cfg.data.num_workers)
        bar = None
        if main and cfg.run.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.optim.max_steps, initial=start, desc=f"{self.stage.name}", unit="it",
                       dynamic_ncols=True)
        losses: List[float] = []
        t0 = time.time()
        try:
            for batch in loader:
                loss = module(batch)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                grad_norm = None
                if cfg.optim.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
                lr = cfg.optim.lr * lr_factor(self.step, cfg.optim.max_steps, cfg.optim.lr_schedule,
                                              cfg.optim.warmup_steps, cfg.optim.lr_final)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                self.step += 1
                value = loss.detach()
                if self.dist.enabled:  # the logged loss is the global batch's
                    dist.all_reduce(value)
                    value = value / self.dist.world_size
                losses.append(float(value))
                if bar is not None:
                    bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
                    bar.update(1)
                if on_step is not None:
                    on_step(self.step, losses[-1])
                if self.step % max(1, cfg.run.log_every) == 0 or self.step == cfg.optim.max_steps:
                    self.log({"step": self.step, "loss": float(np.mean(losses[-cfg.run.log_every:])),
                              "grad_norm": grad_norm, "lr": lr, "seconds": round(time.time() - t0, 2)})
                if main and cfg.run.sample_every and self.step % cfg.run.sample_every == 0:
                    self.write_samples(self.step)
                if cfg.run.save_every and self.step % cfg.run.save_every == 0 and self.step < cfg.optim.max_steps:
                    if main:
                        ckpt_dir = os.path.join(cfg.run.output_dir, "checkpoints")
                        os.makedirs(ckpt_dir, exist_ok=True)
                        self.save_weights(os.path.join(ckpt_dir, f"step_{self.step:06d}.safetensors"))
                        self.save_state(optimizer, scaler)
                    if self.dist.enabled:
                        dist.barrier()
        finally:
            if bar is not None:
                bar.close()
            self._unpatch()
        final = os.path.join(cfg.run.output_dir, cfg.run.output_name or f"{self.stage.name}.safetensors")
        if losses:  # how this run went, kept in the file (the Train MotionLoRA node's caller reads it back)
            self.stage.metadata.update({"admk_loss_first10": f"{np.mean(losses[:10]):.6f}",
                                        "admk_loss_last10": f"{np.mean(losses[-10:]):.6f}",
                                        "admk_train_seconds": f"{time.time() - t0:.1f}"})
        if main:
            self.save_weights(final)
            self.save_state(optimizer, scaler)
            self.text.save(os.path.join(cfg.run.output_dir, "text_embeddings.safetensors"))
        if self.dist.enabled:
            dist.barrier()
        return {"output": final, "steps": self.step, "start_step": start, "losses": losses,
                "seconds": time.time() - t0, "rank": self.dist.rank}


def save_gif(video: torch.Tensor, path: str, fps: int = 8) -> None:
    """[F, 3, H, W] in [0, 1] -> looping GIF."""
    from . import motion_core  # the pack's copy inside ComfyUI (no top-level motion_core there)

    motion_core("gif").write_gif(path, (video.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8), fps)


# --- CLI -------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["adapter", "motion", "motionlora"], help="what to train (overrides the file)")
    p.add_argument("--config", help="YAML config (see training/configs/); defaults are the paper's")
    p.add_argument("--cache-latents", action="store_true",
                   help="encode every video with the checkpoint's VAE into data.cached_latents and exit")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=3e-4 data.frames=8")
    return p


def cache_latents_cli(cfg: TrainConfig) -> None:
    from .data import cache_latents, scan_entries

    if not cfg.data.cached_latents:
        raise ConfigError("--cache-latents needs data.cached_latents=<folder> to write into")
    device = resolve_device(cfg.run.device, DistInfo())
    base = load_base(cfg, device)
    entries = [e for e in scan_entries(cfg.data.root, cfg.data.captions) if e.num_frames > 1]
    paths = cache_latents(entries, cfg.data.size, base.encode_pixels, cfg.data.cached_latents)
    print(f"cached latents of {len(paths)} videos in {cfg.data.cached_latents}")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, stage=args.stage)
        if args.cache_latents:
            cache_latents_cli(cfg)
            return 0
        result = Trainer(cfg).train()
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result["rank"] == 0:
        print(f"{cfg.stage}: {result['steps']} steps, final loss {np.mean(result['losses'][-10:]) if result['losses'] else float('nan'):.4f}, "
              f"wrote {result['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
