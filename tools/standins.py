"""Seeded stand-in model files: SD1.5-family checkpoints, ControlNets and AnimateDiff motion files.

Nothing is downloaded. Key names and shapes come from ComfyUI's own model classes (instantiated on the meta
device, so no memory is spent) or from the key->shape manifests of the official files in tests/data/formats.
Every tensor is filled from a generator seeded by (seed, key name), so a file is the same whatever order it is
built in, and the scales keep activations finite (see `_init_tensor`).

Python use:
    from tools import standins
    ckpt = standins.cached_sd15_checkpoint("reduced")          # path under tests/.cache/standins/, built once
    mm = standins.cached_motion_file("mm_sd_v15_v2", layout="reduced")
CLI:
    python -m tools.standins --out DIR [--what sd15-reduced mm_sd_v15_v2 ...] [--seed N]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from motion_core.temporal import sinusoidal_table

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMATS_DIR = REPO_ROOT / "tests" / "data" / "formats"
CACHE_DIR = Path(os.environ.get("ADMK_STANDIN_CACHE", REPO_ROOT / "tests" / ".cache" / "standins"))

# Bump when any builder's output changes, so stale cached files are not reused.
BUILDER_VERSION = 1

# UNet layouts. "full" is the exact SD1.5 UNet (official motion modules fit it); "reduced" keeps SD1.5's
# detection-relevant facts (320 model channels, 768 context, conv proj_in) with two levels and one res block.
LAYOUTS: dict[str, dict] = {
    "full": {"channel_mult": (1, 2, 4, 4), "num_res_blocks": 2, "attention_levels": (0, 1, 2)},
    "reduced": {"channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (0, 1)},
}
MODEL_CHANNELS = 320
CONTEXT_DIM = 768

_TAESD_DECODER_OUT = "first_stage_model.taesd_decoder.19"  # its final conv(64, 3)
_NORM_TYPES = (torch.nn.GroupNorm, torch.nn.LayerNorm)


# ----------------------------------------------------------------------------------------------------------
# seeded filling


def _key_seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _randn(shape, seed: int, key: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(_key_seed(seed, key))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


# AnimateDiff's position table [1, L, C] (pe[p, 2i] = sin(p * w_i), pe[p, 2i+1] = cos(p * w_i),
# w_i = exp(-2i * ln(10000) / C)): the one motion_core builds its modules with.
sinusoidal_pe = sinusoidal_table


# ----------------------------------------------------------------------------------------------------------
# writing and caching


def _save(state_dict: Mapping[str, torch.Tensor] | dict, path: Path) -> None:
    """safetensors for .safetensors/.sft, else torch.save of a plain dict (what the official .ckpt files are).
    Written to a temporary name and renamed, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix in (".safetensors", ".sft"):
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp))
        else:
            torch.save(dict(state_dict), str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _params_hash(kind: str, params: dict) -> str:
    blob = json.dumps({"kind": kind, "v": BUILDER_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Several test processes (and agents) share the cache: only one builds a given file, the others wait.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(name: str, ext: str, kind: str, params: dict, build: Callable[[Path], None]) -> Path:
    path = CACHE_DIR / f"{name}-{_params_hash(kind, params)}{ext}"
    if path.is_file():
        return path
    with _file_lock(path):
        if not path.is_file():
            build(path)
    return path


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # Filling is memory-bound; on a busy machine torch's intra-op thread hand-offs made it ~7x slower
    # (measured: 19 M values, 2.5 s with 2 threads vs 0.35 s with 1, load average 6.6 on 2 cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# ----------------------------------------------------------------------------------------------------------
# SD1.5-family checkpoints and ControlNets (key names from ComfyUI's own classes)


def unet_config(layout: str = "full") -> dict:
    """ComfyUI UNetModel kwargs for an SD1.5-family UNet in the given layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; use one of {sorted(LAYOUTS)}.")
    spec = LAYOUTS[layout]
    levels = len(spec["channel_mult"])
    nrb = spec["num_res_blocks"]
    attn = [1 if lvl in spec["attention_levels"] else 0 for lvl in range(levels)]
    return {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
        "model_channels": MODEL_CHANNELS, "num_res_blocks": [nrb] * levels,
        "channel_mult": list(spec["channel_mult"]),
        "transformer_depth": [d for d in attn for _ in range(nrb)],
        "transformer_depth_output": [d for d in attn for _ in range(nrb + 1)],
        "transformer_depth_middle": 1, "use_spatial_transformer": True, "legacy": False,
        "context_dim": CONTEXT_DIM, "num_heads": 8, "num_head_channels": -1,
        "use_linear_in_transformer": False, "adm_in_channels": None,
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }


def _meta_modules(kind: str, layout: str) -> dict[str, torch.nn.Module]:
    """prefix -> module instantiated on the meta device (shapes only)."""
    from .comfy_host import import_comfy

    import_comfy()
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    if kind == "checkpoint":
        import comfy.clip_model
        import comfy.taesd.taesd
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

        with open(Path(comfy.clip_model.__file__).with_name("sd1_clip_config.json")) as fh:
            clip_config = json.load(fh)
        unet = UNetModel(**unet_config(layout), dtype=torch.float32, device="meta", operations=ops)
        clip = comfy.clip_model.CLIPTextModel(clip_config, torch.float32, "meta", ops).text_model
        with torch.device("meta"):
            taesd = comfy.taesd.taesd.TAESD()
        return {
            "model.diffusion_model.": unet,
            # Real SD1.5 files hold the HF CLIPTextModel without text_projection; ComfyUI expects that (it logs
            # the missing projection at debug level only), so the stand-in leaves it out too.
            "cond_stage_model.transformer.text_model.": clip,
            "first_stage_model.": taesd,
        }
    if kind == "controlnet":
        import comfy.cldm.cldm

        cfg = unet_config(layout)
        cfg.pop("out_channels")
        net = comfy.cldm.cldm.ControlNet(hint_channels=3, **cfg, dtype=torch.float32, device="meta", operations=ops)
        return {"control_model.": net}
    raise ValueError(kind)


# Layers whose official init is zero (residual-branch outputs). Random but smaller here, so signals stay
# finite through dozens of residual additions and every layer still influences the output.
_RESIDUAL_OUT = re.compile(
    r"(out_layers\.3|\.proj_out|attn[12]\.to_out\.0|ff\.net\.2|self_attn\.out_proj|mlp\.fc2|zero_convs\.\d+\.0"
    r"|middle_block_out\.0|input_hint_block\.14)$"
)


def _init_tensor(key: str, module: torch.nn.Module, pname: str, shape, seed: int) -> torch.Tensor:
    """Deterministic values for one parameter of a real layer, scaled like a sane initialisation."""
    noise = _randn(shape, seed, key)
    mod_name = key.rsplit(".", 1)[0]
    if isinstance(module, _NORM_TYPES):
        return (1.0 + 0.02 * noise) if pname == "weight" else 0.02 * noise
    if isinstance(module, torch.nn.Embedding):
        return 0.02 * noise
    if pname == "bias":
        return 0.02 * noise
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    gain = 1.0
    if _RESIDUAL_OUT.search(mod_name):
        gain = 0.3
    if mod_name.endswith("diffusion_model.out.2"):
        gain = 1.0
    if "taesd" in key:
        gain = math.sqrt(2.0) * 0.7  # ReLU network: He-style gain, damped since blocks sum three paths
        if mod_name == _TAESD_DECODER_OUT:
            gain = 3.0  # image std ~0.2 around grey
    return noise * (gain / math.sqrt(fan_in))


def _fill_modules(prefixed: dict[str, torch.nn.Module], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    with _one_thread():
        return _fill_modules_now(prefixed, seed, dtype)


def _fill_modules_now(prefixed: dict[str, torch.nn.Module], seed: int, dtype: torch.dtype
                      ) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for prefix, root in prefixed.items():
        for mname, module in root.named_modules():
            for pname, param in module.named_parameters(recurse=False):
                key = f"{prefix}{mname + '.' if mname else ''}{pname}"
                if pname == "vae_scale":
                    value = torch.tensor(0.18215)  # what ComfyUI's VAELoader sets for SD1 TAESD
                elif pname == "vae_shift":
                    value = torch.tensor(0.0)
                else:
                    value = _init_tensor(key, module, pname, param.shape, seed)
                out[key] = value.to(dtype)
    # TAESD's image output: grey-centred with visible variation, instead of saturating at 0 or 1.
    if f"{_TAESD_DECODER_OUT}.bias" in out:
        out[f"{_TAESD_DECODER_OUT}.bias"] = torch.full((3,), 0.5).to(dtype)
    return out


def sd15_checkpoint_state_dict(layout: str = "full", seed: int = 0, dtype: torch.dtype = torch.float16
                               ) -> dict[str, torch.Tensor]:
    return _fill_modules(_meta_modules("checkpoint", layout), seed, dtype)


def build_sd15_checkpoint(path, layout: str = "full", seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    """Single-file SD1.5-family checkpoint (original LDM key names, full CLIP-L, TAESD VAE) that
    CheckpointLoaderSimple detects as SD15. `layout`: "full" (exact SD1.5 UNet) or "reduced"."""
    _save(sd15_checkpoint_state_dict(layout, seed, dtype), Path(path))
    return Path(path)


def controlnet_state_dict(layout: str = "full", seed: int = 0, dtype: torch.dtype = torch.float16
                          ) -> dict[str, torch.Tensor]:
    return _fill_modules(_meta_modules("controlnet", layout), seed, dtype)


def build_controlnet(path, seed: int = 0, layout: str = "full", dtype: torch.dtype = torch.float16) -> Path:
    """SD1.5 ControlNet in the original `control_model.*` layout (input_hint_block, zero_convs,
    middle_block_out) that core ControlNetLoader loads. Its zero convs are small but non-zero, so the
    control visibly changes the UNet output. `layout` must match the checkpoint it is used with."""
    _save(controlnet_state_dict(layout, seed, dtype), Path(path))
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# motion files from the official manifests


def load_manifest(name: str) -> dict:
    """The key->shape manifest tests/data/formats/<name>.json ({"_meta": ..., "keys": {key: shape}})."""
    path = FORMATS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in FORMATS_DIR.glob("*.json") if not p.stem.startswith("_"))
        raise FileNotFoundError(f"No manifest {path}. Known manifests: {', '.join(known)}")
    with open(path) as fh:
        data = json.load(fh)
    if "keys" not in data:
        raise ValueError(f"{path} has no 'keys' table (it is a summary, not a file manifest).")
    return data


_LOCATION = re.compile(r"^(?:(down_blocks|up_blocks)\.(\d+)|(mid_block))\.(motion_modules|attentions)\.(\d+)\.(.+)$")


def _reduced_keys(manifest: dict) -> dict[str, list[int]]:
    """Re-lay an SD1.5 motion/LoRA/adapter manifest onto the "reduced" UNet (levels 320, 640; one res block).

    Every module repeats one pattern with its channel count C, so the pattern is read from the 320-channel
    module at down_blocks.0.<kind>.0 and every dimension that is a multiple of 320 is scaled to C
    (PE length, LoRA rank and the 768 text width are not multiples of 320 and stay)."""
    keys = manifest["keys"]
    templates: dict[str, dict[str, list[int]]] = {}
    has_mid: dict[str, bool] = {}
    for key, shape in keys.items():
        m = _LOCATION.match(key)
        if m is None:
            raise ValueError(f"Key {key!r} is outside down/mid/up blocks; this manifest has no reduced layout.")
        block, idx, mid, kind, j, rest = m.groups()
        if mid:
            has_mid[kind] = True
        elif block == "down_blocks" and idx == "0" and j == "0":
            templates.setdefault(kind, {})[rest] = shape
    spec = LAYOUTS["reduced"]
    chans = [MODEL_CHANNELS * c for c in spec["channel_mult"]]
    nrb = spec["num_res_blocks"]
    levels = len(chans)

    def scaled(shape: list[int], c: int) -> list[int]:
        return [d * c // MODEL_CHANNELS if d % MODEL_CHANNELS == 0 else d for d in shape]

    out: dict[str, list[int]] = {}
    for kind, tmpl in templates.items():
        places = [(f"down_blocks.{i}.{kind}.{j}", chans[i]) for i in range(levels) for j in range(nrb)]
        if has_mid.get(kind):
            places.append((f"mid_block.{kind}.0", chans[-1]))
        places += [(f"up_blocks.{i}.{kind}.{j}", chans[levels - 1 - i]) for i in range(levels) for j in range(nrb + 1)]
        for prefix, c in places:
            for rest, shape in tmpl.items():
                out[f"{prefix}.{rest}"] = scaled(shape, c)
    if not out:
        raise ValueError("Manifest has no down_blocks.0 module to use as a pattern.")
    return out


def manifest_keys(manifest_name: str, layout: str = "full") -> dict[str, list[int]]:
    manifest = load_manifest(manifest_name)
    if layout == "full":
        return dict(manifest["keys"])
    if layout == "reduced":
        if "sdxl" in manifest_name or "sparsectrl" in manifest_name or manifest_name.startswith("diffusers_"):
            raise ValueError(f"No reduced layout for {manifest_name!r}: only original-format SD1.5 files "
                             f"(mm_sd_v15*, v3_sd15_mm, motion_lora_example, v3_sd15_adapter_example).")
        return _reduced_keys(manifest)
    raise ValueError(f"Unknown layout {layout!r}; use 'full' or 'reduced'.")


def _is_norm_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 2 and "norm" in parts[-2] and parts[-1] in ("weight", "bias")


def _is_proj_out(key: str) -> bool:
    return re.search(r"(^|\.)proj_out\.(weight|bias)$", key) is not None


def motion_state_dict(manifest_name: str, seed: int = 0, dtype: torch.dtype = torch.float16,
                      zero_out: bool = False, layout: str = "full", std: float = 0.02) -> dict[str, torch.Tensor]:
    """Seeded tensors for every key of a manifest: weights/biases ~ N(0, std), norm weights 1 + N(0, std) and
    biases N(0, std) (perturbed so a loader that drops them is caught), `*.pe` the real sinusoidal table.
    zero_out=True zeroes proj_out like the official init, making each motion module an identity."""
    with _one_thread():
        return _motion_state_dict_now(manifest_keys(manifest_name, layout), seed, dtype, zero_out, std)


def _motion_state_dict_now(keys: dict[str, list[int]], seed: int, dtype: torch.dtype, zero_out: bool, std: float
                           ) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, shape in keys.items():
        if key.endswith(".pe"):
            value = sinusoidal_pe(shape[1], shape[2]).reshape(shape)
        elif zero_out and _is_proj_out(key):
            value = torch.zeros(shape)
        elif _is_norm_key(key) and len(shape) == 1:
            noise = _randn(shape, seed, key)
            value = 1.0 + std * noise if key.endswith("weight") else std * noise
        else:
            value = std * _randn(shape, seed, key)
        out[key] = value.to(dtype)
    return out


def build_motion_file(path, manifest_name: str, seed: int = 0, dtype: torch.dtype = torch.float16,
                      zero_out: bool = False, layout: str = "full", wrap: bool = False, prefix: str = "") -> Path:
    """A motion module / MotionLoRA / v3 adapter file with exactly the keys and shapes of
    tests/data/formats/<manifest_name>.json (`layout="reduced"` re-lays it onto the reduced UNet).
    `.ckpt`/`.pth`/`.pt`: torch.save of a plain dict of tensors, as the official files are; `.safetensors`.
    `wrap` puts everything under {"state_dict": ...} and `prefix` (e.g. "module.") is prepended to every key,
    as some released and DDP-trained files do (ckpt only for `wrap`)."""
    sd = motion_state_dict(manifest_name, seed, dtype, zero_out, layout)
    if prefix:
        sd = {prefix + k: v for k, v in sd.items()}
    path = Path(path)
    if wrap:
        if path.suffix in (".safetensors", ".sft"):
            raise ValueError("wrap=True needs a pickle-style file (.ckpt/.pth); safetensors holds flat tensors only.")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"state_dict": sd}, str(tmp))
        os.replace(tmp, path)
    else:
        _save(sd, path)
    return path


# ----------------------------------------------------------------------------------------------------------
# SparseCtrl files from their manifests (sparsectrl_latent_condition = RGB, sparsectrl_image_condition = scribble)

SPARSECTRL_MANIFESTS = ("sparsectrl_latent_condition", "sparsectrl_image_condition")
# full SD1.5 skip order -> the reduced UNet's (conv_in, level-0 resnet, level-0 downsample, level-1 resnet)
_REDUCED_SKIPS = {0: 0, 1: 1, 3: 2, 4: 3}
_REDUCED_BLOCK = re.compile(r"^down_blocks\.([01])\.(resnets|attentions|motion_modules)\.0\.|^down_blocks\.0\.downsamplers\.")


def sparsectrl_keys(manifest_name: str, layout: str = "full") -> dict[str, list[int]]:
    """Key -> shape of a SparseCtrl file in a layout:
    - "full": the official file;
    - "narrow": every key of the official file, each width that is a multiple of 320 divided by 10 (320 -> 32,
      1280 -> 128; the 768 text width, the 4/5 condition channels and the scribble encoder's 16..256 stay), so the
      exact key layout runs in milliseconds;
    - "reduced": fits the "reduced" UNet (levels 320, 640; one res block): down_blocks.0/1 with their first
      resnet/attention/motion module, level 0's downsampler, controlnet_down_blocks 0..3, a 640-wide mid block."""
    if manifest_name not in SPARSECTRL_MANIFESTS:
        raise ValueError(f"{manifest_name!r} is not a SparseCtrl manifest ({', '.join(SPARSECTRL_MANIFESTS)}).")
    keys = load_manifest(manifest_name)["keys"]
    if layout == "full":
        return dict(keys)
    if layout == "narrow":
        return {k: [d // 10 if d % MODEL_CHANNELS == 0 else d for d in shape] for k, shape in keys.items()}
    if layout != "reduced":
        raise ValueError(f"Unknown layout {layout!r}; use 'full', 'narrow' or 'reduced'.")
    out: dict[str, list[int]] = {}
    for key, shape in keys.items():
        m = re.match(r"^controlnet_down_blocks\.(\d+)\.(.+)$", key)
        if m:
            if int(m.group(1)) in _REDUCED_SKIPS:
                out[f"controlnet_down_blocks.{_REDUCED_SKIPS[int(m.group(1))]}.{m.group(2)}"] = shape
        elif key.startswith(("mid_block.", "controlnet_mid_block.")):
            out[key] = [d // 2 if d % 1280 == 0 and not (i == 1 and "time_emb_proj" in key) else d
                        for i, d in enumerate(shape)]
        elif key.startswith("down_blocks."):
            if _REDUCED_BLOCK.match(key):
                out[key] = shape
        else:  # conv_in, time_embedding, controlnet_cond_embedding
            out[key] = shape
    return out


def sparsectrl_state_dict(manifest_name: str, layout: str = "full", seed: int = 0, dtype: torch.dtype = torch.float16,
                          std: float = 0.02, with_pe: bool = False) -> dict[str, torch.Tensor]:
    """Seeded SparseCtrl weights. The official zero convs (controlnet_*_blocks, the RGB embedding) are random
    here (std), so the control visibly changes the UNet output. `with_pe`: include the position tables (the
    released files may or may not hold them; the authors' code registers them non-persistent)."""
    keys = sparsectrl_keys(manifest_name, layout)
    if not with_pe:
        keys = {k: v for k, v in keys.items() if not k.endswith(".pe")}
    with _one_thread():
        return _motion_state_dict_now(keys, seed, dtype, False, std)


def build_sparsectrl_file(path, manifest_name: str, layout: str = "full", seed: int = 0,
                          dtype: torch.dtype = torch.float16) -> Path:
    """A SparseCtrl stand-in (torch.save of a plain dict for .ckpt, as the official files are)."""
    _save(sparsectrl_state_dict(manifest_name, layout, seed, dtype), Path(path))
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# cached convenience (tests/.cache/standins, keyed by a hash of the builder parameters)


def cached_sd15_checkpoint(layout: str = "reduced", seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    params = {"layout": layout, "seed": seed, "dtype": _dtype_name(dtype)}
    return _cached(f"sd15_{layout}_s{seed}", ".safetensors", "sd15_checkpoint", params,
                   lambda p: build_sd15_checkpoint(p, layout, seed, dtype))


def cached_controlnet(layout: str = "reduced", seed: int = 0, dtype: torch.dtype = torch.float16,
                      ext: str = ".safetensors") -> Path:
    """`ext` ".pth"/".ckpt" gives a torch.save pickle of the same tensors (as the official .pth ControlNets are)."""
    params = {"layout": layout, "seed": seed, "dtype": _dtype_name(dtype)}
    return _cached(f"controlnet_sd15_{layout}_s{seed}", ext, "controlnet", params,
                   lambda p: build_controlnet(p, seed, layout, dtype))


def cached_motion_file(manifest_name: str, layout: str = "full", seed: int = 0, dtype: torch.dtype = torch.float16,
                       zero_out: bool = False, ext: str = ".ckpt") -> Path:
    load_manifest(manifest_name)  # a clear error for an unknown name
    manifest_hash = hashlib.sha256((FORMATS_DIR / f"{manifest_name}.json").read_bytes()).hexdigest()[:12]
    params = {"manifest": manifest_name, "manifest_sha": manifest_hash, "layout": layout, "seed": seed,
              "dtype": _dtype_name(dtype), "zero_out": zero_out}
    return _cached(f"{manifest_name}_{layout}_s{seed}{'_zero' if zero_out else ''}", ext, "motion_file", params,
                   lambda p: build_motion_file(p, manifest_name, seed, dtype, zero_out, layout))


def cached_sparsectrl_file(manifest_name: str, layout: str = "reduced", seed: int = 0,
                           dtype: torch.dtype = torch.float16, ext: str = ".ckpt") -> Path:
    manifest_hash = hashlib.sha256((FORMATS_DIR / f"{manifest_name}.json").read_bytes()).hexdigest()[:12]
    params = {"manifest": manifest_name, "manifest_sha": manifest_hash, "layout": layout, "seed": seed,
              "dtype": _dtype_name(dtype)}
    return _cached(f"{manifest_name}_{layout}_s{seed}", ext, "sparsectrl", params,
                   lambda p: build_sparsectrl_file(p, manifest_name, layout, seed, dtype))


# ----------------------------------------------------------------------------------------------------------
# CLI

_MOTION_MANIFESTS = ("mm_sd_v15", "mm_sd_v15_v2", "v3_sd15_mm", "mm_sdxl_v10_beta", "motion_lora_example",
                     "v3_sd15_adapter_example")
# name -> (subfolder in a ComfyUI models dir, filename, builder(path, seed))
TARGETS: dict[str, tuple[str, str, Callable[[Path, int], Path]]] = {
    "sd15-reduced": ("checkpoints", "standin_sd15_reduced.safetensors",
                     lambda p, s: build_sd15_checkpoint(p, "reduced", s)),
    "sd15-full": ("checkpoints", "standin_sd15_full.safetensors", lambda p, s: build_sd15_checkpoint(p, "full", s)),
    "controlnet-reduced": ("controlnet", "standin_controlnet_reduced.safetensors",
                           lambda p, s: build_controlnet(p, s, "reduced")),
    "controlnet-full": ("controlnet", "standin_controlnet_full.safetensors", lambda p, s: build_controlnet(p, s, "full")),
}
for _name in _MOTION_MANIFESTS:
    _folder = "animatediff_motion_lora" if _name == "motion_lora_example" else "animatediff_models"
    TARGETS[_name] = (_folder, f"standin_{_name}.ckpt", lambda p, s, n=_name: build_motion_file(p, n, s))
    if "sdxl" not in _name:
        TARGETS[f"{_name}-reduced"] = (_folder, f"standin_{_name}_reduced.ckpt",
                                       lambda p, s, n=_name: build_motion_file(p, n, s, layout="reduced"))

# SparseCtrl files keep their official names in models/controlnet (what the example workflows select).
for _name, _official in (("sparsectrl_latent_condition", "v3_sd15_sparsectrl_rgb.ckpt"),
                         ("sparsectrl_image_condition", "v3_sd15_sparsectrl_scribble.ckpt")):
    TARGETS[_name] = ("controlnet", _official, lambda p, s, n=_name: build_sparsectrl_file(p, n, "full", s))
    TARGETS[f"{_name}-reduced"] = ("controlnet", _official,
                                   lambda p, s, n=_name: build_sparsectrl_file(p, n, "reduced", s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.standins",
        description="Write seeded stand-in model files into a ComfyUI-style models folder (no downloads).")
    parser.add_argument("--out", required=True, help="models directory; files go to <out>/<folder>/<name>")
    parser.add_argument("--what", nargs="+", default=["sd15-reduced", "mm_sd_v15_v2-reduced"],
                        help=f"targets (default: sd15-reduced mm_sd_v15_v2-reduced); any of: {', '.join(TARGETS)}")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    unknown = [w for w in ns.what if w not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    for what in ns.what:
        folder, filename, builder = TARGETS[what]
        path = Path(ns.out) / folder / filename
        start = time.perf_counter()
        builder(path, ns.seed)
        print(f"{what}: {path} {path.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
