"""`python -m training.demo --smoke`: the whole demo pipeline (data, base model detected as SD1.5, motion
module, zoom and pan MotionLoRAs trained by the Train MotionLoRA node in the shipped training workflow, shipped
workflows through ComfyUI's executor, measurements) in a few minutes, then a second run that reuses the trained
files."""
import json
import os
import subprocess
import sys

import pytest
from safetensors import safe_open

from harness.subprocess_env import repo_env
from training_fixtures import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _demo(out):
    env = repo_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "training.demo", "--smoke", "--steps", "2", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_demo_smoke_run_and_rerun(tmp_path):
    out = tmp_path / "demo"
    first = _demo(out)
    assert "=== demo results ===" in first and "object IoU between frames" in first
    report = json.loads((out / "report.json").read_text())
    assert report["stats"]["base"]["detected_as"] == "SD15" and report["stats"]["base"]["vae_type"] == "TAESD"
    assert report["stats"]["motion"]["loaded_as"].startswith("AnimateDiff v3 (sd15")
    assert set(report["stats"]["motion_loras"]) == {"zoom_in", "pan_left/pan_right"}  # one signed pan LoRA
    for motion in ("zoom_in", "pan_left/pan_right"):  # trained by the node, the file loads as a MotionLoRA
        assert report["stats"]["motion_loras"][motion]["loaded_as"].startswith("MotionLoRA rank 32")
        assert (out / "animations" / f"train_{motion.replace('/', '_')}.gif").stat().st_size > 0  # its workflow's clip
    with safe_open(str(out / "cache" / "models" / "animatediff_motion_lora" / "admk_demo_pan.safetensors"), "pt") as f:
        assert f.metadata()["admk_strength_sign"] == "positive: pan_left, negative: pan_right"
    runs = report["runs"]
    assert {r["variant"] for r in runs} == {"motion module", "image model only", "motion module + zoom LoRA",
                                            "motion module + pan LoRA +1", "motion module + pan LoRA -1",
                                            "motion module + pan LoRA +1 + contrast guidance 2",
                                            "motion module + pan LoRA -1 + contrast guidance 2"}
    assert report["summary"]["pan_contrast"]["n"] == 4 and report["summary"]["pan_contrast"]["scale"] == 2.0
    assert set(report["summary"]["pan"]) == {"pan_left", "pan_right"}
    assert report["summary"]["pan"]["pan_left"]["n"] == 2 and report["summary"]["clips"] == len(runs)
    for r in runs:
        stem = out / "animations" / r["name"]
        assert (stem.with_suffix(".gif")).stat().st_size > 0 and (stem.with_suffix(".mp4")).stat().st_size > 0
        assert set(r["metrics"]) >= {"present", "iou", "jump_px", "area_ratio", "frame_outliers",
                                     "horizontal_px_per_frame"}
    saved = [f for _, _, files in os.walk(out / "comfy_output") for f in files]
    assert any(f.endswith(".gif") for f in saved) and any(f.endswith(".mp4") for f in saved)
    assert "## Results" in (out / "report.md").read_text()

    second = _demo(out)
    for what in ("base model: reusing", "motion module: reusing", "zoom_in MotionLoRA: reusing",
                 "pan_left/pan_right MotionLoRA: reusing"):
        assert what in second
    assert "training motion" not in second and "Train MotionLoRA node" not in second
    # every clip comes from the clip cache (same prompts, code and files), and the report is the same
    assert f"clips reused from the cache: {len(runs)} of {len(runs)}" in second
    again = json.loads((out / "report.json").read_text())
    for part in ("consistency", "pan", "zoom"):  # (as text: a NaN never equals itself)
        assert json.dumps(again["summary"][part], sort_keys=True) == json.dumps(report["summary"][part], sort_keys=True)
