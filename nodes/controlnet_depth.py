"""ControlNet Depth Sequence: one depth map per frame drives that frame, also inside context windows.

Applies the ControlNet exactly as core "Apply ControlNet" (ControlNetApplyAdvanced) does - a copy of the loaded
control with the hint images, chained after any control already on the conditioning, positive and negative
sharing one copy - after matching the depth batch to the frame count and optionally smoothing it over time
(frame maths in motion_core.frames). Hint i drives latent i (ComfyUI's own rule for a batch of hints); the
context-window wrapper hands each window the hints of its frames.

Resolution: nothing to do here. At sampling time ComfyUI fits each hint to the latent size x 8 by cropping the
centre to the latent's aspect ratio, then scaling - so a 16:9 depth clip on a square animation loses its sides.
"""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..motion_core.frames import MISMATCH_POLICIES, match_frame_count, temporal_smooth
from . import frame_count
from .common import CATEGORY


def apply_control(positive, negative, control_net, hint, strength: float, start_percent: float,
                  end_percent: float, vae=None):
    """Core ControlNetApplyAdvanced's logic on a prepared hint `[N, C, H, W]` (inputs are not modified)."""
    cnets = {}
    out = []
    for conditioning in (positive, negative):
        c = []
        for cond, extras in conditioning:
            d = extras.copy()
            previous = d.get("control", None)
            if previous not in cnets:
                c_net = control_net.copy().set_cond_hint(hint, strength, (start_percent, end_percent), vae=vae)
                c_net.set_previous_controlnet(previous)
                cnets[previous] = c_net
            d["control"] = cnets[previous]
            d["control_apply_to_uncond"] = False
            c.append([cond, d])
        out.append(c)
    return out[0], out[1]


class ControlNetDepthSequence(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_ControlNetDepthSequence",
            display_name="ControlNet Depth Sequence",
            category=f"{CATEGORY}/conditioning",
            description=(
                "Guides every frame of an animation with its own depth map (e.g. from a depth preprocessor run on "
                "a video). Like Apply ControlNet, but the depth batch is checked/resampled to the frame count, can "
                "be smoothed over time to stop flicker, and each frame keeps its own map inside context windows. "
                "Hints are fitted to the animation by centre crop + resize."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Positive conditioning (CLIP Text Encode or Prompt Travel)."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                io.ControlNet.Input("control_net", tooltip="A depth ControlNet from Load ControlNet Model "
                                                           "(e.g. control_v11f1p_sd15_depth)."),
                io.Image.Input("depth", tooltip="Depth maps, one per frame (a single map drives every frame)."),
                io.Int.Input("frames", default=16, min=1, max=4096,
                             tooltip="Frame count of the animation (Sample Animation's frames, or the LATENT "
                                     "batch). The depth batch must match it unless on_mismatch is resample."),
                io.Combo.Input("on_mismatch", options=list(MISMATCH_POLICIES), default="error",
                               tooltip="When the depth batch size differs from frames: error stops with both counts; "
                                       "resample picks the nearest depth frame for each animation frame (first and "
                                       "last kept; frames repeat or are skipped, never blended)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="How strongly depth guides the image (0 disables the ControlNet)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the denoising at which the ControlNet starts acting."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the denoising at which it stops acting (lower frees the "
                                       "last steps for detail)."),
                io.Float.Input("temporal_smoothing", default=0.0, min=0.0, max=10.0, step=0.1,
                               tooltip="Gaussian blur of the depth maps over time, in frames (std). 0 = off; 1-2 "
                                       "calms flickering per-frame depth estimates; large values lag fast motion."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Only for ControlNets that need one (some non-SD1.5 models); SD1.5 depth "
                                     "ControlNets do not."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning with the ControlNet."),
                io.Conditioning.Output(display_name="negative", tooltip="Negative conditioning with the ControlNet."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, control_net, depth, frames: int, on_mismatch: str, strength: float,
                start_percent: float, end_percent: float, temporal_smoothing: float, vae=None) -> io.NodeOutput:
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); the ControlNet "
                             f"would never act. Set start_percent below end_percent.")
        depth = match_frame_count(depth, frames, on_mismatch, what="depth")
        if strength == 0:
            return io.NodeOutput(positive, negative)  # no ControlNet: its frame count binds nothing
        # Sample Animation refuses another frame count than the one the depth maps were matched to.
        positive, negative = ([[cond, frame_count.tag(extras, "ControlNet Depth Sequence", frames)]
                               for cond, extras in conditioning] for conditioning in (positive, negative))
        depth = temporal_smooth(depth, temporal_smoothing)
        if depth.shape[-1] == 1:  # a single-channel map: ControlNets take 3 channels
            depth = depth.expand(*depth.shape[:-1], 3)
        hint = depth[..., :3].movedim(-1, 1)
        return io.NodeOutput(*apply_control(positive, negative, control_net, hint, strength, start_percent,
                                            end_percent, vae=vae))


NODES = [ControlNetDepthSequence]
