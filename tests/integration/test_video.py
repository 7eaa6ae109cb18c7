"""ComfyUI's VIDEO type: Save Animation outputs it, core video nodes take it, Load Frames reads it back.

No model needed: the frames come from a folder of PNGs through Load Frames, so every run takes well under a second.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration

FRAMES, W, H = 6, 48, 32


@pytest.fixture(scope="module")
def clip_folder(comfy, comfy_pack):
    """input/admk_video_frames: FRAMES PNGs whose red channel encodes the frame index (0, 40, 80, ...)."""
    from PIL import Image

    folder = comfy.session_dirs()["input"] / "admk_video_frames"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(FRAMES):
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[..., 0] = 40 * i
        rgb[..., 1] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
        Image.fromarray(rgb).save(folder / f"f{i}.png")
    return folder.name


def load(path, **overrides):
    inputs = {"path": path, "start_frame": 0, "stride": 1, "max_frames": 0, "width": 0, "height": 0,
              "resize": "crop", "folder_fps": 8.0}
    inputs.update(overrides)
    return {"class_type": "ADMK_LoadFrames", "inputs": inputs}


def save(images, fmt="gif", ping_pong=False, prefix="admk_video", fps=8.0):
    return {"class_type": "ADMK_SaveAnimation", "inputs": {
        "images": images, "filename_prefix": prefix, "format": fmt, "fps": fps, "loop_count": 0,
        "ping_pong": ping_pong, "save_output": True}}


def test_save_animation_outputs_a_video_that_core_nodes_take(comfy, clip_folder):
    prompt = {"1": load(clip_folder), "2": save(["1", 0], fps=12.0, ping_pong=True),
              "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    result = comfy.run_prompt(prompt)
    images, fps = result.output("3", 0), result.output("3", 2)
    src = result.output("1", 0)
    assert images.shape == (2 * FRAMES - 2, H, W, 3) and fps == 12.0
    assert torch.equal(images[:FRAMES], src) and torch.equal(images[FRAMES:], src[1:-1].flip(0))  # as saved
    assert result.ui["2"]["animated"] == [True] and result.ui["2"]["images"][0]["filename"].endswith(".gif")


def test_core_save_video_keeps_the_embedded_workflow(comfy, clip_folder):
    import av

    workflow = {"nodes": [{"id": 1, "type": "ADMK_SaveAnimation"}], "links": [], "version": 0.4}
    prompt = {"1": load(clip_folder), "2": save(["1", 0], fmt="webp"),
              "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "admk_core_video",
                                                          "format": "mp4", "codec": "h264"}}}
    result = comfy.run_prompt(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    item = result.ui["3"]["images"][0]
    path = comfy.session_dirs()["output"] / item["subfolder"] / item["filename"]
    with av.open(str(path)) as container:
        assert json.loads(container.metadata["workflow"]) == workflow
        assert json.loads(container.metadata["prompt"])["2"]["class_type"] == "ADMK_SaveAnimation"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == FRAMES and decoded[0].shape == (H, W, 3)
    red = [float(f[..., 0].mean()) for f in decoded]
    assert np.allclose(red, [40 * i for i in range(FRAMES)], atol=6)  # frames in order, not re-timed


def test_load_frames_takes_a_video_input_with_the_same_selection_rules(comfy, clip_folder):
    prompt = {"1": load(clip_folder), "2": save(["1", 0], fps=10.0),
              "3": load("", video=["2", 0], start_frame=1, stride=2, width=24, height=24),
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    result = comfy.run_prompt(prompt)
    images, count, fps = result.output("3", 0), result.output("3", 1), result.output("3", 2)
    assert images.shape == (3, 24, 24, 3) and count == 3 and fps == 10.0
    red = images[..., 0].mean(dim=(1, 2)) * 255
    assert torch.allclose(red, torch.tensor([40.0, 120.0, 200.0]), atol=1.0)  # frames 1, 3, 5


def test_load_frames_reads_a_core_load_video(comfy, clip_folder):
    """Core Load Video (a file) -> Load Frames: the path input is not needed then."""
    first = comfy.run_prompt({"1": load(clip_folder), "2": save(["1", 0], fmt="mp4", prefix="admk_for_load")})
    item = first.ui["2"]["images"][0]
    src = comfy.session_dirs()["output"] / item["subfolder"] / item["filename"]
    target = comfy.session_dirs()["input"] / "admk_loadvideo.mp4"
    target.write_bytes(src.read_bytes())
    result = comfy.run_prompt({"1": {"class_type": "LoadVideo", "inputs": {"file": target.name}},
                               "2": load("", video=["1", 0], max_frames=4),
                               "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}})
    assert result.output("2", 0).shape == (4, H, W, 3) and result.output("2", 1) == 4
