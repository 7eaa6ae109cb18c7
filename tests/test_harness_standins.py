"""Stand-in model files: exact official key sets and shapes, real PE tables, seeded determinism, and files
that ComfyUI's own loaders accept as SD1.5 / ControlNet."""
from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from harness.subprocess_env import repo_env
from tools import standins
from tools.comfy_host import REPO_ROOT

SD15_UNET_PARAMS = 859_520_964
# What ComfyUI logs when a loaded file lacks weights its model has ("unet missing: [...]" etc.).
MISSING_WEIGHTS = re.compile(r"(unet|clip) missing|missing vae keys|missing controlnet keys", re.IGNORECASE)  # tests/data/formats/_summary_orig_sd15.json base_unet_params


def _manifest_keys(name):
    with open(REPO_ROOT / "tests" / "data" / "formats" / f"{name}.json") as fh:
        return json.load(fh)["keys"]


@pytest.mark.parametrize("name", ["motion_lora_example", "v3_sd15_adapter_example"])
def test_full_manifest_files_have_exact_keys_shapes_and_load_without_pickle_code(tmp_path, name):
    path = standins.build_motion_file(tmp_path / f"{name}.ckpt", name, seed=3)
    sd = torch.load(path, weights_only=True)
    assert type(sd) is dict
    expected = _manifest_keys(name)
    assert set(sd) == set(expected)
    for key, shape in expected.items():
        assert list(sd[key].shape) == shape, key
        assert sd[key].dtype == torch.float16
    values = torch.cat([v.float().flatten() for v in sd.values()])
    assert torch.isfinite(values).all()
    assert 0.015 < values.std().item() < 0.025  # N(0, 0.02), not zeros and not torch.empty garbage


def test_pe_is_the_sinusoidal_table_and_norms_are_near_identity():
    sd = standins.motion_state_dict("mm_sd_v15_v2", layout="reduced", dtype=torch.float32)
    pe_key = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    pe = sd[pe_key]
    assert pe.shape == (1, 32, 640)
    for p, i in [(0, 0), (5, 0), (7, 3), (31, 100), (13, 319)]:
        w = math.exp(-2 * i * math.log(10000.0) / 640)
        assert pe[0, p, 2 * i].item() == pytest.approx(math.sin(p * w), abs=1e-5)
        assert pe[0, p, 2 * i + 1].item() == pytest.approx(math.cos(p * w), abs=1e-5)
    norm_w = sd["mid_block.motion_modules.0.temporal_transformer.norm.weight"]
    norm_b = sd["mid_block.motion_modules.0.temporal_transformer.norm.bias"]
    assert (norm_w - 1).abs().max() < 0.15 and (norm_w != 1).any()
    assert norm_b.abs().max() < 0.15 and (norm_b != 0).any()


def test_reduced_layout_mirrors_the_official_structure_on_two_levels():
    full = _manifest_keys("mm_sd_v15_v2")
    sd = standins.motion_state_dict("mm_sd_v15_v2", layout="reduced")
    modules = sorted({k.split(".temporal_transformer")[0] for k in sd})
    assert modules == ["down_blocks.0.motion_modules.0", "down_blocks.1.motion_modules.0",
                       "mid_block.motion_modules.0",
                       "up_blocks.0.motion_modules.0", "up_blocks.0.motion_modules.1",
                       "up_blocks.1.motion_modules.0", "up_blocks.1.motion_modules.1"]
    # Every module has the official per-module key set, with channels scaled to its level.
    suffixes = {k.split(".temporal_transformer", 1)[1] for k in full if k.startswith("down_blocks.0.motion_modules.0.")}
    for module in modules:
        assert {k.split(".temporal_transformer", 1)[1] for k in sd if k.startswith(module + ".")} == suffixes
    ff = "temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight"
    assert list(sd[f"up_blocks.0.motion_modules.1.{ff}"].shape) == [8 * 640, 640]
    assert list(sd[f"up_blocks.1.motion_modules.0.{ff}"].shape) == [8 * 320, 320]
    # v1 has no mid block and PE length 24, and that carries over.
    v1 = standins.motion_state_dict("mm_sd_v15", layout="reduced")
    assert not any(k.startswith("mid_block.") for k in v1)
    assert {tuple(v.shape) for k, v in v1.items() if k.endswith(".pe")} == {(1, 24, 320), (1, 24, 640)}
    lora = standins.motion_state_dict("motion_lora_example", layout="reduced")
    assert list(lora["up_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1"
                     ".processor.to_q_lora.down.weight"].shape) == [64, 640]
    adapter = standins.motion_state_dict("v3_sd15_adapter_example", layout="reduced")
    assert list(adapter["down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight"]
                .shape) == [128, 768]  # cross-attention input stays the 768-wide text embedding


def test_reduced_layout_is_refused_for_files_it_cannot_describe():
    with pytest.raises(ValueError, match="No reduced layout"):
        standins.manifest_keys("mm_sdxl_v10_beta", layout="reduced")
    with pytest.raises(FileNotFoundError, match="Known manifests"):
        standins.load_manifest("no_such_file")


def test_seeded_determinism_zero_out_and_file_variants(tmp_path):
    a = standins.motion_state_dict("motion_lora_example", seed=1, layout="reduced")
    b = standins.motion_state_dict("motion_lora_example", seed=1, layout="reduced")
    c = standins.motion_state_dict("motion_lora_example", seed=2, layout="reduced")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    zero = standins.motion_state_dict("mm_sd_v15", layout="reduced", zero_out=True)
    proj_out = [k for k in zero if ".proj_out." in k]
    assert len(proj_out) == 2 * 6 and all(not zero[k].any() for k in proj_out)
    assert zero["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"].any()

    st = standins.build_motion_file(tmp_path / "m.safetensors", "mm_sd_v15", layout="reduced", prefix="module.")
    with safe_open(str(st), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("module.down_blocks.") or k.startswith("module.up_blocks.") for k in keys)
    wrapped = torch.load(standins.build_motion_file(tmp_path / "w.ckpt", "mm_sd_v15", layout="reduced", wrap=True),
                         weights_only=True)
    assert list(wrapped) == ["state_dict"] and len(wrapped["state_dict"]) == 6 * 28  # 28 keys per v1 module


def test_cache_reuses_files_and_keys_them_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(standins, "CACHE_DIR", tmp_path)
    first = standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0)
    mtime = first.stat().st_mtime_ns
    again = standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0)
    other = standins.cached_motion_file("motion_lora_example", layout="reduced", seed=1)
    assert again == first and first.stat().st_mtime_ns == mtime
    assert other != first and other.is_file()
    assert not list(tmp_path.glob("*.tmp"))


def test_full_sd15_layout_is_exactly_sd15_for_comfyui_detection():
    """Shapes only (meta tensors): ComfyUI's detector must read the exact SD1.5 UNet back."""
    from tools.comfy_host import import_comfy

    import_comfy()
    import comfy.model_detection
    import comfy.supported_models

    sd = {}
    for prefix, module in standins._meta_modules("checkpoint", "full").items():
        sd.update({prefix + k: v for k, v in module.state_dict().items()})
    unet_params = sum(v.numel() for k, v in sd.items() if k.startswith("model.diffusion_model."))
    assert unet_params == SD15_UNET_PARAMS
    config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(config) is comfy.supported_models.SD15
    assert config.unet_config["channel_mult"] == [1, 2, 4, 4]
    assert config.unet_config["transformer_depth_output"] == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight" in sd
    assert "first_stage_model.taesd_decoder.1.weight" in sd


@pytest.mark.integration
def test_reduced_checkpoint_loads_as_sd15_with_every_weight_filled(sd15_reduced_ckpt, caplog):
    from tools.comfy_host import import_comfy

    import_comfy()
    import comfy.sd
    import comfy.supported_models
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(sd15_reduced_ckpt), safe_load=True)
    assert all(torch.isfinite(v.float()).all() for v in sd.values())
    with caplog.at_level(logging.WARNING):
        model, clip, vae, _ = comfy.sd.load_state_dict_guess_config(sd)
    assert type(model.model.model_config) is comfy.supported_models.SD15
    assert not [r.getMessage() for r in caplog.records if MISSING_WEIGHTS.search(r.getMessage())]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a fox"))[0][0]
    assert cond.shape == (1, 77, 768) and torch.isfinite(cond).all()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    dm = model.model.diffusion_model
    w = next(dm.parameters())  # on a GPU ComfyUI keeps the UNet there, in half precision
    x, ctx, t = x.to(w), cond.repeat(2, 1, 1).to(w), torch.tensor([500, 500], device=w.device)
    with torch.no_grad():
        out = dm(x, timesteps=t, context=ctx).float()
        out_half = dm(x * 0.5, timesteps=t, context=ctx).float()
    assert torch.isfinite(out).all()
    assert 0.1 < out.std().item() < 5.0  # well-scaled noise prediction
    assert (out - out_half).abs().mean() > 1e-3  # and it depends on its input
    image = vae.decode(torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert image.shape == (1, 64, 64, 3) and 0.02 < image.std().item() < 0.45


@pytest.mark.integration
def test_reduced_controlnet_loads_in_core_loader_without_missing_keys(tmp_path, caplog):
    from tools.comfy_host import import_comfy

    import_comfy()
    import comfy.controlnet

    path = standins.cached_controlnet("reduced")
    with caplog.at_level(logging.WARNING):
        control = comfy.controlnet.load_controlnet(str(path))
    assert isinstance(control, comfy.controlnet.ControlNet)
    assert not [r.getMessage() for r in caplog.records if MISSING_WEIGHTS.search(r.getMessage())]
    zero_convs = [k for k in control.control_model.state_dict() if k.startswith("zero_convs.")]
    assert len(zero_convs) == 2 * 4  # conv_in + 2 levels x (1 res block + downsample on the first)


def test_cli_writes_into_comfyui_model_folders(tmp_path, capsys):
    env = repo_env()
    done = subprocess.run([sys.executable, "-m", "tools.standins", "--out", str(tmp_path), "--what",
                           "motion_lora_example-reduced", "mm_sd_v15-reduced"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lora = tmp_path / "animatediff_motion_lora" / "standin_motion_lora_example_reduced.ckpt"
    mm = tmp_path / "animatediff_models" / "standin_mm_sd_v15_reduced.ckpt"
    assert lora.is_file() and mm.is_file()
    assert "MiB in" in done.stdout
    with pytest.raises(SystemExit) as info:
        standins.main(["--out", str(tmp_path), "--what", "nope"])
    assert info.value.code != 0 and "unknown target" in capsys.readouterr().err
