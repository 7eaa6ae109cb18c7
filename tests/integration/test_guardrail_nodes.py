"""Guardrails shown on the nodes (text in the node's UI output, never errors): Inflate Model names the schedule and
warns when it is not the module's, Sample Animation warns about fewer frames per pass than the module was
trained on, Apply MotionLoRA warns when the LoRA's keys show another module version."""
from __future__ import annotations

import pytest
import torch

from tools import standins

pytestmark = pytest.mark.integration
CTX = 8


@pytest.fixture(scope="module")
def parts(comfy, pack_node):
    from harness.tiny_models import fill_seeded, tiny_unet
    from motion_core.motion_module import MotionModuleSet, build_from_state_dict

    mm = MotionModuleSet([[32]], [[32, 32]], None, 32, "per_frame")  # no mid block, 32 frames: a v3 module
    fill_seeded(mm, 2)
    return {"unet": tiny_unet(CTX, seed=0), "v3": build_from_state_dict(mm.state_dict()),
            "inflate": pack_node("inflate").InflateModel, "sample": pack_node("sample").SampleAnimation,
            "lora": pack_node("motion_loaders").ApplyMotionLoRA}


def text(out):
    return out.ui.as_dict()["text"][0] if out.ui is not None else None


def test_inflate_model_shows_the_schedule_and_warns_on_a_mismatch(parts):
    node, unet, v3 = parts["inflate"], parts["unet"], parts["v3"]
    ok = text(node.execute(unet, v3, "none", 1.0, 1.0, "auto"))
    assert "v3 motion module" in ok and "beta schedule animatediff_linear" in ok and "Warning" not in ok
    bad = text(node.execute(unet, v3, "none", 1.0, 1.0, "sd_default"))
    assert "Warning: beta_schedule sd_default" in bad and "trained with animatediff_linear" in bad


def test_inflate_model_warns_on_a_short_context_window(parts):
    from motion_core.context import ContextOptions

    out = parts["inflate"].execute(parts["unet"], parts["v3"], "none", 1.0, 1.0, "auto", ContextOptions(8, 2))
    assert "context_length 8" in text(out) and "trained on 16" in text(out)


def test_sample_animation_warns_below_sixteen_frames(parts):
    model = parts["inflate"].execute(parts["unet"], parts["v3"], "none", 1.0, 1.0, "auto").result[0]
    pos = [[torch.randn(1, 4, CTX, generator=torch.Generator().manual_seed(1)), {}]]
    neg = [[torch.zeros(1, 4, CTX), {}]]
    run = lambda frames: parts["sample"].execute(model, pos, neg, frames, 64, 64, 0, 1, 4.0, "euler",  # noqa: E731
                                                 "normal", 1.0)
    short = run(4)
    assert "4 frames per pass" in text(short) and "trained on 16" in text(short)
    assert short.result[0]["samples"].shape[0] == 4  # a warning, not an error
    assert text(run(16)) is None


def test_apply_motion_lora_warns_when_its_keys_show_another_version(comfy, parts):
    import motion_core

    name = comfy.install_model("animatediff_motion_lora",
                               standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0),
                               "v2_lora_ZoomIn_guardrail.ckpt")
    v3 = motion_core.load_motion_module(standins.cached_motion_file("v3_sd15_mm", layout="reduced"))
    note = text(parts["lora"].execute(v3, name, 1.0))
    assert "made for a v2 module, not this v3" in note
    v2 = motion_core.load_motion_module(standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"))
    assert "Warning" not in text(parts["lora"].execute(v2, name, 1.0))
