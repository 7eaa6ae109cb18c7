"""Video-caption data: a folder of videos (and/or still images) with captions, read with opencv.

Clips are `frames` frames at `stride`, resized + centre-cropped to `size`, randomly flipped, in [-1, 1]
(the AnimateDiff paper's stage-2 sampling). With `camera_motion` set, each clip is instead the source seen
through a moving virtual camera (MotionLoRA reference clips; stills work too). With `cached_latents` the
dataset returns stored VAE latents instead of pixels.

Sample k of the whole run (k = step * global_batch + position) is a pure function of (seed, k): the video
order comes from a seeded permutation per epoch and each sample's random choices from its own generator.
So the same global batch is drawn whatever the number of processes, which is what makes 1-process and
N-process training comparable, and a resumed run continues the exact sequence.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import torch

from .augment import SIGNED_PAIRS, camera_motion_clip, hflip, resize_center_crop, signed_pair, to_tensor_range

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Entry:
    path: str
    caption: str
    num_frames: int  # 1 for a still image
    frames: Optional[np.ndarray] = None  # uint8 [T, H, W, 3] held in memory (the Train MotionLoRA node's IMAGE)

    @property
    def is_still(self) -> bool:
        if self.frames is not None:
            return self.num_frames == 1
        return self.num_frames == 1 and self.path.lower().endswith(IMAGE_EXTS)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        if self.frames is not None:
            return self.frames[[min(int(i), self.num_frames - 1) for i in indices]]
        return read_frames(self.path, indices)


def memory_entries(frames: np.ndarray, caption: str, stills: bool) -> List[Entry]:
    """Entries over uint8 `[N, H, W, 3]` frames: one clip of N frames, or (stills) N still images."""
    if stills:
        return [Entry(f"<image {i}>", caption, 1, frames[i:i + 1]) for i in range(frames.shape[0])]
    return [Entry("<clip>", caption, int(frames.shape[0]), frames)]


def read_captions(root: str, captions: str) -> List[tuple]:
    """(relative file, caption) pairs from CSV (`file,caption` header) or JSON (list of {file, caption} objects,
    or one {file: caption} mapping). A relative `captions` path is looked up inside `root` first."""
    path = captions if os.path.isabs(captions) or not root else os.path.join(root, captions)
    if not os.path.isfile(path) and os.path.isfile(captions):
        path = captions
    if not os.path.isfile(path):
        raise FileNotFoundError(f"captions file {captions!r} not found (looked in {root!r}); write a CSV with the "
                                f"header 'file,caption' or a JSON list of {{\"file\", \"caption\"}} objects")
    if path.lower().endswith(".json"):
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            pairs = [(str(k), str(v)) for k, v in data.items()]
        elif isinstance(data, list):
            try:
                pairs = [(str(d["file"]), str(d.get("caption", ""))) for d in data]
            except (TypeError, KeyError):
                raise ValueError(f"{path}: each JSON item must be an object with 'file' and 'caption'") from None
        else:
            raise ValueError(f"{path}: JSON captions must be a list of objects or a mapping file -> caption")
    else:
        with open(path, "r", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "file" not in reader.fieldnames or "caption" not in reader.fieldnames:
                raise ValueError(f"{path}: the CSV needs a header row 'file,caption' (got {reader.fieldnames})")
            pairs = [(row["file"], row["caption"] or "") for row in reader]
    if not pairs:
        raise ValueError(f"{path}: no captioned files listed")
    return pairs


def count_frames(path: str) -> int:
    if path.lower().endswith(IMAGE_EXTS):
        return 1
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"opencv cannot open video {path!r}; convert it to .mp4 (H.264/MPEG-4) or check the path")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if n <= 0:  # some containers do not store a count: decode to find out
        n = 0
        while cap.grab():
            n += 1
    cap.release()
    return n


def read_frames(path: str, indices: Sequence[int]) -> np.ndarray:
    """RGB uint8 `[len(indices), H, W, 3]`; decodes sequentially (seeking is unreliable across codecs)."""
    if path.lower().endswith(IMAGE_EXTS):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path!r}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return np.stack([img] * len(indices))
    wanted = sorted(set(int(i) for i in indices))
    got: Dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(path)
    i = 0
    last = None
    while wanted and i <= wanted[-1]:
        ok, frame = cap.read()
        if not ok:
            break
        last = frame
        if i in wanted:
            got[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    if last is None:
        raise ValueError(f"no frames decoded from {path!r}")
    missing = [j for j in wanted if j not in got]
    if missing:  # the container over-reported its length: repeat the last decoded frame
        tail = cv2.cvtColor(last, cv2.COLOR_BGR2RGB)
        for j in missing:
            got[j] = tail
    return np.stack([got[int(j)] for j in indices])


def scan_entries(root: str, captions: str) -> List[Entry]:
    entries = []
    for rel, caption in read_captions(root, captions):
        path = rel if os.path.isabs(rel) else os.path.join(root, rel)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{rel!r} is listed in the captions but not found under {root!r}")
        entries.append(Entry(path, caption, count_frames(path)))
    return entries


def clip_indices(num_frames: int, frames: int, stride: int, rng: np.random.Generator) -> List[int]:
    """`frames` indices at `stride` from a random start; the stride shrinks (as in the official loader) when
    the video is too short, and a video shorter than `frames` repeats its last frame."""
    if frames == 1:
        return [int(rng.integers(0, num_frames))]
    stride = max(1, min(stride, (num_frames - 1) // (frames - 1))) if num_frames > 1 else 1
    span = (frames - 1) * stride + 1
    start = int(rng.integers(0, max(1, num_frames - span + 1)))
    return [min(start + i * stride, num_frames - 1) for i in range(frames)]


MIRROR_SWAPS = frozenset({"pan_left", "pan_right", "roll_cw", "roll_ccw"})  # camera moves a flip turns around


class ClipDataset(torch.utils.data.Dataset):
    """Item k (global sample number) -> {"pixels" [F,3,S,S] in [-1,1] | "latents" [F,4,s,s], "caption", "index"},
    plus "frame_keys" (one string per frame) when each frame is a deterministic function of its key: frames of a
    video without camera motion, and a camera motion over a still. The trainer encodes each key once."""

    def __init__(self, entries: List[Entry], frames: int = 16, stride: int = 4, size: int = 256, flip: bool = True,
                 empty_prompt_prob: float = 0.1, camera_motion: str = "", camera_strength: float = 0.5,
                 cached_latents: str = "", seed: int = 0):
        if not entries:
            raise ValueError("the dataset is empty")
        self.entries = entries
        self.frames, self.stride, self.size, self.flip = frames, stride, size, flip
        self.empty_prompt_prob = empty_prompt_prob
        self.signed = signed_pair(camera_motion) if "/" in camera_motion else None
        if "/" in camera_motion and self.signed is None:
            raise ValueError(f"camera motion {camera_motion!r} is not a signed pair; use one of {', '.join(SIGNED_PAIRS)}")
        self.camera_motions = list(self.signed or [m.strip() for m in camera_motion.split(",") if m.strip()])
        self.camera_strength = camera_strength
        self.cached_latents = cached_latents
        self.seed = seed
        if self.camera_motions and cached_latents:
            raise ValueError("camera motion works on pixels; unset data.cached_latents for the motionlora stage")
        if frames > 1 and not self.camera_motions:
            stills = [e.path for e in entries if e.is_still]
            if stills:
                raise ValueError(f"{len(stills)} still image(s) (e.g. {stills[0]!r}) cannot make a {frames}-frame "
                                 f"clip; remove them or set data.camera_motion to animate them")

    def __len__(self) -> int:
        # Samples are addressed by global number; the sampler decides how many are drawn.
        return 2 ** 62

    def entry_for(self, k: int) -> int:
        n = len(self.entries)
        epoch, pos = divmod(int(k), n)
        perm = np.random.default_rng([self.seed, 7919, epoch]).permutation(n)
        return int(perm[pos])

    def __getitem__(self, k: int) -> dict:
        # A signed camera pair: samples 2j and 2j+1 are the same draw (source, crop, caption, noise) moved the pair's
        # first way (LoRA at +1) and its second way (-1); see augment.SIGNED_PAIRS.
        draw = int(k) // 2 if self.signed else int(k)
        idx = self.entry_for(draw)
        entry = self.entries[idx]
        rng = np.random.default_rng([self.seed, draw])
        # Draw every random choice whether or not it is used, so toggling one option leaves the others alone.
        drop, flip_draw = rng.random(), rng.random()
        caption = "" if drop < self.empty_prompt_prob else entry.caption
        flip = self.flip and flip_draw < 0.5
        if self.cached_latents:
            latents = self._cached(entry)
            ids = clip_indices(latents.shape[0], self.frames, self.stride, rng)
            x = latents[ids]
            if flip:  # conv VAEs are close to flip-equivariant, so flipping latents stands in for flipping frames
                x = torch.flip(x, dims=[-1])
            return {"latents": x.float(), "caption": caption, "index": idx, "sample": int(k)}
        keys: List[str] = []
        if self.camera_motions:
            motion = self.camera_motions[int(rng.integers(0, len(self.camera_motions)))]
            if self.signed:
                motion = self.signed[int(k) % 2]
            if motion in MIRROR_SWAPS:  # a mirrored pan-left clip is a pan-right clip: it would teach the opposite
                flip = False
            if entry.is_still or entry.num_frames == 1:
                src = entry.read([0])[0]
                # frame i of a still's clip depends only on (still, motion, flip, i): it recurs every epoch
                keys = [f"{idx}/{motion}/{int(flip)}/{i}" for i in range(self.frames)]
            else:
                src = entry.read(clip_indices(entry.num_frames, self.frames, self.stride, rng))
            clip = camera_motion_clip(src, motion, self.frames, self.size, self.camera_strength)
        else:
            ids = clip_indices(entry.num_frames, self.frames, self.stride, rng)
            clip = np.stack([resize_center_crop(f, self.size) for f in entry.read(ids)])
            # clips of one video overlap (random starts): a video frame recurs within and across epochs
            keys = [f"{idx}@{i}/{int(flip)}" for i in ids]
        if flip:
            clip = hflip(clip)
        item = {"pixels": to_tensor_range(clip), "caption": caption, "index": idx, "sample": int(k)}
        if keys:
            item["frame_keys"] = keys
        if self.signed:
            item["lora_sign"] = 1.0 if int(k) % 2 == 0 else -1.0
            item["noise_id"] = draw
        return item

    def _cached(self, entry: Entry) -> torch.Tensor:
        from safetensors.torch import load_file

        stem = os.path.splitext(os.path.basename(entry.path))[0]
        path = os.path.join(self.cached_latents, stem + ".safetensors")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no cached latents for {entry.path!r} at {path!r}; run the stage once with "
                                    f"--cache-latents or unset data.cached_latents")
        return load_file(path)["latents"]


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's share of global batch number s: sample numbers s*G + rank*B ... s*G + rank*B + B-1."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0,
                 max_steps: int = 1):
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.start_step, self.max_steps = start_step, max_steps

    def __iter__(self) -> Iterator[List[int]]:
        g = self.batch_size * self.world_size
        for step in range(self.start_step, self.max_steps):
            base = step * g + self.rank * self.batch_size
            yield list(range(base, base + self.batch_size))

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)


def collate(items: List[dict]) -> dict:
    out = {"caption": [it["caption"] for it in items], "index": torch.tensor([it["index"] for it in items]),
           "sample": torch.tensor([it["sample"] for it in items])}
    key = "latents" if "latents" in items[0] else "pixels"
    out[key] = torch.stack([it[key] for it in items])
    if key == "pixels" and all("frame_keys" in it for it in items):
        out["frame_keys"] = [it["frame_keys"] for it in items]
    if all("lora_sign" in it for it in items):
        out["lora_sign"] = torch.tensor([it["lora_sign"] for it in items])
        out["noise_id"] = torch.tensor([it["noise_id"] for it in items])
    return out


def subset(batch: dict, keep: torch.Tensor) -> dict:
    """The clips of a collated batch where the bool mask `keep` [B] is set."""
    rows = [i for i, k in enumerate(keep.tolist()) if k]
    out = {}
    for name, value in batch.items():
        out[name] = value[keep] if isinstance(value, torch.Tensor) else [value[i] for i in rows]
    return out


def build_dataset(data_cfg, seed: int, frames: Optional[int] = None) -> ClipDataset:
    if not data_cfg.root:
        raise ValueError("data.root is empty: point it at a folder of videos with a captions file")
    entries = scan_entries(data_cfg.root, data_cfg.captions)
    return ClipDataset(entries, frames=frames or data_cfg.frames, stride=data_cfg.stride, size=data_cfg.size,
                       flip=data_cfg.flip, empty_prompt_prob=data_cfg.empty_prompt_prob,
                       camera_motion=data_cfg.camera_motion, camera_strength=data_cfg.camera_strength,
                       cached_latents=data_cfg.cached_latents, seed=seed)


def build_loader(dataset: ClipDataset, batch_size: int, rank: int, world_size: int, start_step: int,
                 max_steps: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    sampler = GlobalBatchSampler(batch_size, rank, world_size, start_step, max_steps)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                                       persistent_workers=False)


@torch.no_grad()
def cache_latents(entries: List[Entry], size: int, encode, out_dir: str, chunk: int = 16) -> List[str]:
    """Encode every frame of every video (resized + centre-cropped) with `encode(pixels [N,3,S,S] in [-1,1]) ->
    model-space latents [N,4,S/8,S/8]` and store `<stem>.safetensors` {"latents"} in out_dir."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for e in entries:
        stem = os.path.splitext(os.path.basename(e.path))[0]
        path = os.path.join(out_dir, stem + ".safetensors")
        if os.path.isfile(path):
            written.append(path)
            continue
        frames = read_frames(e.path, list(range(e.num_frames)))
        pix = to_tensor_range(np.stack([resize_center_crop(f, size) for f in frames]))
        lat = torch.cat([encode(pix[i:i + chunk]) for i in range(0, pix.shape[0], chunk)])
        save_file({"latents": lat.float().contiguous()}, path, metadata={"source": os.path.basename(e.path),
                                                                         "size": str(size)})
        written.append(path)
    return written
