"""Guardrails: settings that run but give poor results, as short texts the nodes show (never errors).

These are the complaints users of the other AnimateDiff packs keep filing: too few frames per pass (the result is
noise or a still), a MotionLoRA made for another module version, a beta schedule the module was not trained with.
"""
from __future__ import annotations

from typing import Optional

from .schedules import auto_schedule

# Clip length each module family was trained on (AnimateDiff v1-v3, SDXL beta and AnimateLCM: 16; HotshotXL: 8).
TRAINED_FRAMES = {"v1": 16, "v2": 16, "v3": 16, "sdxl": 16, "animatelcm": 16, "hotshotxl": 8}


def few_frames(info, frames: int, context_length: Optional[int] = None) -> Optional[str]:
    """A warning when one pass of the module sees fewer frames than it was trained on."""
    trained = TRAINED_FRAMES.get(getattr(info, "version", ""), 0)
    per_pass = min(int(frames), int(context_length)) if context_length else int(frames)
    if not trained or per_pass >= trained:
        return None
    where = f"context_length {per_pass}" if context_length and context_length <= frames else f"{per_pass} frames"
    return (f"Warning: {where} per pass, but the {info.version} motion module was trained on {trained}; fewer "
            f"frames usually give noise or a still image. Use at least {trained} frames (with context options, "
            f"context_length {trained}).")


def schedule_mismatch(info, schedule: str) -> Optional[str]:
    """A warning when the chosen beta schedule is not the one the module was trained with."""
    trained = auto_schedule(info.version, info.base)
    if schedule == trained:
        return None
    return (f"Warning: beta_schedule {schedule}, but the {info.version} motion module was trained with {trained}; "
            "expect washed-out or noisy frames. Set beta_schedule to auto.")


def lora_version_mismatch(lora_targets, info) -> Optional[str]:
    """A warning when a MotionLoRA's keys show it was made for another module version (the mid block is the
    tell: only v2 has a mid-block motion module among the SD1.5 versions; SDXL shapes are refused as errors)."""
    has_mid = any(k.startswith("mid_block.") for k in lora_targets)
    if has_mid and not info.has_mid:
        return (f"Warning: this MotionLoRA has mid-block weights, so it was made for a v2 module, not this "
                f"{info.version} one; its motion transfers only partly. Use mm_sd_v15_v2 with it.")
    if info.has_mid and not has_mid:
        return (f"Warning: this MotionLoRA has no mid-block weights, so it was made for a module without a mid "
                f"block (v1/v3), not this {info.version} one; the mid block keeps its own motion.")
    return None
