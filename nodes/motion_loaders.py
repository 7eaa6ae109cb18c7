"""Load Motion Module and Apply MotionLoRA: files -> ADMK_MOTION_MODULE (no maths here; motion_core does it)."""
from __future__ import annotations

import logging

from comfy_api.v0_0_2 import io, ui

from .. import motion_core
from ..motion_core import guardrails
from ..motion_core.module_cache import MOTION_FILES
from .common import CATEGORY, MOTION_LORAS, MOTION_MODELS, MotionModule, file_list, full_path

log = logging.getLogger(__name__)


class LoadMotionModule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_LoadMotionModule",
            display_name="Load Motion Module",
            category=CATEGORY,
            description=(
                "Loads an AnimateDiff motion module (v1, v2, v3, SDXL beta, AnimateLCM, HotshotXL; original or "
                "diffusers naming) from models/animatediff_models and shows what was detected. Connect it to "
                "Inflate Model."),
            inputs=[
                io.Combo.Input("model_name", options=file_list(MOTION_MODELS),
                               tooltip="Motion module file in models/animatediff_models "
                                       "(e.g. mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt, mm_sdxl_v10_beta.ckpt)."),
            ],
            outputs=[
                MotionModule.Output(display_name="MOTION_MODULE", tooltip="The loaded motion module."),
                io.String.Output(display_name="info",
                                 tooltip="What was detected: version, base model family, frame limit per pass."),
            ],
        )

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        # dtype=None keeps the file's precision (half the memory for fp16 files); Inflate Model casts the
        # weights to the UNet's compute dtype when it injects them. An unchanged file comes from memory (a
        # workflow switch re-runs this node): a new module object over the cached, never-written weights.
        mm = MOTION_FILES.load(full_path(MOTION_MODELS, model_name), dtype=None)
        summary = f"{model_name}: {mm.info.summary()}"
        log.info("AnimateDiff MotionKit: %s", summary)
        return io.NodeOutput(mm, summary, ui=ui.PreviewText(summary))


class ApplyMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_ApplyMotionLoRA",
            display_name="Apply MotionLoRA",
            category=CATEGORY,
            description=(
                "Merges a MotionLoRA (camera motion such as v2_lora_ZoomIn.ckpt) into a copy of the motion module. "
                "Chain several to combine motions; the input module is not changed."),
            inputs=[
                MotionModule.Input("motion_module", tooltip="Motion module from Load Motion Module (or another "
                                                            "Apply MotionLoRA)."),
                io.Combo.Input("lora_name", options=file_list(MOTION_LORAS),
                               tooltip="MotionLoRA file in models/animatediff_motion_lora. The official ones were "
                                       "trained on the v2 module (mm_sd_v15_v2.ckpt)."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly the camera motion is applied (0 leaves the module as it is; "
                                       "negative values reverse it only roughly)."),
            ],
            outputs=[MotionModule.Output(display_name="MOTION_MODULE",
                                         tooltip="A new motion module with the MotionLoRA merged in.")],
        )

    @classmethod
    def execute(cls, motion_module, lora_name: str, strength: float) -> io.NodeOutput:
        lora = motion_core.load_motion_lora(full_path(MOTION_LORAS, lora_name))
        # Raises (naming the keys) when nothing or the wrong shapes fit; reports what was skipped otherwise,
        # e.g. the mid-block weights of an official v2 MotionLoRA on a v1/v3 module.
        report = lora.check_fits(motion_module)
        text = f"{lora_name} (rank {lora.rank}) x {strength:g}: {report.summary()}"
        warning = guardrails.lora_version_mismatch(lora.deltas, motion_module.info)
        if warning:
            text += "\n" + warning
        if report.unmatched or warning:
            log.warning("AnimateDiff MotionKit: MotionLoRA %s", text)
        merged = motion_module if strength == 0.0 else motion_core.merged_motion_module(
            motion_module, [(lora, float(strength))])
        return io.NodeOutput(merged, ui=ui.PreviewText(text))


NODES = [LoadMotionModule, ApplyMotionLoRA]
