"""The shipped example workflows, end to end over HTTP: a real ComfyUI server with this pack in custom_nodes gets
each UI workflow converted with its own /object_info, with seeded stand-in files under the official file names,
shrunk to 64x64 / 8 frames / 1 step. The depth workflow gets a real .pth ControlNet stand-in and a folder of
depth-map PNGs, and 6-frame context windows so that its 8 frames are sampled in two windows.

Every comparison changes ONE thing in the same graph, so it fails if that thing did nothing:
- "the motion module changed the frames": the same graph at motion_strength 0, which keeps the module's beta
  schedule (a comparison with the un-inflated model would also drop the schedule and pass with no temporal layer);
- the MotionLoRA workflow differs from the same graph without its Apply MotionLoRA nodes;
- the v3 adapter workflow differs from the same graph with domain_adapter none;
- the depth and SparseCtrl workflows differ from the same graph at ControlNet / SparseCtrl strength 0
  (the SparseCtrl workflows get reduced stand-ins of both official files and keyframe PNGs).
The embedded workflow is read back from the saved GIF, WebP and MP4, downloaded over HTTP (/view)."""
from __future__ import annotations

import copy
import io
import json
import urllib.parse
import urllib.request

import numpy as np
import pytest

from harness.shipped_workflows import (FRAMES, SIZE, install_standins, load_workflow, save_node, saved_frames,
                                       sized_prompt)

pytestmark = pytest.mark.e2e

WORKFLOWS = ("txt2anim_sd15_v2", "txt2anim_sd15_v3_adapter", "motionlora_zoomin_panleft", "vid2vid_sd15_v2",
             "depth_guided_animation", "sparsectrl_rgb_first_last", "sparsectrl_scribble", "freenoise_long_clip",
             "freeinit_consistency", "train_motionlora_from_clip")
# Per workflow, inputs set on top of the shrinking: {class_type: {input: value}}. The FreeNoise clip keeps being
# 3 windows long at 8 frames (windows of 2 would give the plain model repeated frames, which a GIF merges).
TWEAKS = {"depth_guided_animation": {"ADMK_ContextOptions": {"context_length": 6, "context_overlap": 2}},
          "freenoise_long_clip": {"ADMK_ContextOptions": {"context_length": 4, "context_overlap": 2}},
          "train_motionlora_from_clip": {"ADMK_TrainMotionLoRA": {"steps": 2, "rank": 4}}}


@pytest.fixture(scope="module")
def server(comfy_server):
    """The server with stand-ins installed under the names the workflows use."""
    install_standins(comfy_server)
    return comfy_server


def _nodes(prompt, class_type):
    return [k for k, n in prompt.items() if n["class_type"] == class_type]


def variant(prompt: dict, prefix: str, **inputs_by_class) -> dict:
    """The same graph with some inputs changed ({class_type: {input: value}}) and its own save prefix."""
    out = copy.deepcopy(prompt)
    for class_type, inputs in inputs_by_class.items():
        for k in _nodes(out, class_type):
            out[k]["inputs"].update(inputs)
    out[save_node(out)]["inputs"]["filename_prefix"] = prefix
    return out


def without_motion_loras(prompt: dict, prefix: str) -> dict:
    """The same graph with every Apply MotionLoRA bypassed (Inflate Model gets Load Motion Module's output)."""
    out = variant(prompt, prefix)
    loras = set(_nodes(out, "ADMK_ApplyMotionLoRA"))
    for k in _nodes(out, "ADMK_InflateModel"):
        link = out[k]["inputs"]["motion_module"]
        while link[0] in loras:
            link = out[link[0]]["inputs"]["motion_module"]
        out[k]["inputs"]["motion_module"] = link
    for k in loras:
        del out[k]
    return out


def _run(server, prompt):
    return saved_frames(server, server.client.run(prompt, timeout=600), save_node(prompt))


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_workflow_runs_over_http(server, name):
    workflow = load_workflow(name)
    assert workflow["version"] == 0.4
    prompt = sized_prompt(workflow, server.client.object_info(), f"e2e_{name}")
    for node in prompt.values():
        node["inputs"].update(TWEAKS.get(name, {}).get(node["class_type"], {}))

    animated = _run(server, prompt)
    assert animated.shape == (FRAMES, SIZE, SIZE, 3)

    # the motion module changed the frames: same graph, same schedule, temporal residual scaled to 0
    still = _run(server, variant(prompt, f"e2e_{name}_strength0", ADMK_InflateModel={"motion_strength": 0.0}))
    assert still.shape == animated.shape
    assert np.abs(animated - still).mean() > 1.0

    if _nodes(prompt, "ADMK_ApplyMotionLoRA"):
        plain_module = _run(server, without_motion_loras(prompt, f"e2e_{name}_nolora"))
        assert np.abs(animated - plain_module).mean() > 1.0
    adapters = [k for k in _nodes(prompt, "ADMK_InflateModel") if prompt[k]["inputs"]["domain_adapter"] != "none"]
    if name == "txt2anim_sd15_v3_adapter":
        assert adapters  # the workflow is meant to use it
    if adapters:
        no_adapter = _run(server, variant(prompt, f"e2e_{name}_noadapter", ADMK_InflateModel={"domain_adapter": "none"}))
        assert np.abs(animated - no_adapter).mean() > 1.0
    for guide in ("ADMK_ControlNetDepthSequence", "ADMK_ApplySparseCtrl"):
        if _nodes(prompt, guide):  # the ControlNet / SparseCtrl file loaded and its depth maps / keyframes steer
            free = _run(server, variant(prompt, f"e2e_{name}_unguided", **{guide: {"strength": 0.0}}))
            assert np.abs(animated - free).mean() > 1.0


def _download(server, item: dict) -> bytes:
    query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                    "type": item.get("type", "output")})
    with urllib.request.urlopen(f"{server.client.base_url}/view?{query}", timeout=60) as resp:
        return resp.read()


def _saved_item(entry: dict, save_id: str) -> dict:
    ui = entry["outputs"][save_id]
    items = [i for v in ui.values() if isinstance(v, list) for i in v if isinstance(i, dict) and "filename" in i]
    assert len(items) == 1, ui
    return items[0]


def _embedded(fmt: str, data: bytes) -> dict:
    """{'prompt': ..., 'workflow': ...} as a reader of each format finds them."""
    if fmt == "gif":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return json.loads(im.info["comment"])
    if fmt == "webp":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
        out = {}
        for tag in (0x0110, 0x010F, 0x010E):  # core SaveAnimatedWEBP's tags: prompt, then extra_pnginfo entries
            if tag in exif:
                key, _, value = exif[tag].partition(":")
                out[key] = json.loads(value)
        return out
    import av

    with av.open(io.BytesIO(data)) as container:
        return {k: json.loads(v) for k, v in container.metadata.items() if k in ("prompt", "workflow")}


@pytest.mark.parametrize("fmt", ["gif", "webp", "mp4"])
def test_embedded_workflow_reads_back_from_the_file_served_over_http(server, fmt):
    workflow = load_workflow("txt2anim_sd15_v2")
    prompt = variant(sized_prompt(workflow, server.client.object_info(), f"e2e_meta_{fmt}"), f"e2e_meta_{fmt}",
                     ADMK_SaveAnimation={"format": fmt})
    entry = server.client.wait(server.client.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}}),
                               timeout=600)
    meta = _embedded(fmt, _download(server, _saved_item(entry, save_node(prompt))))
    assert meta["workflow"] == workflow
    assert meta["prompt"] == json.loads(json.dumps(prompt))
