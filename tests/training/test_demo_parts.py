"""The demo's measurements and its workflow conversion, without booting ComfyUI (the whole demo runs in
test_demo_smoke.py)."""
import json
import os

import numpy as np
import pytest

from training import demo_metrics, synthetic
from tools.workflow_convert import bypass, convert_workflow, find_node

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _clip(direction, colour="red", n=16, size=64, seed=0):
    spec = synthetic.random_spec(np.random.default_rng(seed), size, n, colour, "circle", direction, travel=0.5)
    return synthetic.render_clip(spec, size)


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_a_clip_moving_as_prompted_scores_as_consistent_and_correct(direction):
    m = demo_metrics.measure(_clip(direction), "red", direction)
    assert m["present"] == 1.0 and m["iou"] > 0.6
    assert m["direction_ok"] == 1.0 and m["slope_px_per_frame"] == pytest.approx(0.5 * 64 / 15, rel=0.1)
    assert m["r2"] > 0.99 and m["steps_prompted_way"] == 1.0
    assert m["drift_across_px"] < 1.0
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[direction]
    assert demo_metrics.measure(_clip(direction), "red", opposite)["direction_ok"] == 0.0


def test_independent_frames_score_as_inconsistent():
    rng = np.random.default_rng(1)
    frames = np.stack([synthetic.render_shape(64, "circle", synthetic.COLOURS["red"],
                                              (rng.uniform(10, 54), rng.uniform(10, 54)), 8) for _ in range(16)])
    moving = demo_metrics.measure(_clip("left"), "red", "left")
    jumping = demo_metrics.measure(frames, "red", "left")
    assert jumping["iou"] < 0.5 * moving["iou"] and jumping["jump_px"] > 3 * moving["jump_px"]
    for d in ("left", "right", "up", "down"):  # jumping around is not motion, whichever way the fit leans
        assert demo_metrics.measure(frames, "red", d)["direction_ok"] == 0.0
    assert demo_metrics.measure(frames, "blue", "left")["present"] == 0.0  # wrong colour: nothing tracked


def test_zoom_clip_area_grows():
    from training.augment import camera_motion_clip

    still = synthetic.render_shape(64, "circle", synthetic.COLOURS["red"], (32, 32), 8)
    m = demo_metrics.measure(camera_motion_clip(still, "zoom_in", 16, 64, 0.6), "red")
    assert m["area_ratio"] > 2.0 and m["log_area_slope"] > 0
    static = demo_metrics.measure(np.stack([still] * 16), "red")
    assert static["area_ratio"] == pytest.approx(1.0) and abs(static["log_area_slope"]) < 1e-9


# --- the shipped workflows in API form ---------------------------------------------------------------------------

INPUTS = {  # the widget layout of the node types the demo's workflows use (names/types as the nodes declare)
    "CheckpointLoaderSimple": {"required": {"ckpt_name": [["a.safetensors"]]}},
    "CLIPTextEncode": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]}},
    "ADMK_LoadMotionModule": {"required": {"model_name": [["mm.safetensors"]]}},
    "ADMK_ApplyMotionLoRA": {"required": {"motion_module": ["ADMK_MOTION_MODULE"], "lora_name": [["l.safetensors"]],
                                          "strength": ["FLOAT", {}]}},
    "ADMK_InflateModel": {"required": {"model": ["MODEL"], "motion_module": ["ADMK_MOTION_MODULE"],
                                       "domain_adapter": [["none"]], "adapter_scale": ["FLOAT", {}],
                                       "motion_strength": ["FLOAT", {}], "beta_schedule": [["auto"]]},
                          "optional": {"context_options": ["ADMK_CONTEXT_OPTIONS"]}},
    "ADMK_SampleAnimation": {"required": {"model": ["MODEL"], "positive": ["CONDITIONING"],
                                          "negative": ["CONDITIONING"], "frames": ["INT", {}], "width": ["INT", {}],
                                          "height": ["INT", {}], "seed": ["INT", {"control_after_generate": True}],
                                          "steps": ["INT", {}], "cfg": ["FLOAT", {}], "sampler_name": [["euler"]],
                                          "scheduler": [["normal"]], "denoise": ["FLOAT", {}]},
                             "optional": {"latent": ["LATENT"], "image": ["IMAGE"], "vae": ["VAE"],
                                          "context_options": ["ADMK_CONTEXT_OPTIONS"]}},
    "VAEDecode": {"required": {"samples": ["LATENT"], "vae": ["VAE"]}},
    "ADMK_SaveAnimation": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}],
                                        "format": [["gif", "mp4"]], "fps": ["FLOAT", {}], "loop_count": ["INT", {}],
                                        "ping_pong": ["BOOLEAN", {}], "save_output": ["BOOLEAN", {}]}},
}


INFO = {kind: {"input": spec} for kind, spec in INPUTS.items()}  # as /object_info answers


def _workflow(name):
    with open(os.path.join(REPO, "example_workflows", name)) as f:
        return json.load(f)


@pytest.mark.parametrize("index", [0, 1, 4, 7])
def test_a_noise_frame_in_a_steady_clip_is_an_outlier(index):
    clip = _clip("right", n=8)
    assert demo_metrics.frame_outliers(clip) == []
    broken = clip.copy()
    broken[index] = np.random.default_rng(index).integers(0, 256, broken[index].shape, dtype=np.uint8)
    assert demo_metrics.frame_outliers(broken) == [index]


def test_frames_that_all_differ_have_no_outlier():
    rng = np.random.default_rng(0)
    independent = np.stack([_clip(d, seed=int(rng.integers(100)))[0] for d in ["left", "right", "up", "down"] * 2])
    assert demo_metrics.frame_outliers(independent) == []
    assert demo_metrics.frame_outliers(rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize("index", [0, 1, 5])
def test_a_noise_frame_among_independent_frames_is_an_outlier(index):
    """What the demo's image-only clips looked like (issue 17): every frame different (here: another background
    colour each, so consecutive frames differ by tens of levels), and one frame of coloured 8x8-block noise (the
    analytic decoder's blocks) about as far from its neighbours as they are from each other."""
    rng = np.random.default_rng(index)
    independent = np.stack([np.broadcast_to(rng.integers(40, 200, 3, dtype=np.uint8), (64, 64, 3)).copy()
                            for _ in range(8)])
    for frame in independent:
        frame[20:36, 24:40] = (220, 30, 30)
    steps = np.abs(np.diff(independent.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    assert demo_metrics.frame_outliers(independent) == []
    broken = independent.copy()
    broken[index] = rng.integers(40, 200, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    broken_steps = np.abs(np.diff(broken.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    assert broken_steps.max() < 3 * np.median(steps)  # the step test alone cannot see it
    assert demo_metrics.frame_outliers(broken) == [index]


def test_convert_workflow_names_widgets_and_follows_links():
    prompt = convert_workflow(_workflow("txt2anim_sd15_v2.json"), INFO)
    assert "Note" not in {n["class_type"] for n in prompt.values()}
    sample = prompt[find_node(prompt, "ADMK_SampleAnimation")]["inputs"]
    # the editor stores seed, then its "control after generate" value, then steps
    assert isinstance(sample["seed"], int) and isinstance(sample["steps"], int) and sample["steps"] > 1
    assert isinstance(sample["cfg"], float) and sample["sampler_name"] in ("euler", "euler_ancestral")
    inflate = find_node(prompt, "ADMK_InflateModel")
    assert sample["model"] == [inflate, 0]
    assert prompt[inflate]["inputs"]["model"] == [find_node(prompt, "CheckpointLoaderSimple"), 0]
    assert prompt[find_node(prompt, "VAEDecode")]["inputs"]["vae"] == [find_node(prompt, "CheckpointLoaderSimple"), 2]


def test_bypass_passes_the_input_through():
    prompt = convert_workflow(_workflow("motionlora_zoomin_panleft.json"), INFO)
    first, second = find_node(prompt, "ADMK_ApplyMotionLoRA", 0), find_node(prompt, "ADMK_ApplyMotionLoRA", 1)
    inflate = find_node(prompt, "ADMK_InflateModel")
    assert prompt[inflate]["inputs"]["motion_module"] == [second, 0]
    out = bypass(prompt, second, "motion_module")
    assert second not in out and out[inflate]["inputs"]["motion_module"] == [first, 0]
    assert second in prompt  # the original prompt is left alone
    no_mm = bypass(out, inflate, "model")
    sampler = no_mm[find_node(no_mm, "ADMK_SampleAnimation")]["inputs"]
    assert sampler["model"] == [find_node(no_mm, "CheckpointLoaderSimple"), 0]


def test_clip_cache_key_follows_the_trained_files(tmp_path):
    """A sampled clip is reused only while the trained files (and the code) are the ones it was sampled with."""
    from training.demo import code_and_models_fingerprint

    lora = tmp_path / "models" / "animatediff_motion_lora" / "a.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"1234")
    first = code_and_models_fingerprint(str(tmp_path))
    assert code_and_models_fingerprint(str(tmp_path)) == first
    lora.write_bytes(b"12345")  # retrained
    assert code_and_models_fingerprint(str(tmp_path)) != first


def test_pan_paired_compares_the_two_strengths_seed_by_seed():
    """The LoRA's own effect cancels each seed's drift: +1 further right than -1 counts, whatever the sign of both."""
    from training.demo import pan_paired

    def run(seed, speed):
        return {"seed": seed, "metrics": {"horizontal_px_per_frame": speed}}

    pans = {"pan_left": [run(0, -1.0), run(1, 2.0), run(2, float("nan")), run(3, 0.5)],
            "pan_right": [run(0, -1.5), run(1, 2.5), run(2, 1.0), run(3, -0.5)]}
    p = pan_paired(pans)
    assert p["n"] == 3  # seed 2: no object found at +1
    assert p["right_way"] == 2  # seeds 0 and 3; seed 1 goes the wrong way although both clips move right
    assert p["mean_px_per_frame"] == pytest.approx((0.5 - 0.5 + 1.0) / 3)


def test_a_clip_kept_under_a_new_key_replaces_the_old_ones(tmp_path):
    from training.demo import prune_clips

    for name in ("pan_left_s0_" + "a" * 32, "pan_left_s0_" + "b" * 32, "pan_left_s1_" + "a" * 32,
                 "pan_left_s0x_" + "a" * 32):
        (tmp_path / f"{name}.npy").write_bytes(b"")
    prune_clips(str(tmp_path), "pan_left_s0", keep="pan_left_s0_" + "b" * 32 + ".npy")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["pan_left_s0_" + "b" * 32 + ".npy", "pan_left_s1_" + "a" * 32 + ".npy", "pan_left_s0x_" + "a" * 32 + ".npy"])


def test_a_pan_clip_whose_object_is_lost_does_not_count_as_the_right_way(tmp_path):
    from training.demo import evaluate, pan_variant

    def run(name, motion, frames, seed, contrast=0.0):
        return {"name": name, "frames": frames, "colour": "red", "variant": pan_variant(motion, contrast), "seed": seed,
                "direction": {"pan_left": "right", "pan_right": "left"}[motion], "seconds": 0.0}

    blank = np.zeros_like(_clip("left", n=8))
    runs = [run("pl0", "pan_left", _clip("right", n=8), 0), run("pl1", "pan_left", _clip("left", n=8), 1),
            run("pr0", "pan_right", _clip("left", n=8), 0), run("pr1", "pan_right", blank, 1),
            # the same pans through contrast guidance: counted apart (all four the right way here)
            run("gl0", "pan_left", _clip("right", n=8), 0, 2.0), run("gl1", "pan_left", _clip("right", n=8), 1, 2.0),
            run("gr0", "pan_right", _clip("left", n=8), 0, 2.0), run("gr1", "pan_right", _clip("left", n=8), 1, 2.0)]
    summary = evaluate(runs, str(tmp_path))
    assert summary["pan"]["pan_left"]["right_sign"] == 1 and summary["pan"]["pan_left"]["n"] == 2
    assert summary["pan"]["pan_right"]["right_sign"] == 1  # the lost object (nan speed) is not "moving left"
    assert summary["pan_paired"]["n"] == 1 and summary["pan_paired"]["right_way"] == 1  # seed 1 lost: only seed 0
    guided = summary["pan_contrast"]
    assert (guided["n"], guided["right_sign"], guided["paired"]["n"], guided["paired"]["right_way"]) == (4, 4, 2, 2)


def test_run_workflows_keeps_one_copy_of_each_clip_across_code_changes(tmp_path):
    """The demo's clip cache through run_workflows itself (a stand-in runner instead of ComfyUI): a run after a
    code or model change (new fingerprint) samples every clip again and leaves one file per clip, under the new
    key; a run with the same fingerprint samples nothing."""
    import re

    import torch

    from training import demo

    calls = []

    class Result:
        def output(self, node):
            return torch.full((8, 64, 64, 3), 0.5)

    class Runner:
        @staticmethod
        def object_info():
            return INFO

        @staticmethod
        def run_prompt(prompt):
            calls.append(prompt)
            return Result()

    plan, clips = demo.Plan(smoke=True), tmp_path / "clips"
    log = demo.Log(str(tmp_path / "log.txt"))

    def run(fingerprint):
        calls.clear()
        runs = demo.run_workflows(Runner, plan, {"steps": 2}, [0], log, str(clips), fingerprint)
        return runs, len(calls)

    first, sampled = run("a" * 64)
    names = sorted(r["name"] for r in first)
    assert sampled == len(first) and len(set(names)) == len(names) > 4
    before = sorted(os.listdir(clips))
    assert len(before) == len(names)
    again, sampled = run("a" * 64)
    assert sampled == 0 and all(r["reused"] for r in again) and sorted(os.listdir(clips)) == before
    changed, sampled = run("b" * 64)
    assert sampled == len(changed) and not any(r["reused"] for r in changed)
    after = sorted(os.listdir(clips))
    assert len(after) == len(names) and not set(after) & set(before)  # the old keys are gone, one file per clip
    assert sorted(re.sub(r"_[0-9a-f]{32}\.npy$", "", f) for f in after) == names


def test_staged_pan_prompt_splits_the_steps_between_two_lora_strengths():
    """pan_probe --stages: the first K steps on the model with the LoRA at `early`, the rest continuing that latent
    (no new noise) on a second model with the LoRA at `late`; the decoder reads the second stage."""
    from training import demo
    from training.pan_probe import staged_pan_prompt

    class Runner:
        @staticmethod
        def object_info():
            return INFO

    sampling = {"steps": 8, "sampler_name": "euler"}
    prompt = staged_pan_prompt(Runner, "pan.safetensors", "a red circle", 5, sampling, "p", 3, 0.5, -2.0)
    assert "ADMK_SampleAnimation" not in {n["class_type"] for n in prompt.values()}
    samplers = sorted((n for n in prompt.values() if n["class_type"] == "KSamplerAdvanced"),
                      key=lambda n: n["inputs"]["start_at_step"])
    first, second = (n["inputs"] for n in samplers)
    split = (first["start_at_step"], first["end_at_step"], second["start_at_step"], second["end_at_step"])
    assert split == (0, 3, 3, 8)
    assert first["add_noise"] == "enable" and first["return_with_leftover_noise"] == "enable"
    assert second["add_noise"] == "disable" and second["return_with_leftover_noise"] == "disable"
    assert first["noise_seed"] == second["noise_seed"] == 5 and first["steps"] == second["steps"] == 8
    assert prompt[second["latent_image"][0]]["inputs"] is first

    def lora_strength(prompt, model_link):
        inflate = prompt[model_link[0]]
        assert inflate["class_type"] == "ADMK_InflateModel"
        lora = prompt[inflate["inputs"]["motion_module"][0]]
        assert lora["class_type"] == "ADMK_ApplyMotionLoRA" and lora["inputs"]["lora_name"] == "pan.safetensors"
        return lora["inputs"]["strength"]

    assert (lora_strength(prompt, first["model"]), lora_strength(prompt, second["model"])) == (0.5, -2.0)
    empty = prompt[first["latent_image"][0]]
    assert empty["class_type"] == "EmptyLatentImage" and empty["inputs"]["batch_size"] == demo.FRAMES
    decode = prompt[find_node(prompt, "VAEDecode")]["inputs"]
    assert prompt[decode["samples"][0]]["inputs"] is second

    single = staged_pan_prompt(Runner, "pan.safetensors", "a red circle", 5, sampling, "p", 0, 0.5, -2.0)
    only = [n["inputs"] for n in single.values() if n["class_type"] == "KSamplerAdvanced"]
    assert len(only) == 1 and only[0]["add_noise"] == "enable" and only[0]["start_at_step"] == 0
    assert lora_strength(single, only[0]["model"]) == -2.0
    with pytest.raises(ValueError, match="switch step"):
        staged_pan_prompt(Runner, "pan.safetensors", "a red circle", 5, sampling, "p", 8, 1.0, 1.0)


def test_pan_prompt_with_contrast_guides_the_sampler_away_from_the_opposite_sign():
    """pan_probe --contrast: Sample Animation reads Motion Contrast Guidance, which wraps the inflated model (pan
    LoRA at +strength) and contrasts it with the same LoRA at -strength on the same loaded motion module."""
    from training import demo

    class Runner:
        @staticmethod
        def object_info():
            return INFO

    sampling = {"steps": 8, "sampler_name": "euler"}
    plain = demo.pan_prompt(Runner, "pan.safetensors", "a red circle", 5, sampling, "p", -1.0)
    assert "ADMK_MotionContrastGuidance" not in {n["class_type"] for n in plain.values()}
    prompt = demo.pan_prompt(Runner, "pan.safetensors", "a red circle", 5, sampling, "p", -1.0, 2.5, 0.5)
    sample = prompt[find_node(prompt, "ADMK_SampleAnimation")]["inputs"]
    guided = prompt[sample["model"][0]]
    assert guided["class_type"] == "ADMK_MotionContrastGuidance"
    g = guided["inputs"]
    assert (g["scale"], g["start_percent"], g["end_percent"]) == (2.5, 0.0, 0.5)
    inflate = prompt[g["model"][0]]
    assert inflate["class_type"] == "ADMK_InflateModel"
    own, other = prompt[inflate["inputs"]["motion_module"][0]]["inputs"], prompt[g["contrast_motion_module"][0]]["inputs"]
    assert (own["lora_name"], own["strength"]) == ("pan.safetensors", -1.0)
    assert (other["lora_name"], other["strength"]) == ("pan.safetensors", 1.0)
    assert other["motion_module"] == own["motion_module"]
    assert prompt[own["motion_module"][0]]["class_type"] == "ADMK_LoadMotionModule"  # the zoom node stays bypassed
    assert [k for k, n in prompt.items() if n["inputs"].get("model") == g["model"]] == [sample["model"][0]]


def test_the_probe_samples_at_the_size_the_demo_data_was_written_at(tmp_path):
    """demo --size N writes its synthetic set at N px; pan_probe reads N back from the cache (cached_size), so it
    samples at the size the models were trained at."""
    from training import demo

    assert demo.cached_size(str(tmp_path)) == demo.SIZE  # no data yet: the default
    synthetic.make_synthetic_set(str(tmp_path / "data" / "stills"), videos_per_prompt=0, size=72, colours=["red"],
                                 shapes=["circle"], directions=[], stills_per_prompt=1, seed=1)
    assert demo.cached_size(str(tmp_path)) == 72
