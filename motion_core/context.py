"""Context-window schedules: which frames each motion-module pass sees, and how overlapping passes are blended.

A motion module can only attend over as many frames as its position table has rows (24 for v1, 32 for
v2/v3/SDXL), and its activations grow with the frame count. Long clips are therefore denoised in windows of
`length` frames; every frame lies in at least one window and frames seen by several windows get a weighted
average of their predictions (`fuse_weights`). Everything here is pure Python/torch and deterministic: the same
arguments always give the same windows, so a sampling step never depends on the previous one.

Modes
- ``uniform``: sliding windows of exactly `length` frames whose neighbours share at least `overlap` frames.
  The starts are spread evenly between the first and the last possible start, so no two windows are
  near-duplicates (a plain "hop then shift the last window to the end" schedule can produce a last window that
  differs from the previous one by a single frame, wasting a whole pass).
- ``looped``: the clip is treated as a circle (frame N-1 is followed by frame 0) and windows wrap around it, so
  the seam of a looping GIF is denoised with context from both sides.
- ``static``: non-overlapping windows. The clip is split into the fewest windows of at most `length` frames,
  balanced so that no window is tiny (34 frames with length 16 -> 12, 11, 11 rather than 16, 16, 2; a 2-frame
  window gives the motion module almost nothing to work with). `overlap` is ignored.

`stride` (uniform and looped only) adds dilated passes, as in the AnimateDiff tools users know: stride 2 adds
windows that see every 2nd frame, stride 3 also every 4th, and so on (levels 1, 2, 4, ... 2**(stride-1)). They
tie distant frames together; a level is skipped when the clip is too short to fill a window at that spacing.

A clip no longer than `length` is always a single window holding the whole clip, in every mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MODES = ("uniform", "looped", "static")
FUSE_METHODS = ("pyramid", "flat")
NOISE_MODES = ("default", "freenoise")  # initial noise layout over the clip: independent, or FreeNoise (freenoise.py)


@dataclass(frozen=True)
class ContextOptions:
    """What the Context Options node outputs (type ADMK_CONTEXT_OPTIONS); validated on construction."""

    length: int = 16
    overlap: int = 4
    stride: int = 1
    mode: str = "uniform"
    fuse: str = "pyramid"
    noise: str = "default"

    def __post_init__(self):
        _validate(self.length, self.overlap, self.stride, self.mode)
        if self.fuse not in FUSE_METHODS:
            raise ValueError(f"Unknown fuse method {self.fuse!r}; choose one of {', '.join(FUSE_METHODS)}.")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"Unknown noise layout {self.noise!r}; choose one of {', '.join(NOISE_MODES)}.")

    def windows(self, num_frames: int) -> list[list[int]]:
        return build_windows(num_frames, self.length, self.overlap, self.stride, self.mode)

    def weights(self, window_len: int) -> torch.Tensor:
        return fuse_weights(window_len, self.fuse)


def _validate(length: int, overlap: int, stride: int, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown context mode {mode!r}; choose one of {', '.join(MODES)}.")
    if int(length) < 1:
        raise ValueError(f"context_length must be at least 1 (got {length}).")
    if int(stride) < 1:
        raise ValueError(f"context_stride must be at least 1 (got {stride}); 1 means contiguous windows only.")
    if mode != "static" and not 0 <= int(overlap) < int(length):
        raise ValueError(
            f"context_overlap must be between 0 and context_length - 1 (got overlap {overlap} with length "
            f"{length}); lower the overlap (a quarter of the length is typical).")


def build_windows(num_frames: int, length: int, overlap: int, stride: int = 1, mode: str = "uniform") -> list[list[int]]:
    """Frame indices of every window, in evaluation order. Every frame of 0..num_frames-1 is covered."""
    if int(num_frames) < 1:
        raise ValueError(f"An animation needs at least 1 frame (got {num_frames}).")
    _validate(length, overlap, stride, mode)
    num_frames, length, overlap, stride = int(num_frames), int(length), int(overlap), int(stride)
    if num_frames <= length:
        return [list(range(num_frames))]
    if mode == "static":
        return _balanced_split(list(range(num_frames)), length)

    tile = _circular_windows if mode == "looped" else _sliding_windows
    windows = tile(list(range(num_frames)), length, overlap)
    for level in range(1, stride):
        step = 1 << level
        if num_frames // step < length:  # the shortest residue sequence could not fill one window
            break
        for start in range(step):
            windows += tile(list(range(start, num_frames, step)), length, overlap)
    return windows


def _even_starts(span: int, count: int) -> list[int]:
    """`count` integer starts spread evenly over 0..span (first 0, last span); gaps differ by at most 1."""
    if count == 1:
        return [0]
    return [math.floor(j * span / (count - 1) + 0.5) for j in range(count)]


def _sliding_windows(seq: list[int], length: int, overlap: int) -> list[list[int]]:
    if len(seq) <= length:
        return [list(seq)]
    hop = length - overlap
    count = math.ceil((len(seq) - length) / hop) + 1  # fewest windows whose gaps are all <= hop
    return [seq[s:s + length] for s in _even_starts(len(seq) - length, count)]


def _circular_windows(seq: list[int], length: int, overlap: int) -> list[list[int]]:
    n = len(seq)
    if n <= length:
        return [list(seq)]
    hop = length - overlap
    count = math.ceil(n / hop)  # around the circle: n positions, gaps <= hop, the seam is not special
    starts = [math.floor(j * n / count + 0.5) for j in range(count)]
    return [[seq[(s + i) % n] for i in range(length)] for s in starts]


def _balanced_split(seq: list[int], length: int) -> list[list[int]]:
    count = math.ceil(len(seq) / length)
    base, extra = divmod(len(seq), count)
    windows, pos = [], 0
    for k in range(count):
        size = base + (1 if k < extra else 0)
        windows.append(seq[pos:pos + size])
        pos += size
    return windows


def fuse_weights(window_len: int, method: str = "pyramid") -> torch.Tensor:
    """Per-position weight of a window's prediction, float32 `[window_len]`, all in (0, 1].

    flat: every position 1. pyramid: rises linearly from the window's edges to its centre (1, 2, .., 2, 1 scaled
    to a peak of 1), so a frame near a window's edge - where the motion module saw context on one side only -
    defers to the window in which it sits more centrally; this hides the seams between windows.
    """
    window_len = int(window_len)
    if window_len < 1:
        raise ValueError(f"A window needs at least 1 frame (got {window_len}).")
    if method == "flat":
        return torch.ones(window_len, dtype=torch.float32)
    if method == "pyramid":
        pos = torch.arange(window_len, dtype=torch.float32)
        ramp = torch.minimum(pos + 1, window_len - pos)
        return ramp / ramp.max()
    raise ValueError(f"Unknown fuse method {method!r}; choose one of {', '.join(FUSE_METHODS)}.")


def longest_window(num_frames: int, options: ContextOptions | None) -> int:
    """Most frames one motion-module pass will see for this clip under these options (None: no windows)."""
    if options is None:
        return int(num_frames)
    return max(len(w) for w in options.windows(num_frames))


def check_context_fits(max_frames: int, options: ContextOptions | None, num_frames: int | None = None,
                       module_name: str = "this motion module") -> None:
    """Refuse windows longer than a motion module can see (its position-table length, `max_frames`).

    Called by the adapter when it knows the module (num_frames None: check the options alone) and again at
    sampling time with the real clip length. Raises ValueError naming the numbers and the fix.
    """
    max_frames = int(max_frames)
    if options is None:
        if num_frames is not None and int(num_frames) > max_frames:
            raise ValueError(
                f"This animation has {num_frames} frames but {module_name} sees at most {max_frames} frames at "
                f"once. Connect a Context Options node (context_length {max_frames} or less, 16 is what the "
                f"official modules were trained on) to Sample Animation, or lower the frame count to {max_frames}.")
        return
    seen = options.length if num_frames is None else longest_window(num_frames, options)
    if seen > max_frames:
        raise ValueError(
            f"context_length {options.length} is longer than the {max_frames} frames {module_name} can see at "
            f"once (its position table has {max_frames} rows). Set context_length to {max_frames} or less "
            f"(16 is what the official modules were trained on).")
