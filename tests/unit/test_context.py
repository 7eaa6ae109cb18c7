"""Context-window schedules and fuse weights (pure Python/torch, no ComfyUI)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from motion_core.context import (  # noqa: E402
    MODES, ContextOptions, build_windows, check_context_fits, fuse_weights, longest_window)

LENGTHS = [1, 2, 3, 7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 100, 128]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_frames", LENGTHS)
@pytest.mark.parametrize("length,overlap,stride", [(16, 4, 1), (8, 0, 1), (8, 7, 1), (16, 4, 3), (5, 2, 2)])
def test_every_frame_covered_and_windows_well_formed(mode, num_frames, length, overlap, stride):
    windows = build_windows(num_frames, length, overlap, stride, mode)
    covered = sorted({f for w in windows for f in w})
    assert covered == list(range(num_frames))
    for w in windows:
        assert len(set(w)) == len(w), w  # no frame twice in one window
        assert 1 <= len(w) <= length
        assert all(0 <= f < num_frames for f in w)
    if num_frames > length and mode != "static":
        assert all(len(w) == length for w in windows)  # sliding/looped windows are always full
    assert build_windows(num_frames, length, overlap, stride, mode) == windows  # deterministic


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_frames", [1, 5, 16])
def test_clip_no_longer_than_window_is_one_window(mode, num_frames):
    assert build_windows(num_frames, 16, 4, 3, mode) == [list(range(num_frames))]


@pytest.mark.parametrize("num_frames", [17, 20, 33, 41, 48, 64, 100])
@pytest.mark.parametrize("overlap", [0, 2, 4, 8])
def test_uniform_neighbours_overlap_at_least_requested_and_span_the_clip(num_frames, overlap):
    windows = build_windows(num_frames, 16, overlap, 1, "uniform")
    assert windows[0][0] == 0 and windows[-1][-1] == num_frames - 1
    for a, b in zip(windows, windows[1:]):
        assert b == list(range(b[0], b[0] + 16))  # contiguous, increasing
        assert overlap <= len(set(a) & set(b)) < 16  # never a duplicate window
    # as few windows as the hop allows
    assert len(windows) == -(-(num_frames - 16) // (16 - overlap)) + 1


def test_uniform_spreads_windows_evenly():
    # 41 frames, 16/4: a hop-then-shift schedule would start at 0,12,24,25 (last two nearly identical)
    assert [w[0] for w in build_windows(41, 16, 4, 1, "uniform")] == [0, 8, 17, 25]


@pytest.mark.parametrize("num_frames", [17, 20, 25, 32, 41, 48, 100])
def test_looped_windows_wrap_around_the_seam(num_frames):
    windows = build_windows(num_frames, 16, 4, 1, "looped")
    seam = [w for w in windows if num_frames - 1 in w and 0 in w]
    assert seam, "some window must see the last frame followed by the first"
    for w in seam:
        i = w.index(num_frames - 1)
        assert w[i + 1] == 0  # consecutive in the window: last frame then frame 0
    for w in windows:
        assert all((b - a) % num_frames == 1 for a, b in zip(w, w[1:]))
    # around the circle every neighbouring pair (including last -> first) overlaps by >= 4 frames
    ring = windows + windows[:1]
    for a, b in zip(ring, ring[1:]):
        assert len(set(a) & set(b)) >= 4


def test_looped_example():
    assert build_windows(20, 16, 4, 1, "looped") == [list(range(16)), list(range(10, 20)) + list(range(6))]


@pytest.mark.parametrize("num_frames,sizes", [(17, [9, 8]), (34, [12, 11, 11]), (48, [16, 16, 16]), (49, [13, 12, 12, 12])])
def test_static_is_non_overlapping_and_balanced(num_frames, sizes):
    windows = build_windows(num_frames, 16, 4, 1, "static")
    assert [len(w) for w in windows] == sizes
    assert [f for w in windows for f in w] == list(range(num_frames))  # each frame exactly once, in order


def test_stride_adds_dilated_windows():
    windows = build_windows(64, 16, 4, 2, "uniform")
    dilated = [w for w in windows if w[1] - w[0] == 2]
    assert dilated and all(all(b - a == 2 for a, b in zip(w, w[1:])) for w in dilated)
    assert sorted({f for w in dilated for f in w}) == list(range(64))  # the dilated level alone covers the clip
    assert build_windows(64, 16, 4, 1, "uniform") == [w for w in windows if w[1] - w[0] == 1]
    # a level that cannot fill a window (64 // 8 < 16) is skipped
    assert build_windows(64, 16, 4, 4, "uniform") == build_windows(64, 16, 4, 3, "uniform")
    assert any(w[1] - w[0] == 4 for w in build_windows(64, 16, 4, 3, "uniform"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_frames=0, length=16, overlap=4), "at least 1 frame"),
    (dict(num_frames=8, length=0, overlap=0), "context_length"),
    (dict(num_frames=8, length=16, overlap=16), "context_overlap"),
    (dict(num_frames=8, length=16, overlap=-1), "context_overlap"),
    (dict(num_frames=8, length=16, overlap=4, stride=0), "context_stride"),
    (dict(num_frames=8, length=16, overlap=4, mode="pingpong"), "uniform, looped, static"),
])
def test_bad_schedule_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_windows(**kwargs)


def test_static_ignores_overlap():
    assert build_windows(20, 8, 8, 1, "static") == build_windows(20, 8, 0, 1, "static")


def test_fuse_weights():
    assert torch.equal(fuse_weights(5, "flat"), torch.ones(5))
    assert torch.allclose(fuse_weights(4, "pyramid"), torch.tensor([0.5, 1.0, 1.0, 0.5]))
    assert torch.allclose(fuse_weights(5, "pyramid"), torch.tensor([1, 2, 3, 2, 1]) / 3)
    assert torch.equal(fuse_weights(1, "pyramid"), torch.ones(1))
    w = fuse_weights(16, "pyramid")
    assert w.dtype == torch.float32 and (w > 0).all() and torch.equal(w, w.flip(0))
    with pytest.raises(ValueError, match="pyramid, flat"):
        fuse_weights(4, "gaussian")
    with pytest.raises(ValueError):
        fuse_weights(0, "flat")


def test_options_validate_and_delegate():
    opts = ContextOptions(length=8, overlap=2, mode="looped", fuse="flat")
    assert opts.windows(20) == build_windows(20, 8, 2, 1, "looped")
    assert torch.equal(opts.weights(3), torch.ones(3))
    with pytest.raises(ValueError, match="fuse"):
        ContextOptions(fuse="median")
    with pytest.raises(ValueError, match="context_overlap"):
        ContextOptions(length=4, overlap=4)


def test_module_limit_check():
    check_context_fits(32, ContextOptions(length=32))
    with pytest.raises(ValueError, match=r"context_length 40 .*32 frames.*32 or less"):
        check_context_fits(32, ContextOptions(length=40))
    # a short clip never builds a window longer than itself
    check_context_fits(24, ContextOptions(length=40), num_frames=20)
    assert longest_window(20, ContextOptions(length=40)) == 20
    with pytest.raises(ValueError, match="context_length 40"):
        check_context_fits(24, ContextOptions(length=40), num_frames=30)
    # no context options: the whole clip is one pass
    check_context_fits(32, None, num_frames=32)
    with pytest.raises(ValueError, match=r"48 frames .* at most 32 .*Context Options"):
        check_context_fits(32, None, num_frames=48, module_name="the v2 module")
