"""Error paths of the nodes and the ComfyUI adapter that a user hits, each before any sampling: the message names
the problem and the fix. Tiny in-process models (ComfyUI's own classes), nodes called as ComfyUI calls them."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.integration
CTX = 8


@pytest.fixture(scope="module")
def parts(comfy, pack_node):
    from harness.tiny_models import fill_seeded, tiny_unet
    from motion_core.motion_module import MotionModuleSet, build_from_state_dict

    mm = MotionModuleSet([[32]], [[32, 32]], None, 32, "per_frame")
    fill_seeded(mm, 2)
    return {"unet": tiny_unet(CTX, seed=0), "motion": build_from_state_dict(mm.state_dict()),
            "sample": pack_node("sample").SampleAnimation, "save": pack_node("save_animation").SaveAnimation}


def conds():
    return [[torch.randn(1, 4, CTX, generator=torch.Generator().manual_seed(1)), {}]], [[torch.zeros(1, 4, CTX), {}]]


def sample(parts, model=None, **kw):
    args = dict(frames=4, width=64, height=64, seed=0, steps=1, cfg=4.0, sampler_name="euler", scheduler="normal",
                denoise=1.0)
    args.update(kw)
    return parts["sample"].execute(model or parts["unet"], *conds(), **args)


def test_image_input_without_a_vae(parts):
    with pytest.raises(ValueError, match="IMAGE frames but no VAE: connect the checkpoint's VAE"):
        sample(parts, image=torch.zeros(4, 64, 64, 3), denoise=0.6)


@pytest.mark.parametrize("width,height", [(100, 64), (64, 60)])
def test_width_height_not_a_multiple_of_8(parts, width, height):
    with pytest.raises(ValueError, match=rf"multiples of 8 \(got {width}x{height}\): set them to e.g. "
                                         rf"{width // 8 * 8}x{height // 8 * 8}"):
        sample(parts, width=width, height=height)


def test_model_that_is_not_a_unet(parts):
    import comfy.model_patcher
    from harness.tiny_models import tiny_unet
    from motion_core.comfy import inflate
    from motion_core.errors import MotionFormatError

    class TinyDiT(torch.nn.Module):  # a transformer-only diffusion model (Flux/SD3-like): no input/output blocks
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4)])

    other = tiny_unet(CTX, seed=0)  # its own model object: swapping its diffusion model touches nothing shared
    other.model.diffusion_model = TinyDiT()
    patcher = comfy.model_patcher.ModelPatcher(other.model, other.load_device, other.offload_device)
    with pytest.raises(MotionFormatError, match=r"\(TinyDiT\) is not a UNet.*Load an SD1.5"):
        inflate(patcher, parts["motion"])


def _adapter(block: str, channels: int, rank: int = 4):
    from motion_core.lora import DomainAdapter

    g = torch.Generator().manual_seed(0)
    key = f"{block}.transformer_blocks.0.attn1.to_q.weight"
    return DomainAdapter({key: (torch.randn(channels, rank, generator=g), torch.randn(rank, channels, generator=g),
                                1.0)}, name="adapter")


@pytest.mark.parametrize("block,channels,expect", [
    ("down_blocks.0.attentions.0", 320, r"have other shapes .*adapter 320x320, UNet \(32, 32\).*SD1.5"),  # SD1.5 widths
    ("down_blocks.2.attentions.0", 32, r"lacks .*SD1.5 UNets only"),  # a block this UNet does not have
])
def test_adapter_that_does_not_fit_the_unet(parts, block, channels, expect):
    from motion_core.comfy import inflate
    from motion_core.errors import MotionFormatError

    with pytest.raises(MotionFormatError, match=expect):
        inflate(parts["unet"], parts["motion"], adapter=_adapter(block, channels))
    inflate(parts["unet"], parts["motion"], adapter=_adapter("down_blocks.0.attentions.0", 32))  # one that fits


def test_no_frames_to_save_animation(parts):
    with pytest.raises(ValueError, match="got no frames: connect an IMAGE batch"):
        parts["save"].execute(torch.zeros(0, 64, 64, 3), "empty", "gif", 8.0, 0, False, True)
