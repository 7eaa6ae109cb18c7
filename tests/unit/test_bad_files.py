"""Error paths a user hits with the wrong file or a broken one: each names the problem and the fix."""
import pytest
import torch

from motion_core import MotionFormatError, load_motion_lora, load_motion_module
from motion_core.motion_module import MotionModuleSet, build_from_state_dict

pytestmark = pytest.mark.usefixtures("no_grad")
ATT = "temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora"


def tiny_module(mid=None):
    mm = MotionModuleSet([[32]], [[32, 32]], mid, 32, "per_frame")
    return build_from_state_dict(mm.state_dict())


def lora_on(block: str, channels: int = 32, rank: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"{block}.motion_modules.0.{ATT}.down.weight": torch.randn(rank, channels, generator=g),
            f"{block}.motion_modules.0.{ATT}.up.weight": torch.randn(channels, rank, generator=g)}


def test_lora_that_fits_nothing_says_so():
    lora = load_motion_lora(lora_on("mid_block"), name="mid_only")  # a mid-block LoRA on a module without one
    with pytest.raises(MotionFormatError, match="matches none of the .* motion module's weights.*mid_block"):
        lora.check_fits(tiny_module())
    assert lora.check_fits(tiny_module(mid=32)).matched  # the same LoRA fits a module with a mid block


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_in_a_motion_lora_is_refused(bad):
    sd = lora_on("down_blocks.0")
    sd[next(iter(sd))][0, 0] = bad
    with pytest.raises(MotionFormatError, match="NaN/inf.*corrupt.*Download it again"):
        load_motion_lora(sd)


def test_nan_in_a_motion_module_is_refused():
    sd = MotionModuleSet([[32]], [[32, 32]], None, 32, "per_frame").state_dict()
    key = next(k for k in sd if k.endswith("proj_in.weight"))
    sd[key] = sd[key].clone()
    sd[key][0, 0] = float("nan")
    with pytest.raises(MotionFormatError, match="NaN/inf.*corrupt"):
        load_motion_module(sd)


@pytest.mark.parametrize("state_dict,expect", [
    # kohya-style image LoRA (what core Load LoRA reads)
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
      "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}, r"an image LoRA.*Load LoRA.*models/loras"),
    # original (LDM) ControlNet, e.g. control_v11f1p_sd15_depth.pth
    ({"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
      "control_model.zero_convs.0.0.weight": torch.zeros(320, 320, 1, 1)}, r"a ControlNet.*Load ControlNet Model"),
    # diffusers ControlNet
    ({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
      "controlnet_down_blocks.0.weight": torch.zeros(320, 320, 1, 1),
      "down_blocks.0.attentions.0.proj_in.weight": torch.zeros(320, 320)}, r"a ControlNet.*Load ControlNet Model"),
])
def test_image_lora_or_controlnet_given_to_the_motion_module_loader(state_dict, expect):
    with pytest.raises(MotionFormatError, match=r"is " + expect + r".*not an AnimateDiff motion module"):
        load_motion_module(state_dict)
