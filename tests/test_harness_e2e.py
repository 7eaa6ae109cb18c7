"""End to end over HTTP: a real ComfyUI server process with this pack in custom_nodes runs a core image
workflow (API prompt, and the UI workflow converted with the server's own /object_info)."""
from __future__ import annotations

import time

import pytest

from harness.core_workflows import core_image_prompt, core_image_workflow_ui
from harness.server import ServerPromptError
from tools.workflow_convert import convert_workflow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server_ckpt(comfy_server, sd15_reduced_ckpt):
    return comfy_server.install_model("checkpoints", sd15_reduced_ckpt)


def test_core_image_prompt_runs_over_http_and_writes_a_png(comfy_server, server_ckpt):
    entry = comfy_server.client.run(core_image_prompt(server_ckpt, prefix="e2e_core"), timeout=300)
    images = entry["outputs"]["9"]["images"]
    assert len(images) == 1
    path = comfy_server.output_dir / images[0]["subfolder"] / images[0]["filename"]
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry["status"]["status_str"] == "success"


def test_ui_workflow_converted_with_server_object_info_validates_and_runs(comfy_server, server_ckpt):
    info = comfy_server.client.object_info()
    prompt = convert_workflow(core_image_workflow_ui(server_ckpt, prefix="e2e_ui"), info)
    assert set(prompt) == {"3", "4", "5", "6", "7", "8", "9"}  # Note, Reroute and PrimitiveNode are gone
    entry = comfy_server.client.run(prompt, timeout=300)
    name = entry["outputs"]["9"]["images"][0]["filename"]
    assert name.startswith("e2e_ui") and (comfy_server.output_dir / name).is_file()


def test_rejected_prompt_raises_with_the_node_error(comfy_server):
    with pytest.raises(ServerPromptError, match="missing_model.safetensors"):
        comfy_server.client.queue(core_image_prompt("missing_model.safetensors"))


def test_interrupt_stops_a_running_prompt(comfy_server, server_ckpt):
    client = comfy_server.client
    prompt_id = client.queue(core_image_prompt(server_ckpt, steps=500, seed=123, prefix="e2e_interrupt"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # interrupt only once this prompt is the one running
        running = client.queue_state()["queue_running"]
        if running and running[0][1] == prompt_id:
            break
        time.sleep(0.2)
    client.interrupt()
    with pytest.raises(ServerPromptError, match="interrupted"):
        client.wait(prompt_id, timeout=120)


def test_pack_is_loaded_by_the_server(comfy_server):
    info = comfy_server.client.object_info()
    pack_nodes = [name for name in info if name.startswith("ADMK_")]
    assert pack_nodes, "no ADMK_ node registered; server log:\n" + comfy_server.log_text()[-3000:]
    assert "IMPORT FAILED" not in "\n".join(
        line for line in comfy_server.log_text().splitlines() if "animatediff-motionkit" in line)
