"""Save Animation: IMAGE frames -> GIF / WebP (Pillow) or MP4 (PyAV, OpenCV as fallback), with a looping preview.

It also outputs ComfyUI's VIDEO (frames + fps, comfy_api's VideoFromComponents), so core Save Video / Get Video
Components and VIDEO-aware packs take the result; the user's encoder choice here is unaffected by that.

The workflow (prompt + extra_pnginfo, as core's image savers embed it) goes into the file where the format has
room for it: the GIF comment, WebP EXIF (the same tags core's SaveAnimatedWEBP uses), MP4 metadata tags.
"""
from __future__ import annotations

import json
import logging
import os
from fractions import Fraction

import numpy as np
import torch
from PIL import Image

import folder_paths
from comfy.cli_args import args
from comfy_api.v0_0_2 import InputImpl, Types, io, ui

from ..motion_core.gif import write_gif
from .common import CATEGORY

log = logging.getLogger(__name__)
FORMATS = ("gif", "webp", "mp4")


def to_uint8_frames(images, ping_pong: bool) -> list[np.ndarray]:
    """[N, H, W, C] floats in 0..1 -> list of HxWx3 uint8 arrays (forward then backward when ping_pong)."""
    frames = [np.clip(255.0 * f.cpu().float().numpy(), 0, 255).astype(np.uint8) for f in images]
    frames = [f[:, :, :3] if f.shape[-1] >= 3 else np.repeat(f[:, :, :1], 3, axis=-1) for f in frames]
    if ping_pong and len(frames) > 2:
        frames = frames + frames[-2:0:-1]  # without repeating the two end frames, so the loop has no stall
    return frames


def workflow_metadata(prompt, extra_pnginfo) -> dict:
    """{key: value} to embed: 'prompt' plus every extra_pnginfo entry (the editor puts 'workflow' there)."""
    if args.disable_metadata:
        return {}
    meta = {}
    if prompt is not None:
        meta["prompt"] = prompt
    if extra_pnginfo:
        meta.update(extra_pnginfo)
    return meta


def save_gif(path: str, frames, fps: float, loop: int, meta: dict) -> None:
    write_gif(path, frames, fps, loop, comment=json.dumps(meta).encode("utf-8") if meta else None)


def save_webp(path: str, frames, fps: float, loop: int, meta: dict) -> None:
    pil = [Image.fromarray(f) for f in frames]
    exif = pil[0].getexif()
    if "prompt" in meta:
        exif[0x0110] = "prompt:{}".format(json.dumps(meta["prompt"]))  # same tags as core SaveAnimatedWEBP
    tag = 0x010F
    for key, value in meta.items():
        if key != "prompt":
            exif[tag] = "{}:{}".format(key, json.dumps(value))
            tag -= 1
    pil[0].save(path, format="WEBP", save_all=True, append_images=pil[1:], duration=max(1, round(1000.0 / fps)),
                loop=loop, lossless=False, quality=90, method=4, exif=exif)


def _even(frames):
    # yuv420p (what players accept) needs even sizes: repeat the last row/column when a side is odd.
    h, w = frames[0].shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]


def save_mp4(path: str, frames, fps: float, meta: dict) -> None:
    frames = _even(frames)
    try:
        import av
    except ImportError:
        return _save_mp4_opencv(path, frames, fps)
    rate = Fraction(round(fps * 1000), 1000)
    with av.open(path, mode="w", options={"movflags": "use_metadata_tags"}) as container:
        for key, value in meta.items():
            container.metadata[key] = json.dumps(value)
        stream = container.add_stream("h264" if "h264" in av.codecs_available else "mpeg4", rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "19"}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _save_mp4_opencv(path: str, frames, fps: float) -> None:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError("Neither PyAV nor OpenCV can write MP4 here: install PyAV (pip install av) or choose "
                           "gif/webp.")
    try:
        for f in frames:
            writer.write(f[:, :, ::-1])  # OpenCV wants BGR
    finally:
        writer.release()
    log.warning("Saved %s with OpenCV (PyAV missing): the workflow is not embedded in the file.", path)


class SaveAnimation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_SaveAnimation",
            display_name="Save Animation",
            category=CATEGORY,
            description=(
                "Saves the frames as an animated GIF, WebP or MP4 (with the workflow embedded where the format "
                "allows) and shows a looping preview."),
            inputs=[
                io.Image.Input("images", tooltip="The frames (IMAGE batch, e.g. from VAE Decode)."),
                io.String.Input("filename_prefix", default="AnimateDiff",
                                tooltip="File name prefix; may contain a subfolder (\"anim/run\") and ComfyUI "
                                        "placeholders such as %date:yyyy-MM-dd%."),
                io.Combo.Input("format", options=list(FORMATS), default="gif",
                               tooltip="gif: plays everywhere, 256 colours; webp: smaller, full colour; mp4: "
                                       "H.264 video (loop count does not apply)."),
                io.Float.Input("fps", default=8.0, min=0.1, max=120.0, step=0.1,
                               tooltip="Frames per second (AnimateDiff clips are usually 8)."),
                io.Int.Input("loop_count", default=0, min=0, max=100,
                             tooltip="How many times GIF/WebP repeat; 0 loops forever."),
                io.Boolean.Input("ping_pong", default=False,
                                 tooltip="Play forward then backward, for a seamless loop."),
                io.Boolean.Input("save_output", default=True,
                                 tooltip="On: save to the output folder. Off: temporary file, preview only."),
            ],
            outputs=[io.Video.Output(display_name="VIDEO",
                                     tooltip="The frames as saved (ping-pong included) with their fps, as ComfyUI's "
                                             "VIDEO: connect core Save Video (MP4 with the workflow embedded), Get "
                                             "Video Components or Load Frames.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix: str, format: str, fps: float, loop_count: int, ping_pong: bool,
                save_output: bool) -> io.NodeOutput:
        if images is None or len(images) == 0:
            raise ValueError("Save Animation got no frames: connect an IMAGE batch (e.g. from VAE Decode).")
        if format not in FORMATS:
            raise ValueError(f"Unknown format '{format}'; choose one of {', '.join(FORMATS)}.")
        frames = to_uint8_frames(images, ping_pong)
        folder = folder_paths.get_output_directory() if save_output else folder_paths.get_temp_directory()
        folder_type = io.FolderType.output if save_output else io.FolderType.temp
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder, frames[0].shape[1], frames[0].shape[0])
        name = f"{filename}_{counter:05}_.{format}"
        path = os.path.join(full_folder, name)
        meta = workflow_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo)
        if format == "gif":
            save_gif(path, frames, fps, loop_count, meta)
        elif format == "webp":
            save_webp(path, frames, fps, loop_count, meta)
        else:
            save_mp4(path, frames, fps, meta)
        # "animated": the editor previews WebP/MP4 itself; web/js/save_animation_preview.js adds the GIF player.
        return io.NodeOutput(as_video(images, ping_pong, fps),
                             ui=ui.PreviewVideo([ui.SavedResult(name, subfolder, folder_type)]))


def as_video(images, ping_pong: bool, fps: float):
    """ComfyUI's VIDEO of the frames as written to the file: RGB floats, same ping-pong order, same rate."""
    frames = images[..., :3] if images.shape[-1] >= 3 else images[..., :1].expand(*images.shape[:-1], 3)
    if ping_pong and frames.shape[0] > 2:
        frames = torch.cat([frames, frames[1:-1].flip(0)])  # the order to_uint8_frames writes
    rate = Fraction(round(fps * 1000), 1000)
    return InputImpl.VideoFromComponents(Types.VideoComponents(images=frames.cpu().float(), audio=None,
                                                               frame_rate=rate))


NODES = [SaveAnimation]
