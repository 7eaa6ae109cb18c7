"""Context Options and Prompt Travel nodes in a real in-process ComfyUI, with a tiny real CLIP and UNet.

Prompt travel's per-frame conditioning goes through ComfyUI's sampler with and without context windows: a plain
image UNet treats frames independently, so both runs must agree - which they only do if every window gets the
prompt rows of its own frames.
"""
from __future__ import annotations

import importlib

import pytest
import torch

pytestmark = pytest.mark.integration

CPU = torch.device("cpu")
WIDTH = 32  # tiny CLIP hidden size = UNet context dim
CLIP_CONFIG = {"hidden_size": WIDTH, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
               "projection_dim": WIDTH}
UNET_CONFIG = {
    "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [1], "channel_mult": [1],
    "transformer_depth": [1], "transformer_depth_output": [1, 1], "transformer_depth_middle": 1,
    "context_dim": WIDTH, "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_attention": False, "use_spatial_transformer": True, "legacy": False,
    "num_head_channels": -1, "num_heads": 4, "image_size": 32, "dtype": torch.float32,
}
SCHEDULE = '0: "a calm sea"\n6: "a stormy sea"'


def _fill(module, seed, scale=0.05, loud=()):
    # ComfyUI's ops leave weights uninitialised: seeded fill keeps every run identical. Parameters whose name
    # contains one of `loud` get 6x larger weights (the cross-attention, so the prompt visibly matters).
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (scale * 10 if any(k in name for k in loud) else scale))


@pytest.fixture(scope="module")
def pack_nodes(comfy_pack):
    def load(name):
        return importlib.import_module(f"{comfy_pack.__name__}.nodes.{name}")
    return {"context": load("context_options"), "travel": load("prompt_travel")}


@pytest.fixture(scope="module")
def clip(comfy):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": CLIP_CONFIG, "dtype": torch.float32})
    _fill(clip.cond_stage_model, 0, scale=0.1)
    return clip


@pytest.fixture(scope="module")
def unet(comfy):
    import comfy.model_patcher
    import comfy.supported_models

    model = comfy.supported_models.SD15(UNET_CONFIG).get_model({})
    _fill(model, 1, loud=("attn2.to_k", "attn2.to_v", "attn2.to_out"))
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


def travel(pack_nodes, clip, schedule=SCHEDULE, frames=10, pre="", post="", interpolation="linear"):
    return pack_nodes["travel"].PromptTravel.execute(clip, schedule, frames, pre, post, interpolation).result[0]


def encode(clip, text):
    return clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)


def test_context_options_node(pack_nodes):
    from motion_core.context import build_windows

    node = pack_nodes["context"].ContextOptionsNode
    opts = node.execute(12, 3, 2, "looped", "flat").result[0]
    # (the pack's own motion_core classes, not this process's top-level import: compare fields)
    assert (opts.length, opts.overlap, opts.stride, opts.mode, opts.fuse) == (12, 3, 2, "looped", "flat")
    assert opts.windows(40) == build_windows(40, 12, 3, 2, "looped")
    assert node.execute(8, 8, 1, "static", "pyramid").result[0].length == 8  # static ignores the overlap
    with pytest.raises(ValueError, match="context_overlap"):
        node.execute(8, 8, 1, "uniform", "pyramid")


def test_prompt_travel_rows_are_keyframe_encodings_and_their_blends(pack_nodes, clip):
    conditioning = travel(pack_nodes, clip, pre="oil painting,", post="4k")
    assert len(conditioning) == 1
    cond, extras = conditioning[0]
    assert cond.shape == (10, 77, WIDTH) and extras["pooled_output"].shape == (10, WIDTH)
    calm, calm_pooled = encode(clip, "oil painting, a calm sea, 4k")
    storm, storm_pooled = encode(clip, "oil painting, a stormy sea, 4k")
    assert not torch.allclose(calm, storm)
    assert torch.allclose(cond[0], calm[0], atol=1e-6) and torch.allclose(cond[6], storm[0], atol=1e-6)
    assert torch.allclose(cond[3], (calm[0] + storm[0]) / 2, atol=1e-6)
    assert torch.allclose(cond[9], storm[0], atol=1e-6)  # held after the last keyframe
    assert torch.allclose(extras["pooled_output"][2], calm_pooled[0] * 2 / 3 + storm_pooled[0] / 3, atol=1e-6)
    hold = travel(pack_nodes, clip, interpolation="hold")[0][0]
    assert torch.allclose(hold[5], encode(clip, "a calm sea")[0][0], atol=1e-6)  # no blending before frame 6


def test_prompt_travel_errors_reach_the_user(pack_nodes, clip):
    with pytest.raises(ValueError, match=r"line 2 \('storm'\)"):
        travel(pack_nodes, clip, schedule='0: "calm"\nstorm')
    with pytest.raises(RuntimeError, match="no CLIP"):
        travel(pack_nodes, None)


def test_prompt_travel_through_context_windows_matches_one_pass(pack_nodes, clip, unet):
    import comfy.sample
    from motion_core.context import ContextOptions
    from motion_core.windows import install_context_windows

    # long, unrelated prompts: many differing tokens, so the prompt visibly steers the tiny UNet
    schedule = ('0: "a calm blue sea under a clear sunny sky with white sailing boats and seagulls"\n'
                '6: "dark stormy ocean night, crashing waves, lightning, thunder, black clouds, heavy rain"')
    positive = travel(pack_nodes, clip, schedule=schedule, frames=10)
    negative = [[encode(clip, "")[0], {}]]

    def sample(model):
        noise = torch.randn(10, 4, 8, 8, generator=torch.Generator().manual_seed(5))
        return comfy.sample.sample(model, noise, 2, 6.0, "euler", "normal", positive, negative,
                                   torch.zeros(10, 4, 8, 8), disable_pbar=True, seed=5)

    one_pass = sample(unet)
    windowed = unet.clone()
    install_context_windows(windowed, ContextOptions(length=4, overlap=2, mode="uniform"))
    out = sample(windowed)
    # measured: windowed vs one pass differ by ~6e-7 of the output scale (batch-size rounding); a wrong prompt
    # row by ~4e-4 (below). The tolerance sits between the two.
    scale = float(one_pass.abs().max())
    assert torch.allclose(out, one_pass, rtol=1e-5, atol=1e-5 * scale)
    # and the prompt actually matters: one prompt for every frame gives a different result
    flat = [[positive[0][0][:1], {"pooled_output": positive[0][1]["pooled_output"][:1]}]]
    noise = torch.randn(10, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    other = comfy.sample.sample(windowed, noise, 2, 6.0, "euler", "normal", flat, negative,
                                torch.zeros(10, 4, 8, 8), disable_pbar=True, seed=5)
    assert not torch.allclose(other[6:], one_pass[6:], rtol=1e-5, atol=1e-5 * scale)
