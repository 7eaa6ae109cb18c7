"""In-process ComfyUI harness: real validation and execution of core-node prompts on the stand-in checkpoint,
with errors surfaced as exceptions that name the node and the problem."""
from __future__ import annotations

import pytest
import torch

from tools.comfy_inprocess import PromptExecutionError, PromptValidationError
from harness.core_workflows import core_image_prompt, core_image_workflow_ui
from tools.workflow_convert import convert_workflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ckpt_name(comfy, sd15_reduced_ckpt):
    return comfy.install_model("checkpoints", sd15_reduced_ckpt)


def test_core_prompt_runs_and_returns_ui_and_tensors(comfy, ckpt_name):
    result = comfy.run_prompt(core_image_prompt(ckpt_name, prefix="inproc_core"), fresh=True)
    saved = result.ui["9"]["images"]
    assert len(saved) == 1 and saved[0]["type"] == "output"
    assert (comfy.session_dirs()["output"] / saved[0]["filename"]).is_file()
    image = result.output("8")
    assert image.shape == (1, 64, 64, 3)
    assert torch.isfinite(image).all() and image.std() > 0.01  # a picture, not a constant
    latent = result.output("3")["samples"]
    assert latent.shape == (1, 4, 8, 8) and torch.isfinite(latent).all()
    assert {"node": "3", "value": 1, "max": 1} in result.progress  # KSampler's progress bar went through the hook
    assert [event for event, _ in result.messages].count("execution_success") == 1


def test_same_seed_same_image_other_seed_other_image(comfy, ckpt_name):
    a = comfy.run_prompt(core_image_prompt(ckpt_name, seed=1, prefix="inproc_seed"), fresh=True).output("3")["samples"]
    b = comfy.run_prompt(core_image_prompt(ckpt_name, seed=1, prefix="inproc_seed"), fresh=True).output("3")["samples"]
    c = comfy.run_prompt(core_image_prompt(ckpt_name, seed=2, prefix="inproc_seed")).output("3")["samples"]
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.1


def test_validation_error_names_node_and_value(comfy):
    prompt = core_image_prompt("does_not_exist.safetensors")
    with pytest.raises(PromptValidationError) as info:
        comfy.run_prompt(prompt)
    assert "does_not_exist.safetensors" in str(info.value)
    assert "4" in info.value.node_errors


def test_execution_error_keeps_node_and_original_exception(comfy):
    broken = comfy.session_dirs()["checkpoints"] / "broken_for_test.safetensors"
    broken.write_bytes(b"this is not a safetensors file")
    with pytest.raises(PromptExecutionError) as info:
        comfy.run_prompt(core_image_prompt(broken.name), fresh=True)
    err = info.value
    assert err.node_id == "4" and err.node_type == "CheckpointLoaderSimple"
    assert err.original is not None and str(err.original) in str(err)


def test_object_info_matches_what_converter_needs(comfy, ckpt_name):
    info = comfy.object_info()
    assert info["KSampler"]["input_order"]["required"][:2] == ["model", "seed"]
    assert ckpt_name in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    prompt = convert_workflow(core_image_workflow_ui(ckpt_name), info)
    expected = core_image_prompt(ckpt_name, prefix="admk_ui")
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == \
        {k: (v["class_type"], v["inputs"]) for k, v in expected.items()}
    result = comfy.run_prompt(prompt)
    assert result.ui["9"]["images"][0]["filename"].startswith("admk_ui")


def test_pack_loads_through_comfyui_loader(comfy_pack, comfy):
    ids = comfy.pack_node_ids()
    assert ids and all(i.startswith("ADMK_") for i in ids)
    import nodes  # ComfyUI's nodes.py (the harness put ComfyUI first on sys.path)

    assert all(i in nodes.NODE_CLASS_MAPPINGS for i in ids)
    assert comfy_pack.__file__.endswith("__init__.py")


def test_a_broken_custom_node_folder_is_reported_not_swallowed(comfy, tmp_path):
    broken = tmp_path / "broken_pack"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('needs a thing')\n")
    with pytest.raises(RuntimeError, match="could not load the custom nodes in .*broken_pack"):
        comfy.load_custom_node_dir(broken)


def test_standin_controlnet_changes_the_sampled_latent(comfy, ckpt_name):
    from tools import standins

    cn_name = comfy.install_model("controlnet", standins.cached_controlnet("reduced"))
    plain = core_image_prompt(ckpt_name, seed=5, prefix="inproc_cn")
    controlled = core_image_prompt(ckpt_name, seed=5, prefix="inproc_cn")
    controlled.update({
        "20": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": cn_name}},
        "21": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                      "color": 0xFF8000}},
        "22": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["6", 0], "negative": ["7", 0], "control_net": ["20", 0], "image": ["21", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
    })
    controlled["3"]["inputs"].update(positive=["22", 0], negative=["22", 1])
    a = comfy.run_prompt(plain).output("3")["samples"]
    b = comfy.run_prompt(controlled).output("3")["samples"]
    assert torch.isfinite(b).all()
    assert (a - b).abs().mean() > 0.01 * a.abs().mean()  # measured: ~12% of the latent's magnitude
