"""The shipped example workflows are valid UI saves that ComfyUI accepts: converted with (in-process)
/object_info and validated by ComfyUI's own validator with stand-in files under the official names.
(tests/e2e/test_workflows.py runs them over HTTP.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.workflow_convert import convert_workflow
from tools import standins

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MINE = ("txt2anim_sd15_v2", "txt2anim_sd15_v3_adapter", "motionlora_zoomin_panleft", "vid2vid_sd15_v2")
CONSISTENCY = ("freenoise_long_clip", "freeinit_consistency")  # issue 15's workflows


@pytest.fixture(scope="module")
def installed(comfy, comfy_pack, sd15_reduced_ckpt):
    comfy.install_model("checkpoints", sd15_reduced_ckpt, "v1-5-pruned-emaonly-fp16.safetensors")
    for manifest, folder, name in (("mm_sd_v15_v2", "animatediff_models", "mm_sd_v15_v2.ckpt"),
                                   ("v3_sd15_mm", "animatediff_models", "v3_sd15_mm.ckpt"),
                                   ("v3_sd15_adapter_example", "animatediff_models", "v3_sd15_adapter.ckpt"),
                                   ("motion_lora_example", "animatediff_motion_lora", "v2_lora_ZoomIn.ckpt"),
                                   ("motion_lora_example", "animatediff_motion_lora", "v2_lora_PanLeft.ckpt")):
        comfy.install_model(folder, standins.cached_motion_file(manifest, layout="reduced"), name)
    return comfy.object_info()


def load(name: str) -> dict:
    return json.loads((REPO / "example_workflows" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", MINE + CONSISTENCY)
def test_workflow_is_a_consistent_ui_save(name):
    wf = load(name)
    assert wf["version"] == 0.4
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert wf["last_node_id"] == max(nodes)
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        target = nodes[dst]["inputs"][dst_slot]
        assert target["link"] == link_id and target["type"] == kind == nodes[src]["outputs"][src_slot]["type"]
    assert any(n["type"] == "Note" and n["widgets_values"][0] for n in wf["nodes"])


@pytest.mark.parametrize("name", MINE)
def test_workflow_converts_and_passes_comfyui_validation(comfy, installed, name):
    import asyncio

    import execution

    prompt = convert_workflow(load(name), installed)
    sample = next(n for n in prompt.values() if n["class_type"] == "ADMK_SampleAnimation")["inputs"]
    assert (sample["frames"], sample["seed"], sample["sampler_name"]) == (16, 0, "euler_ancestral")
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("check", prompt, None))
    assert valid, (error, node_errors)
    assert [prompt[o]["class_type"] for o in outputs] == ["ADMK_SaveAnimation"]


@pytest.mark.parametrize("name", MINE + CONSISTENCY + ("depth_guided_animation",))
def test_workflow_link_types_are_the_types_the_nodes_publish(installed, name):
    # The editor only connects sockets of equal type: a stale type string (e.g. after a type rename) would make
    # the saved links disagree with the nodes as they load.
    wf = load(name)
    nodes = {n["id"]: n for n in wf["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        published = installed[nodes[src]["type"]]["output"][src_slot]
        assert kind == published, f"link {link_id}: {kind} but {nodes[src]['type']} outputs {published}"
        if nodes[dst]["type"].startswith("ADMK_"):
            spec = installed[nodes[dst]["type"]]["input"]
            name_ = nodes[dst]["inputs"][dst_slot]["name"]
            want = {**spec.get("required", {}), **spec.get("optional", {})}[name_][0]
            assert kind == want, f"link {link_id}: {kind} into {nodes[dst]['type']}.{name_} ({want})"


def test_the_four_workflows_cover_what_the_docs_promise():
    kinds = {name: {n["type"]: n.get("widgets_values") for n in load(name)["nodes"]} for name in MINE}
    assert kinds["txt2anim_sd15_v2"]["ADMK_LoadMotionModule"] == ["mm_sd_v15_v2.ckpt"]
    assert kinds["txt2anim_sd15_v3_adapter"]["ADMK_LoadMotionModule"] == ["v3_sd15_mm.ckpt"]
    assert kinds["txt2anim_sd15_v3_adapter"]["ADMK_InflateModel"][0] == "v3_sd15_adapter.ckpt"
    loras = [n["widgets_values"][0] for n in load("motionlora_zoomin_panleft")["nodes"]
             if n["type"] == "ADMK_ApplyMotionLoRA"]
    assert loras == ["v2_lora_ZoomIn.ckpt", "v2_lora_PanLeft.ckpt"]
    assert "ADMK_LoadFrames" in kinds["vid2vid_sd15_v2"] and "ADMK_ContextOptions" in kinds["vid2vid_sd15_v2"]


def test_consistency_workflows_use_freenoise_and_freeinit(comfy, installed):
    import asyncio

    import execution

    long_clip = convert_workflow(load("freenoise_long_clip"), installed)
    ctx = next(n for n in long_clip.values() if n["class_type"] == "ADMK_ContextOptions")["inputs"]
    sample = next(n for n in long_clip.values() if n["class_type"] == "ADMK_SampleAnimation")["inputs"]
    assert ctx["noise"] == "freenoise" and sample["frames"] == 4 * ctx["context_length"]
    freeinit = convert_workflow(load("freeinit_consistency"), installed)
    settings = next(n for n in freeinit.values() if n["class_type"] == "ADMK_FreeInit")["inputs"]
    assert settings["iterations"] == 3 and settings["filter"] == "butterworth"
    for prompt in (long_clip, freeinit):
        valid, error, _, node_errors = asyncio.run(execution.validate_prompt("check", prompt, None))
        assert valid, (error, node_errors)
