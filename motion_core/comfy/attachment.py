"""What an inflated MODEL carries: the MotionAttachment the sampling nodes and checks read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .placement import MotionSlot

KEY = "admk_motion"  # key of every injection / wrapper / callback / attachment this adapter registers


@dataclass
class MotionAttachment:
    """What an inflated MODEL carries (ModelPatcher attachment KEY): read by the sampling nodes."""

    info: object
    strength: float
    beta_schedule: str
    context_options: object = None
    slots: List[Tuple[str, MotionSlot]] = field(default_factory=list)

    @property
    def max_frames(self) -> int:
        return int(self.info.max_frames)


def motion_attachment(model_patcher) -> Optional[MotionAttachment]:
    getter = getattr(model_patcher, "get_attachment", None)
    return getter(KEY) if getter else None
