"""Context Options and Prompt Travel nodes in a real in-process ComfyUI, with a tiny real CLIP and UNet.

Prompt travel's per-frame conditioning goes through ComfyUI's sampler with and without context windows: a plain
image UNet treats frames independently, so both runs must agree - which they only do if every window gets the
prompt rows of its own frames.
"""
from __future__ import annotations


import pytest
import torch

from harness.tiny_models import tiny_clip, tiny_unet

pytestmark = pytest.mark.integration

WIDTH = 32  # tiny CLIP hidden size = UNet context dim
SCHEDULE = '0: "a calm sea"\n6: "a stormy sea"'


@pytest.fixture(scope="module")
def pack_nodes(pack_node):
    return {"context": pack_node("context_options"), "travel": pack_node("prompt_travel")}


@pytest.fixture(scope="module")
def clip(comfy):
    return tiny_clip(WIDTH, seed=0)


@pytest.fixture(scope="module")
def unet(comfy):
    # the cross-attention gets 10x larger weights, so the prompt visibly matters
    cross = ("attn2.to_k", "attn2.to_v", "attn2.to_out")
    return tiny_unet(WIDTH, seed=1, loud=lambda name: any(k in name for k in cross), loud_factor=10.0)


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
    from motion_core.comfy import install_context_windows

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
