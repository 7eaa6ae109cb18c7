"""Inflate Model: MODEL + ADMK_MOTION_MODULE -> a MODEL that animates (a patched clone; the input MODEL is unchanged)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io, ui

from .. import motion_core
from ..motion_core import guardrails
from ..motion_core import comfy as comfy_adapter
from ..motion_core.precision import PRECISION_HELP, PRECISIONS
from .common import CATEGORY, MOTION_MODELS, ContextOptions, MotionModule, file_list, full_path

NO_ADAPTER = "none"
ADAPTER_FOLDERS = (MOTION_MODELS, "loras")


def adapter_choices() -> list[str]:
    names = []
    for folder in ADAPTER_FOLDERS:
        names.extend(n for n in file_list(folder) if n not in names)
    return [NO_ADAPTER] + names


def adapter_path(name: str) -> str:
    for folder in ADAPTER_FOLDERS[:-1]:
        if name in file_list(folder):
            return full_path(folder, name)
    return full_path(ADAPTER_FOLDERS[-1], name)


class InflateModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_InflateModel",
            display_name="Inflate Model (AnimateDiff)",
            category=CATEGORY,
            description=(
                "Adds the motion module's temporal layers to a copy of the model so that a latent batch is denoised "
                "as the frames of one clip. Also applies the beta schedule the module was trained with and, for v3, "
                "the optional domain adapter. Works with Sample Animation and with core KSampler/SamplerCustom "
                "(latent batch = frame count)."),
            inputs=[
                io.Model.Input("model", tooltip="SD1.5-family (or SDXL, for SDXL motion modules) model from a "
                                                "checkpoint loader; it is not modified."),
                MotionModule.Input("motion_module", tooltip="Motion module from Load Motion Module / Apply MotionLoRA."),
                io.Combo.Input("domain_adapter", options=adapter_choices(), default=NO_ADAPTER,
                               tooltip="Optional v3 domain adapter (v3_sd15_adapter.ckpt), an image LoRA that "
                                       "matches the look of the video training data; looked up in "
                                       "models/animatediff_models, then models/loras."),
                io.Float.Input("adapter_scale", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="Strength of the domain adapter (0 disables it; lower values such as 0.5 keep "
                                       "more of the checkpoint's own style)."),
                io.Float.Input("motion_strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Scales only what the temporal layers add to each frame (1 = as trained). "
                                       "0 = the un-inflated image model under the beta_schedule chosen below (v1's "
                                       "across-frame GroupNorm is off too); the domain adapter has its own "
                                       "adapter_scale."),
                io.Combo.Input("beta_schedule", options=list(comfy_adapter.BETA_SCHEDULES), default="auto",
                               tooltip="Noise schedule for sampling. " + "; ".join(
                                   f"{k}: {v}" for k, v in comfy_adapter.BETA_SCHEDULE_HELP.items()) + "."),
                ContextOptions.Input("context_options", optional=True,
                                     tooltip="Optional sliding context windows for animations longer than the "
                                             "module's frame limit (from a Context Options node)."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto", optional=True,
                               tooltip="Dtype the motion module computes in (the rest of the model is unchanged). "
                                       + "; ".join(f"{k}: {v}" for k, v in PRECISION_HELP.items()) + ". Where the "
                                       "device has no native support for the choice, the model's dtype is used."),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The animating model (a patched copy).")],
        )

    @classmethod
    def execute(cls, model, motion_module, domain_adapter: str, adapter_scale: float, motion_strength: float,
                beta_schedule: str, context_options=None, precision: str = "auto") -> io.NodeOutput:
        adapter = None
        if domain_adapter != NO_ADAPTER and adapter_scale != 0.0:
            adapter = motion_core.load_domain_adapter(adapter_path(domain_adapter))
        inflated = comfy_adapter.inflate(model, motion_module, adapter=adapter, adapter_scale=adapter_scale,
                                         motion_strength=motion_strength, beta_schedule=beta_schedule,
                                         context_options=context_options, precision=precision)
        return io.NodeOutput(inflated, ui=ui.PreviewText(inflate_note(inflated, motion_strength, context_options)))


def inflate_note(inflated, motion_strength: float, context_options=None) -> str:
    """What the node shows: the module and schedule in use, and the guardrail warnings that apply."""
    attachment = comfy_adapter.motion_attachment(inflated)
    info = attachment.info
    lines = [f"{info.version} motion module ({info.base}), beta schedule {attachment.beta_schedule}, "
             f"motion_strength {motion_strength:g}"]
    lines.append(guardrails.schedule_mismatch(info, attachment.beta_schedule))
    if context_options is not None:
        lines.append(guardrails.few_frames(info, context_options.length, context_options.length))
    return "\n".join(line for line in lines if line)


NODES = [InflateModel]
