"""Context windows inside a real in-process ComfyUI 0.3.75 sampler, on a tiny SD1.5-family UNet and ControlNet.

A plain image UNet (no motion module) denoises every frame independently, so windowed sampling must give the
same latents as sampling all frames at once - but only if every window gets exactly its own frames' prompts,
masks and ControlNet hints. That makes "windowed == unwindowed" a sharp end-to-end check of the slicing; the
instrumented test then looks at what each window actually fed the UNet and the ControlNet.
"""
from __future__ import annotations

import pytest
import torch

from tools.comfy_host import import_comfy

try:
    import_comfy()  # ComfyUI root on sys.path, CPU mode, comfy.model_management imported
except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)

import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402

from harness.tiny_models import tiny_controlnet, tiny_unet  # noqa: E402
from motion_core.context import ContextOptions, build_windows  # noqa: E402
from motion_core.comfy import windows as windows_mod  # noqa: E402
from motion_core.comfy import WINDOW_INFO_KEY, install_context_windows  # noqa: E402

pytestmark = pytest.mark.integration

FRAMES = 10
CTX = 8  # cross-attention width of the tiny UNet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(CTX, seed=0)


@pytest.fixture(scope="module")
def controlnet():
    return tiny_controlnet(CTX, seed=1)


def frame_hints(n: int) -> torch.Tensor:
    """Hint image i is the constant (i+1)/(n+1): survives ComfyUI's crop/resize, so each row names its frame."""
    return ((torch.arange(n, dtype=torch.float32) + 1) / (n + 1)).view(n, 1, 1, 1).expand(n, 3, 48, 64).clone()


def travel_cond(n: int) -> torch.Tensor:
    """A per-frame cross-attention cond (what prompt travel makes): row i is filled with the value i."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 4, CTX).clone()


def conditioning(control_net, n=FRAMES, with_mask=True):
    """positive: per-frame prompts + per-frame hints (+ a second, per-frame-masked cond); negative: one prompt."""
    control = control_net.copy().set_cond_hint(frame_hints(n), 0.8, (0.0, 1.0))
    positive = [[travel_cond(n) * 0.1, {"control": control}]]
    if with_mask:
        mask = torch.linspace(0.2, 1.0, n).view(n, 1, 1).expand(n, 8, 8).clone()
        positive.append([torch.full((1, 4, CTX), -0.3), {"mask": mask, "control": control}])
    negative = [[torch.zeros(1, 4, CTX), {"control": control}]]
    return positive, negative


def run(model, positive, negative, n=FRAMES, steps=2):
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(n, 4, 8, 8, generator=g)
    return comfy.sample.sample(model, noise, steps, 4.0, "euler", "normal", positive, negative,
                               torch.zeros(n, 4, 8, 8), disable_pbar=True, seed=7)


def windowed(unet, options):
    model = unet.clone()
    install_context_windows(model, options)
    return model


@pytest.fixture(scope="module")
def reference(unet, controlnet):
    return run(unet, *conditioning(controlnet))


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_whole_clip_window_is_exactly_no_windows(unet, controlnet, reference):
    out = run(windowed(unet, ContextOptions(length=16, overlap=4)), *conditioning(controlnet))
    assert torch.equal(out, reference)
    assert len(unet.wrappers.get("calc_cond_batch", {})) == 0  # the user's patcher was not touched


@pytest.mark.parametrize("mode,fuse,stride", [("uniform", "pyramid", 1), ("looped", "flat", 1),
                                              ("static", "pyramid", 1), ("uniform", "flat", 2)])
def test_windows_reproduce_unwindowed_frames(unet, controlnet, reference, mode, fuse, stride):
    options = ContextOptions(length=4, overlap=1, stride=stride, mode=mode, fuse=fuse)
    assert len(build_windows(FRAMES, 4, 1, stride, mode)) > 1
    out = run(windowed(unet, options), *conditioning(controlnet))
    assert _close(out, reference), float((out - reference).abs().max())


@pytest.mark.parametrize("frames", [1, 3, 5])
def test_short_clips_sample_with_windows_installed(unet, controlnet, frames):
    # any frame count works: shorter than a window (one window = whole clip) or just past it
    positive, negative = conditioning(controlnet, n=frames)
    reference = run(unet, positive, negative, n=frames, steps=1)
    out = run(windowed(unet, ContextOptions(length=4, overlap=2, mode="looped")), *conditioning(controlnet, n=frames),
              n=frames, steps=1)
    assert out.shape[0] == frames and _close(out, reference)


def test_unsliced_hints_would_be_caught(unet, controlnet, reference, monkeypatch):
    # Sensitivity check of the test above: pass controls through unsliced (core 0.3.75's behaviour) and the
    # windowed result must no longer match, so the equivalence really depends on per-window hints.
    monkeypatch.setattr(windows_mod, "window_control", lambda control, idx, memo: control)
    out = run(windowed(unet, ContextOptions(length=4, overlap=1)), *conditioning(controlnet))
    assert not _close(out, reference)


def test_each_window_feeds_its_own_frames(unet, controlnet):
    options = ContextOptions(length=4, overlap=1, mode="looped")
    expected = build_windows(FRAMES, 4, 1, 1, "looped")
    unet_calls, hint_calls = [], []

    def on_unet(module, a, kw):
        to = kw["transformer_options"]
        unet_calls.append((a[0].shape[0], kw["context"][:, 0, 0].clone(), list(to["cond_or_uncond"]),
                           to.get(WINDOW_INFO_KEY)))

    def on_control(module, a, kw):
        hint_calls.append(kw["hint"][:, 0, 0, 0].clone())

    model = windowed(unet, options)
    h1 = model.model.diffusion_model.register_forward_pre_hook(on_unet, with_kwargs=True)
    h2 = controlnet.control_model.register_forward_pre_hook(on_control, with_kwargs=True)
    try:
        positive, negative = conditioning(controlnet, with_mask=False)
        original_hints = positive[0][1]["control"].cond_hint_original.clone()
        run(model, positive, negative, steps=2)
    finally:
        h1.remove()
        h2.remove()

    assert len(unet_calls) == 2 * len(expected) == len(hint_calls)
    for call, ((batch, context, cond_or_uncond, info), hint) in enumerate(zip(unet_calls, hint_calls)):
        frames = expected[call % len(expected)]
        n = len(frames)
        assert info is not None and list(info.indices) == frames and info.num_frames == FRAMES
        assert batch == n * len(cond_or_uncond)  # the motion layers would see n frames per cond
        chunk = cond_or_uncond.index(0)  # the positive cond's rows in the batch
        assert torch.allclose(context[chunk * n:(chunk + 1) * n], torch.tensor(frames, dtype=torch.float32) * 0.1)
        want = (torch.tensor(frames, dtype=torch.float32) + 1) / (FRAMES + 1)
        for c in range(len(cond_or_uncond)):
            assert torch.allclose(hint[c * n:(c + 1) * n], want), (call, hint, frames)
    # the user's control object and hints are unchanged
    assert torch.equal(positive[0][1]["control"].cond_hint_original, original_hints)


def test_memory_estimate_uses_one_window(unet, controlnet):
    seen = []
    model = windowed(unet, ContextOptions(length=4, overlap=1))
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, "test_probe",
                               lambda executor, m, shape, *a, **k: seen.append(list(shape)) or executor(m, shape, *a, **k))
    run(model, *conditioning(controlnet, with_mask=False), steps=1)
    assert seen and seen[0][0] == 4


def test_window_longer_than_module_limit_is_refused(unet):
    with pytest.raises(ValueError, match=r"context_length 40 .* 32 frames"):
        install_context_windows(unet.clone(), ContextOptions(length=40, overlap=4), max_frames=32)
    model = unet.clone()
    install_context_windows(model, ContextOptions(length=24, overlap=4), max_frames=24)
    assert "admk_context" in model.wrappers["calc_cond_batch"]
    install_context_windows(model, ContextOptions(length=16, overlap=4), max_frames=24)  # replaces, not stacks
    assert len(model.wrappers["calc_cond_batch"]["admk_context"]) == 1
