"""Motion Contrast Guidance: guide sampling away from a second motion module (no maths here)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core import comfy as comfy_adapter
from .common import CATEGORY, MotionModule


class MotionContrastGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_MotionContrastGuidance",
            display_name="Motion Contrast Guidance",
            category=f"{CATEGORY}/guidance",
            description=(
                "Strengthens what a motion module does differently from another one: each step also runs the UNet "
                "with the contrast module and moves the result away from it (denoised + scale x (denoised - "
                "contrast)). Typical: the model's pan LoRA at +1 against the same LoRA at -1 (or PanLeft against "
                "PanRight) amplifies the direction without the side effects of a higher LoRA strength. Costs one "
                "extra UNet pass per guided step. scale 0: exactly the plain model."),
            inputs=[
                io.Model.Input("model", tooltip="MODEL from Inflate Model (its motion module is the one guided "
                                                "towards)."),
                MotionModule.Input("contrast_motion_module",
                                   tooltip="The motion module to guide away from: the same file as the model's, "
                                           "e.g. through Apply MotionLoRA with the opposite strength or the "
                                           "opposite LoRA."),
                io.Float.Input("scale", default=2.0, min=0.0, max=20.0, step=0.1,
                               tooltip="How far to push away from the contrast (0: off). 1-3 is typical; higher "
                                       "values amplify noise too."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where the guidance starts, as a fraction of the sampling (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where it ends (1 = last step). Direction is settled in the early steps."),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The inflated model with the guidance; the input "
                                                                  "MODEL is not changed.")],
        )

    @classmethod
    def execute(cls, model, contrast_motion_module, scale: float, start_percent: float,
                end_percent: float) -> io.NodeOutput:
        return io.NodeOutput(comfy_adapter.with_motion_contrast(model, contrast_motion_module, scale, start_percent,
                                                                end_percent))


NODES = [MotionContrastGuidance]
