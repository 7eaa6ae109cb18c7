"""SparseCtrl inside a real in-process ComfyUI 0.3.75 sampler: chaining with core ControlNets, strength and
percent range, context windows (each window gets exactly its frames' keyframes and mask), and the refusals.

A tiny SparseCtrl (one 32-channel level with a motion module, 8-wide text) matches the tiny UNet's skips.
"""
from __future__ import annotations

import types

import pytest
import torch

from tools.comfy_host import import_comfy

try:
    import_comfy()
except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)

import comfy.latent_formats  # noqa: E402
import comfy.sample  # noqa: E402

from harness.tiny_models import CPU, fill_seeded, tiny_controlnet, tiny_unet  # noqa: E402
from motion_core import MotionFormatError  # noqa: E402
from motion_core.comfy import install_context_windows  # noqa: E402
from motion_core.comfy.sparsectrl import SparseCtrlModel, check_model  # noqa: E402
from motion_core.context import ContextOptions  # noqa: E402
from motion_core.sparsectrl import SparseCtrl, keyframe_condition  # noqa: E402
from motion_core.sparsectrl_net import LevelSpec, NetSpec  # noqa: E402

pytestmark = pytest.mark.integration

FRAMES = 10
CTX = 8


def tiny_sparsectrl(kind="rgb", seed=5):
    rgb = kind == "rgb"
    spec = NetSpec(latent_channels=4, cond_channels=4 if rgb else 3, simplified_embedding=rgb,
                   embedding_channels=() if rgb else (4, 8, 8, 16),
                   levels=(LevelSpec(32, 1, True, True, False),), context_dim=CTX, max_frames=32)
    net = SparseCtrl(spec)
    fill_seeded(net, seed, scale=0.1, loud=lambda n: n.startswith(("controlnet_", "conv_in")), loud_factor=3.0)
    with torch.no_grad():
        for m in net.modules():  # norms near identity, as trained ones are
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.fill_(1.0)
                m.bias.zero_()
    net.info = types.SimpleNamespace(kind=kind, max_frames=32)
    net.eval().requires_grad_(False)
    return SparseCtrlModel(net, name=f"tiny_{kind}.ckpt", load_device=CPU)  # where tiny_unet computes


class FakeVAE:
    """VAE.encode stand-in: 8x8 average pooling, 4 channels (the RGB path only needs encode)."""

    def encode(self, pixels):  # [B, H, W, 3] in [0, 1]
        x = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.cat([x, x[:, :1] * -1], dim=1)


@pytest.fixture(scope="module")
def node(pack_node):
    return pack_node("sparsectrl")


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(CTX, seed=0)


def keyframes(n=2, h=64, w=64):
    """Keyframe k is the constant (k+1)/(n+1), so each condition row names its image."""
    return ((torch.arange(n, dtype=torch.float32) + 1) / (n + 1)).view(n, 1, 1, 1).expand(n, h, w, 3).clone()


def conds():
    positive = [[torch.randn(1, 4, CTX, generator=torch.Generator().manual_seed(3)), {}]]
    negative = [[torch.zeros(1, 4, CTX), {}]]
    return positive, negative


def apply(node, sc, images, indices="0, -1", strength=1.0, start=0.0, end=1.0, frames=0, vae=None, positive=None,
          negative=None):
    if positive is None:
        positive, negative = conds()
    out = node.ApplySparseCtrl.execute(positive, negative, sc, images, indices, strength, start, end, frames, vae)
    return out.result


def run(model, positive, negative, n=FRAMES, steps=2):
    noise = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    return comfy.sample.sample(model, noise, steps, 4.0, "euler", "normal", positive, negative,
                               torch.zeros(n, 4, 8, 8), disable_pbar=True, seed=7)


def record_calls(sc):
    """Wrap the network's forward: records (condition, mask, frames) of every call."""
    calls = []
    net = sc.net
    original = net.forward

    def forward(x, timesteps, context, condition, mask, num_frames, **kw):
        calls.append((condition.clone(), mask.clone(), num_frames))
        return original(x, timesteps, context, condition, mask, num_frames, **kw)

    net.forward = forward
    return calls, lambda: delattr(net, "forward")


def test_apply_chains_and_leaves_inputs_alone(node, unet):
    sc = tiny_sparsectrl()
    depth = tiny_controlnet(CTX, seed=1)
    positive, negative = conds()
    before = dict(positive[0][1])
    core = __import__("nodes").ControlNetApplyAdvanced()
    p1, n1 = core.apply_controlnet(positive, negative, depth, torch.rand(1, 64, 64, 3), 0.8, 0.0, 1.0)
    p2, n2 = apply(node, sc, keyframes(), vae=FakeVAE(), strength=0.6, start=0.0, end=0.9, positive=p1, negative=n1)
    control = p2[0][1]["control"]
    assert control is n2[0][1]["control"] and control.previous_controlnet is p1[0][1]["control"]
    assert (control.strength, control.timestep_percent_range) == (0.6, (0.0, 0.9))
    assert positive[0][1] == before and "control" not in positive[0][1]
    # depth + SparseCtrl sample together, and SparseCtrl changes the result
    both = run(unet, p2, n2)
    depth_only = run(unet, p1, n1)
    assert torch.isfinite(both).all() and (both - depth_only).abs().max() > 1e-3
    # the loaded model travels with the control, for ComfyUI to load and offload
    assert sc.patcher in control.get_models() and depth.control_model_wrapped in control.get_models()


def test_strength_scales_residuals_and_percent_range_selects_steps(node, unet):
    """2 "normal" euler steps evaluate at sigma 14.6 (0 % of the schedule) and 0.029 (~99.5 %)."""
    sc = tiny_sparsectrl()
    plain = run(unet, *conds())
    calls, restore = record_calls(sc)
    try:
        counts = []
        for start, end in ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.2, 0.8)):
            calls.clear()
            run(unet, *apply(node, sc, keyframes(), vae=FakeVAE(), start=start, end=end))
            counts.append(len(calls))
    finally:
        restore()
    assert counts == [2, 1, 1, 0]
    weak = run(unet, *apply(node, sc, keyframes(), vae=FakeVAE(), strength=0.1))
    strong = run(unet, *apply(node, sc, keyframes(), vae=FakeVAE(), strength=1.0))
    assert 0.01 < (weak - plain).abs().max() < (strong - plain).abs().max()


@pytest.mark.parametrize("kind", ["rgb", "scribble"])
def test_condition_and_mask_follow_the_keyframes(node, unet, kind):
    sc = tiny_sparsectrl(kind)
    calls, restore = record_calls(sc)
    try:
        run(unet, *apply(node, sc, keyframes(3), indices="0, 4, -1", vae=FakeVAE()), steps=1)
    finally:
        restore()
    condition, mask, frames = calls[0]
    assert frames == FRAMES and condition.shape[0] == 2 * FRAMES  # cond and uncond clips, batched
    expected = [1.0 if i in (0, 4, 9) else 0.0 for i in range(FRAMES)] * 2
    assert mask[:, 0].amax(dim=(1, 2)).tolist() == expected
    assert condition[torch.tensor(expected) == 0].abs().max() == 0
    # keyframe k's condition row is made from image k (constant (k+1)/4 through the fake VAE / scribble norm)
    row0, row4 = condition[0], condition[4]
    assert not torch.equal(row0, row4) or kind == "scribble"  # a flat scribble normalises to 0


def test_windows_get_exactly_their_keyframes(node, unet):
    sc = tiny_sparsectrl()
    options = ContextOptions(length=4, overlap=1)
    model = unet.clone()
    install_context_windows(model, options)
    windows = options.windows(FRAMES)
    images = keyframes(2)
    calls, restore = record_calls(sc)
    try:
        run(model, *apply(node, sc, images, indices="1, 8", vae=FakeVAE()), steps=1)
    finally:
        restore()
    full_cond, full_mask = keyframe_condition(
        comfy.latent_formats.SD15().process_in(FakeVAE().encode(images)), [1, 8], FRAMES)
    assert len(calls) == len(windows)
    empty_windows = 0
    for (condition, mask, frames), idx in zip(calls, windows):
        assert frames == len(idx)
        idx_t = torch.tensor(idx)
        want_cond = full_cond[idx_t].repeat(2, 1, 1, 1)
        want_mask = full_mask[idx_t].repeat(2, 1, 1, 1)
        assert torch.allclose(condition, want_cond, atol=1e-6) and torch.equal(mask, want_mask)
        if not set(idx) & {1, 8}:
            empty_windows += 1
            assert condition.abs().max() == 0 and mask.abs().max() == 0
    assert empty_windows >= 1  # the schedule has a window without keyframes, and it got zeros


def test_refusals(node, unet):
    sc = tiny_sparsectrl()
    # the node's errors are the pack's MotionFormatError (a ValueError) as ComfyUI imported it
    with pytest.raises(ValueError, match="RGB SparseCtrl.*Connect the checkpoint's VAE"):
        apply(node, sc, keyframes())
    with pytest.raises(ValueError, match="more keyframe images than indices"):
        apply(node, sc, keyframes(3), indices="0, 9", vae=FakeVAE())
    with pytest.raises(ValueError, match="index 16 is beyond the clip"):
        apply(node, sc, keyframes(2), indices="0, 16", frames=16, vae=FakeVAE())
    with pytest.raises(ValueError, match="set for 16 frames but the animation has 10"):
        run(unet, *apply(node, sc, keyframes(2), indices="0, 15", frames=16, vae=FakeVAE()), steps=1)
    sdxl = types.SimpleNamespace(latent_format=comfy.latent_formats.SDXL(),
                                 model_config=types.SimpleNamespace(unet_config={"context_dim": 2048}))
    with pytest.raises(MotionFormatError, match="for SD1.5 models, but this MODEL is SDXL"):
        check_model(sdxl, sc)


def test_keyframes_are_checked_before_the_first_step(node, unet):
    """Inflated models run checks.check_controls in their OUTER_SAMPLE wrapper: an index beyond the latent's
    clip is refused before any step (here with the wrapper called as ComfyUI calls it)."""
    from motion_core.comfy.checks import _frame_check_wrapper

    sc = tiny_sparsectrl()
    calls, restore = record_calls(sc)
    positive, negative = apply(node, sc, keyframes(2), indices="0, 12", vae=FakeVAE())  # fine until the clip is known

    class Executor:
        class_obj = types.SimpleNamespace(model_patcher=unet, model_options={},
                                          conds={"positive": [{"control": positive[0][1]["control"]}]})

        def __call__(self, noise, *args, **kwargs):
            raise AssertionError("sampling started")

    try:
        with pytest.raises(ValueError, match="index 12 is beyond the clip: the animation has 10 frames"):
            _frame_check_wrapper(Executor(), torch.zeros(FRAMES, 4, 8, 8))
    finally:
        restore()
    assert calls == []


def test_core_ksampler_on_an_inflated_model_with_the_reduced_standins(node, sd15_reduced_ckpt):
    """What core KSampler runs (comfy.sample.sample) on a MODEL from inflate(): the reduced SD1.5 stand-in, its
    TAESD VAE encoding the RGB keyframes, the reduced v3 module and the reduced RGB SparseCtrl stand-in."""
    import comfy.model_management
    import comfy.sd

    from motion_core import load_motion_module
    from motion_core.comfy import inflate
    from tools import standins

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(sd15_reduced_ckpt), output_vae=True)
    model = inflate(model, load_motion_module(standins.cached_motion_file("v3_sd15_mm", layout="reduced")))
    from motion_core.sparsectrl import load_sparsectrl

    sc = SparseCtrlModel(load_sparsectrl(standins.cached_sparsectrl_file("sparsectrl_latent_condition", "reduced"),
                                         dtype=None), name="v3_sd15_sparsectrl_rgb.ckpt")
    # an fp16 file: computed in fp32 on a CPU, kept in fp16 on a GPU (ComfyUI's rule for UNets)
    on_gpu = comfy.model_management.get_torch_device().type == "cuda"
    assert sc.net.conv_in.weight.dtype == (torch.float16 if on_gpu else torch.float32)

    def encode(text):
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))

    positive, negative = encode("a fox in the snow"), encode("blurry")
    images = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    guided = apply(node, sc, images, indices="0, -1", vae=vae, positive=positive, negative=negative)
    latent = torch.zeros(4, 4, 4, 4)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))

    def sample(pos, neg):
        return comfy.sample.sample(model, noise, 1, 7.0, "euler", "normal", pos, neg, latent, disable_pbar=True,
                                   seed=1)

    with_sc, without = sample(*guided), sample(positive, negative)
    assert torch.isfinite(with_sc).all() and (with_sc - without).abs().max() > 1e-3
