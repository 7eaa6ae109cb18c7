"""ControlNet Depth Sequence and Load Frames inside a real in-process ComfyUI 0.3.75 (tiny UNet/ControlNet).

The node modules are reached through the pack ComfyUI imported (fixture `pack_node`), the way ComfyUI runs
them; a tiny SD1.5-family UNet and ControlNet are built in-process with ComfyUI's own classes.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from harness.tiny_models import tiny_controlnet, tiny_unet

pytestmark = pytest.mark.integration

FRAMES = 10
CTX = 8


@pytest.fixture(scope="module")
def pack_nodes(pack_node):
    return {"depth": pack_node("controlnet_depth"), "frames": pack_node("load_frames")}


@pytest.fixture(scope="module")
def unet(comfy):
    return tiny_unet(CTX, seed=0)


@pytest.fixture(scope="module")
def control_net(comfy):
    return tiny_controlnet(CTX, seed=1)


def depth_maps(n, h=40, w=56):
    """Depth map i is the constant (i+1)/(n+1) (IMAGE layout), so every hint row names the map it came from."""
    return ((torch.arange(n, dtype=torch.float32) + 1) / (n + 1)).view(n, 1, 1, 1).expand(n, h, w, 3).clone()


def conds():
    positive = [[torch.randn(1, 4, CTX, generator=torch.Generator().manual_seed(3)), {}]]
    negative = [[torch.zeros(1, 4, CTX), {}]]
    return positive, negative


def apply(pack_nodes, control_net, depth, frames=FRAMES, on_mismatch="error", strength=0.9, start=0.0, end=1.0,
          smoothing=0.0, positive=None, negative=None):
    if positive is None:
        positive, negative = conds()
    node = pack_nodes["depth"].ControlNetDepthSequence
    out = node.execute(positive, negative, control_net, depth, frames, on_mismatch, strength, start, end, smoothing)
    return out.result


def test_matches_core_apply_controlnet(pack_nodes, control_net):
    core = sys.modules["nodes"].ControlNetApplyAdvanced()
    depth = depth_maps(FRAMES)
    positive, negative = conds()
    before = {k: list(v) for k, v in positive[0][1].items()}
    ours_pos, ours_neg = apply(pack_nodes, control_net, depth, positive=positive, negative=negative,
                               strength=0.7, start=0.1, end=0.8)
    core_pos, core_neg = core.apply_controlnet(positive, negative, control_net, depth, 0.7, 0.1, 0.8)
    ours, theirs = ours_pos[0][1]["control"], core_pos[0][1]["control"]
    assert ours is ours_neg[0][1]["control"]  # positive and negative share one control, like core
    assert torch.equal(ours.cond_hint_original, theirs.cond_hint_original)
    assert (ours.strength, ours.timestep_percent_range) == (theirs.strength, theirs.timestep_percent_range)
    assert ours_pos[0][1]["control_apply_to_uncond"] is False
    assert ours is not control_net and ours.control_model is control_net.control_model
    assert {k: list(v) for k, v in positive[0][1].items()} == before  # the input conditioning is untouched


def test_chains_after_an_existing_control(pack_nodes, control_net):
    first_pos, first_neg = apply(pack_nodes, control_net, depth_maps(1))
    second_pos, second_neg = apply(pack_nodes, control_net, depth_maps(FRAMES), positive=first_pos, negative=first_neg)
    assert second_pos[0][1]["control"].previous_controlnet is first_pos[0][1]["control"]
    assert first_pos[0][1]["control"].previous_controlnet is None


def test_frame_count_mismatch(pack_nodes, control_net):
    with pytest.raises(ValueError, match=r"depth batch has 6 images but the animation has 10 frames"):
        apply(pack_nodes, control_net, depth_maps(6))
    pos, _ = apply(pack_nodes, control_net, depth_maps(6), on_mismatch="resample")
    hint = pos[0][1]["control"].cond_hint_original
    assert hint.shape == (FRAMES, 3, 40, 56)
    levels = [round(float(v) * 7 - 1) for v in hint[:, 0, 0, 0]]  # back to source map indices
    assert levels == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    pos, _ = apply(pack_nodes, control_net, depth_maps(1))  # one map drives every frame, no copying
    assert pos[0][1]["control"].cond_hint_original.shape[0] == 1


def test_smoothing_strength_zero_and_bad_range(pack_nodes, control_net):
    depth = depth_maps(FRAMES)
    depth[4] = 1.0  # one flickering frame
    pos, _ = apply(pack_nodes, control_net, depth, smoothing=1.5)
    hint = pos[0][1]["control"].cond_hint_original[:, 0, 0, 0]
    assert float(hint[4]) < 0.9 and float(hint[3]) > float(depth[3, 0, 0, 0])  # the spike spread to neighbours
    positive, negative = conds()
    out = apply(pack_nodes, control_net, depth, strength=0.0, positive=positive, negative=negative)
    assert out[0] is positive and out[1] is negative
    with pytest.raises(ValueError, match="start_percent"):
        apply(pack_nodes, control_net, depth, start=0.8, end=0.2)


def test_hint_i_drives_frame_i_inside_context_windows(pack_nodes, control_net, unet):
    import comfy.sample
    from motion_core.context import ContextOptions, build_windows
    from motion_core.comfy import install_context_windows

    seen = []
    hook = control_net.control_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["hint"][:, 0, 0, 0].clone()), with_kwargs=True)
    try:
        positive, negative = apply(pack_nodes, control_net, depth_maps(5), on_mismatch="resample")
        model = unet.clone()
        install_context_windows(model, ContextOptions(length=4, overlap=1))
        noise = torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        comfy.sample.sample(model, noise, 1, 4.0, "euler", "normal", positive, negative,
                            torch.zeros(FRAMES, 4, 8, 8), disable_pbar=True, seed=1)
    finally:
        hook.remove()
    windows = build_windows(FRAMES, 4, 1, 1, "uniform")
    source = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # nearest of 5 maps for each of 10 frames, ends pinned
    assert len(seen) == len(windows)
    for frames, hint in zip(windows, seen):
        want = torch.tensor([(source[f] + 1) / 6 for f in frames])
        n = len(frames)
        for chunk in range(hint.shape[0] // n):  # positive and negative rows carry the same hints
            assert torch.allclose(hint[chunk * n:(chunk + 1) * n], want), (frames, hint)


# ---------------------------------------------------------------- Load Frames

def test_load_frames_node_reads_folder_relative_to_input(pack_nodes, comfy):
    import cv2

    folder = comfy.session_dirs()["input"] / "depth_frames"
    folder.mkdir(exist_ok=True)
    for i in range(6):
        cv2.imwrite(str(folder / f"d{i}.png"), np.full((30, 40, 3), 40 * i, np.uint8))
    node = pack_nodes["frames"].LoadFrames
    images, count, fps = node.execute("depth_frames", 1, 2, 0, 0, 0, "crop", 12.0).result
    assert images.shape == (3, 30, 40, 3) and count == 3 and fps == 12.0
    assert [round(float(v) * 255 / 40) for v in images.mean(dim=(1, 2, 3))] == [1, 3, 5]
    images, count, _ = node.execute(f'"{folder}"', 0, 1, 4, 16, 16, "crop", 8.0).result  # quoted absolute path
    assert images.shape == (4, 16, 16, 3) and count == 4
    # ComfyUI re-runs the node when the folder's content changes, not only when its inputs do
    stamp = node.fingerprint_inputs(path="depth_frames", start_frame=0)
    assert node.fingerprint_inputs(path="depth_frames", start_frame=0) == stamp
    cv2.imwrite(str(folder / "d6.png"), np.full((30, 40, 3), 0, np.uint8))
    assert node.fingerprint_inputs(path="depth_frames", start_frame=0) != stamp
    with pytest.raises(ValueError, match="does not exist"):
        node.execute("no_such_folder", 0, 1, 0, 0, 0, "crop", 8.0)
    with pytest.raises(ValueError, match="needs a path"):
        node.execute("  ", 0, 1, 0, 0, 0, "crop", 8.0)


def test_nodes_publish_valid_schemas_with_tooltips(pack_nodes):
    for module in pack_nodes.values():
        for cls in module.NODES:
            info = cls.GET_NODE_INFO_V1()
            assert info["name"].startswith("ADMK_") and info["category"].startswith("AnimateDiff MotionKit/")
            for section in ("required", "optional"):
                for name, spec in info["input"].get(section, {}).items():
                    assert spec[1].get("tooltip"), f"{info['name']}.{name} has no tooltip"


# ---------------------------------------------------------------- the shipped example workflow

WORKFLOW = "depth_guided_animation"


def _workflow() -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[2] / "example_workflows" / f"{WORKFLOW}.json").read_text())


def test_depth_workflow_is_a_consistent_ui_save():
    wf = _workflow()
    assert wf["version"] == 0.4
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert wf["last_node_id"] == max(nodes) and wf["last_link_id"] == max(link[0] for link in wf["links"])
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        target = nodes[dst]["inputs"][dst_slot]
        assert target["link"] == link_id and target["type"] == kind == nodes[src]["outputs"][src_slot]["type"]
    assert any(n["type"] == "Note" and n["widgets_values"][0] for n in wf["nodes"])


def test_depth_workflow_converts_and_passes_comfyui_validation(comfy, comfy_pack, tmp_path_factory):
    import asyncio

    import execution
    from tools.workflow_convert import convert_workflow

    registered = sys.modules["nodes"].NODE_CLASS_MAPPINGS
    wf = _workflow()
    for kind in {n["type"] for n in wf["nodes"] if n["type"].startswith("ADMK_")}:
        assert kind in registered, f"{kind} is not registered: add its module to nodes/__init__.py NODE_MODULES"
    # ComfyUI's validator only checks that chosen files exist: small placeholders under the official names,
    # unless a real stand-in is already installed under that name by another test.
    placeholder = tmp_path_factory.mktemp("placeholders") / "placeholder.safetensors"
    placeholder.write_bytes(b"placeholder")
    dirs = comfy.session_dirs()
    for folder, name in (("checkpoints", "v1-5-pruned-emaonly-fp16.safetensors"),
                         ("controlnet", "control_v11f1p_sd15_depth.pth"),
                         ("animatediff_models", "mm_sd_v15_v2.ckpt")):
        if not (dirs[folder] / name).exists():
            comfy.install_model(folder, placeholder, name)
    (dirs["input"] / "depth_frames").mkdir(exist_ok=True)

    prompt = convert_workflow(wf, comfy.object_info())
    by_type = {n["class_type"]: n["inputs"] for n in prompt.values()}
    # one frame count: Load Frames' frame_count (at most max_frames = 32) feeds the three frames inputs
    load_frames = next(k for k, n in prompt.items() if n["class_type"] == "ADMK_LoadFrames")
    for kind in ("ADMK_PromptTravel", "ADMK_ControlNetDepthSequence", "ADMK_SampleAnimation"):
        assert by_type[kind]["frames"] == [load_frames, 1], kind
    assert by_type["ADMK_LoadFrames"]["max_frames"] == 32
    assert by_type["ADMK_LoadFrames"]["path"] == "depth_frames"
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("check", prompt, None))
    assert valid, (error, node_errors)
    assert [prompt[o]["class_type"] for o in outputs] == ["ADMK_SaveAnimation"]
