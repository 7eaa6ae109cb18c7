"""The real entry points: `python -m training.train` on a checkpoint loaded by ComfyUI's own loader, and
data-parallel training under torchrun (gloo on CPU) reaching the same weights as one process."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from harness.subprocess_env import repo_env
from training_fixtures import REPO

CAPTIONS = ["", "a red circle moving left", "a red circle moving right", "a blue circle moving left",
            "a blue circle moving right"]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, toy_videos):
    """A reduced SD1.5 checkpoint (one level, 18.7 M UNet, TAESD-layout VAE, no CLIP) plus precomputed
    768-d caption embeddings, so a training process starts in seconds."""
    from tools.comfy_host import import_comfy

    import_comfy(cpu=True)
    from training.base_model import build_base, reduced_sd15_unet_config, save_checkpoint
    from training.train import TextCache

    d = tmp_path_factory.mktemp("ckpt")
    build = build_base(reduced_sd15_unet_config(), seed=0, with_clip=False)
    with torch.no_grad():  # open the zero-initialised output layers, or no gradient reaches the motion module
        for name, p in build.patcher.model.diffusion_model.named_parameters():
            if p.ndim > 1 and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.01)
    save_checkpoint(build, str(d / "small_sd15.safetensors"))
    cache = TextCache(lambda c: torch.randn(77, 768, generator=torch.Generator().manual_seed(len(c))))
    for c in CAPTIONS:
        cache(c)
    cache.save(str(d / "embeddings.safetensors"))
    cfg = d / "motion.yaml"
    # optim.eps: Adam's first update is lr * g / (|g| + eps); with the default 1e-8 a gradient of ~1e-8 (float
    # rounding of "zero") already moves a weight by a sizeable fraction of lr, so equal-up-to-rounding gradients
    # could give visibly different weights. A larger eps keeps the comparison about the averaged gradients.
    cfg.write_text(
        f"stage: motion\n"
        f"data: {{root: {toy_videos}, frames: 4, stride: 2, size: 32}}\n"
        f"model: {{checkpoint: {d / 'small_sd15.safetensors'}, text_embeddings: {d / 'embeddings.safetensors'}}}\n"
        f"optim: {{max_steps: 2, lr: 1.0e-3, seed: 3, eps: 1.0e-3}}\n"
        f"run: {{log_every: 1, sample_every: 2, sample_steps: 2, progress: false, save_every: 0}}\n")
    return cfg


def _env():
    env = repo_env(OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, timeout=600):
    proc = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_one_process_and_two_ddp_processes_reach_the_same_weights(small_checkpoint, tmp_path):
    from safetensors.torch import load_file

    from motion_core import load_motion_module

    single = tmp_path / "single"
    # on the CPU (gloo) wherever it runs: the two ranks would need two GPUs, and CPU maths is repeatable to 1e-6
    _run([sys.executable, "-m", "training.train", "--config", str(small_checkpoint), "optim.batch_size=2",
          f"run.output_dir={single}", "run.device=cpu"])
    ddp = tmp_path / "ddp"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
          f"--master_port={_free_port()}", "-m", "training.train", "--config", str(small_checkpoint),
          "optim.batch_size=1", f"run.output_dir={ddp}", "run.device=cpu"])
    a = load_file(str(single / "motion.safetensors"))
    b = load_file(str(ddp / "motion.safetensors"))
    assert set(a) == set(b)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-6, worst
    moved = max(float(a[k].abs().max()) for k in a if k.endswith("proj_out.weight"))
    assert moved > 1e-4  # the comparison is between trained weights, not two untouched inits
    # only rank 0 wrote: one log line per step, one set of samples
    for out in (single, ddp):
        rows = [json.loads(line) for line in open(out / "train_log.jsonl")]
        assert [r["step"] for r in rows] == [1, 2]
        assert sorted(os.listdir(out / "samples")) == ["step_000002_0.gif"]
    # the logged loss is the global batch's in both runs
    la = [json.loads(line)["loss"] for line in open(single / "train_log.jsonl")]
    lb = [json.loads(line)["loss"] for line in open(ddp / "train_log.jsonl")]
    assert la == pytest.approx(lb, rel=1e-4)
    assert load_motion_module(str(ddp / "motion.safetensors")).info.version == "v3"


def test_cli_reports_config_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training.train", "--stage", "motion", "optim.lrr=1"], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "optim.lrr" in proc.stderr and "valid keys" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "training.train", "--stage", "motion", "data.root=/nonexistent",
                           "model.checkpoint=/nonexistent.safetensors"], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "model.checkpoint" in proc.stderr


def test_cache_latents_then_train_on_them(small_checkpoint, tmp_path):
    from training import train

    lat = tmp_path / "latents"
    out = tmp_path / "run"
    assert train.main(["--config", str(small_checkpoint), "--cache-latents", f"data.cached_latents={lat}"]) == 0
    files = sorted(os.listdir(lat))
    assert len(files) == 4 and files[0].endswith(".safetensors")
    from safetensors.torch import load_file

    latents = load_file(str(lat / files[0]))["latents"]
    assert tuple(latents.shape) == (9, 4, 4, 4)  # every frame of a 9-frame 32 px video
    assert train.main(["--config", str(small_checkpoint), f"data.cached_latents={lat}", f"run.output_dir={out}",
                       "run.sample_every=0"]) == 0
    assert (out / "motion.safetensors").exists()


def test_more_processes_than_gpus_is_refused_by_name(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU machine: a ConfigError that says what to do, not CUDA's
    'invalid device ordinal' from inside torch."""
    from training.config import ConfigError
    from training.train import DistInfo, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("set_device was reached"))
    with pytest.raises(ConfigError, match="torch sees 1.*nproc_per_node.*run.device=cpu"):
        resolve_device("auto", DistInfo(rank=1, world_size=2, local_rank=1))
