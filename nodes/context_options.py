"""Context Options: how a long clip is split into windows the motion module can see (no maths here)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core.context import FUSE_METHODS, MODES, NOISE_MODES, ContextOptions
from .common import CATEGORY, ContextOptions as ContextOptionsType


class ContextOptionsNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_ContextOptions",
            display_name="Context Options",
            category=f"{CATEGORY}/context",
            description=(
                "Sliding context windows for clips longer than the motion module can see at once (24 frames for "
                "v1, 32 for v2/v3/SDXL) or too long for memory: each step denoises the clip window by window and "
                "blends the overlaps. Prompt-travel conds, masks and ControlNet hints follow their frames into "
                "every window. Connect to Sample Animation or Inflate Model."),
            inputs=[
                io.Int.Input("context_length", default=16, min=1, max=128,
                             tooltip="Frames per window. 16 is what the official modules were trained on; at most "
                                     "the module's limit (24 for v1, 32 for v2/v3/SDXL). A clip no longer than "
                                     "this is one window (no splitting)."),
                io.Int.Input("context_overlap", default=4, min=0, max=127,
                             tooltip="Frames shared by neighbouring windows (uniform and looped); more overlap "
                                     "gives smoother joins and more passes. Must be below context_length. "
                                     "Ignored by static."),
                io.Int.Input("context_stride", default=1, min=1, max=8,
                             tooltip="1: contiguous windows only. 2 also adds windows that see every 2nd frame, "
                                     "3 also every 4th, ...: ties distant frames together (uniform and looped), "
                                     "at the cost of more passes."),
                io.Combo.Input("mode", options=list(MODES), default="uniform",
                               tooltip="uniform: overlapping windows spread evenly over the clip. looped: windows "
                                       "wrap from the last frame to the first, for seamless looping GIFs. static: "
                                       "non-overlapping, balanced windows (fastest, joins can show)."),
                io.Combo.Input("fuse_method", options=list(FUSE_METHODS), default="pyramid",
                               tooltip="How overlapping windows are blended. pyramid: a frame trusts the window "
                                       "in which it sits most centrally (hides joins). flat: plain average."),
                io.Combo.Input("noise", options=list(NOISE_MODES), default="default", optional=True,
                               tooltip="Initial noise over a clip longer than one window. default: fresh noise "
                                       "for every frame. freenoise (FreeNoise, Qiu et al. 2023): only the first "
                                       "window's frames get fresh noise, later frames reuse it shuffled (seeded), "
                                       "so every window starts alike and objects keep their identity along the "
                                       "clip. Applies to Sample Animation and to KSampler on the inflated model."),
            ],
            outputs=[ContextOptionsType.Output(display_name="CONTEXT_OPTIONS",
                                               tooltip="Connect to Sample Animation or Inflate Model.")],
        )

    @classmethod
    def execute(cls, context_length: int, context_overlap: int, context_stride: int, mode: str,
                fuse_method: str, noise: str = "default") -> io.NodeOutput:
        if mode == "static":
            context_overlap = 0  # static windows never overlap; don't refuse a leftover overlap value
        return io.NodeOutput(ContextOptions(length=context_length, overlap=context_overlap, stride=context_stride,
                                            mode=mode, fuse=fuse_method, noise=noise))


NODES = [ContextOptionsNode]
