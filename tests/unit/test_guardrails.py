"""Guardrail texts (shown on the nodes, never errors): too few frames, a MotionLoRA for another version, a beta
schedule the module was not trained with."""
from types import SimpleNamespace

import pytest

from motion_core import guardrails


def info(version, base="sd15", has_mid=False):
    return SimpleNamespace(version=version, base=base, has_mid=has_mid)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_fewer_frames_than_trained_on(version):
    text = guardrails.few_frames(info(version), 8)
    assert "8 frames per pass" in text and f"{version} motion module was trained on 16" in text
    assert guardrails.few_frames(info(version), 16) is None and guardrails.few_frames(info(version), 32) is None
    # with context windows one pass sees context_length frames
    assert "context_length 12" in guardrails.few_frames(info(version), 48, context_length=12)
    assert guardrails.few_frames(info(version), 48, context_length=16) is None
    assert guardrails.few_frames(info("hotshotxl", "sdxl"), 8) is None  # HotshotXL was trained on 8


def test_schedule_mismatch():
    assert guardrails.schedule_mismatch(info("v2"), "animatediff_linear") is None
    text = guardrails.schedule_mismatch(info("v2"), "sd_default")
    assert "trained with animatediff_linear" in text and "auto" in text
    assert guardrails.schedule_mismatch(info("sdxl", "sdxl"), "sdxl") is None
    assert "trained with lcm" in guardrails.schedule_mismatch(info("animatelcm"), "animatediff_linear")


def test_lora_version_from_its_keys():
    v2_lora = ["mid_block.motion_modules.0.temporal_transformer.x", "down_blocks.0.motion_modules.0.x"]
    v3_lora = ["down_blocks.0.motion_modules.0.x"]
    assert "made for a v2 module, not this v3" in guardrails.lora_version_mismatch(v2_lora, info("v3"))
    assert guardrails.lora_version_mismatch(v2_lora, info("v2", has_mid=True)) is None
    assert "without a mid block (v1/v3), not this v2" in guardrails.lora_version_mismatch(
        v3_lora, info("v2", has_mid=True))
    assert guardrails.lora_version_mismatch(v3_lora, info("v1")) is None
