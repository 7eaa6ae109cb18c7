"""training.lora_from_frames (what the Train MotionLoRA node runs) is `python -m training.train --stage motionlora`
with in-memory inputs: on the same stills, caption, camera and seed both train the same LoRA. Plus its checks."""
import os

import cv2
import numpy as np
import pytest
import torch

from training_fixtures import make_tiny_base, pixels_stub, text_stub

CAPTION = "a shape"


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    """Two 64 px stills with one caption for both (the node has one conditioning)."""
    from training import synthetic

    root = tmp_path_factory.mktemp("stills64")
    synthetic.make_synthetic_set(str(root), videos_per_prompt=0, size=64, colours=["red", "blue"],
                                 shapes=["circle"], directions=[], stills_per_prompt=1, seed=3)
    files = sorted(f for f in os.listdir(root) if f.endswith(".png"))
    with open(root / "captions.csv", "w") as f:
        f.write("file,caption\n" + "".join(f"{name},{CAPTION}\n" for name in files))
    frames = np.stack([cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB) for name in files])
    return root, frames


@pytest.fixture(scope="module")
def motion_file(tmp_path_factory):
    from motion_core import save_state_dict
    from training.stages import new_motion_module

    mm = new_motion_module(make_tiny_base().patcher.model.diffusion_model, 32, seed=1)
    with torch.no_grad():
        for name, p in mm.named_parameters():
            if "proj_out" in name:  # an open residual branch, so the LoRA matters
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    path = str(tmp_path_factory.mktemp("mm") / "tiny_mm.safetensors")
    save_state_dict(mm.state_dict(), path)
    return path


class VAEStub:
    """What base_from_comfy needs of a ComfyUI VAE: encode([N, H, W, 3] in 0..1) -> raw latents."""

    def __init__(self, latent_scale):
        self.latent_scale = latent_scale

    def encode(self, pixels):
        return pixels_stub(pixels.permute(0, 3, 1, 2) * 2 - 1) / self.latent_scale


def _as_overrides(cfg):
    keys = {"data": ["frames", "stride", "size", "flip", "empty_prompt_prob", "camera_motion", "camera_strength"],
            "model": ["motion_lora_rank"], "optim": ["lr", "max_steps", "batch_size", "seed", "mixed_precision"],
            "run": ["device", "save_every", "sample_every", "resume", "progress", "log_every"]}
    out = []
    for section, names in keys.items():
        for name in names:
            value = getattr(getattr(cfg, section), name)
            out.append(f"{section}.{name}={str(value).lower() if isinstance(value, bool) else value}")
    return out


@pytest.mark.parametrize("camera", ["pan_left", "pan_left/pan_right"])  # a camera, and a signed pair
def test_the_node_path_trains_what_the_cli_trains(camera, stills, motion_file, tmp_path):
    from safetensors.torch import load_file

    from motion_core import load_motion_module
    from training import lora_from_frames as job
    from training.config import load_config
    from training.train import TextCache, Trainer

    root, frames = stills
    request = job.Request(frames=frames, camera=camera, camera_strength=0.3, clip_frames=4, rank=4, steps=3,
                          learning_rate=1e-2, batch_size=2, seed=5)
    device = torch.device("cpu")
    # the CLI: files, with the settings the node derives (data.root pointing at the same stills)
    node_cfg = job.config_for(request, 64, 4, str(tmp_path / "cli"), device)
    cfg = load_config(None, _as_overrides(node_cfg) + [f"data.root={root}", f"model.motion_module={motion_file}",
                                                       f"run.output_dir={tmp_path / 'cli'}"], stage="motionlora")
    cli = Trainer(cfg, base=make_tiny_base(), text_cache=TextCache(text_stub)).train()
    # the node's function: in-memory frames, a loaded module, a CONDITIONING, a ComfyUI-like VAE
    base = make_tiny_base()
    vae = VAEStub(base.patcher.model.latent_format.scale_factor)
    mm = load_motion_module(motion_file)
    before = {k: v.clone() for k, v in mm.state_dict().items()}
    out = str(tmp_path / "node" / "lora.safetensors")
    result = job.train_from_frames(base.patcher, vae, mm, [[text_stub(CAPTION)[None], {}]], request, out, device)
    a, b = load_file(cli["output"]), load_file(out)
    assert set(a) == set(b) and len(a) > 0
    # Per tensor, not per element: Adam normalises each step, so float reordering between CPU kernels (AVX2 vs
    # AVX512, thread splits) flips the odd near-zero-gradient element by up to 2.2e-5 (seen); a different path or
    # draw changes whole tensors by about their own size.
    worst = max(float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)) for k in a)
    assert worst < 1e-2, worst
    assert result.losses == pytest.approx(cli["losses"], rel=1e-5)
    assert any(float(v.abs().max()) > 0 for k, v in b.items() if ".up." in k)  # it trained
    assert all(torch.equal(v, before[k]) for k, v in mm.state_dict().items())  # the module was not changed
    if "/" in camera:
        from safetensors import safe_open

        with safe_open(out, "pt") as f:
            assert f.metadata()["admk_strength_sign"] == "positive: pan_left, negative: pan_right"


def test_checks_name_the_problem():
    from training import lora_from_frames as job

    clip = torch.rand(6, 64, 64, 3)
    assert job.frames_from_images([clip[:3], clip[3:]]).shape == (6, 64, 64, 3)
    with pytest.raises(job.TrainingInputError, match="different sizes"):
        job.frames_from_images([clip, torch.rand(2, 64, 80, 3)])
    frames = job.frames_from_images(clip)
    assert job.clip_length(job.Request(frames=frames, clip_frames=16), 32) == 6
    assert job.clip_length(job.Request(frames=frames[:1], camera="zoom_in", clip_frames=16), 32) == 16
    assert job.clip_length(job.Request(frames=frames, clip_frames=16), 8) == 6
    with pytest.raises(job.TrainingInputError, match="at least 4"):
        job.clip_length(job.Request(frames=frames[:3]), 32)
    with pytest.raises(job.TrainingInputError, match="at least 64 px"):
        job.training_size(job.frames_from_images(torch.rand(4, 48, 96, 3)))
    assert job.training_size(job.frames_from_images(torch.rand(1, 100, 120, 3))) == 96


def test_cpu_bf16_follows_the_override(monkeypatch):
    """ADMK_CPU_BF16 forces float32 (0) or bf16 (1) training on the CPU whatever the CPU's flags say."""
    from training import lora_from_frames as job

    if torch.cuda.is_available():
        pytest.skip("the override applies to the CPU only")
    monkeypatch.setenv("ADMK_CPU_BF16", "0")
    assert job.bf16_is_faster() is False and job.precision_for(torch.device("cpu")) == "no"
    monkeypatch.setenv("ADMK_CPU_BF16", "1")
    assert job.bf16_is_faster() is True and job.precision_for(torch.device("cpu")) == "bf16"
    monkeypatch.setenv("ADMK_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="ADMK_CPU_BF16"):
        job.bf16_is_faster()
