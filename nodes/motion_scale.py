"""Motion Strength Schedule: motion strength per block group and over the sampling steps (no maths here)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core import comfy as comfy_adapter
from ..motion_core.motion_scale import MotionScale, parse_keyframes
from .common import CATEGORY

_SCALE = dict(default=1.0, min=0.0, max=10.0, step=0.05)


class MotionStrengthSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_MotionStrengthSchedule",
            display_name="Motion Strength Schedule",
            category=f"{CATEGORY}/consistency",
            description=(
                "Varies how strongly the motion module acts, per UNet block group and over the sampling steps. "
                "Multiplies Inflate Model's motion_strength: group scale x step scale. Use after Inflate Model; "
                "works with Sample Animation and with KSampler. All 1: exactly the plain motion_strength."),
            inputs=[
                io.Model.Input("model", tooltip="MODEL from Inflate Model."),
                io.Float.Input("down_scale", tooltip="Factor for the motion modules in the down (input) blocks.",
                               **_SCALE),
                io.Float.Input("mid_scale", tooltip="Factor for the mid-block motion module (v2/v3 have one).",
                               **_SCALE),
                io.Float.Input("up_scale", tooltip="Factor for the motion modules in the up (output) blocks.",
                               **_SCALE),
                io.Float.Input("start_strength", tooltip="Step factor at the first sampling step (and until "
                                                         "ramp_start_percent).", **_SCALE),
                io.Float.Input("end_strength", tooltip="Step factor from ramp_end_percent to the last step.",
                               **_SCALE),
                io.Float.Input("ramp_start_percent", default=0.0, min=0.0, max=100.0, step=1.0,
                               tooltip="Where the ramp from start_strength to end_strength begins, in percent of "
                                       "the sampling steps (0 = first step)."),
                io.Float.Input("ramp_end_percent", default=100.0, min=0.0, max=100.0, step=1.0,
                               tooltip="Where the ramp reaches end_strength, in percent of the steps (100 = last)."),
                io.String.Input("keyframes", default="", multiline=False, optional=True,
                                tooltip="Optional 'percent:factor' points, e.g. '0:1.5, 40:1.0, 100:0.8'; linear "
                                        "between them, flat outside. When set, replaces start/end/ramp."),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The same inflated model with the schedule; "
                                                                  "the input MODEL is not changed.")],
        )

    @classmethod
    def execute(cls, model, down_scale: float, mid_scale: float, up_scale: float, start_strength: float,
                end_strength: float, ramp_start_percent: float, ramp_end_percent: float,
                keyframes: str = "") -> io.NodeOutput:
        scale = MotionScale(down=down_scale, mid=mid_scale, up=up_scale, start=start_strength, end=end_strength,
                            ramp_start=ramp_start_percent, ramp_end=ramp_end_percent,
                            keyframes=parse_keyframes(keyframes))
        return io.NodeOutput(comfy_adapter.with_motion_scale(model, scale))


NODES = [MotionStrengthSchedule]
