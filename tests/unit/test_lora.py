"""MotionLoRA and v3 domain-adapter maths and key handling."""
import pytest
import torch

from manifest_weights import manifest_state_dict
from motion_core import MotionFormatError, load_domain_adapter, load_motion_lora, load_motion_module, merged_motion_module

pytestmark = pytest.mark.usefixtures("no_grad")  # inference-only maths
ATT = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1"


@pytest.fixture(scope="module")
def v2():
    return load_motion_module(manifest_state_dict("mm_sd_v15_v2", seed=0, random_only=["down_blocks.1.", "mid_block."]))


@pytest.fixture(scope="module")
def v3():
    return load_motion_module(manifest_state_dict("v3_sd15_mm", seed=0, random_only=["down_blocks.1."]))


def _lora(seed, scale=0.05):
    return load_motion_lora(manifest_state_dict("motion_lora_example", seed=seed, std=scale), name=f"lora{seed}")


def test_official_motionlora_rank_and_targets():
    lora = _lora(1)
    assert lora.rank == 64 and len(lora.deltas) == 168 and lora.params == 19_333_120
    assert f"{ATT}.to_out.0.weight" in lora.deltas and f"{ATT}.to_q.weight" in lora.deltas


def test_merge_is_w_plus_strength_up_down_and_base_is_untouched(v2):
    lora = _lora(1)
    before = {k: v.clone() for k, v in v2.state_dict().items()}
    merged = merged_motion_module(v2, [(lora, 0.7)])
    sd = manifest_state_dict("motion_lora_example", seed=1, std=0.05)
    for proj, key in [("to_q", "to_q"), ("to_out", "to_out.0")]:
        up = sd[f"{ATT}.processor.{proj}_lora.up.weight"]
        down = sd[f"{ATT}.processor.{proj}_lora.down.weight"]
        expect = before[f"{ATT}.{key}.weight"] + 0.7 * up @ down
        assert torch.allclose(merged.state_dict()[f"{ATT}.{key}.weight"], expect, atol=1e-6)
    after = v2.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert merged.info == v2.info


def test_two_loras_compose_linearly(v2):
    a, b = _lora(1), _lora(2)
    both = merged_motion_module(v2, [(a, 1.0), (b, 0.5)]).state_dict()
    base = v2.state_dict()
    key = f"{ATT}.to_v.weight"
    assert torch.allclose(both[key], base[key] + a.delta(key) + 0.5 * b.delta(key), atol=1e-6)
    only_a = merged_motion_module(v2, [(a, 1.0)]).state_dict()
    assert not torch.allclose(only_a[key], both[key])
    zero = merged_motion_module(v2, [(a, 0.0)]).state_dict()
    assert torch.equal(zero[key], base[key])


def test_v2_lora_on_v3_reports_the_mid_block(v3):
    lora = _lora(1)
    report = lora.check_fits(v3)
    assert len(report.unmatched) == 8 and all(k.startswith("mid_block.") for k in report.unmatched)
    assert "8 mid-block weights" in report.summary() and "160 of 168" in report.summary()
    with pytest.raises(MotionFormatError, match="mid-block"):
        lora.check_fits(v3, allow_partial=False)


def test_lora_for_another_base_is_refused():
    sdxl = load_motion_module(manifest_state_dict("mm_sdxl_v10_beta", seed=0, random_only=[]))
    with pytest.raises(MotionFormatError, match="other shapes.*SD1.5 vs SDXL"):
        merged_motion_module(sdxl, [(_lora(1), 1.0)])


def test_peft_style_names_with_alpha(v2):
    sd = manifest_state_dict("motion_lora_example", seed=3, std=0.05)
    peft = {}
    for k, v in sd.items():
        k = k.replace(".processor.", ".").replace("_lora.down.weight", ".lora_A.weight").replace("_lora.up.weight", ".lora_B.weight")
        k = k.replace(".to_out.lora", ".to_out.0.lora")
        peft["base_model.model." + k] = v
    peft[f"base_model.model.{ATT}.to_q.alpha"] = torch.tensor(32.0)
    lora = load_motion_lora(peft)
    official = load_motion_lora(sd)
    key = f"{ATT}.to_q.weight"
    assert torch.allclose(lora.delta(key), official.delta(key) * 32.0 / 64)
    assert torch.allclose(lora.delta(f"{ATT}.to_out.0.weight"), official.delta(f"{ATT}.to_out.0.weight"))


def test_truncated_lora_pair():
    sd = manifest_state_dict("motion_lora_example", seed=0, prefixes=["down_blocks.0.motion_modules.0."])
    sd.pop(next(k for k in sd if k.endswith("to_q_lora.up.weight")))
    with pytest.raises(MotionFormatError, match="only its down half"):
        load_motion_lora(sd)


def test_domain_adapter_maps_onto_comfyui_unet_names():
    adapter = load_domain_adapter(manifest_state_dict("v3_sd15_adapter_example", seed=0, std=0.01))
    assert adapter.rank == 128 and len(adapter.deltas) == 128 and adapter.params == 25_509_888
    patches = adapter.comfy_lora_patches()
    blocks = {k.split(".transformer_blocks")[0] for k in patches}
    # SD1.5 spatial transformers in ComfyUI's LDM UNet: input blocks 1,2,4,5,7,8; middle; output blocks 3..11
    expected = {f"diffusion_model.input_blocks.{i}.1" for i in (1, 2, 4, 5, 7, 8)} | {"diffusion_model.middle_block.1"} | {
        f"diffusion_model.output_blocks.{i}.1" for i in range(3, 12)}
    assert blocks == expected
    key = "diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight"
    up, down, scale = patches[key]
    assert up.shape == (320, 128) and down.shape == (128, 768) and scale == 1.0
    assert "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight" in patches
    with pytest.raises(MotionFormatError, match="SD1.5 UNets only"):
        adapter.comfy_lora_patches(unet_keys=["diffusion_model.input_blocks.1.1.proj_in.weight"])


def test_merged_set_shares_untouched_weights(v2):
    merged = merged_motion_module(v2, [(_lora(1), 1.0)])
    base = dict(v2.named_parameters())
    shared = [n for n, p in merged.named_parameters() if p.data_ptr() == base[n].data_ptr()]
    assert f"{ATT}.to_q.weight" not in shared and f"{ATT}.to_out.0.bias" in shared
    assert len(shared) == len(base) - 168  # only the 168 LoRA targets are new tensors
