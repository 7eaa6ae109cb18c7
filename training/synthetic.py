"""A small captioned synthetic video set: one coloured shape moving in a known direction on a dark background
("a red circle moving left"). Used by the demo and the tests; everything is seeded and needs no download.

The ground truth (colour, shape, direction, centre per frame) is written next to the videos in
`metadata.json`, so evaluations can check what a model generates against what the captions promise.
"""
from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

BACKGROUND = (24, 24, 28)
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 205, 65),
    "blue": (55, 95, 235),
    "yellow": (235, 215, 45),
}
SHAPES = ("circle", "square")
DIRECTIONS: Dict[str, Tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def caption_for(colour: str, shape: str, direction: Optional[str]) -> str:
    return f"a {colour} {shape} moving {direction}" if direction else f"a {colour} {shape}"


def all_prompts(colours: Sequence[str] = tuple(COLOURS), shapes: Sequence[str] = SHAPES,
                directions: Sequence[str] = tuple(DIRECTIONS), stills: bool = False) -> List[str]:
    out = [caption_for(c, s, d) for c in colours for s in shapes for d in directions]
    if stills:
        out += [caption_for(c, s, None) for c in colours for s in shapes]
    return out


def render_shape(size: int, shape: str, colour: Sequence[int], centre: Tuple[float, float], radius: float,
                 background: Sequence[int] = BACKGROUND, supersample: int = 4) -> np.ndarray:
    """One RGB uint8 frame; drawn at `supersample`x and area-downsampled so sub-pixel motion stays smooth."""
    big = size * supersample
    img = np.empty((big, big, 3), dtype=np.uint8)
    img[:] = np.asarray(background, dtype=np.uint8)
    cx, cy = centre[0] * supersample, centre[1] * supersample
    r = radius * supersample
    col = tuple(int(c) for c in colour)
    if shape == "circle":
        cv2.circle(img, (int(round(cx)), int(round(cy))), int(round(r)), col, thickness=-1, lineType=cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(img, (int(round(cx - r)), int(round(cy - r))), (int(round(cx + r)), int(round(cy + r))), col,
                      thickness=-1)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if supersample == 1:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@dataclass
class ClipSpec:
    file: str
    caption: str
    colour: str
    shape: str
    direction: Optional[str]  # None for a still image
    radius: float
    centres: List[Tuple[float, float]]


def random_spec(rng: np.random.Generator, size: int, n_frames: int, colour: str, shape: str,
                direction: Optional[str], travel: float = 0.55) -> ClipSpec:
    """A shape crossing `travel` of the frame along `direction`, at a random offset across it."""
    radius = float(rng.uniform(0.10, 0.15) * size)
    margin = radius + 1.0
    if direction is None:
        c = (float(rng.uniform(0.4, 0.6) * size), float(rng.uniform(0.4, 0.6) * size))
        return ClipSpec("", caption_for(colour, shape, None), colour, shape, None, radius, [c] * n_frames)
    dx, dy = DIRECTIONS[direction]
    dist = travel * size
    # Along the motion axis: start so the whole path stays inside the frame; across it: anywhere inside.
    along0 = float(rng.uniform(margin, size - margin - dist))
    across = float(rng.uniform(margin, size - margin))
    centres = []
    for t in range(n_frames):
        p = t / (n_frames - 1) if n_frames > 1 else 0.0
        along = along0 + p * dist
        if dx:
            x = along if dx > 0 else size - along
            centres.append((x, across))
        else:
            y = along if dy > 0 else size - along
            centres.append((across, y))
    return ClipSpec("", caption_for(colour, shape, direction), colour, shape, direction, radius, centres)


def _coverage(size: int, shape: str, centre: Tuple[float, float], radius: float) -> np.ndarray:
    """`[H, W, 1]` float in [0, 1]: how much of each pixel the shape covers (antialiased like render_shape)."""
    return render_shape(size, shape, (255, 255, 255), centre, radius, background=(0, 0, 0))[..., :1] / np.float32(255)


def render_trailed(size: int, shape: str, colour: Sequence[int], centre: Tuple[float, float], radius: float,
                   back: Tuple[float, float], trail: float, copies: int = 6, opacity: float = 0.45) -> np.ndarray:
    """The shape with a fading motion trail (like motion blur or a comet's tail) `trail` x radius long, towards
    `back` (a unit vector pointing opposite to the motion): faint copies of the shape, older ones fainter.

    Why: a still frame then shows which way its object moves, as real footage does through motion blur, so a
    frame model learns "moving right" as an image and the motion module can learn to continue what a frame
    shows. The trail stays below the colour tracker's tolerance (it counts a pixel from 0.65 of the colour; keep
    opacity below that), so it does not move the measured centroid."""
    bg = np.asarray(BACKGROUND, dtype=np.float32)
    col = np.asarray(colour, dtype=np.float32)
    alpha = np.zeros((size, size, 1), np.float32)
    for j in range(1, copies + 1):  # copy j sits j/copies of the trail back, fainter the older it is
        d = trail * radius * j / copies
        c = (centre[0] + back[0] * d, centre[1] + back[1] * d)
        cover = _coverage(size, shape, c, radius)
        # max, not over-compositing: overlapping copies must not add up past `opacity`
        alpha = np.maximum(alpha, opacity * (1.0 - (j - 1) / copies) * cover)
    img = bg * (1 - alpha) + col * alpha
    cover = _coverage(size, shape, centre, radius)
    img = img * (1 - cover) + col * cover
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec, size: int, trail: float = 0.0, trail_opacity: float = 0.45) -> np.ndarray:
    """RGB uint8 `[T, H, W, 3]`; trail > 0 adds a motion trail that long (x radius) behind a moving shape."""
    colour = COLOURS[spec.colour]
    if trail <= 0 or spec.direction is None:
        return np.stack([render_shape(size, spec.shape, colour, c, spec.radius) for c in spec.centres])
    dx, dy = DIRECTIONS[spec.direction]
    return np.stack([render_trailed(size, spec.shape, colour, c, spec.radius, (-dx, -dy), trail,
                                    opacity=trail_opacity)
                     for c in spec.centres])


def write_video(path: str, frames: np.ndarray, fps: float = 8.0) -> None:
    """RGB uint8 `[T, H, W, 3]` -> .mp4 (mpeg4 part 2, what opencv writes without extra codecs) or .avi (FFV1)."""
    ext = os.path.splitext(path)[1].lower()
    fourcc = cv2.VideoWriter_fourcc(*("FFV1" if ext in (".avi", ".mkv") else "mp4v"))
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(path, fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"opencv cannot write {path!r}; use a .avi path (FFV1) or install an opencv with FFmpeg")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def make_synthetic_set(out_dir: str, videos_per_prompt: int = 2, size: int = 64, n_frames: int = 61,
                       colours: Sequence[str] = tuple(COLOURS), shapes: Sequence[str] = SHAPES,
                       directions: Sequence[str] = tuple(DIRECTIONS), stills_per_prompt: int = 0,
                       seed: int = 0, video_ext: str = ".mp4", trail: float = 0.0,
                       trail_opacity: float = 0.45) -> List[ClipSpec]:
    """Write videos (+ optional still PNGs), `captions.csv` (file,caption) and `metadata.json` into out_dir.
    trail > 0 draws a fading motion trail that many radii long behind each moving shape (see render_trailed).

    Defaults give clips long enough for 16 frames at stride 4 (61 frames), the paper's sampling.
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs: List[ClipSpec] = []
    n = 0
    for colour in colours:
        for shape in shapes:
            for direction in directions:
                for _ in range(videos_per_prompt):
                    spec = random_spec(rng, size, n_frames, colour, shape, direction)
                    spec.file = f"clip_{n:04d}{video_ext}"
                    specs.append(spec)
                    n += 1
            for _ in range(stills_per_prompt):
                spec = random_spec(rng, size, 1, colour, shape, None)
                spec.file = f"still_{n:04d}.png"
                specs.append(spec)
                n += 1

    def write(spec: ClipSpec) -> None:
        path = os.path.join(out_dir, spec.file)
        if spec.direction is None:
            cv2.imwrite(path, cv2.cvtColor(render_clip(spec, size)[0], cv2.COLOR_RGB2BGR))
        else:
            write_video(path, render_clip(spec, size, trail, trail_opacity))

    # every random draw is made above, so rendering in parallel threads (opencv releases the GIL) changes nothing
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(write, specs))
    with open(os.path.join(out_dir, "captions.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "caption"])
        for s in specs:
            w.writerow([s.file, s.caption])
    with open(os.path.join(out_dir, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump({"size": size, "frames": n_frames, "background": BACKGROUND, "colours": COLOURS, "trail": trail,
                   "clips": [asdict(s) for s in specs]}, f, indent=1)
    return specs


# --- measuring generated frames -----------------------------------------------------------------------------

def colour_mask(frames: np.ndarray, colour: str, tolerance: float = 0.35) -> np.ndarray:
    """Boolean `[T, H, W]`: pixels nearer to the named colour than to the background and within `tolerance`
    (fraction of the colour's distance from the background). Works on uint8 or [0, 1] float frames."""
    f = frames.astype(np.float32)
    if f.max() <= 1.0 + 1e-6:
        f = f * 255.0
    target = np.asarray(COLOURS[colour], dtype=np.float32)
    bg = np.asarray(BACKGROUND, dtype=np.float32)
    d_target = np.linalg.norm(f - target, axis=-1)
    d_bg = np.linalg.norm(f - bg, axis=-1)
    # Reject other colours too: a pixel counts only if it is closest to the target among all palette entries.
    others = [np.linalg.norm(f - np.asarray(c, np.float32), axis=-1) for k, c in COLOURS.items() if k != colour]
    closest = np.all(np.stack([d_target < o for o in others]), axis=0) if others else True
    return (d_target < tolerance * np.linalg.norm(target - bg)) & (d_target < d_bg) & closest


def track_object(frames: np.ndarray, colour: str) -> Dict[str, np.ndarray]:
    """Per-frame area (pixels) and centroid (x, y; NaN where the object is absent) of the coloured object."""
    mask = colour_mask(frames, colour)
    area = mask.reshape(mask.shape[0], -1).sum(1).astype(np.float64)
    ys, xs = np.mgrid[0:mask.shape[1], 0:mask.shape[2]]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask * xs).reshape(mask.shape[0], -1).sum(1) / area
        cy = (mask * ys).reshape(mask.shape[0], -1).sum(1) / area
    return {"mask": mask, "area": area, "cx": cx, "cy": cy}
