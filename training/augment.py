"""Spatial transforms for training clips and the rule-based camera motions MotionLoRA learns from.

Frames are numpy uint8 RGB arrays `[H, W, 3]` (a clip is a list of them or an array `[T, H, W, 3]`).

Camera motions (the AnimateDiff paper's stage 3 makes its reference videos this way; the authors never
released that code, so the conventions below are ours and stated precisely):
a square crop window moves over the source along time and every window is resampled to `size x size`.
- zoom_in: the window shrinks from the full centred square to 1/(1+s) of it: content grows by 1+s.
- zoom_out: the reverse.
- pan_left/right/up/down: the camera (window, 1/(1+s) of the full square) travels the whole free range in
  that direction, so the content moves the opposite way on screen (pan_left: objects drift right).
- roll_cw/roll_ccw: the camera rotates by s*90 degrees clockwise / anticlockwise (window 1/sqrt(2) so it
  stays inside the source); content turns the opposite way on screen.
- signed pairs (SIGNED_PAIRS, e.g. "pan_left/pan_right"): one LoRA for both moves, by the sign of its strength.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

Frames = Union[np.ndarray, Sequence[np.ndarray]]


def resize_center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is `size` (area filter when shrinking), then take the centred square."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(frame[top:top + size, left:left + size])


def hflip(frames: np.ndarray) -> np.ndarray:
    """Horizontal flip of a clip `[T, H, W, C]` (or one frame `[H, W, C]`)."""
    return np.ascontiguousarray(frames[..., ::-1, :])


def to_tensor_range(frames: np.ndarray):
    """uint8 `[T, H, W, 3]` -> float32 torch `[T, 3, H, W]` in [-1, 1] (the VAE's input range)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.permute(0, 3, 1, 2).contiguous()


# --- camera motions -----------------------------------------------------------------------------------------

# Each motion maps progress p in [0, 1] to (centre_x, centre_y, half_side, angle) in units of the largest
# centred square's half side (centre 0,0 = the source centre; +x right, +y down; angle in radians, positive
# = clockwise on screen because image y points down).
WindowFn = Callable[[float, float], tuple]


def _zoom_in(p, s):
    return 0.0, 0.0, 1.0 / (1.0 + s * p), 0.0


def _zoom_out(p, s):
    return 0.0, 0.0, 1.0 / (1.0 + s * (1.0 - p)), 0.0


def _pan(dx, dy):
    def window(p, s):
        half = 1.0 / (1.0 + s)
        slack = 1.0 - half  # the window may travel this far from the centre either way
        offset = slack * (2.0 * p - 1.0)
        return dx * offset, dy * offset, half, 0.0
    return window


def _roll(sign):
    def window(p, s):
        return 0.0, 0.0, 1.0 / math.sqrt(2.0), sign * s * (math.pi / 2.0) * p
    return window


CAMERA_MOTIONS: Dict[str, WindowFn] = {
    "zoom_in": _zoom_in,
    "zoom_out": _zoom_out,
    "pan_left": _pan(-1, 0),
    "pan_right": _pan(1, 0),
    "pan_up": _pan(0, -1),
    "pan_down": _pan(0, 1),
    "roll_cw": _roll(1.0),
    "roll_ccw": _roll(-1.0),
}


# Signed pairs: ONE MotionLoRA for two opposite moves, used at strength +s for the first and -s for the second.
# Why the maths allows it: the LoRA enters the motion module's weights linearly (W + s * up @ down), so to first
# order its effect on the output is odd in s. Training makes it exact where it matters: each step shows the same
# still, noise and timestep once moved the first way with the LoRA at +1 and once the other way at -1
# (data.ClipDataset pairs them, Trainer.loss flips the scale), so at the start the gradient is the difference of
# the two moves' gradients: what both share (more motion, the stills' look) cancels and only the direction is
# learnt. Two separate LoRAs each learn mostly that shared part (training/README.md, "Pan MotionLoRAs").
SIGNED_PAIRS: Dict[str, Tuple[str, str]] = {f"{a}/{b}": (a, b) for a, b in (
    ("pan_left", "pan_right"), ("pan_up", "pan_down"), ("zoom_in", "zoom_out"), ("roll_cw", "roll_ccw"))}


def signed_pair(name: str) -> Optional[Tuple[str, str]]:
    """(motion at +1, motion at -1) for a SIGNED_PAIRS name ("pan_left/pan_right"), None for anything else."""
    key = name.strip().lower().replace("-", "_").replace(" ", "")
    return SIGNED_PAIRS.get(key)


def get_camera_motion(name: str) -> WindowFn:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in CAMERA_MOTIONS:
        raise ValueError(f"unknown camera motion {name!r}; choose one of: {', '.join(CAMERA_MOTIONS)}")
    return CAMERA_MOTIONS[key]


def _window_matrix(cx, cy, half, angle, src_h, src_w, size):
    """2x3 matrix mapping output pixel (u, v) to source pixel coordinates (cv2 integer-centred)."""
    big = min(src_h, src_w) / 2.0  # half side of the largest centred square, in source pixels
    cx_px, cy_px = src_w / 2.0 + cx * big, src_h / 2.0 + cy * big
    s = half * big
    a = 2.0 * s / size  # source pixels per output pixel
    cos, sin = math.cos(angle), math.sin(angle)
    # continuous source x = cx + cos*(a*(u+.5) - s) - sin*(a*(v+.5) - s); cv2 pixel = continuous - 0.5
    off_u, off_v = a * 0.5 - s, a * 0.5 - s
    m = np.array([
        [a * cos, -a * sin, cx_px - 0.5 + cos * off_u - sin * off_v],
        [a * sin, a * cos, cy_px - 0.5 + sin * off_u + cos * off_v],
    ], dtype=np.float64)
    return m


def camera_motion_clip(source: Frames, motion: str, num_frames: int, size: int, strength: float = 0.5) -> np.ndarray:
    """Make a `[num_frames, size, size, 3]` uint8 clip by moving a virtual camera over `source`.

    `source` is one still image `[H, W, 3]` (repeated) or a clip of >= num_frames frames (frame t is seen
    through window t, so the clip's own motion is kept and the camera motion added on top).
    """
    if strength < 0:
        raise ValueError("camera strength must be >= 0")
    window = get_camera_motion(motion)
    if isinstance(source, np.ndarray) and source.ndim == 3:
        frames = [source] * num_frames
    else:
        frames = list(source)
        if len(frames) < num_frames:
            raise ValueError(f"camera_motion_clip needs {num_frames} source frames, got {len(frames)}")
        frames = frames[:num_frames]
    # Pre-shrink big sources with an area filter so the bilinear warp below never aliases: at the tightest
    # window one output pixel then covers about one source pixel.
    tightest = min(window(p, strength)[2] for p in (0.0, 0.5, 1.0))
    h, w = frames[0].shape[:2]
    target_short = int(math.ceil(size / tightest))
    if min(h, w) > target_short:
        scale = target_short / min(h, w)
        frames = [cv2.resize(f, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
                  for f in frames]
        h, w = frames[0].shape[:2]
    out = np.empty((num_frames, size, size, frames[0].shape[2]), dtype=np.uint8)
    for t, frame in enumerate(frames):
        p = t / (num_frames - 1) if num_frames > 1 else 0.0
        m = _window_matrix(*window(p, strength), h, w, size)
        out[t] = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT101)
    return out
