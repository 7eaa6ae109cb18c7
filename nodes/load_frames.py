"""Load Frames: a video file, an image folder or a VIDEO -> IMAGE batch (decoding and resizing in motion_core.frames)."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.v0_0_2 import io

from ..motion_core.frames import RESIZE_METHODS, load_frames, select_frames
from .common import CATEGORY


def resolve_path(path: str) -> str:
    """Absolute paths as given; a relative path is looked up in ComfyUI's input folder first."""
    path = path.strip().strip('"').strip("'")  # pasted Windows paths often come quoted
    if not path:
        raise ValueError("Load Frames needs a path: a video file (mp4, webm, gif, ...) or a folder of images.")
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        candidate = os.path.join(folder_paths.get_input_directory(), path)
        if os.path.exists(candidate):
            return candidate
    return path


class LoadFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ADMK_LoadFrames",
            display_name="Load Frames",
            category=f"{CATEGORY}/frames",
            description=(
                "Loads the frames of a video file, the images of a folder in natural order (frame2 before "
                "frame10), or a VIDEO (core Load Video, Save Animation, ...) as an IMAGE batch - e.g. to make depth "
                "maps for ControlNet Depth Sequence or to start video-to-video. frame_count can feed every frames "
                "input of the workflow. Uses OpenCV."),
            inputs=[
                io.String.Input("path", default="",
                                tooltip="Video file or image folder. Absolute, or relative to ComfyUI's input "
                                        "folder. Not used when a VIDEO is connected."),
                io.Int.Input("start_frame", default=0, min=0, max=1_000_000,
                             tooltip="First frame (or image) to load, counted from 0."),
                io.Int.Input("stride", default=1, min=1, max=1000,
                             tooltip="Load every n-th frame from start_frame (2 halves a 24 fps clip to 12 fps)."),
                io.Int.Input("max_frames", default=0, min=0, max=100_000,
                             tooltip="Stop after this many frames; 0 loads all."),
                io.Int.Input("width", default=0, min=0, max=8192, step=8,
                             tooltip="Resize to this width; 0 keeps the source width (or follows the aspect "
                                     "ratio when height is set)."),
                io.Int.Input("height", default=0, min=0, max=8192, step=8,
                             tooltip="Resize to this height; 0 keeps the source height (or follows the aspect "
                                     "ratio when width is set)."),
                io.Combo.Input("resize", options=list(RESIZE_METHODS), default="crop",
                               tooltip="crop: cut the centre to the target aspect ratio, then scale (ComfyUI's "
                                       "rule, nothing stretched). stretch: scale to the exact size."),
                io.Float.Input("folder_fps", default=8.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate reported for an image folder or a single image (they carry no "
                                       "timing); a video reports its own."),
                io.Video.Input("video", optional=True,
                               tooltip="Optional VIDEO (core Load Video, Create Video, Save Animation...): used "
                                       "instead of path; start_frame, stride, max_frames and resizing still apply."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The frames, [frames, height, width, 3], 0..1."),
                io.Int.Output(display_name="frame_count", tooltip="How many frames were loaded."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the source (before stride)."),
            ],
        )

    @classmethod
    def execute(cls, path: str, start_frame: int, stride: int, max_frames: int, width: int, height: int,
                resize: str, folder_fps: float, video=None) -> io.NodeOutput:
        if video is not None:
            components = video.get_components()
            images = select_frames(components.images, start_frame, stride, max_frames, width, height, resize)
            fps = float(components.frame_rate)
        else:
            images, fps = load_frames(resolve_path(path), start_frame, stride, max_frames, width, height, resize)
        return io.NodeOutput(images, int(images.shape[0]), float(fps) if fps else float(folder_fps))

    @classmethod
    def fingerprint_inputs(cls, path: str, video=None, **kwargs):
        if video is not None:
            return None  # a VIDEO input changes with its upstream node, which ComfyUI already tracks
        # Re-run when the file or folder changes on disk, not only when the inputs change.
        try:
            resolved = resolve_path(path)
            stat = os.stat(resolved)
            stamp = (stat.st_mtime, stat.st_size)
            if os.path.isdir(resolved):
                stamp += tuple(sorted((e.name, e.stat().st_mtime) for e in os.scandir(resolved)))
            return stamp
        except (OSError, ValueError):
            return path


NODES = [LoadFrames]
