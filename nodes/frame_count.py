"""One frame count per workflow: nodes that make per-frame data record the count they made it for, and Sample
Animation refuses a different count before sampling, naming both nodes.

The record is one small entry in the conditioning's extras, {"admk_frames": {node display name: frames}}; ComfyUI
ignores extras keys it does not know, and core nodes that copy conditioning (Combine, Apply ControlNet...) keep it.
"""
from __future__ import annotations

KEY = "admk_frames"


def tag(extras: dict, node_name: str, frames: int) -> dict:
    """A copy of one conditioning entry's extras that records `node_name` made it for `frames` frames."""
    out = dict(extras)
    out[KEY] = {**out.get(KEY, {}), node_name: int(frames)}
    return out


def check(frames: int, node_name: str, **conditionings) -> None:
    """Raise before sampling when a tagged conditioning was made for another frame count than `frames`."""
    for input_name, conditioning in conditionings.items():
        for entry in conditioning or ():
            if not (isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict)):
                continue
            for source, made_for in (entry[1].get(KEY) or {}).items():
                if made_for != frames:
                    raise ValueError(
                        f"Frame counts disagree: {source} was set to {made_for} frames, but {node_name} makes "
                        f"{frames} (its {input_name} comes from {source}). Wire one integer into both frames "
                        f"inputs (e.g. Load Frames' frame_count, or one Int node), or set both to the same count.")
