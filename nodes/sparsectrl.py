"""Load SparseCtrl and Apply SparseCtrl: AnimateDiff v3's keyframe control (RGB and scribble)."""
from __future__ import annotations

import logging

from comfy_api.v0_0_2 import io, ui

from ..motion_core.errors import MotionFormatError
from ..motion_core.sparsectrl import KIND_RGB, load_sparsectrl, parse_keyframe_indices
from ..motion_core.comfy.sparsectrl import SparseCtrlModel, sparsectrl_control
from .common import CATEGORY, file_list, full_path
from .controlnet_depth import apply_control

log = logging.getLogger(__name__)

CONTROLNET_FOLDER = "controlnet"  # where the official files go, next to the other ControlNets
SparseCtrlType = io.Custom("ADMK_SPARSECTRL")


class LoadSparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_LoadSparseCtrl",
            display_name="Load SparseCtrl",
            category=f"{CATEGORY}/conditioning",
            description=(
                "Loads an AnimateDiff v3 SparseCtrl file (v3_sd15_sparsectrl_rgb.ckpt or "
                "v3_sd15_sparsectrl_scribble.ckpt) from models/controlnet, in the file's precision, and shows "
                "which kind it is and its frame limit. Connect it to Apply SparseCtrl."),
            inputs=[
                io.Combo.Input("sparsectrl_name", options=file_list(CONTROLNET_FOLDER),
                               tooltip="SparseCtrl file in models/controlnet: v3_sd15_sparsectrl_rgb.ckpt (keyframe "
                                       "images) or v3_sd15_sparsectrl_scribble.ckpt (sketches)."),
            ],
            outputs=[
                SparseCtrlType.Output(display_name="SPARSECTRL", tooltip="The loaded SparseCtrl."),
                io.String.Output(display_name="info", tooltip="Kind (rgb / scribble), frame limit per pass, size."),
            ],
        )

    @classmethod
    def execute(cls, sparsectrl_name: str) -> io.NodeOutput:
        net = load_sparsectrl(full_path(CONTROLNET_FOLDER, sparsectrl_name), dtype=None)
        model = SparseCtrlModel(net, name=sparsectrl_name)
        summary = f"{sparsectrl_name}: {net.info.summary()}"
        log.info("AnimateDiff MotionKit: %s", summary)
        return io.NodeOutput(model, summary, ui=ui.PreviewText(summary))


class ApplySparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_ApplySparseCtrl",
            display_name="Apply SparseCtrl",
            category=f"{CATEGORY}/conditioning",
            description=(
                "Pins an animation to a few keyframes: each image drives the frame given in keyframe_indices and the "
                "SparseCtrl's motion modules carry it to the frames in between (e.g. first and last frame, or a few "
                "scribbles). Chains with other ControlNets on the same conditioning; works inside context windows."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Positive conditioning (CLIP Text Encode, Prompt Travel, or "
                                                          "after Apply ControlNet to combine both)."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                SparseCtrlType.Input("sparsectrl", tooltip="From Load SparseCtrl."),
                io.Image.Input("images", tooltip="The keyframes, in order (a batch: Load Image + Image Batch). RGB: "
                                                 "pictures of the frames; scribble: line drawings."),
                io.String.Input("keyframe_indices", default="0, -1",
                                tooltip="Frame of each image, comma separated: '0, 15' (first and last of 16), "
                                        "'0, 8, 15', negative counts from the end (-1 = last frame), or 'spread' to "
                                        "place the images evenly over the clip."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="How strongly the keyframes steer the animation (the authors' "
                                       "conditioning scale; 0 disables it)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the denoising at which SparseCtrl starts acting."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the denoising at which it stops (lower leaves the last steps "
                                       "free to add detail)."),
                io.Int.Input("frames", default=0, min=0, max=4096, optional=True,
                             tooltip="Frame count of the animation, to check the indices now; 0 = take it from the "
                                     "latent when sampling starts."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Required for the RGB SparseCtrl (keyframes are VAE-encoded): the checkpoint's "
                                     "VAE. Not used by the scribble one."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning with SparseCtrl."),
                io.Conditioning.Output(display_name="negative", tooltip="Negative conditioning with SparseCtrl."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, sparsectrl, images, keyframe_indices: str, strength: float,
                start_percent: float, end_percent: float, frames: int = 0, vae=None) -> io.NodeOutput:
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); SparseCtrl "
                             "would never act. Set start_percent below end_percent.")
        if sparsectrl.info.kind == KIND_RGB and vae is None:
            raise MotionFormatError(f"{sparsectrl.name} is the RGB SparseCtrl: its keyframes are VAE-encoded. Connect "
                                    "the checkpoint's VAE to Apply SparseCtrl's vae input.")
        # Syntax and count now; the range against `frames` when given, else when sampling starts.
        parse_keyframe_indices(keyframe_indices, int(images.shape[0]), int(frames) if frames else 1 << 30)
        if strength == 0:
            return io.NodeOutput(positive, negative)
        control = sparsectrl_control(sparsectrl, images, keyframe_indices, frames)
        control.vae = vae  # ControlBase.set_cond_hint keeps a VAE only for controls with a latent format
        return io.NodeOutput(*apply_control(positive, negative, control, None, strength, start_percent, end_percent,
                                            vae=vae))


NODES = [LoadSparseCtrl, ApplySparseCtrl]
