"""Frame sequences: loading (video file / image folder via OpenCV), resizing, count matching, temporal smoothing.

Images follow ComfyUI's IMAGE layout: float32 `[N, H, W, 3]`, RGB, values 0..1.

Resize rule ("crop", the default) is the one ComfyUI applies to ControlNet hints and most users expect: crop the
centre of the frame to the target aspect ratio, then scale to the target size (nothing is stretched; the
trimmed margins are split evenly). "stretch" scales without cropping. A target side of 0 keeps the source
size, or keeps the aspect ratio when the other side is given.

Frame-count rule ("resample"): nearest-frame resampling with the first and last frames pinned, i.e. output frame
i shows source frame round(i * (n_src - 1) / (n_dst - 1)): a 24-frame depth clip stretched to 48 frames shows
every source frame twice; squeezed to 12 frames it shows every other one. Frames are never blended.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
RESIZE_METHODS = ("crop", "stretch")
MISMATCH_POLICIES = ("error", "resample")


# ---------------------------------------------------------------- sizes and resizing

def target_size(src_w: int, src_h: int, width: int = 0, height: int = 0) -> tuple[int, int]:
    """Output (w, h): 0 keeps the source side, or follows the aspect ratio when only the other side is set."""
    width, height = int(width), int(height)
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be 0 (keep) or positive (got {width}x{height}).")
    if width == 0 and height == 0:
        return src_w, src_h
    if width == 0:
        return max(1, round(src_w * height / src_h)), height
    if height == 0:
        return width, max(1, round(src_h * width / src_w))
    return width, height


def center_crop_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the centred region of a src_w x src_h frame that has the dst aspect ratio (ComfyUI's rule)."""
    old, new = src_w / src_h, dst_w / dst_h
    x = y = 0
    if old > new:
        x = round((src_w - src_w * (new / old)) / 2)
    elif old < new:
        y = round((src_h - src_h * (old / new)) / 2)
    return x, y, src_w - 2 * x, src_h - 2 * y


def resize_frame(frame: np.ndarray, width: int, height: int, method: str = "crop") -> np.ndarray:
    """Resize one `[H, W(, C)]` array (any dtype OpenCV takes) to width x height by `method`."""
    import cv2

    if method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; choose one of {', '.join(RESIZE_METHODS)}.")
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    if method == "crop":
        x, y, cw, ch = center_crop_box(w, h, width, height)
        frame = frame[y:y + ch, x:x + cw]
    shrinking = width * height < frame.shape[0] * frame.shape[1]
    # INTER_AREA averages when shrinking (no aliasing); linear when enlarging (no ringing on depth edges).
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_rgb_float(frame: np.ndarray) -> np.ndarray:
    """OpenCV frame (gray, BGR or BGRA; 8/16-bit or float) -> float32 RGB `[H, W, 3]` in 0..1."""
    if np.issubdtype(frame.dtype, np.integer):
        scale = float(np.iinfo(frame.dtype).max)
    else:
        scale = 1.0
    arr = frame.astype(np.float32)
    if scale != 1.0:
        arr /= scale
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, 2::-1]  # BGRA -> RGB (alpha dropped)
    else:
        arr = arr[:, :, ::-1]  # BGR -> RGB
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


# ---------------------------------------------------------------- frame-count matching and smoothing

def resample_indices(src_count: int, dst_count: int) -> list[int]:
    """Nearest source frame for each of dst_count frames, first and last pinned (see the module docstring)."""
    if src_count < 1 or dst_count < 1:
        raise ValueError(f"Cannot resample {src_count} frames to {dst_count}; both must be at least 1.")
    if dst_count == 1:
        return [0]
    return [math.floor(i * (src_count - 1) / (dst_count - 1) + 0.5) for i in range(dst_count)]


def match_frame_count(images: torch.Tensor, frames: int, on_mismatch: str = "error", what: str = "depth") -> torch.Tensor:
    """Return a batch with one image per animation frame. A single image is kept as is (it drives every frame).

    on_mismatch "error": a different count raises, naming both counts; "resample": nearest-frame resampling.
    """
    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"Unknown on_mismatch {on_mismatch!r}; choose one of {', '.join(MISMATCH_POLICIES)}.")
    n, frames = int(images.shape[0]), int(frames)
    if frames < 1:
        raise ValueError(f"frames must be at least 1 (got {frames}).")
    if n == frames or n == 1:
        return images
    if on_mismatch == "error":
        raise ValueError(
            f"The {what} batch has {n} images but the animation has {frames} frames. Give one {what} map per "
            f"frame (or a single one for all frames), set frames to {n}, or set on_mismatch to 'resample' to "
            f"stretch the {n} images over {frames} frames (nearest frame).")
    return images[torch.tensor(resample_indices(n, frames))]


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised gaussian kernel over time, radius ceil(3 sigma) frames."""
    radius = max(1, math.ceil(3 * sigma))
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (d / sigma) ** 2)
    return taps / taps.sum()


def temporal_smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur along the frame axis (dim 0) with std `sigma` frames; sigma 0 returns the input unchanged.

    Near the ends the kernel is truncated and renormalised (no padding), so the first and last frames are not
    pulled towards invented values. Per-frame depth estimators flicker; this steadies the ControlNet hints.
    """
    sigma = float(sigma)
    if sigma < 0:
        raise ValueError(f"temporal_smoothing must be 0 (off) or positive (got {sigma}).")
    n = images.shape[0]
    if sigma == 0 or n < 2:
        return images
    taps = gaussian_taps(sigma).tolist()
    radius = len(taps) // 2
    out = torch.zeros_like(images)
    norm = torch.zeros(n, dtype=torch.float64)
    for k, w in enumerate(taps):
        d = k - radius  # out[i] += w * images[i + d] where both ends are inside the clip
        lo, hi = max(0, -d), min(n, n - d)
        if lo >= hi:
            continue
        out[lo:hi].add_(images[lo + d:hi + d], alpha=w)
        norm[lo:hi] += w
    return out.div_(norm.to(device=out.device, dtype=out.dtype).view(-1, *([1] * (images.ndim - 1))))


# ---------------------------------------------------------------- loading

def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: _natural_key(p.name))


def _read_image(path: Path) -> np.ndarray:
    import cv2

    # imdecode over np.fromfile: cv2.imread cannot open non-ASCII paths on Windows.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"Cannot read image file {path}: {e}.") from None
    frame = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if frame is None:
        raise ValueError(f"Cannot decode image file {path}: it is empty, damaged or not an image; "
                         f"remove it from the folder or re-save it as PNG.")
    return frame


def _check_selection(start_frame: int, stride: int, max_frames: int) -> None:
    if start_frame < 0:
        raise ValueError(f"start_frame must be 0 or more (got {start_frame}).")
    if stride < 1:
        raise ValueError(f"stride must be at least 1 (got {stride}); 1 takes every frame.")
    if max_frames < 0:
        raise ValueError(f"max_frames must be 0 (all) or more (got {max_frames}).")


class _Collector:
    """Keeps decoded (resized) frames in their source dtype and fills one float tensor at the end.

    Peak memory is the compact source frames plus the float output, never a second float copy.
    """

    def __init__(self, width: int, height: int, method: str, source: str):
        self.width, self.height, self.method, self.source = width, height, method, source
        self.frames: list[np.ndarray] = []
        self.size: tuple[int, int] | None = None

    def add(self, frame: np.ndarray, label: str) -> None:
        h, w = frame.shape[:2]
        tw, th = target_size(w, h, self.width, self.height)
        frame = resize_frame(frame, tw, th, self.method)
        if self.size is None:
            self.size = (tw, th)
        elif self.size != (tw, th):
            raise ValueError(
                f"{label} is {w}x{h} but earlier frames of {self.source} are {self.size[0]}x{self.size[1]}; "
                f"set width and height to resize every frame to one size.")
        self.frames.append(frame)

    def tensor(self) -> torch.Tensor:
        w, h = self.size
        out = torch.empty((len(self.frames), h, w, 3), dtype=torch.float32)
        for i, frame in enumerate(self.frames):
            out[i] = torch.from_numpy(to_rgb_float(frame))
        self.frames.clear()
        return out


def load_video(path: str | os.PathLike, start_frame: int = 0, stride: int = 1, max_frames: int = 0,
               width: int = 0, height: int = 0, resize: str = "crop") -> tuple[torch.Tensor, float]:
    """Decode frames start_frame, start_frame+stride, ... (at most max_frames; 0 = all) -> (IMAGE, source fps)."""
    import cv2

    _check_selection(start_frame, stride, max_frames)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"Cannot open {path} as a video (unknown format or codec). Convert it to an "
                             f"H.264 .mp4, or export its frames to a folder of PNGs and load the folder.")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        collector = _Collector(width, height, resize, str(path))
        index = 0
        while max_frames == 0 or len(collector.frames) < max_frames:
            if not cap.grab():  # grab() decodes without colour conversion: cheap for skipped frames
                break
            if index >= start_frame and (index - start_frame) % stride == 0:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise ValueError(f"Frame {index} of {path} could not be decoded; the file may be damaged.")
                collector.add(frame, f"Frame {index} of {path}")
            index += 1
    finally:
        cap.release()
    if not collector.frames:
        if index == 0:
            raise ValueError(f"{path} opened but no frame could be decoded; the file may be damaged or empty.")
        raise ValueError(f"start_frame {start_frame} is past the end of {path}, which has {index} frames; "
                         f"set start_frame to {max(0, index - 1)} or less.")
    return collector.tensor(), fps


def load_image_folder(folder: str | os.PathLike, start_frame: int = 0, stride: int = 1, max_frames: int = 0,
                      width: int = 0, height: int = 0, resize: str = "crop") -> torch.Tensor:
    """Images of a folder in natural order (frame2 before frame10), selected like load_video -> IMAGE."""
    _check_selection(start_frame, stride, max_frames)
    files = list_image_files(folder)
    if not files:
        raise ValueError(f"The folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    chosen = files[start_frame::stride]
    if max_frames:
        chosen = chosen[:max_frames]
    if not chosen:
        raise ValueError(f"start_frame {start_frame} is past the end of {folder}, which has {len(files)} images; "
                         f"set start_frame to {len(files) - 1} or less.")
    collector = _Collector(width, height, resize, str(folder))
    for path in chosen:
        collector.add(_read_image(path), f"Image {path.name}")
    return collector.tensor()


def load_frames(path: str | os.PathLike, start_frame: int = 0, stride: int = 1, max_frames: int = 0,
                width: int = 0, height: int = 0, resize: str = "crop") -> tuple[torch.Tensor, float | None]:
    """A video file, an image folder or a single image -> (IMAGE `[N,H,W,3]`, fps or None when unknown)."""
    if resize not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {resize!r}; choose one of {', '.join(RESIZE_METHODS)}.")
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{path} does not exist; give the path of a video file or of a folder of images.")
    if p.is_dir():
        return load_image_folder(p, start_frame, stride, max_frames, width, height, resize), None
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        _check_selection(start_frame, stride, max_frames)
        if start_frame > 0:
            raise ValueError(f"{path} is a single image; start_frame {start_frame} is past its only frame (use 0).")
        collector = _Collector(width, height, resize, str(p))
        collector.add(_read_image(p), f"Image {p.name}")
        return collector.tensor(), None
    return load_video(p, start_frame, stride, max_frames, width, height, resize)


def select_frames(images: torch.Tensor, start_frame: int = 0, stride: int = 1, max_frames: int = 0,
                  width: int = 0, height: int = 0, resize: str = "crop") -> torch.Tensor:
    """Frames already in memory (IMAGE `[N,H,W,C]`, e.g. a VIDEO's components) with the same selection and
    resizing rules as a file: start_frame, every stride-th, at most max_frames (0 = all), then resized."""
    _check_selection(start_frame, stride, max_frames)
    if resize not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {resize!r}; choose one of {', '.join(RESIZE_METHODS)}.")
    count = int(images.shape[0])
    if start_frame >= count:
        raise ValueError(f"start_frame {start_frame} is past the end of the video, which has {count} frames; "
                         f"set start_frame to {max(0, count - 1)} or less.")
    picked = images[start_frame::stride]
    if max_frames:
        picked = picked[:max_frames]
    picked = picked[..., :3] if picked.shape[-1] >= 3 else picked[..., :1].expand(*picked.shape[:-1], 3)
    h, w = int(picked.shape[1]), int(picked.shape[2])
    tw, th = target_size(w, h, width, height)
    if (tw, th) == (w, h):
        return picked.float().clone()
    return torch.stack([torch.from_numpy(resize_frame(f.float().cpu().numpy(), tw, th, resize)) for f in picked])
