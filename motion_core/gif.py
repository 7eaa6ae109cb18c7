"""Animated GIF files: the one GIF writer (Save Animation, the training previews and the demo's animations)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def write_gif(path: str, frames: Sequence[np.ndarray], fps: float = 8.0, loop: int = 0,
              comment: Optional[bytes] = None) -> None:
    """Write uint8 `[H, W, 3]` frames (a list, or an `[N, H, W, 3]` array) as an animated GIF.

    Each frame shows for round(1000 / fps) ms; `loop` 0 repeats forever. Every frame replaces the previous one
    whole (disposal 1, no inter-frame optimisation), so players that skip frames never show leftovers.
    `comment`: bytes for the GIF comment extension (Save Animation embeds the workflow there).
    """
    from PIL import Image  # Pillow comes with ComfyUI; importing motion_core does not need it

    pil = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    if not pil:
        raise ValueError(f"No frames to write to {path}.")
    options = {"save_all": True, "append_images": pil[1:], "duration": max(1, round(1000.0 / fps)), "loop": loop,
               "disposal": 1, "optimize": False}
    if comment:
        options["comment"] = comment
    pil[0].save(path, format="GIF", **options)
