"""What the demo measures on generated animations, by tracking the prompted colour (see synthetic.colour_mask).

- consistency: is it one object moving smoothly? mask IoU between consecutive frames, mean centroid jump,
  and the fraction of frames where the object is present at all;
- direction: a least-squares line through the centroid's position along the prompted axis: its slope
  (pixels per frame, positive = the prompted way), its R^2 (1 = steady motion, ~0 = jumping around), and
  "moves as prompted" = at least 4 px the prompted way over the clip with R^2 >= 0.5; plus the fraction of
  frame-to-frame steps that go the prompted way;
- zoom: object area at the end over the area at the start, and the slope of log-area per frame.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .synthetic import DIRECTIONS, track_object

MIN_AREA = 12  # pixels: below this a frame counts as "object absent"


def measure(frames: np.ndarray, colour: str, direction: Optional[str] = None) -> Dict[str, float]:
    """frames: uint8 or [0,1] float `[F, H, W, 3]`."""
    t = track_object(frames, colour)
    mask, area = t["mask"], t["area"]
    present = area >= MIN_AREA
    ious, jumps = [], []
    for i in range(len(area) - 1):
        if present[i] and present[i + 1]:
            inter = np.logical_and(mask[i], mask[i + 1]).sum()
            union = np.logical_or(mask[i], mask[i + 1]).sum()
            ious.append(inter / max(union, 1))
            jumps.append(float(np.hypot(t["cx"][i + 1] - t["cx"][i], t["cy"][i + 1] - t["cy"][i])))
        else:
            ious.append(0.0)
    out = {"present": float(present.mean()), "iou": float(np.mean(ious)) if ious else 0.0,
           "jump_px": float(np.mean(jumps)) if jumps else float("nan"),
           "area_first": float(area[:3].mean()), "area_last": float(area[-3:].mean())}
    frames_idx = np.arange(len(area))[present]
    if present.sum() >= 3:
        la = np.log(area[present])
        out["log_area_slope"] = float(np.polyfit(frames_idx, la, 1)[0])
        out["area_ratio"] = float(area[-3:].mean() / max(area[:3].mean(), 1.0))
        if direction is not None:
            dx, dy = DIRECTIONS[direction]
            sign = dx or dy
            pos = (t["cx"] if dx else t["cy"])[present] * sign  # increasing = moving the prompted way
            slope, intercept = np.polyfit(frames_idx, pos, 1)
            residual = pos - (slope * frames_idx + intercept)
            r2 = 1.0 - float((residual ** 2).sum()) / max(float(((pos - pos.mean()) ** 2).sum()), 1e-9)
            out["slope_px_per_frame"] = float(slope)
            out["r2"] = r2
            out["direction_ok"] = float(slope * (len(area) - 1) >= 4.0 and r2 >= 0.5)
            steps = [(present[i] and present[i + 1]) for i in range(len(area) - 1)]
            full = (t["cx"] if dx else t["cy"]) * sign
            moves = [full[i + 1] - full[i] for i in range(len(area) - 1) if steps[i]]
            out["steps_prompted_way"] = float(np.mean([m > 0 for m in moves])) if moves else 0.0
            across = t["cy"][present] if dx else t["cx"][present]
            out["drift_across_px"] = float(abs(np.polyfit(frames_idx, across, 1)[0]) * (len(area) - 1))
    else:
        out.update({"log_area_slope": float("nan"), "area_ratio": float("nan")})
        if direction is not None:
            out.update({"slope_px_per_frame": float("nan"), "r2": float("nan"), "direction_ok": 0.0,
                        "steps_prompted_way": 0.0, "drift_across_px": float("nan")})
    return out


OUTLIER_RATIO = 3.0  # a frame this many times further from its neighbours than the clip's typical step
OUTLIER_FLOOR = 8.0  # ... and at least this far (mean absolute difference, 0-255 levels): not a still clip's jitter


def frame_outliers(frames: np.ndarray) -> list:
    """Indices of frames that differ from all their neighbours far more than consecutive frames usually do
    (e.g. one frame of noise in an otherwise steady clip). frames: uint8 or [0,1] float `[F, H, W, 3]`.

    d_i = mean |frame_i - frame_{i-1}|; frame i is an outlier when every step to a neighbour (d_i, d_{i+1}) exceeds
    both OUTLIER_RATIO x the median step of the clip and OUTLIER_FLOOR; an end frame, whose one neighbour must
    then continue the clip normally (else the neighbour is the odd one). Clips whose frames all differ (an image
    model without motion) have a large median step, so that test flags nothing there; a second one does: a frame
    whose frame_detail exceeds NOISY_RATIO x the clip's median (and the median + NOISY_FLOOR) is noise."""
    x = np.asarray(frames, dtype=np.float32)
    if x.max() <= 1.0:
        x = x * 255.0
    if x.shape[0] < 3:
        return []
    steps = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # steps[i-1] = d_i
    limit = max(OUTLIER_RATIO * float(np.median(steps)), OUTLIER_FLOOR)
    out = []
    for i in range(x.shape[0]):
        near = [steps[j] for j in (i - 1, i) if 0 <= j < steps.shape[0]]
        if len(near) == 1:  # an end: the step beyond its neighbour must be ordinary
            near.append(limit if steps[1 if i == 0 else -2] > limit else np.inf)
        if all(d > limit for d in near):
            out.append(i)
    # A noise frame among frames that all differ (an image model without motion: its steps are all large)
    # still stands out by its own high-frequency energy.
    detail = frame_detail(x)
    noisy = max(NOISY_RATIO * float(np.median(detail)), float(np.median(detail)) + NOISY_FLOOR)
    return sorted(set(out) | {i for i in range(x.shape[0]) if detail[i] > noisy})


NOISY_RATIO = 1.8  # a frame with this many times the clip's median high-frequency energy ...
NOISY_FLOOR = 1.5  # ... and at least this much more (levels): not the jitter of a clip of flat frames


def frame_detail(frames: np.ndarray) -> np.ndarray:
    """Per frame, the mean absolute difference between horizontally and vertically adjacent pixels (0-255
    levels): low for flat shapes on a plain background, high for noise."""
    x = np.asarray(frames, dtype=np.float32)
    return (np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))) / 2
