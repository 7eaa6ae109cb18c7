"""Train MotionLoRA: teach a motion from a reference clip (or a still and a camera preset) inside ComfyUI.

Thin over training.lora_from_frames, which runs the same Trainer as `python -m training.train --stage motionlora`;
this file only adapts ComfyUI's inputs, progress bar, cancel and model folders to it.
"""
from __future__ import annotations

import gc
import os

import comfy.model_management
import torch
import comfy.utils
import folder_paths
from comfy_api.v0_0_2 import io, ui

from .. import motion_core
from ..training import lora_from_frames as job
from .common import CATEGORY, MOTION_LORAS, MotionModule


def _one(value):
    """is_input_list gives every input as a list; the settings are single values."""
    return value[0] if isinstance(value, list) and value else value


def _node_id(cls):
    hidden = getattr(cls, "hidden", None)  # set while ComfyUI executes the node; None when called directly
    return _one(getattr(hidden, "unique_id", None)) if hidden is not None else None


def _report_progress(node_id, total: int):
    bar = comfy.utils.ProgressBar(total)
    server = None
    try:
        from server import PromptServer

        server = getattr(PromptServer, "instance", None)
    except ImportError:
        pass

    def on_step(step: int, loss: float) -> None:
        # The Cancel button sets the interrupt flag; raising here stops the Trainer before it writes weights.
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(step, total)
        if server is not None and node_id is not None:
            try:
                server.send_progress_text(f"step {step}/{total}  loss {loss:.4f}", node_id)
            except Exception:  # no client connected (e.g. run in-process): the bar is enough
                pass

    return on_step


class TrainMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_TrainMotionLoRA",
            display_name="Train MotionLoRA",
            category=f"{CATEGORY}/training",
            description=(
                "Teaches the motion module a motion from a reference clip (or a camera move over still images) and "
                "saves it as a MotionLoRA in models/animatediff_motion_lora, loadable by Apply MotionLoRA. The "
                "same training as `python -m training.train --stage motionlora`. Runs on ComfyUI's device; the "
                "input MODEL and MOTION_MODULE are not changed."),
            is_input_list=True,
            is_output_node=True,  # it writes a file: runs even when nothing uses its outputs
            inputs=[
                io.Model.Input("model", tooltip="The checkpoint's MODEL the motion will be used with (SD1.5 or SDXL, "
                                                "matching the motion module). It stays frozen."),
                MotionModule.Input("motion_module", tooltip="Motion module from Load Motion Module (v2/v3). Frozen; "
                                                            "the LoRA learns on top of it."),
                io.Image.Input("images", tooltip="The reference clip's frames (Load Frames or Load Video), all the "
                                                 "same size; with a camera preset, still images instead (each one "
                                                 "is a separate source)."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE (encodes the frames)."),
                io.Conditioning.Input("conditioning", tooltip="A caption of the clip (CLIP Text Encode). An empty "
                                                              "text learns the motion for any prompt."),
                io.Combo.Input("camera", options=list(job.CAMERA_PRESETS), default=job.NO_CAMERA,
                               tooltip="none: learn the clip's own motion. Otherwise a camera move made over each "
                                       "image (pan_left: the camera moves left, the content drifts right). A pair "
                                       "such as pan_left/pan_right trains ONE LoRA for both moves: strength +1 "
                                       "gives the first, -1 the second (each step shows both, so the LoRA learns "
                                       "what tells them apart; it picks up direction better than two LoRAs)."),
                io.Float.Input("camera_strength", default=0.5, min=0.05, max=2.0, step=0.05,
                               tooltip="How far the camera preset moves over a clip (zoom factor 1 + s; pans travel "
                                       "the free range of a window 1/(1 + s) of the image)."),
                io.Int.Input("clip_frames", default=16, min=job.MIN_CLIP_FRAMES, max=64,
                             tooltip="Frames per training clip (16 as the official modules; capped by the module's "
                                     "limit and the clip's length). Sample with the same count."),
                io.Int.Input("rank", default=64, min=1, max=512,
                             tooltip="LoRA rank (the official MotionLoRAs: 64). Lower is smaller and faster."),
                io.Int.Input("steps", default=300, min=1, max=100000,
                             tooltip="Training steps. The loss plot shows whether it still falls."),
                io.Float.Input("learning_rate", default=5e-4, min=1e-6, max=1e-1, step=1e-5, round=1e-6,
                               tooltip="AdamW learning rate (5e-4 suits a few hundred steps)."),
                io.Int.Input("batch_size", default=1, min=1, max=64,
                             tooltip="Clips per step (more: steadier steps, more memory and time per step)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the LoRA's start, the clips drawn and the noise."),
                io.String.Input("lora_name", default="my_motion_lora",
                                tooltip="File name in models/animatediff_motion_lora (.safetensors is added). An "
                                        "existing file of that name is replaced when training finishes."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="Strength of the new LoRA in the MOTION_MODULE output (as Apply MotionLoRA; "
                                       "negative for the second move of a camera pair)."),
            ],
            outputs=[
                MotionModule.Output(display_name="MOTION_MODULE",
                                    tooltip="A copy of the motion module with the trained LoRA merged in."),
                io.String.Output(display_name="lora_name", tooltip="The saved file's name (for Apply MotionLoRA)."),
                io.Image.Output(display_name="loss_plot", tooltip="Training loss per step and its 10-step mean."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, motion_module, images, vae, conditioning, camera, camera_strength, clip_frames, rank,
                steps, learning_rate, batch_size, seed, lora_name, strength) -> io.NodeOutput:
        model, motion_module, vae, conditioning = _one(model), _one(motion_module), _one(vae), _one(conditioning)
        request = job.Request(frames=job.frames_from_images(images), camera=_one(camera),
                              camera_strength=float(_one(camera_strength)), clip_frames=int(_one(clip_frames)),
                              rank=int(_one(rank)), steps=int(_one(steps)), learning_rate=float(_one(learning_rate)),
                              batch_size=int(_one(batch_size)), seed=int(_one(seed)))
        folder = folder_paths.get_folder_paths(MOTION_LORAS)[0]
        out_path = job.target_path(folder, _one(lora_name))
        device = comfy.model_management.get_torch_device()
        # Other models leave the device (and their weight patches come off) before the training copy is patched.
        comfy.model_management.unload_all_models()
        try:
            # ComfyUI runs nodes under inference_mode, which has no autograd
            with torch.inference_mode(False), torch.enable_grad():
                result = job.train_from_frames(model, vae, motion_module, conditioning, request, out_path, device,
                                               on_step=_report_progress(_node_id(cls), request.steps))
        finally:
            gc.collect()
            comfy.model_management.soft_empty_cache()
        name = os.path.basename(result.path)
        lora = motion_core.load_motion_lora(result.path)  # the file as Apply MotionLoRA reads it
        strength = float(_one(strength))
        merged = motion_module if strength == 0.0 else motion_core.merged_motion_module(motion_module,
                                                                                        [(lora, strength)])
        losses = result.losses
        text = (f"{name}: rank {lora.rank}, {len(losses)} steps on {request.frames.shape[0]} image(s) at "
                f"{result.size} px, {result.clip_frames}-frame clips, loss {losses[0]:.4f} -> {losses[-1]:.4f} "
                f"in {result.seconds:.0f}s")
        return io.NodeOutput(merged, name, job.loss_plot(losses), ui=ui.PreviewText(text))


NODES = [TrainMotionLoRA]
