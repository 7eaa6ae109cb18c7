"""Motion strength that varies over the UNet's block groups and over the sampling steps (pure Python).

A MotionLayer adds `strength * delta` to the UNet's features (injection.py); `strength` is Inflate Model's
motion_strength. A MotionScale multiplies it by
    group scale (down / mid / up, by where the layer sits)  x  step scale (a function of sampling progress)
where progress runs from 0 at the first sampling step to 1 at the last (step i of n counts as i / (n - 1)).

The step scale is either a ramp - `start` until `ramp_start`, then linear to `end` at `ramp_end`, then `end`
(progress in percent) - or, when keyframes are given, piecewise linear through "percent:value" points, held flat
before the first and after the last. A MotionScale with every factor 1 is `is_identity` and the layers then
compute exactly what a plain scalar strength computes (the adapter skips the multiplication altogether).
"""
from __future__ import annotations

from dataclasses import dataclass, field

GROUPS = ("down", "mid", "up")


def parse_keyframes(text: str) -> tuple[tuple[float, float], ...]:
    """"0:1.0, 50:1.5, 100:0.8" -> ((0.0, 1.0), (50.0, 1.5), (100.0, 0.8)), sorted by percent; "" -> ()."""
    points = []
    for part in (text or "").replace(";", ",").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if ":" not in part:
            raise ValueError(f"Motion strength keyframe {part!r} is not 'percent:value'; write e.g. "
                             "'0:1.0, 50:1.5, 100:0.8' (percent of the sampling steps : strength multiplier).")
        pct, value = part.split(":", 1)
        try:
            point = (float(pct.strip().rstrip("%")), float(value))
        except ValueError:
            raise ValueError(f"Motion strength keyframe {part!r} has a non-number; write e.g. '50:1.5'.") from None
        if not 0.0 <= point[0] <= 100.0:
            raise ValueError(f"Motion strength keyframe {part!r}: the percent must be between 0 and 100.")
        points.append(point)
    points.sort(key=lambda p: p[0])
    for a, b in zip(points, points[1:]):
        if a[0] == b[0]:
            raise ValueError(f"Two motion strength keyframes at {a[0]}%: keep one value per percent.")
    return tuple(points)


def _interpolate(points, pct: float) -> float:
    if pct <= points[0][0]:
        return points[0][1]
    for (p0, v0), (p1, v1) in zip(points, points[1:]):
        if pct <= p1:
            return v0 + (v1 - v0) * (pct - p0) / (p1 - p0)
    return points[-1][1]


@dataclass(frozen=True)
class MotionScale:
    """What the Motion Strength Schedule node attaches to a MODEL; validated on construction."""

    down: float = 1.0
    mid: float = 1.0
    up: float = 1.0
    start: float = 1.0
    end: float = 1.0
    ramp_start: float = 0.0    # percent of the sampling steps
    ramp_end: float = 100.0
    keyframes: tuple = field(default=())  # ((percent, value), ...) from parse_keyframes; overrides the ramp

    def __post_init__(self):
        if not 0.0 <= self.ramp_start <= self.ramp_end <= 100.0:
            raise ValueError(f"The ramp must satisfy 0 <= ramp_start <= ramp_end <= 100 (got {self.ramp_start} "
                             f"and {self.ramp_end}); they are percents of the sampling steps.")

    @property
    def is_identity(self) -> bool:
        values = (self.down, self.mid, self.up, self.start, self.end) + tuple(v for _, v in self.keyframes)
        return all(v == 1.0 for v in values)

    def group(self, kind: str) -> float:
        if kind not in GROUPS:
            raise ValueError(f"Unknown block group {kind!r}; one of {', '.join(GROUPS)}.")
        return {"down": self.down, "mid": self.mid, "up": self.up}[kind]

    def step(self, progress: float) -> float:
        """Step scale at `progress` in [0, 1] (0: first sampling step, 1: last)."""
        pct = 100.0 * min(max(float(progress), 0.0), 1.0)
        if self.keyframes:
            return _interpolate(self.keyframes, pct)
        if pct <= self.ramp_start:
            return self.start
        if pct >= self.ramp_end:
            return self.end
        return self.start + (self.end - self.start) * (pct - self.ramp_start) / (self.ramp_end - self.ramp_start)

    def factor(self, kind: str, progress: float) -> float:
        return self.group(kind) * self.step(progress)


def step_progress(sigma: float, sample_sigmas) -> float:
    """Progress in [0, 1] of the step whose interval holds `sigma` in a descending sigma list (last entry 0).

    Step i runs from sample_sigmas[i] down to sample_sigmas[i+1]; a sampler's intermediate evaluations (Heun,
    DPM-2) fall inside that interval and count as step i. With n steps, step i is i / (n - 1).
    """
    sigmas = [float(s) for s in sample_sigmas]
    steps = len(sigmas) - 1
    if steps <= 1:
        return 0.0
    index = 0
    for i in range(steps):
        if sigma <= sigmas[i] * (1 + 1e-5):
            index = i
        else:
            break
    return index / (steps - 1)
