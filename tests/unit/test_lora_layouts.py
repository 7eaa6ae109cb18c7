"""MotionLoRA layouts found in the wild, and the diffusers MotionAdapter renaming, against HAND-WRITTEN key maps.

The expected targets below are typed out, never produced by motion_core.convert / motion_core.lora, so a renaming
bug (a swapped attn1/attn2, norm1/norm2, a lost `temporal_transformer.`) cannot agree with itself.
"""
import functools

import pytest
import torch

from manifest_weights import manifest, manifest_state_dict
from motion_core import load_motion_lora, load_motion_module, merged_motion_module
from motion_core.convert import diffusers_to_original

pytestmark = pytest.mark.usefixtures("no_grad")

# One attention projection pair per layout, in the layouts' own spelling, and the module weight it must land on.
T = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0"
D = "down_blocks.1.motion_modules.0.transformer_blocks.0"
M = "mid_block.motion_modules.0.transformer_blocks.0"
LAYOUTS = {
    # the authors' LoRAAttnProcessor naming (v2_lora_*.ckpt)
    "authors": {
        f"{T}.attention_blocks.0.processor.to_q_lora.down.weight": f"{T}.attention_blocks.0.to_q.weight",
        f"{T}.attention_blocks.1.processor.to_out_lora.up.weight": f"{T}.attention_blocks.1.to_out.0.weight",
    },
    # diffusers' scripts/convert_animatediff_motion_lora_to_diffusers.py output
    "diffusers_script": {
        f"unet.{D}.attn1.processor.to_q_lora.down.weight": f"{T}.attention_blocks.0.to_q.weight",
        f"unet.{D}.attn2.processor.to_out_lora.up.weight": f"{T}.attention_blocks.1.to_out.0.weight",
        f"unet.{M}.attn2.processor.to_k_lora.down.weight":
            "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_k.weight",
    },
    # PEFT (diffusers save_lora_weights / peft get_peft_model_state_dict)
    "peft": {
        f"base_model.model.{D}.attn1.to_q.lora_A.weight": f"{T}.attention_blocks.0.to_q.weight",
        f"base_model.model.{D}.attn2.to_out.0.lora_B.weight": f"{T}.attention_blocks.1.to_out.0.weight",
    },
    # kohya-style dotted pairs with alpha, on the authors' module names, behind both wrappers' prefixes
    "kohya_dotted": {
        f"base_model.model.unet.{T}.attention_blocks.0.to_q.lora_down.weight": f"{T}.attention_blocks.0.to_q.weight",
        f"base_model.model.unet.{T}.attention_blocks.1.to_out.0.lora_up.weight": f"{T}.attention_blocks.1.to_out.0.weight",
    },
    # kohya's flattened names (lora_unet_ + path with underscores), authors' module names
    "kohya_flat": {
        "lora_unet_down_blocks_1_motion_modules_0_temporal_transformer_transformer_blocks_0_attention_blocks_0_to_q"
        ".lora_down.weight": f"{T}.attention_blocks.0.to_q.weight",
        "lora_unet_mid_block_motion_modules_0_temporal_transformer_transformer_blocks_0_attention_blocks_1_to_out_0"
        ".lora_up.weight":
            "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight",
    },
}


# How each layout spells an authors' key, written out with plain string edits (not motion_core's renaming).
def _as_diffusers_script(k):
    k = k.replace(".temporal_transformer", "").replace(".attention_blocks.0", ".attn1").replace(".attention_blocks.1", ".attn2")
    return "unet." + k


def _as_peft(k):
    k = _as_diffusers_script(k)[len("unet."):].replace(".processor.", ".")
    k = k.replace("to_out_lora.", "to_out.0.lora_").replace("_lora.down.weight", ".lora_A.weight")
    k = k.replace("_lora.up.weight", ".lora_B.weight").replace("lora_down.weight", "lora_A.weight")
    k = k.replace("lora_up.weight", "lora_B.weight")
    return "base_model.model." + k


def _as_kohya_dotted(k):
    k = k.replace(".processor.", ".").replace("to_out_lora.", "to_out.0.lora_")
    k = k.replace("_lora.down.weight", ".lora_down.weight").replace("_lora.up.weight", ".lora_up.weight")
    k = k.replace("lora_down.weight", "lora_down.weight").replace("lora_up.weight", "lora_up.weight")
    return "base_model.model.unet." + k


def _as_kohya_flat(k):
    k = _as_kohya_dotted(k)[len("base_model.model.unet."):]
    path, _, suffix = k.partition(".lora_")
    if not suffix:
        path, _, suffix = k.rpartition(".")
        return "lora_unet_" + path.replace(".", "_") + "." + suffix
    return "lora_unet_" + path.replace(".", "_") + ".lora_" + suffix


SPELL = {"authors": lambda k: k, "diffusers_script": _as_diffusers_script, "peft": _as_peft,
         "kohya_dotted": _as_kohya_dotted, "kohya_flat": _as_kohya_flat}
RANK, ALPHA = 64, 16.0


SUBSET = ["down_blocks.1.", "mid_block."]  # 24 of the 168 pairs: both attentions, every projection, the mid block
N_PAIRS = 24


@functools.lru_cache(maxsize=None)
def _authors_cached(seed):
    return manifest_state_dict("motion_lora_example", seed=seed, std=0.05, prefixes=SUBSET)


def _authors_lora(seed=4):
    return dict(_authors_cached(seed))


def _in_layout(layout, sd):
    out = {SPELL[layout](k): v for k, v in sd.items()}
    if layout in ("peft", "kohya_dotted", "kohya_flat"):  # alpha = rank/4: these layouts' deltas are scaled by alpha/rank,
        for k in list(out):                   # so the pairs are stored pre-scaled by rank/alpha to merge the same
            if k.endswith(("lora_B.weight", "lora_up.weight")):
                out[k] = out[k] * (RANK / ALPHA)
                out[k.rsplit(".", 2)[0] + ".alpha"] = torch.tensor(ALPHA)
    return out


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_hand_written_keys_land_on_the_hand_written_targets(layout):
    for spelled, target in LAYOUTS[layout].items():
        assert SPELL[layout](_unspell(layout, spelled)) == spelled  # the test's own spelling agrees with the table
    sd = _in_layout(layout, _authors_lora())
    assert all(k in sd for k in LAYOUTS[layout])
    lora = load_motion_lora(sd, name=layout)
    assert len(lora.deltas) == N_PAIRS
    for target in LAYOUTS[layout].values():
        assert target in lora.deltas


def _unspell(layout, spelled):
    """The authors' key a table entry was spelled from (by looking it up, not by renaming)."""
    return next(k for k in _authors_lora() if SPELL[layout](k) == spelled)


@pytest.fixture(scope="module")
def v2():
    return load_motion_module(manifest_state_dict("mm_sd_v15_v2", seed=0, random_only=["down_blocks.1.", "mid_block."]))


def test_every_layout_merges_to_the_same_weights(v2):
    reference = merged_motion_module(v2, [(load_motion_lora(_authors_lora(), name="authors"), 0.8)]).state_dict()
    base = v2.state_dict()
    changed = [k for k in base if not torch.equal(base[k], reference[k])]
    assert f"{T}.attention_blocks.1.to_out.0.weight" in changed and len(changed) == N_PAIRS
    for layout in LAYOUTS:
        lora = load_motion_lora(_in_layout(layout, _authors_lora()), name=layout)
        report = lora.check_fits(v2)
        assert len(report.matched) == N_PAIRS and not report.unmatched, layout
        merged = merged_motion_module(v2, [(lora, 0.8)]).state_dict()
        for k in changed:
            assert torch.allclose(merged[k], reference[k], rtol=0, atol=1e-6), (layout, k)
        assert all(torch.equal(merged[k], base[k]) for k in base if k not in changed)


def test_alpha_scales_by_alpha_over_rank():
    sd = _in_layout("peft", _authors_lora())
    sd[f"base_model.model.{D}.attn1.to_q.alpha"] = torch.tensor(2 * ALPHA)  # twice the alpha on one projection
    doubled = load_motion_lora(sd)
    plain = load_motion_lora(_in_layout("peft", _authors_lora()))
    target, other = f"{T}.attention_blocks.0.to_q.weight", f"{T}.attention_blocks.0.to_k.weight"
    assert torch.allclose(doubled.delta(target), 2 * plain.delta(target))
    assert torch.equal(doubled.delta(other), plain.delta(other))


# ------------------------------------------------------------ diffusers MotionAdapter -> original (motion_core.convert)

P = "up_blocks.1.motion_modules.2"
ADAPTER_TABLE = {
    f"{P}.norm.weight": f"{P}.temporal_transformer.norm.weight",
    f"{P}.proj_in.weight": f"{P}.temporal_transformer.proj_in.weight",
    f"{P}.proj_out.bias": f"{P}.temporal_transformer.proj_out.bias",
    f"{P}.transformer_blocks.0.attn1.to_q.weight": f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight",
    f"{P}.transformer_blocks.0.attn1.to_out.0.bias": f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_out.0.bias",
    f"{P}.transformer_blocks.0.attn2.to_k.weight": f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_k.weight",
    f"{P}.transformer_blocks.0.attn2.to_out.0.weight": f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight",
    f"{P}.transformer_blocks.0.norm1.weight": f"{P}.temporal_transformer.transformer_blocks.0.norms.0.weight",
    f"{P}.transformer_blocks.0.norm2.bias": f"{P}.temporal_transformer.transformer_blocks.0.norms.1.bias",
    f"{P}.transformer_blocks.0.norm3.weight": f"{P}.temporal_transformer.transformer_blocks.0.ff_norm.weight",
    f"{P}.transformer_blocks.0.ff.net.0.proj.weight": f"{P}.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight",
    f"{P}.transformer_blocks.0.ff.net.2.bias": f"{P}.temporal_transformer.transformer_blocks.0.ff.net.2.bias",
    "mid_block.motion_modules.0.transformer_blocks.0.attn2.to_v.weight":
        "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight",
}


def test_motion_adapter_renaming_matches_the_hand_written_table():
    for diffusers_key, original_key in ADAPTER_TABLE.items():
        assert list(diffusers_to_original({diffusers_key: 0})) == [original_key], diffusers_key
    # the one shared position table becomes one per attention block
    pe = diffusers_to_original({f"{P}.transformer_blocks.0.pos_embed.pe": 0})
    assert set(pe) == {f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe",
                       f"{P}.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"}


def test_motion_adapter_file_loads_with_each_weight_in_its_place():
    """Distinct values per diffusers key; each must arrive under the table's original key (a swap of equal-shaped
    attn1/attn2 or norm1/norm2 would load without a shape error but put the values elsewhere)."""
    keys = [k for k in manifest("diffusers_mm_sd_v15_v2")["keys"]]
    sd = manifest_state_dict("diffusers_mm_sd_v15_v2", seed=9, random_only=[P + ".", "mid_block."])
    loaded = load_motion_module(sd).state_dict()
    assert len(keys) == len(sd)
    for diffusers_key, original_key in ADAPTER_TABLE.items():
        assert torch.equal(loaded[original_key], sd[diffusers_key].float()), diffusers_key
