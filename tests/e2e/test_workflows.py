"""The shipped example workflows, end to end over HTTP: a real ComfyUI server with this pack in custom_nodes gets
each UI workflow converted with its own /object_info, with seeded stand-in files under the official file names,
shrunk to 64x64 / 8 frames / 1 step. Checks: the run succeeds, the animation file has every frame, and the frames
differ from the same graph run on the un-inflated model. The depth workflow gets a real .pth ControlNet stand-in
and a folder of depth-map PNGs, and 6-frame context windows so that its 8 frames are sampled in two windows."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from harness.shipped_workflows import (FRAMES, SIZE, install_standins, load_workflow, save_node, saved_frames,
                                       sized_prompt, un_inflated)

pytestmark = pytest.mark.e2e

WORKFLOWS = ("txt2anim_sd15_v2", "txt2anim_sd15_v3_adapter", "motionlora_zoomin_panleft", "vid2vid_sd15_v2",
             "depth_guided_animation", "train_motionlora_from_clip")
# Per workflow, inputs set on top of the shrinking: {class_type: {input: value}}.
TWEAKS = {"depth_guided_animation": {"ADMK_ContextOptions": {"context_length": 6, "context_overlap": 2}},
          "train_motionlora_from_clip": {"ADMK_TrainMotionLoRA": {"steps": 2, "rank": 4}}}


@pytest.fixture(scope="module")
def server(comfy_server):
    """The server with stand-ins installed under the names the workflows use."""
    install_standins(comfy_server)
    return comfy_server


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_workflow_runs_over_http(server, name):
    workflow = load_workflow(name)
    assert workflow["version"] == 0.4
    prompt = sized_prompt(workflow, server.client.object_info(), f"e2e_{name}")
    for node in prompt.values():
        node["inputs"].update(TWEAKS.get(name, {}).get(node["class_type"], {}))
    save_id = save_node(prompt)

    animated = saved_frames(server, server.client.run(prompt, timeout=600), save_id)
    assert animated.shape == (FRAMES, SIZE, SIZE, 3)

    plain = saved_frames(server, server.client.run(un_inflated(prompt, f"e2e_{name}_plain"), timeout=600), save_id)
    assert plain.shape == animated.shape
    assert np.abs(animated - plain).mean() > 1.0  # the motion module changed the frames

    depth = [k for k, n in prompt.items() if n["class_type"] == "ADMK_ControlNetDepthSequence"]
    if depth:  # the .pth ControlNet loaded and the depth maps steer the frames
        unguided = copy.deepcopy(prompt)
        unguided[depth[0]]["inputs"]["strength"] = 0.0
        unguided[save_id]["inputs"]["filename_prefix"] = f"e2e_{name}_unguided"
        free = saved_frames(server, server.client.run(unguided, timeout=600), save_id)
        assert free.shape == animated.shape and np.abs(animated - free).mean() > 1.0
