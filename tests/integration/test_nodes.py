"""The main nodes run as ComfyUI runs them: API prompts through ComfyUI's own validator and executor, in process.

Models are the seeded stand-ins (tools/standins.py): the reduced SD1.5-family checkpoint (320/640 channels, one
res block) and motion files with the official key layout re-laid onto that UNet. 64x64 frames, 1 step.
"""
from __future__ import annotations

import json
import sys

import pytest
import torch

from tools import standins

pytestmark = pytest.mark.integration

MY_NODES = ("ADMK_LoadMotionModule", "ADMK_ApplyMotionLoRA", "ADMK_InflateModel", "ADMK_SampleAnimation",
            "ADMK_SaveAnimation")


@pytest.fixture(scope="module")
def files(comfy, comfy_pack, sd15_reduced_ckpt):
    """Names (as the loaders list them) of the stand-in files installed into the session model folders."""
    lora_a = standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0)
    lora_b = standins.cached_motion_file("motion_lora_example", layout="reduced", seed=1)
    return {
        "ckpt": comfy.install_model("checkpoints", sd15_reduced_ckpt, "standin_sd15_reduced.safetensors"),
        "v2": comfy.install_model("animatediff_models", standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"),
                                  "mm_sd_v15_v2.ckpt"),
        "v3": comfy.install_model("animatediff_models", standins.cached_motion_file("v3_sd15_mm", layout="reduced"),
                                  "v3_sd15_mm.ckpt"),
        "adapter": comfy.install_model(
            "animatediff_models", standins.cached_motion_file("v3_sd15_adapter_example", layout="reduced"),
            "v3_sd15_adapter.ckpt"),
        "lora_a": comfy.install_model("animatediff_motion_lora", lora_a, "v2_lora_ZoomIn.ckpt"),
        "lora_b": comfy.install_model("animatediff_motion_lora", lora_b, "v2_lora_PanLeft.ckpt"),
    }


def base_prompt(files, frames=8, size=64, seed=0, motion="v2", loras=(), adapter="none", fmt="gif",
                prefix="admk_test", context=None):
    """ckpt -> prompts; motion module (+ MotionLoRAs) -> Inflate -> Sample Animation -> VAE Decode -> Save."""
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat on a lake, waves", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "10": {"class_type": "ADMK_LoadMotionModule", "inputs": {"model_name": files[motion]}},
    }
    mm = ["10", 0]
    for i, (lora, strength) in enumerate(loras):
        p[f"11{i}"] = {"class_type": "ADMK_ApplyMotionLoRA",
                       "inputs": {"motion_module": mm, "lora_name": files[lora], "strength": strength}}
        mm = [f"11{i}", 0]
    p["12"] = {"class_type": "ADMK_InflateModel", "inputs": {
        "model": ["1", 0], "motion_module": mm, "domain_adapter": files.get(adapter, "none"), "adapter_scale": 1.0,
        "motion_strength": 1.0, "beta_schedule": "auto"}}
    p["20"] = {"class_type": "ADMK_SampleAnimation", "inputs": {
        "model": ["12", 0], "positive": ["2", 0], "negative": ["3", 0], "frames": frames, "width": size,
        "height": size, "seed": seed, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0}}
    if context is not None:
        p["15"] = {"class_type": "ADMK_ContextOptions", "inputs": {
            "context_length": context, "context_overlap": 2, "context_stride": 1, "mode": "uniform",
            "fuse_method": "pyramid"}}
        p["20"]["inputs"]["context_options"] = ["15", 0]
    p["30"] = {"class_type": "VAEDecode", "inputs": {"samples": ["20", 0], "vae": ["1", 2]}}
    p["40"] = {"class_type": "ADMK_SaveAnimation", "inputs": {
        "images": ["30", 0], "filename_prefix": prefix, "format": fmt, "fps": 8.0, "loop_count": 0,
        "ping_pong": False, "save_output": True}}
    return p


def pack_module(comfy_pack, name):
    return sys.modules[f"{comfy_pack.__name__}.nodes.{name}"]


def test_nodes_are_registered_with_tooltips_on_every_input(comfy, comfy_pack):
    info = comfy.object_info()
    for node_id in MY_NODES:
        node = info[node_id]
        assert node["category"].startswith("AnimateDiff MotionKit"), node_id
        assert node["description"], node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert info["ADMK_LoadMotionModule"]["output"] == ["ADMK_MOTION_MODULE", "STRING"]
    assert info["ADMK_InflateModel"]["input"]["optional"]["context_options"][0] == "ADMK_CONTEXT_OPTIONS"
    assert info["ADMK_SaveAnimation"]["output_node"] is True


def test_txt2anim_saves_an_animated_gif_with_the_workflow(comfy, files):
    from PIL import Image

    prompt = base_prompt(files, frames=8, prefix="admk_txt2anim")
    # fresh: an earlier test may have run the same loader, whose cached output then sends no UI text
    result = comfy.run_prompt(prompt, fresh=True, extra_data={"extra_pnginfo": {"workflow": {"note": "ui graph"}}})
    assert result.output("20")["samples"].shape == (8, 4, 8, 8)
    assert "v2" in result.output("10", 1) and "32 frames" in result.output("10", 1)
    assert "v2" in result.ui["10"]["text"][0]
    ui = result.ui["40"]
    assert list(ui["animated"]) == [True] and len(ui["images"]) == 1
    saved = ui["images"][0]
    path = comfy.session_dirs()["output"] / saved["subfolder"] / saved["filename"]
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 8 and gif.size == (64, 64)
        meta = json.loads(gif.info["comment"])
    assert meta["prompt"]["20"]["class_type"] == "ADMK_SampleAnimation"
    assert meta["workflow"] == {"note": "ui graph"}
    # the sampler reported progress for the animation node
    assert any(str(p.get("node")) == "20" for p in result.progress)


def test_core_ksampler_gives_the_same_frames_and_the_plain_model_does_not(comfy, files):
    prompt = base_prompt(files, frames=8, seed=4)
    prompt["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 8}}
    for node_id, model in (("21", ["12", 0]), ("22", ["1", 0])):
        prompt[node_id] = {"class_type": "KSampler", "inputs": {
            "seed": 4, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": model, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0]}}
        prompt[f"3{node_id}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"3{node_id}d", 0]}}
        prompt[f"3{node_id}d"] = {"class_type": "VAEDecode", "inputs": {"samples": [node_id, 0], "vae": ["1", 2]}}
    result = comfy.run_prompt(prompt)
    animated = result.output("20")["samples"]
    assert torch.equal(result.output("21")["samples"], animated)
    plain = result.output("22")["samples"]
    assert plain.shape == animated.shape
    assert all((plain[f] - animated[f]).abs().max() > 1e-3 for f in range(8))


def test_frame_limit_is_refused_before_sampling(comfy, files):
    prompt = base_prompt(files, frames=40, prefix="admk_too_long")
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "ADMK_SampleAnimation"
    assert type(err.value.original).__name__ == "MotionFormatError"
    assert "40 frames" in str(err.value.original) and "Context Options" in str(err.value.original)
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "20" for d in progress)  # not a single sampling step ran


def test_core_context_windows_after_inflate_are_refused_naming_our_node(comfy, files):
    prompt = base_prompt(files, frames=12, prefix="admk_core_windows")
    prompt["13"] = {"class_type": "ContextWindowsManual", "inputs": {
        "model": ["12", 0], "context_length": 8, "context_overlap": 2, "context_schedule": "standard_uniform",
        "context_stride": 1, "closed_loop": False, "fuse_method": "pyramid", "dim": 0}}
    prompt["20"]["inputs"]["model"] = ["13", 0]
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "ADMK_SampleAnimation"
    assert type(err.value.original).__name__ == "MotionFormatError"
    assert "ADMK_ContextOptions" in str(err.value.original)
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "20" for d in progress)  # not a single sampling step ran


def test_prompt_schedule_for_another_frame_count_is_refused_before_sampling(comfy, files):
    prompt = base_prompt(files, frames=6, prefix="admk_travel_mismatch")
    prompt["4"] = {"class_type": "ADMK_PromptTravel", "inputs": {
        "clip": ["1", 1], "schedule": '0: "a calm sea"\n3: "a stormy sea"', "frames": 4, "pre_text": "",
        "post_text": "", "interpolation": "linear"}}
    prompt["20"]["inputs"]["positive"] = ["4", 0]
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "ADMK_SampleAnimation"
    message = str(err.value.original)  # the node-level frame-count check names both nodes and both counts
    assert "Prompt Travel was set to 4 frames, but Sample Animation makes 6" in message
    assert "Wire one integer into both frames inputs" in message
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "20" for d in progress)  # not a single sampling step ran


def test_sample_animation_on_an_un_inflated_model_also_refuses_a_mismatched_schedule(comfy, files):
    prompt = base_prompt(files, frames=6, prefix="admk_travel_plain")
    prompt["4"] = {"class_type": "ADMK_PromptTravel", "inputs": {
        "clip": ["1", 1], "schedule": '0: "a calm sea"\n3: "a stormy sea"', "frames": 4, "pre_text": "",
        "post_text": "", "interpolation": "linear"}}
    prompt["20"]["inputs"].update(positive=["4", 0], model=["1", 0])  # the checkpoint's MODEL, no motion module
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "ADMK_SampleAnimation"
    assert "Prompt Travel was set to 4 frames, but Sample Animation makes 6" in str(err.value.original)
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "20" for d in progress)  # not a single sampling step ran


def test_core_ksampler_on_an_inflated_model_also_refuses_a_mismatched_schedule(comfy, files):
    prompt = base_prompt(files, frames=6, prefix="admk_travel_ksampler")
    for node in ("20", "30", "40"):
        prompt.pop(node)
    prompt["4"] = {"class_type": "ADMK_PromptTravel", "inputs": {
        "clip": ["1", 1], "schedule": '0: "a calm sea"\n3: "a stormy sea"', "frames": 4, "pre_text": "",
        "post_text": "", "interpolation": "linear"}}
    prompt["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 6}}
    prompt["21"] = {"class_type": "KSampler", "inputs": {
        "seed": 0, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        "model": ["12", 0], "positive": ["4", 0], "negative": ["3", 0], "latent_image": ["5", 0]}}
    prompt["22"] = {"class_type": "PreviewAny", "inputs": {"source": ["21", 0]}}
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "KSampler"
    assert "positive conditioning has 4 rows" in str(err.value.original)
    progress = [d for e, d in comfy._state["server"].messages if e == "progress"]
    assert not any(str(d.get("node")) == "21" for d in progress)  # refused before the first step


def test_conditioning_rows_must_be_one_or_one_per_frame(comfy_pack):
    adapter = sys.modules[f"{comfy_pack.__name__}.motion_core.comfy"]

    def check(name, conditioning, frames):  # the pre-sampling wrapper's check, on a CONDITIONING's tensors
        adapter.check_conditioning_rows(name, [entry[0] for entry in conditioning], frames)

    shared, per_frame = [[torch.zeros(1, 77, 8), {}]], [[torch.zeros(6, 77, 8), {"pooled_output": torch.zeros(6, 8)}]]
    check("positive", shared + per_frame, 6)  # one prompt for all frames, one row per frame: both fine
    check("negative", [], 6)
    with pytest.raises(ValueError, match=r"negative conditioning has 6 rows .* animation has 8 frames"):
        check("negative", shared + per_frame, 8)
    with pytest.raises(ValueError, match=r"has 2 rows .* has 1 frame\. Set frames to 1"):
        check("positive", [[torch.zeros(2, 77, 8), {}]], 1)


def test_motion_loras_compose_without_touching_the_loaded_module(comfy, files):
    prompt = base_prompt(files, loras=(("lora_a", 1.0), ("lora_b", 0.5)))
    for node in ("20", "30", "40", "12"):
        prompt.pop(node)
    prompt["50"] = {"class_type": "ADMK_ApplyMotionLoRA", "inputs": {
        "motion_module": ["111", 0], "lora_name": files["lora_a"], "strength": 0.0}}
    prompt["60"] = {"class_type": "ADMK_InflateModel", "inputs": {
        "model": ["1", 0], "motion_module": ["50", 0], "domain_adapter": "none", "adapter_scale": 1.0,
        "motion_strength": 1.0, "beta_schedule": "auto"}}
    prompt["61"] = {"class_type": "ADMK_SampleAnimation", "inputs": {
        "model": ["60", 0], "positive": ["2", 0], "negative": ["3", 0], "frames": 2, "width": 64, "height": 64,
        "seed": 0, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    prompt["62"] = {"class_type": "PreviewAny", "inputs": {"source": ["61", 0]}}
    result = comfy.run_prompt(prompt)
    base, one, two = result.output("10"), result.output("110"), result.output("111")
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight"
    w0, w1, w2 = (m.state_dict()[key] for m in (base, one, two))
    assert not torch.equal(w0, w1) and not torch.equal(w1, w2)
    from motion_core import load_motion_lora

    a = load_motion_lora(standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0))
    b = load_motion_lora(standins.cached_motion_file("motion_lora_example", layout="reduced", seed=1))
    assert w2.dtype == torch.float16  # the node keeps the fp16 file's precision; merges are computed in fp32
    assert torch.allclose(w2.float(), w0.float() + a.delta(key) + 0.5 * b.delta(key), atol=2e-4)
    assert result.output("50") is two  # strength 0 passes the module through
    from motion_core import load_motion_module

    fresh = load_motion_module(standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"), dtype=None)
    assert torch.equal(fresh.state_dict()[key], w0)  # the loaded module was not modified by the merges
    assert "applied to" in result.ui["110"]["text"][0]


def test_domain_adapter_in_the_motion_lora_loader_says_what_it_is(comfy, files):
    prompt = {
        "10": {"class_type": "ADMK_LoadMotionModule", "inputs": {"model_name": files["v3"]}},
        "11": {"class_type": "ADMK_ApplyMotionLoRA", "inputs": {
            "motion_module": ["10", 0], "lora_name": comfy.install_model(
                "animatediff_motion_lora", standins.cached_motion_file("v3_sd15_adapter_example", layout="reduced"),
                "v3_sd15_adapter.ckpt"), "strength": 1.0}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["10", 1]}},
        "13": {"class_type": "ADMK_InflateModel", "inputs": {
            "model": ["1", 0], "motion_module": ["11", 0], "domain_adapter": "none", "adapter_scale": 1.0,
            "motion_strength": 1.0, "beta_schedule": "auto"}},
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt"]}},
        "14": {"class_type": "PreviewAny", "inputs": {"source": ["13", 0]}},
    }
    with pytest.raises(comfy.PromptExecutionError) as err:
        comfy.run_prompt(prompt)
    assert err.value.node_type == "ADMK_ApplyMotionLoRA"
    assert "domain adapter" in str(err.value.original)


def test_v3_with_domain_adapter_and_video_to_video_from_images(comfy, files):
    prompt = base_prompt(files, motion="v3", adapter="adapter", prefix="admk_v2v", fmt="webp")
    prompt["5"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 4,
                                                          "color": 0x3366AA}}
    prompt["20"]["inputs"].update(image=["5", 0], vae=["1", 2], denoise=0.6)
    result = comfy.run_prompt(prompt)
    assert result.output("20")["samples"].shape[0] == 4  # the IMAGE batch sets the frame count
    saved = result.ui["40"]["images"][0]
    assert saved["filename"].endswith(".webp")
    from PIL import Image

    with Image.open(comfy.session_dirs()["output"] / saved["subfolder"] / saved["filename"]) as webp:
        assert webp.n_frames == 4
        exif = webp.getexif()
    assert exif[0x0110].startswith("prompt:")


def test_save_formats_and_ping_pong(comfy, comfy_pack, tmp_path):
    from PIL import Image

    save = pack_module(comfy_pack, "save_animation")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 33, 31, 3, generator=g)  # odd sizes: mp4 must pad to even
    frames = save.to_uint8_frames(images, ping_pong=True)
    assert len(frames) == 8 and (frames[5] == frames[3]).all() and (frames[7] == frames[1]).all()
    meta = {"prompt": {"1": {"class_type": "X"}}, "workflow": {"nodes": []}}

    save.save_gif(str(tmp_path / "a.gif"), frames, 10.0, 2, meta)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 8 and gif.info["loop"] == 2 and gif.info["duration"] == 100
    save.save_webp(str(tmp_path / "a.webp"), frames, 10.0, 0, meta)
    with Image.open(tmp_path / "a.webp") as webp:
        assert webp.n_frames == 8
        exif = webp.getexif()
        assert json.loads(exif[0x0110][len("prompt:"):]) == meta["prompt"]
        assert exif[0x010F].startswith("workflow:")
    save.save_mp4(str(tmp_path / "a.mp4"), frames, 10.0, meta)
    import av

    with av.open(str(tmp_path / "a.mp4")) as container:
        decoded = list(container.decode(video=0))
        assert json.loads(container.metadata["prompt"]) == meta["prompt"]
    assert len(decoded) == 8 and (decoded[0].width, decoded[0].height) == (32, 34)


def test_context_options_on_sample_animation_allow_more_frames_than_the_module_sees(comfy, files):
    prompt = base_prompt(files, frames=34, context=12, prefix="admk_long")
    for node in ("30", "40"):
        prompt.pop(node)
    prompt["41"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 1]}}
    module = comfy.run_prompt({"10": prompt["10"], "41": prompt["41"]}).output("10")  # cached for the next run
    seen = []
    handle = module.get_submodule("down_blocks.0.motion_modules.0").temporal_transformer.register_forward_hook(
        lambda m, a, o: seen.append(a[0].shape[0] // 2))  # cond + uncond clips per call
    prompt["42"] = {"class_type": "PreviewAny", "inputs": {"source": ["20", 0]}}
    try:
        result = comfy.run_prompt(prompt)
    finally:
        handle.remove()
    assert result.output("20")["samples"].shape[0] == 34
    assert seen and max(seen) == 12  # every pass saw one 12-frame window, never the 34 frames
