"""FreeNoise noise layout, FreeInit filters and frequency mix, motion strength schedules: pure maths, no ComfyUI."""
from __future__ import annotations

import math

import pytest
import torch

from motion_core.context import ContextOptions
from motion_core.freeinit import FreeInitOptions, freq_mix_3d, iteration_steps, low_pass_mask, mix_frames
from motion_core.freenoise import freenoise_sources, reschedule_noise
from motion_core.motion_scale import MotionScale, parse_keyframes, step_progress


# --- FreeNoise -----------------------------------------------------------------------------------------------

def _authors_loop(num_frames: int, window: int, stride: int, seed: int) -> list[int]:
    """The FreeNoise authors' rescheduling loop, on frame indices, with our generator's draws."""
    g = torch.Generator().manual_seed(seed)
    src = list(range(num_frames))
    for f in range(window, num_frames, stride):
        chunk = list(range(f - window, min(f - window + stride, num_frames - window)))
        order = torch.randperm(len(chunk), generator=g).tolist()
        for k, i in enumerate(order):
            src[f + k] = src[chunk[i]]
    return src


def test_single_window_clip_keeps_its_noise():
    noise = torch.randn(16, 4, 8, 8)
    for mode in ("uniform", "looped", "static"):
        options = ContextOptions(length=16, overlap=4, mode=mode, noise="freenoise")
        assert freenoise_sources(16, options, 7) == list(range(16))
        assert reschedule_noise(noise, options, 7) is noise
        assert freenoise_sources(5, options, 7) == list(range(5))


def test_layout_per_seed_is_pinned():
    # 6 frames, windows of 4 overlapping by 2: windows [0..3] and [2..5]; frames 4 and 5 take frames 0 and 1 in a
    # seeded order. Static 10 frames -> windows 4, 3, 3; each takes its predecessor's first frames shuffled.
    uniform, static = ContextOptions(length=4, overlap=2), ContextOptions(length=4, overlap=0, mode="static")
    assert freenoise_sources(6, uniform, 0) == [0, 1, 2, 3, 0, 1]
    assert freenoise_sources(6, uniform, 1) == [0, 1, 2, 3, 1, 0]
    assert freenoise_sources(10, static, 0) == [0, 1, 2, 3, 2, 0, 1, 1, 0, 2]
    assert freenoise_sources(10, static, 1) == [0, 1, 2, 3, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("frames,length,overlap", [(40, 16, 4), (64, 16, 4), (32, 8, 2), (29, 8, 1)])
def test_aligned_windows_reproduce_the_authors_loop(frames, length, overlap):
    options = ContextOptions(length=length, overlap=overlap)
    starts = [w[0] for w in options.windows(frames)]
    hop = length - overlap
    if starts != list(range(0, frames - length + 1, hop)):
        pytest.skip("windows not at multiples of the hop")
    for seed in (0, 3, 12345):
        assert freenoise_sources(frames, options, seed) == _authors_loop(frames, length, hop, seed)


@pytest.mark.parametrize("mode,frames", [("uniform", 37), ("uniform", 64), ("looped", 30), ("looped", 64)])
def test_every_contiguous_window_is_a_permutation_of_the_first(mode, frames):
    options = ContextOptions(length=8, overlap=2, mode=mode, noise="freenoise")
    sources = freenoise_sources(frames, options, 5)
    windows = [w for w in options.windows(frames) if w == list(range(w[0], w[0] + len(w)))]
    assert len(windows) >= 3
    for w in windows:
        assert sorted(sources[i] for i in w) == list(range(8)), w


def test_noise_rows_follow_the_sources_and_seeds_differ():
    options = ContextOptions(length=4, overlap=1, noise="freenoise")
    noise = torch.randn(13, 4, 2, 2)
    out = reschedule_noise(noise, options, 9)
    sources = freenoise_sources(13, options, 9)
    for f, s in enumerate(sources):
        assert torch.equal(out[f], noise[s])
    assert torch.equal(out[:4], noise[:4])
    assert freenoise_sources(13, options, 9) == sources  # deterministic
    assert freenoise_sources(13, options, 10) != sources


def test_unknown_noise_layout_is_refused():
    with pytest.raises(ValueError, match="freenoise"):
        ContextOptions(noise="fresh")


# --- FreeInit ------------------------------------------------------------------------------------------------

def test_gaussian_and_butterworth_masks_hand_computed():
    # T=H=W=4, d_s=0.5, d_t=0.25: d2 = (2 * (2t/4 - 1))^2 + (2h/4 - 1)^2 + (2w/4 - 1)^2; centre (2, 2, 2) -> 0.
    g = low_pass_mask("gaussian", (4, 4, 4), d_s=0.5, d_t=0.25)
    assert g[2, 2, 2] == 1.0
    assert g[0, 2, 2].item() == pytest.approx(math.exp(-4 / 0.5))        # d2 = 4
    assert g[2, 0, 0].item() == pytest.approx(math.exp(-2 / 0.5))        # d2 = 1 + 1
    assert g[3, 1, 2].item() == pytest.approx(math.exp(-1.25 / 0.5))     # d2 = 1 + 0.25
    b = low_pass_mask("butterworth", (4, 4, 4), d_s=0.5, d_t=0.25, order=4)
    assert b[2, 2, 2] == 1.0
    assert b[0, 2, 2].item() == pytest.approx(1 / (1 + (4 / 0.25) ** 4))
    assert b[3, 1, 2].item() == pytest.approx(1 / (1 + (1.25 / 0.25) ** 4))
    assert low_pass_mask("butterworth", (4, 4, 4), 0.5, 0.25, order=1)[3, 1, 2].item() == pytest.approx(1 / 6)


def test_ideal_mask_uses_the_authors_threshold():
    # the authors' ideal filter keeps d2 <= 2 * d_s (not d_s^2): with d_s = d_t = 0.25 that is d2 <= 0.5.
    m = low_pass_mask("ideal", (4, 4, 4), d_s=0.25, d_t=0.25)
    d2 = lambda t, h, w: (2 * t / 4 - 1) ** 2 + (2 * h / 4 - 1) ** 2 + (2 * w / 4 - 1) ** 2  # noqa: E731
    expected = torch.tensor([[[1.0 if d2(t, h, w) <= 0.5 else 0.0 for w in range(4)] for h in range(4)]
                             for t in range(4)])
    assert torch.equal(m, expected)
    # per axis (2i/4 - 1)^2 is 0 once, 0.25 twice, 1 once: d2 <= 0.5 for 1 + 3*2 + 3*4 = 19 positions
    assert int(m.sum()) == 19
    assert m[2, 2, 2] == 1 and m[2, 1, 1] == 1 and m[1, 1, 1] == 0  # d2 0.5 kept, 0.75 not


def test_box_mask_hand_computed():
    # T=H=W=8, d_s=0.25, d_t=0.5: spatial half-width round(4 * 0.25) = 1, temporal round(4 * 0.5) = 2.
    m = low_pass_mask("box", (8, 8, 8), d_s=0.25, d_t=0.5)
    expected = torch.zeros(8, 8, 8)
    expected[2:6, 3:5, 3:5] = 1
    assert torch.equal(m, expected)


def test_zero_stop_frequency_keeps_nothing():
    for kind in ("gaussian", "butterworth", "ideal", "box"):
        assert torch.equal(low_pass_mask(kind, (4, 6, 6), 0.0, 0.25), torch.zeros(4, 6, 6))
        assert torch.equal(low_pass_mask(kind, (4, 6, 6), 0.25, 0.0), torch.zeros(4, 6, 6))


def test_frequency_mix_keeps_low_of_x_and_high_of_noise():
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    ones, zeros = torch.ones(8, 6, 6), torch.zeros(8, 6, 6)
    assert torch.allclose(freq_mix_3d(x, noise, ones), x, atol=1e-5)
    assert torch.allclose(freq_mix_3d(x, noise, zeros), noise, atol=1e-5)
    lpf = low_pass_mask("butterworth", (8, 6, 6))
    low_x = freq_mix_3d(x, torch.zeros_like(x), lpf)
    high_n = freq_mix_3d(torch.zeros_like(x), noise, lpf)
    assert torch.allclose(freq_mix_3d(x, noise, lpf), low_x + high_n, atol=1e-5)
    # a constant (DC only) survives the low pass untouched; the mask at the DC term is 1
    const = torch.full((1, 8, 6, 6), 0.7)
    assert torch.allclose(freq_mix_3d(const, torch.zeros_like(const), lpf), const, atol=1e-5)


def test_mix_frames_is_the_3d_mix_over_frames_height_width():
    g = torch.Generator().manual_seed(1)
    x, noise = torch.randn(8, 4, 6, 6, generator=g), torch.randn(8, 4, 6, 6, generator=g)  # [F, C, H, W]
    options = FreeInitOptions(filter="gaussian", d_s=0.3, d_t=0.2)
    expected = freq_mix_3d(x.permute(1, 0, 2, 3), noise.permute(1, 0, 2, 3), options.mask(8, 6, 6))
    assert torch.allclose(mix_frames(x, noise, options), expected.permute(1, 0, 2, 3), atol=1e-6)


def test_coarse_to_fine_steps_and_validation():
    assert [iteration_steps(i, 3, 20, True) for i in (1, 2, 3)] == [6, 13, 20]  # int(20 / 3 * i)
    assert [iteration_steps(i, 3, 20, False) for i in (1, 2, 3)] == [20, 20, 20]
    assert iteration_steps(1, 5, 2, True) == 1
    with pytest.raises(ValueError, match="1 means off"):
        FreeInitOptions(iterations=0)
    with pytest.raises(ValueError, match="butterworth"):
        FreeInitOptions(filter="median")
    with pytest.raises(ValueError, match="d_s"):
        FreeInitOptions(d_s=1.5)


# --- motion strength over blocks and steps -------------------------------------------------------------------

def test_ramp_and_groups():
    s = MotionScale(down=0.5, mid=1.0, up=2.0, start=1.0, end=0.0, ramp_start=20.0, ramp_end=60.0)
    assert s.step(0.0) == 1.0 and s.step(0.2) == 1.0
    assert s.step(0.4) == pytest.approx(0.5)
    assert s.step(0.6) == 0.0 and s.step(1.0) == 0.0
    assert s.factor("down", 0.4) == pytest.approx(0.25) and s.factor("up", 0.0) == 2.0
    assert not s.is_identity and MotionScale().is_identity
    with pytest.raises(ValueError, match="ramp_start"):
        MotionScale(ramp_start=70.0, ramp_end=30.0)


def test_keyframes_override_the_ramp():
    points = parse_keyframes("50:1.5, 0:1.0;100:0.5")
    assert points == ((0.0, 1.0), (50.0, 1.5), (100.0, 0.5))
    s = MotionScale(start=9.0, end=9.0, keyframes=points)
    assert s.step(0.0) == 1.0 and s.step(0.25) == pytest.approx(1.25) and s.step(0.75) == pytest.approx(1.0)
    assert MotionScale(keyframes=parse_keyframes("30:2")).step(0.9) == 2.0  # held flat outside
    assert parse_keyframes("  ") == ()
    for bad in ("50", "x:1", "120:1", "10:1, 10:2"):
        with pytest.raises(ValueError):
            parse_keyframes(bad)


def test_step_progress_from_sigmas():
    sigmas = [14.6, 7.0, 3.0, 1.0, 0.0]  # 4 steps
    assert [step_progress(s, sigmas) for s in (14.6, 7.0, 3.0, 1.0)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert step_progress(5.0, sigmas) == 1 / 3  # a Heun/DPM-2 mid-step evaluation belongs to its step
    assert step_progress(14.6, [14.6, 0.0]) == 0.0
