"""A small text-to-image base model that ComfyUI loads as SD1.5, trained from scratch on CPU for the demo.

ComfyUI recognises an SD1.5 UNet by `model_channels == 320`, `context_dim == 768`, a conv proj_in, no adm and
no temporal layers; channel multipliers, res blocks per level and transformer depths are read from the
weights, so a one-level UNet is still "SD1.5" to it (and to the pack's motion-module placement). The
checkpoint carries:
- the UNet, trained here on single frames with SD's own (scaled-linear) schedule, epsilon prediction;
- a TAESD-layout VAE (`taesd_encoder.*` / `taesd_decoder.*`, what ComfyUI accepts besides the 83 M SD VAE):
  initialised analytically (8x8 colour averages in, upsampled colours out, so it reconstructs from step 0),
  then its decoder fine-tuned on the frames; `vae_scale`/`vae_shift` are set so model-space latents
  (x0.18215) have zero mean and unit scale;
- a full CLIP-L text model with seeded random weights (ComfyUI always builds CLIP-L for SD1.5): the demo's
  prompts come from a fixed set, so any fixed injective text embedding works, and their embeddings are cached.
Everything is built with ComfyUI's own classes and saved with `comfy.sd.save_checkpoint`, then loaded back
with `comfy.sd.load_checkpoint_guess_config` like any user checkpoint.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

SD15_LATENT_SCALE = 0.18215


def reduced_sd15_unet_config(channel_mult: Sequence[int] = (1,), num_res_blocks: int = 1,
                             transformer_depth: int = 1, middle: str = "none") -> dict:
    """A UNet config ComfyUI detects as SD1.5. middle: "full" (resnet, attention, resnet), "resnets" or "none"."""
    n = len(channel_mult)
    td_in = []
    for _ in range(n):
        td_in += [transformer_depth] * num_res_blocks
    td_out = []
    for _ in range(n):
        td_out += [transformer_depth] * (num_res_blocks + 1)
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [num_res_blocks] * n, "transformer_depth": td_in, "transformer_depth_output": td_out,
        "channel_mult": list(channel_mult),
        "transformer_depth_middle": {"full": transformer_depth, "resnets": -1, "none": -2}[middle],
        "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    }


# --- seeded initialisation (ComfyUI's ops leave weights uninitialised) ----------------------------------------

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def init_unet_(unet: nn.Module, seed: int) -> None:
    """PyTorch's default Linear/Conv init, unit norms, and LDM's zero-initialised output layers
    (ResBlock out conv, SpatialTransformer proj_out, the final conv) so every residual branch starts closed."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    g = _gen(seed)
    with torch.no_grad():
        for m in unet.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d, nn.Conv3d)):
                w = torch.empty(m.weight.shape, dtype=torch.float32)
                nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                m.weight.copy_(w)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
                    m.bias.copy_(torch.empty(m.bias.shape).uniform_(-bound, bound, generator=g))
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
        zero = [m.out_layers[-1] for m in unet.modules() if isinstance(m, ResBlock)]
        zero += [m.proj_out for m in unet.modules() if isinstance(m, SpatialTransformer)]
        zero.append(unet.out[-1])
        for m in zero:
            m.weight.zero_()
            if m.bias is not None:
                m.bias.zero_()


def init_clip_(clip_module: nn.Module, seed: int) -> None:
    """Seeded CLIP-L. A random text model only has to map the demo's prompts to distinct, stable vectors, but
    *where* the differences sit matters: SD's UNet reads much of a prompt from the end-of-text/padding
    positions, which (causal attention) see the whole prompt. Small token embeddings (std 0.1) and mixing
    weights of std 0.05 make those positions differ between "... moving left" and "... moving right" by ~27 %
    (std 1 / 0.02 gave ~5 %: the direction words then hardly reached the UNet)."""
    g = _gen(seed)
    with torch.no_grad():
        for name, m in clip_module.named_modules():
            if isinstance(m, nn.Embedding):
                std = 0.1 if "token_embedding" in name else 0.01
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        for name, p in clip_module.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(math.log(100.0))


def init_taesd_analytic_(taesd: nn.Module, seed: int = 0, noise: float = 0.1) -> None:
    """Encoder: RGB -> 8x8 averages (channels 0-2 = 2*rgb-1, channel 3 = 2*grey-1); decoder: upsample them back.
    The other 61 feature channels get small seeded weights that never feed the colour channels, so the
    analytic reconstruction is exact and fine-tuning can still recruit them (exact zeros would never move)."""
    from comfy.taesd.taesd import Block

    g = _gen(seed)
    enc, dec = taesd.taesd_encoder, taesd.taesd_decoder
    with torch.no_grad():
        for m in taesd.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (noise / math.sqrt(fan)))
                if m.bias is not None:
                    m.bias.zero_()
        for m in taesd.modules():
            if isinstance(m, nn.Conv2d):
                m.weight[:3] = 0.0  # colour channels 0-2 get only the analytic taps set below
                if m.bias is not None:
                    m.bias[:3] = 0.0
            if isinstance(m, Block):
                m.conv[4].weight.mul_(0.1)  # residual branches start nearly closed

        def diag(conv, value, taps):
            for c in range(3):
                for (a, b), v in zip(taps, value if isinstance(value, (list, tuple)) else [value] * len(taps)):
                    conv.weight[c, c, a, b] = v

        diag(enc[0], 1.0, [(1, 1)])
        for i in (2, 6, 10):  # stride-2 convs: average the 2x2 cell (taps at offsets 0 and +1)
            diag(enc[i], 0.25, [(1, 1), (1, 2), (2, 1), (2, 2)])
        for c in range(3):
            enc[14].weight[c, c, 1, 1] = 2.0
            enc[14].bias[c] = -1.0
        # Channel 3 = 2*grey-1 of the same averages. Left to the small random taps it was a constant (model-space
        # std 0.006 at 1.46 while the others were centred): the UNet never saw it vary, so a noise draw whose
        # channel-3 mean strayed (seed 0's frame 1) left it off its constant and that frame decoded as coloured
        # noise (issue 17). SD's VAE has no dead channel either.
        enc[14].weight[3].zero_()
        enc[14].weight[3, :3, 1, 1] = 2.0 / 3.0
        enc[14].bias[3] = -1.0
        for c in range(3):
            dec[1].weight[c, c, 1, 1] = 0.5
            dec[1].bias[c] = 0.5
        for i in (7, 12, 17):  # after each nearest x2 upsample: pass the colours through
            diag(dec[i], 1.0, [(1, 1)])
        for c in range(3):
            dec[19].weight[c, c, 1, 1] = 1.0
        # encode(): enc(x) / vae_scale + shift; ComfyUI multiplies raw latents by 0.18215 for the UNet, so
        # vae_scale = 0.18215 makes the model-space latent exactly the encoder output.
        taesd.vae_scale.fill_(SD15_LATENT_SCALE)
        taesd.vae_shift.zero_()


def encoder_outputs(taesd: nn.Module, frames01: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The TAESD encoder's outputs for [N, 3, H, W] frames in [0, 1], computed in channels-last layout (a copy of
    the encoder; the model keeps its own layout): its full-resolution convolutions run ~30 % faster that way on
    CPUs. Values equal the default layout's to float rounding."""
    import copy

    encoder = copy.deepcopy(taesd.taesd_encoder).to(memory_format=torch.channels_last)
    with torch.no_grad():
        return torch.cat([encoder(frames01[i:i + chunk].contiguous(memory_format=torch.channels_last)).contiguous()
                          for i in range(0, frames01.shape[0], chunk)])


def calibrate_latents_(taesd: nn.Module, encoded: torch.Tensor) -> Dict[str, float]:
    """Set vae_scale/vae_shift so model-space latents (raw x 0.18215) of these encoder outputs have mean 0 and
    std 1, as SD's VAE latents roughly do; the decoder still sees the encoder's own output ((raw - shift) *
    scale), so reconstructions do not change. Returns the statistics; the latents are (encoded - mean) / std."""
    mean, std = float(encoded.mean()), float(encoded.std())
    with torch.no_grad():
        taesd.vae_scale.fill_(SD15_LATENT_SCALE * std)
        taesd.vae_shift.fill_(-mean / (std * SD15_LATENT_SCALE))
    return {"encoder_mean": mean, "encoder_std": std}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def finetune_taesd_decoder(taesd: nn.Module, frames01: torch.Tensor, encoded: torch.Tensor, steps: int,
                           batch: int = 4, lr: float = 5e-4, seed: int = 0,
                           log: Optional[Callable[[str], None]] = None) -> Dict[str, float]:
    """Fine-tune the decoder alone on (encoder output, frame) pairs, L1 + MSE in [0, 1]. The encoder stays as
    initialised, so `encoded` (its outputs for `frames01`) is computed once and also gives the UNet's latents,
    and no step pays for the encoder's full-resolution layers. Returns PSNR before/after on up to 32 random
    frames held out of the fine-tuning; if the fine-tuned decoder is worse there, the analytic one is kept."""
    g = _gen(seed)
    order = torch.randperm(frames01.shape[0], generator=g)
    n_val = min(32, max(1, frames01.shape[0] // 8))
    val, train = order[:n_val], order[n_val:]
    decoder = taesd.taesd_decoder
    with torch.no_grad():
        before = psnr(decoder(encoded[val]), frames01[val])
    start = {k: v.clone() for k, v in decoder.state_dict().items()}
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    decoder.train()
    for step in range(steps):
        idx = train[torch.randint(0, train.shape[0], (batch,), generator=g)]
        rec, x = decoder(encoded[idx]), frames01[idx]
        loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step % 20 == 0 or step == steps - 1):
            log(f"vae decoder step {step + 1}/{steps} loss {float(loss.detach()):.4f}")
    decoder.eval()
    taesd.requires_grad_(False)
    with torch.no_grad():
        after = psnr(decoder(encoded[val]), frames01[val])
    kept = after >= before
    if not kept:  # a short fine-tune can still be in its unsettled phase: keep the better decoder
        decoder.load_state_dict(start)
        after = before
    return {"psnr_before": before, "psnr_after": after, "steps": steps, "held_out_frames": n_val,
            "finetune_kept": kept}


# --- building and saving --------------------------------------------------------------------------------------

@dataclass
class BaseBuild:
    patcher: object          # comfy ModelPatcher around the SD15 BaseModel
    clip: object             # comfy.sd.CLIP
    vae: object              # comfy.sd.VAE (TAESD)
    taesd: nn.Module         # the TAESD module inside vae
    stats: dict = field(default_factory=dict)


def build_base(unet_config: dict, seed: int = 0, with_clip: bool = True) -> BaseBuild:
    """Untrained SD15 model + seeded CLIP-L + analytic TAESD, all ComfyUI objects (ComfyUI must be imported).
    with_clip=False leaves the text encoder out (tests feed precomputed embeddings instead)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models
    from comfy.taesd.taesd import TAESD

    model_config = comfy.supported_models.SD15(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    init_unet_(model.diffusion_model, seed)
    device = comfy.model_management.get_torch_device()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device,
                                               offload_device=comfy.model_management.unet_offload_device())
    clip = None
    if with_clip:
        clip = comfy.sd.CLIP(model_config.clip_target(), parameters=123_000_000)
        init_clip_(clip.cond_stage_model, seed + 1)
    taesd = TAESD()
    init_taesd_analytic_(taesd, seed + 2)
    # float32: the latents are calibrated and the decoder fine-tuned on this object; ComfyUI would pick bf16 on a GPU
    vae = comfy.sd.VAE(sd=taesd.state_dict(), dtype=torch.float32)
    return BaseBuild(patcher, clip, vae, vae.first_stage_model)


def refresh_vae(build: BaseBuild) -> None:
    """Rebuild the comfy VAE object after `build.taesd` was trained (so its memory estimates and dtype are fresh)."""
    import comfy.sd

    build.vae = comfy.sd.VAE(sd={k: v.detach().clone() for k, v in build.taesd.state_dict().items()},
                             dtype=torch.float32)
    build.taesd = build.vae.first_stage_model


def encode_prompts(clip, prompts: Sequence[str]) -> Dict[str, torch.Tensor]:
    """caption -> [77, 768] float32 conditioning exactly as CLIPTextEncode computes it."""
    out = {}
    with torch.no_grad():
        for p in dict.fromkeys(prompts):
            cond = clip.encode_from_tokens(clip.tokenize(p))
            out[p] = cond[0].float().cpu()
    return out


def save_checkpoint(build: BaseBuild, path: str) -> None:
    import comfy.sd

    comfy.sd.save_checkpoint(path, build.patcher, build.clip, build.vae,
                             metadata={"modelspec.title": "admk demo base (SD1.5 layout, trained on shapes)"})


# --- image diffusion training of the UNet ---------------------------------------------------------------------

def train_unet_on_frames(patcher, latents: torch.Tensor, captions: Sequence[str], embeddings: Dict[str, torch.Tensor],
                         steps: int, batch: int = 16, lr: float = 5e-4, empty_prompt_prob: float = 0.1,
                         seed: int = 0, log: Optional[Callable[[str], None]] = None,
                         time_budget_s: Optional[float] = None, extra_alphas: Sequence[torch.Tensor] = (),
                         amp_dtype: Optional[torch.dtype] = None, snr_gamma: float = 0.0,
                         lr_schedule: str = "constant", lr_final: float = 0.1, offset_noise: float = 0.0,
                         device: Optional[torch.device] = None) -> Dict[str, float]:
    """Epsilon-prediction MSE on single frames with the model's own schedule (SD's scaled-linear for SD1.5).

    latents: [N, 4, h, w] model-space latents; captions[i] belongs to latents[i]. `extra_alphas`: further
    alphas_cumprod tables drawn per sample with the model's own (a toy base trained on SD's schedule alone is
    brittle when AnimateDiff samples it with the linear-beta schedule; real SD1.5 copes by itself).
    amp_dtype: autocast dtype (bf16 roughly halves CPU time on CPUs with bf16 units), None for float32.
    snr_gamma > 0: Min-SNR-gamma weights min(SNR, gamma) / SNR per sample (Hang et al. 2023, who report several
    times faster convergence of image diffusion training with gamma 5); 0 weights every sample equally.
    offset_noise > 0: each sample's noise gets a per-channel constant drawn with that std added ("offset noise",
    Lin 2023): the model then learns to remove a noise draw's mean too. Tried against issue 17's noisy frame 1
    (at the demo's 8x8 latents one channel's mean of plain noise has std 1/8); it did not cure it
    (training/README.md), so the demo trains with 0.
    lr_schedule: after a warm-up over the first 5 % of steps, "constant" or "cosine" (decays to lr x lr_final).
    device: where the UNet trains (e.g. ComfyUI's torch device, a GPU where there is one); None = where it is.
    The random draws stay on the CPU generator, so a run is the same sequence on any device; the UNet goes back
    to where it was afterwards.
    """
    import contextlib

    from .diffusion import min_snr_weights
    from .optim import adamw, lr_factor

    model = patcher.model
    unet = model.diffusion_model
    sampling = model.model_sampling
    tables = [(1.0 / (1.0 + sampling.sigmas.float() ** 2))] + [a.float() for a in extra_alphas]
    alphas = torch.stack(tables)  # [schedules, T] alphas_cumprod (ComfyUI stores sigma = sqrt((1-a)/a))
    g = _gen(seed)
    home = next(unet.parameters()).device
    device = torch.device(device) if device is not None else home
    unet.to(device)  # before the optimizer: fused AdamW keeps its state next to the parameters
    unet.train()
    unet.requires_grad_(True)
    opt = adamw(unet.parameters(), lr=lr, weight_decay=1e-2)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, lr_schedule, warmup, lr_final))
    empty = embeddings[""]
    losses: List[float] = []
    t0 = time.time()
    done = 0
    for step in range(steps):
        idx = torch.randint(0, latents.shape[0], (batch,), generator=g)
        x0 = latents[idx].to(device)
        ctx = torch.stack([empty if float(torch.rand((), generator=g)) < empty_prompt_prob else embeddings[captions[i]]
                           for i in idx.tolist()]).to(device)
        t = torch.randint(0, alphas.shape[1], (batch,), generator=g)
        which = torch.randint(0, alphas.shape[0], (batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        if offset_noise > 0:
            eps = eps + offset_noise * torch.randn(x0.shape[0], x0.shape[1], 1, 1, generator=g)
        eps = eps.to(device)
        a = alphas[which, t].view(-1, 1, 1, 1).to(device)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        autocast = torch.autocast("cpu" if xt.device.type == "cpu" else "cuda", dtype=amp_dtype) \
            if amp_dtype is not None else contextlib.nullcontext()
        with autocast:
            pred = unet(xt, t.float().to(device), context=ctx, transformer_options={})
        if snr_gamma > 0:
            per_sample = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3))
            loss = (per_sample * min_snr_weights(a.view(-1), snr_gamma)).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if log and (step % 25 == 0 or step == steps - 1):
            log(f"base unet step {done}/{steps} loss {np.mean(losses[-25:]):.4f} ({time.time() - t0:.0f}s)")
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            if log:
                log(f"base unet: time budget reached after {done} steps")
            break
    unet.eval()
    unet.requires_grad_(False)
    unet.to(home)
    return {"steps": done, "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-25:])),
            "seconds": time.time() - t0}
