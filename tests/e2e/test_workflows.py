"""The shipped example workflows, end to end over HTTP: a real ComfyUI server with this pack in custom_nodes gets
each UI workflow converted with its own /object_info, with seeded stand-in files under the official file names,
shrunk to 64x64 / 8 frames / 1 step. Checks: the run succeeds, the animation file has every frame, and the frames
differ from the same graph run on the un-inflated model."""
from __future__ import annotations

import numpy as np
import pytest

from harness.shipped_workflows import (FRAMES, SIZE, install_standins, load_workflow, save_node, saved_frames,
                                       sized_prompt, un_inflated)

pytestmark = pytest.mark.e2e

WORKFLOWS = ("txt2anim_sd15_v2", "txt2anim_sd15_v3_adapter", "motionlora_zoomin_panleft", "vid2vid_sd15_v2")


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
    save_id = save_node(prompt)

    animated = saved_frames(server, server.client.run(prompt, timeout=600), save_id)
    assert animated.shape == (FRAMES, SIZE, SIZE, 3)

    plain = saved_frames(server, server.client.run(un_inflated(prompt, f"e2e_{name}_plain"), timeout=600), save_id)
    assert plain.shape == animated.shape
    assert np.abs(animated - plain).mean() > 1.0  # the motion module changed the frames
