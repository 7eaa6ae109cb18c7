"""One frame count: Prompt Travel and ControlNet Depth Sequence record the count they were made for, and Sample
Animation refuses another count before its first step, naming both nodes; a wired count runs."""
from __future__ import annotations

import pytest
import torch

from tools import standins

pytestmark = pytest.mark.integration


def conditioning(frames_by_node: dict | None = None):
    extras = {} if frames_by_node is None else {"admk_frames": frames_by_node}
    return [[torch.zeros(8, 77, 768), extras]]


def test_check_names_both_nodes(pack_node):
    frame_count = pack_node("frame_count")
    frame_count.check(8, "Sample Animation", positive=conditioning({"Prompt Travel": 8}), negative=conditioning())
    with pytest.raises(ValueError) as err:
        frame_count.check(12, "Sample Animation", positive=conditioning({"Prompt Travel": 8}),
                          negative=conditioning())
    assert "Prompt Travel was set to 8 frames" in str(err.value) and "Sample Animation makes 12" in str(err.value)
    with pytest.raises(ValueError, match="ControlNet Depth Sequence was set to 16"):
        frame_count.check(8, "Sample Animation", positive=conditioning({"Prompt Travel": 8}),
                          negative=conditioning({"ControlNet Depth Sequence": 16}))


def test_tag_copies_and_keeps_earlier_records(pack_node):
    frame_count = pack_node("frame_count")
    extras = {"pooled_output": None, "admk_frames": {"Prompt Travel": 8}}
    tagged = frame_count.tag(extras, "ControlNet Depth Sequence", 8)
    assert tagged["admk_frames"] == {"Prompt Travel": 8, "ControlNet Depth Sequence": 8}
    assert extras["admk_frames"] == {"Prompt Travel": 8}  # the input is not changed


@pytest.fixture(scope="module")
def files(comfy, comfy_pack, sd15_reduced_ckpt):
    return {"ckpt": comfy.install_model("checkpoints", sd15_reduced_ckpt, "standin_sd15_reduced.safetensors"),
            "mm": comfy.install_model("animatediff_models", standins.cached_motion_file("mm_sd_v15_v2",
                                                                                       layout="reduced"),
                                      "mm_sd_v15_v2.ckpt")}


def travel_prompt(files, travel_frames, sample_frames):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt"]}},
        "2": {"class_type": "ADMK_PromptTravel", "inputs": {
            "clip": ["1", 1], "schedule": '0: "a calm sea"\n4: "a stormy sea"', "frames": travel_frames,
            "pre_text": "", "post_text": "", "interpolation": "linear"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "ADMK_LoadMotionModule", "inputs": {"model_name": files["mm"]}},
        "5": {"class_type": "ADMK_InflateModel", "inputs": {
            "model": ["1", 0], "motion_module": ["4", 0], "domain_adapter": "none", "adapter_scale": 1.0,
            "motion_strength": 1.0, "beta_schedule": "auto"}},
        "6": {"class_type": "ADMK_SampleAnimation", "inputs": {
            "model": ["5", 0], "positive": ["2", 0], "negative": ["3", 0], "frames": sample_frames, "width": 64,
            "height": 64, "seed": 0, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }


def test_a_mismatch_is_refused_before_sampling_and_a_wired_count_runs(comfy, files):
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(travel_prompt(files, 8, 6))
    message = str(err.value.original)
    assert err.value.node_type == "ADMK_SampleAnimation"
    assert "Prompt Travel was set to 8 frames" in message and "Sample Animation makes 6" in message
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "6" for d in progress)  # not a single sampling step ran

    wired = travel_prompt(files, 6, 6)
    wired["8"] = {"class_type": "PrimitiveInt", "inputs": {"value": 6}}
    wired["2"]["inputs"]["frames"] = ["8", 0]
    wired["6"]["inputs"]["frames"] = ["8", 0]
    result = comfy.run_prompt(wired)
    assert result.output("6")["samples"].shape[0] == 6
