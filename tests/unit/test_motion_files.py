"""Loading every official file layout, the wrappers found in the wild, and refusing bad files clearly."""
import os
import pickle
import time

import pytest
import torch
from safetensors.torch import save_file

from manifest_weights import manifest, manifest_state_dict
from motion_core import MotionFormatError, load_domain_adapter, load_motion_lora, load_motion_module, read_state_dict

pytestmark = pytest.mark.usefixtures("no_grad")  # inference-only maths

FIRST = ["down_blocks.0.motion_modules.0."]
EXPECTED = {
    # manifest: (version, base, max_frames, source_format, modules)
    "mm_sd_v15": ("v1", "sd15", 24, "original", 20),
    "mm_sd_v15_v2": ("v2", "sd15", 32, "original", 21),
    "v3_sd15_mm": ("v3", "sd15", 32, "original", 20),
    "mm_sdxl_v10_beta": ("sdxl", "sdxl", 32, "original", 15),
    "diffusers_mm_sd_v15": ("v1", "sd15", 24, "diffusers", 20),
    "diffusers_mm_sd_v15_v2": ("v2", "sd15", 32, "diffusers", 21),
    "diffusers_v3_sd15_mm": ("v3", "sd15", 32, "diffusers", 20),
    "diffusers_mm_sdxl_v10_beta": ("sdxl", "sdxl", 32, "diffusers", 15),
}
ORIGINAL_OF = {"diffusers_mm_sd_v15": "mm_sd_v15", "diffusers_mm_sd_v15_v2": "mm_sd_v15_v2",
               "diffusers_v3_sd15_mm": "v3_sd15_mm", "diffusers_mm_sdxl_v10_beta": "mm_sdxl_v10_beta"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_official_layout_is_detected_and_keeps_official_keys(name):
    sd = manifest_state_dict(name, seed=4, dtype=torch.float16, random_only=FIRST)
    mm = load_motion_module(sd)
    version, base, max_frames, fmt, modules = EXPECTED[name]
    info = mm.info
    assert (info.version, info.base, info.max_frames, info.source_format, info.num_modules) == (
        version, base, max_frames, fmt, modules)
    original = manifest(ORIGINAL_OF.get(name, name))["keys"]
    out = mm.state_dict()
    assert set(out) == set(original)  # saving writes a file the official tools accept
    assert all(list(out[k].shape) == original[k] for k in original)
    if fmt == "original":
        assert all(torch.equal(out[k], sd[k].float()) for k in sd)
    assert set(sd) == set(manifest(name)["keys"])  # loading never changes the caller's mapping
    assert info.params == manifest(ORIGINAL_OF.get(name, name))["_meta"].get("n_params", info.params)


def test_diffusers_file_computes_what_the_original_does():
    orig = manifest_state_dict("mm_sd_v15_v2", seed=6, random_only=["down_blocks.1.", "mid_block."])
    mm = load_motion_module(orig)
    # rebuild the diffusers naming from the original weights, then load it back
    from motion_core.convert import diffusers_to_original
    inverse = {dk: next(iter(diffusers_to_original({dk: None}))) for dk in manifest("diffusers_mm_sd_v15_v2")["keys"]}
    diff = {dk: orig[ok] for dk, ok in inverse.items()}
    mm2 = load_motion_module(diff)
    a, b = mm.state_dict(), mm2.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_real_official_submodule_names_and_call():
    mm = load_motion_module(manifest_state_dict("mm_sd_v15_v2", seed=0, random_only=FIRST))
    for name, channels in [("down_blocks.1.motion_modules.0", 640), ("mid_block.motion_modules.0", 1280),
                           ("up_blocks.3.motion_modules.2", 320)]:
        m = mm.get_submodule(name)
        x = torch.randn(2 * 4, channels, 2, 2)
        assert m(x, num_frames=4).shape == x.shape
    locs = mm.locations()
    assert [l.channels for l in locs] == [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280] + [1280] * 6 + [640] * 3 + [320] * 3
    assert [l.kind for l in locs].count("mid") == 1


def test_wrappers_prefixes_and_extras_are_accepted(tmp_path):
    sd = manifest_state_dict("v3_sd15_mm", seed=2, dtype=torch.float16, random_only=FIRST)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}, "animatediff_config": {"x": 1}, "epoch": 3}
    path = tmp_path / "wrapped.ckpt"
    torch.save(wrapped, path)
    mm = load_motion_module(str(path))
    assert mm.info.version == "v3"
    assert torch.equal(mm.state_dict()["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"],
                       sd["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"].float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_safetensors_in_every_precision(tmp_path, dtype):
    sd = manifest_state_dict("mm_sd_v15", seed=3, dtype=dtype, random_only=FIRST)
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    mm = load_motion_module(str(path))
    assert mm.info.version == "v1" and next(mm.parameters()).dtype == torch.float32
    kept = load_motion_module(str(path), dtype=None)  # the file's own precision
    assert next(kept.parameters()).dtype == dtype
    key = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
    assert torch.equal(kept.state_dict()[key], sd[key]) and torch.equal(mm.state_dict()[key], sd[key].float())


def test_file_without_position_tables_is_animatelcm_with_default_limit():
    sd = {k: v for k, v in manifest_state_dict("v3_sd15_mm", seed=1, random_only=FIRST).items() if "pos_encoder" not in k}
    mm = load_motion_module(sd)
    assert mm.info.version == "animatelcm" and mm.info.max_frames == 32 and not mm.info.has_pe
    pe = mm.state_dict()["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"]
    from motion_reference import sinusoid
    assert torch.allclose(pe, sinusoid(32, 320), atol=1e-5)


def test_hotshotxl_naming_is_read():
    sd = manifest_state_dict("mm_sdxl_v10_beta", seed=1, random_only=FIRST)
    hot = {}
    for k, v in sd.items():
        k = k.replace(".motion_modules.", ".temporal_attentions.").replace(".temporal_transformer.", ".")
        if k.endswith("pos_encoder.pe"):
            k = k.replace("pos_encoder.pe", "pos_encoder.positional_encoding")
            v = v[:, :24]
        hot[k] = v
    mm = load_motion_module(hot)
    assert (mm.info.version, mm.info.base, mm.info.max_frames, mm.info.norm_mode) == ("hotshotxl", "sdxl", 24, "per_frame")


def test_full_v2_file_loads_fast_enough(tmp_path):
    sd = manifest_state_dict("mm_sd_v15_v2", seed=0, dtype=torch.float16, random_only=FIRST)
    path = tmp_path / "mm_sd_v15_v2.safetensors"
    save_file(sd, str(path))
    del sd
    start = time.perf_counter()
    mm = load_motion_module(str(path))
    elapsed = time.perf_counter() - start
    assert mm.info.params == 453_209_280
    print(f"full v2 fp16 safetensors load: {elapsed:.2f} s")  # reported in benchmarks; no timing assert here


# ----------------------------------------------------------------------------------------------- bad input

def test_missing_path_names_the_folder():
    with pytest.raises(MotionFormatError, match="not found.*animatediff_models"):
        load_motion_module("/nonexistent/mm_sd_v15_v2.ckpt")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.ckpt"
    p.write_bytes(b"")
    with pytest.raises(MotionFormatError, match="empty"):
        load_motion_module(str(p))


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_truncated_file_says_download_again(tmp_path, suffix):
    sd = manifest_state_dict("v3_sd15_mm", seed=0, dtype=torch.float16, prefixes=["down_blocks.0."])
    full = tmp_path / f"full{suffix}"
    if suffix == ".ckpt":
        torch.save(sd, full)
    else:
        save_file(sd, str(full))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MotionFormatError, match="truncated.*download it again"):
        load_motion_module(str(cut))


def test_partial_module_set_is_refused():
    sd = manifest_state_dict("v3_sd15_mm", seed=0, prefixes=["down_blocks.0.", "up_blocks.0."])
    sd = {k: v for k, v in sd.items() if "ff_norm" not in k}
    with pytest.raises(MotionFormatError, match="missing .* keys"):
        load_motion_module(sd)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/motionkit_pwned_marker",))


def test_pickle_that_runs_code_is_never_executed(tmp_path):
    marker = "/tmp/motionkit_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    p = tmp_path / "evil.ckpt"
    torch.save({"down_blocks.0.motion_modules.0.x": _Evil()}, p)
    with pytest.raises(MotionFormatError, match="could run code"):
        load_motion_module(str(p))
    assert not os.path.exists(marker)
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(MotionFormatError):
        read_state_dict(str(raw))
    assert not os.path.exists(marker)


@pytest.mark.parametrize("manifest_name,loader,expect", [
    ("motion_lora_example", load_motion_module, "MotionLoRA.*Apply MotionLoRA"),
    ("v3_sd15_adapter_example", load_motion_module, "domain adapter.*Inflate Model"),
    ("v3_sd15_adapter_example", load_motion_lora, "domain adapter.*not a MotionLoRA"),
    ("mm_sd_v15_v2", load_motion_lora, "motion module.*not a MotionLoRA"),
    ("motion_lora_example", load_domain_adapter, "MotionLoRA.*not the v3 domain adapter"),
    ("sparsectrl_latent_condition", load_motion_module, "SparseCtrl.*Load SparseCtrl"),
    ("sparsectrl_image_condition", load_motion_module, "SparseCtrl.*Load SparseCtrl"),
])
def test_wrong_kind_of_file_names_what_it_is(manifest_name, loader, expect):
    sd = manifest_state_dict(manifest_name, seed=0, dtype=torch.float16, prefixes=["down_blocks.0.", "controlnet_"])
    with pytest.raises(MotionFormatError, match=expect):
        loader(sd)


def test_full_sd_checkpoint_is_recognised():
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "first_stage_model.decoder.conv_in.weight": torch.zeros(1)}
    with pytest.raises(MotionFormatError, match="Stable Diffusion checkpoint.*Load Checkpoint"):
        load_motion_module(sd)
