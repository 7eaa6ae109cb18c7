"""The shipped example workflows, end to end over HTTP: a real ComfyUI server with this pack in custom_nodes gets
each UI workflow converted with its own /object_info, with seeded stand-in files under the official file names,
shrunk to 64x64 / 8 frames / 1 step. Checks: the run succeeds, the animation file has every frame, and the frames
differ from the same graph run on the un-inflated model."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from harness.workflow_convert import convert_workflow
from tools import standins

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = ("txt2anim_sd15_v2", "txt2anim_sd15_v3_adapter", "motionlora_zoomin_panleft", "vid2vid_sd15_v2")
FRAMES, SIZE = 8, 64


def write_input_clip(path: Path, frames: int = FRAMES, size: int = SIZE) -> None:
    """A small moving-gradient MP4 for the video-to-video workflow."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        for i in range(frames):
            rgb = np.stack([np.roll(ramp, 4 * i)[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                            np.full((size, size), 128.0)], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def server(comfy_server, sd15_reduced_ckpt):
    """The server with stand-ins installed under the names the workflows use."""
    install = comfy_server.install_model
    install("checkpoints", sd15_reduced_ckpt, "v1-5-pruned-emaonly-fp16.safetensors")
    install("animatediff_models", standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"), "mm_sd_v15_v2.ckpt")
    install("animatediff_models", standins.cached_motion_file("v3_sd15_mm", layout="reduced"), "v3_sd15_mm.ckpt")
    install("animatediff_models", standins.cached_motion_file("v3_sd15_adapter_example", layout="reduced"),
            "v3_sd15_adapter.ckpt")
    install("animatediff_motion_lora", standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0),
            "v2_lora_ZoomIn.ckpt")
    install("animatediff_motion_lora", standins.cached_motion_file("motion_lora_example", layout="reduced", seed=1),
            "v2_lora_PanLeft.ckpt")
    write_input_clip(comfy_server.base_dir / "input" / "animatediff_input.mp4")
    return comfy_server


def shrink(prompt: dict, prefix: str) -> dict:
    """Same graph, test-sized."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "ADMK_SampleAnimation":
            inputs.update(frames=FRAMES, width=SIZE, height=SIZE, steps=1)
        elif kind == "ADMK_LoadFrames":
            inputs.update(max_frames=FRAMES, width=SIZE, height=SIZE)
        elif kind == "ADMK_SaveAnimation":
            inputs["filename_prefix"] = prefix
    return prompt


def un_inflated(prompt: dict, prefix: str) -> dict:
    """The same graph with Sample Animation fed the checkpoint's MODEL instead of the inflated one."""
    plain = copy.deepcopy(prompt)
    ckpt = next(k for k, n in plain.items() if n["class_type"] == "CheckpointLoaderSimple")
    for node in plain.values():
        if node["class_type"] == "ADMK_SampleAnimation":
            node["inputs"]["model"] = [ckpt, 0]
        if node["class_type"] == "ADMK_SaveAnimation":
            node["inputs"]["filename_prefix"] = prefix
    return plain


def saved_frames(server, entry: dict, save_id: str) -> np.ndarray:
    ui = entry["outputs"][save_id]
    assert ui["animated"] == [True] and len(ui["images"]) == 1
    item = ui["images"][0]
    path = server.output_dir / item["subfolder"] / item["filename"]
    assert path.is_file()
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) for f in ImageSequence.Iterator(im)])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_workflow_runs_over_http(server, name):
    workflow = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    assert workflow["version"] == 0.4
    prompt = shrink(convert_workflow(workflow, server.client.object_info()), f"e2e_{name}")
    save_id = next(k for k, n in prompt.items() if n["class_type"] == "ADMK_SaveAnimation")

    animated = saved_frames(server, server.client.run(prompt, timeout=600), save_id)
    assert animated.shape == (FRAMES, SIZE, SIZE, 3)

    plain = saved_frames(server, server.client.run(un_inflated(prompt, f"e2e_{name}_plain"), timeout=600), save_id)
    assert plain.shape == animated.shape
    assert np.abs(animated - plain).mean() > 1.0  # the motion module changed the frames
