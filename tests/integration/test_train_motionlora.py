"""Train MotionLoRA (nodes/train_motionlora.py) with the seeded stand-ins on a CPU, in seconds.

Through ComfyUI's executor: Load Frames (a folder with a square moving right) -> Train MotionLoRA; the loss falls,
the file lands in animatediff_motion_lora with the official MotionLoRA keys, Apply MotionLoRA loads it and gives
the node's own MOTION_MODULE output. Called directly: the input MODEL and MOTION_MODULE are unchanged, a cancel
leaves no file (not even a temporary one), and bad inputs are refused before the first step.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tools import standins

pytestmark = pytest.mark.integration

FRAMES, SIZE = 8, 64
OFFICIAL_KEY = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\.temporal_transformer\.transformer_blocks"
                          r"\.\d+\.attention_blocks\.\d+\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$")
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "formats" / "motion_lora_example.json"


def moving_square(frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """uint8 [F, S, S, 3]: a red square moving 3 px right per frame on grey."""
    clip = np.full((frames, size, size, 3), 96, np.uint8)
    for i in range(frames):
        clip[i, 24:40, 8 + 3 * i:24 + 3 * i] = (220, 40, 40)
    return clip


@pytest.fixture(scope="module")
def files(comfy, comfy_pack, sd15_reduced_ckpt):
    from PIL import Image

    folder = comfy.session_dirs()["input"] / "admk_train_clip"
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(moving_square()):
        Image.fromarray(frame).save(folder / f"frame_{i:02d}.png")
    return {"ckpt": comfy.install_model("checkpoints", sd15_reduced_ckpt, "standin_sd15_reduced.safetensors"),
            "v2": comfy.install_model("animatediff_models",
                                      standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"),
                                      "mm_sd_v15_v2.ckpt"),
            "clip": "admk_train_clip"}


STEPS = 12


def train_prompt(files, lora_name, steps=STEPS, **inputs):
    node = {"model": ["1", 0], "motion_module": ["3", 0], "images": ["4", 0], "vae": ["1", 2],
            "conditioning": ["2", 0], "camera": "none", "camera_strength": 0.5, "clip_frames": FRAMES, "rank": 4,
            "steps": steps, "learning_rate": 5e-3, "batch_size": 1, "seed": 0, "lora_name": lora_name,
            "strength": 1.0}
    node.update(inputs)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red square moving right", "clip": ["1", 1]}},
        "3": {"class_type": "ADMK_LoadMotionModule", "inputs": {"model_name": files["v2"]}},
        "4": {"class_type": "ADMK_LoadFrames", "inputs": {
            "path": files["clip"], "start_frame": 0, "stride": 1, "max_frames": 0, "width": 0, "height": 0,
            "resize": "crop", "folder_fps": 8.0}},
        "5": {"class_type": "ADMK_TrainMotionLoRA", "inputs": node},
    }


def _losses_of(comfy, prompt, node_mod, monkeypatch):
    """Run the prompt; the loss of every training step, as the node reports it to its progress callback."""
    losses = []
    original = node_mod._report_progress

    def recording(node_id, total):
        report = original(node_id, total)
        return lambda step, loss: (losses.append(loss), report(step, loss))

    monkeypatch.setattr(node_mod, "_report_progress", recording)
    try:
        return comfy.run_prompt(prompt, fresh=True), losses
    finally:
        monkeypatch.setattr(node_mod, "_report_progress", original)


def test_trains_saves_official_keys_and_loads_through_apply_motionlora(comfy, files, pack_node, monkeypatch):
    from safetensors import safe_open

    node_mod = pack_node("train_motionlora")
    result, losses = _losses_of(comfy, train_prompt(files, "admk_test_trained"), node_mod, monkeypatch)
    merged, name, plot = result.node_outputs["5"][0][0], result.node_outputs["5"][1][0], result.node_outputs["5"][2][0]
    path = comfy.session_dirs()["animatediff_motion_lora"] / name
    assert name == "admk_test_trained.safetensors" and path.is_file()
    assert not list(path.parent.glob("*.tmp"))
    with safe_open(str(path), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    official = set(json.loads(MANIFEST.read_text())["keys"])
    assert keys and all(OFFICIAL_KEY.match(k) for k in keys) and keys <= official
    assert meta["admk_kind"] == "motion_lora" and int(meta["admk_step"]) == len(losses) == STEPS
    # The loss goes down on the fixed clip: the same run with a negligible learning rate draws the same clips,
    # timesteps and noise at every step, so the only difference in its losses is what was learnt.
    _, control = _losses_of(comfy, train_prompt(files, "admk_test_control", learning_rate=1e-6), node_mod,
                            monkeypatch)
    assert len(control) == STEPS and abs(control[0] - losses[0]) < 1e-4 * losses[0]
    assert np.mean(losses[-4:]) < 0.9 * np.mean(control[-4:]), (losses, control)
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and float(plot.std()) > 0
    assert any(str(p.get("node")) == "5" for p in result.progress)  # ComfyUI's progress bar moved

    # Apply MotionLoRA reads the saved file into the same module the node returned
    loaded = result.node_outputs["3"][0][0]
    applied = pack_node("motion_loaders").ApplyMotionLoRA.execute(motion_module=loaded, lora_name=name,
                                                                  strength=1.0).args[0]
    changed = 0
    for (k, a), (_, b), (_, base) in zip(applied.state_dict().items(), merged.state_dict().items(),
                                         loaded.state_dict().items()):
        assert torch.equal(a, b), k
        changed += int(not torch.equal(a, base))
    assert changed > 0  # the LoRA did something


def _direct_inputs(files):
    """The node's inputs as ComfyUI would pass them (before is_input_list wraps each in a list)."""
    import comfy.sd
    import folder_paths

    from motion_core import load_motion_module

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
        folder_paths.get_full_path("checkpoints", files["ckpt"]), output_clip=True)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red square moving right"))
    mm = load_motion_module(folder_paths.get_full_path("animatediff_models", files["v2"]), dtype=None)
    images = torch.from_numpy(moving_square()).float().div(255)
    return model, mm, vae, cond, images


def _execute(node_cls, model, mm, vae, cond, images, **over):
    args = dict(model=[model], motion_module=[mm], images=images if isinstance(images, list) else [images], vae=[vae], conditioning=[cond], camera=["none"],
                camera_strength=[0.5], clip_frames=[FRAMES], rank=[4], steps=[3], learning_rate=[1e-3],
                batch_size=[1], seed=[0], lora_name=["admk_direct"], strength=[1.0])
    args.update({k: v if isinstance(v, list) else [v] for k, v in over.items()})
    return node_cls.execute(**args)


@pytest.fixture(scope="module")
def direct(comfy, files, pack_node):
    return pack_node("train_motionlora"), _direct_inputs(files)


def _work_dirs():
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("admk_train_motionlora_")}


def test_inputs_are_not_changed_and_the_output_is_a_new_module(direct):
    node_mod, (model, mm, vae, cond, images) = direct
    unet_before = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    mm_before = {k: v.clone() for k, v in mm.state_dict().items()}
    grads = {k: p.requires_grad for k, p in model.model.named_parameters()}
    patches, object_patches = dict(model.patches), dict(model.object_patches)
    out = _execute(node_mod.TrainMotionLoRA, model, mm, vae, cond, images)
    merged = out.args[0]
    assert merged is not mm
    for k, v in model.model.diffusion_model.state_dict().items():  # values; on a GPU the UNet is offloaded now
        assert torch.equal(v.cpu(), unet_before[k].cpu()), k
    for k, v in mm.state_dict().items():
        assert torch.equal(v.cpu(), mm_before[k].cpu()), k
    assert not any(type(m).__name__.startswith("Parametrized") for m in mm.modules())
    assert {k: p.requires_grad for k, p in model.model.named_parameters()} == grads
    assert dict(model.patches) == patches and dict(model.object_patches) == object_patches
    assert any(not torch.equal(v, mm_before[k]) for k, v in merged.state_dict().items())


def test_cancel_leaves_no_file(direct, monkeypatch):
    import comfy.model_management
    import comfy.utils
    import folder_paths

    node_mod, (model, mm, vae, cond, images) = direct
    before = _work_dirs()

    class CancellingBar(comfy.utils.ProgressBar):
        def update_absolute(self, value, total=None, preview=None):
            super().update_absolute(value, total, preview)
            if value >= 2:  # the user presses Cancel during step 3
                comfy.model_management.interrupt_current_processing(True)

    monkeypatch.setattr(node_mod.comfy.utils, "ProgressBar", CancellingBar)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            _execute(node_mod.TrainMotionLoRA, model, mm, vae, cond, images, steps=6, lora_name="admk_cancelled")
    finally:
        comfy.model_management.interrupt_current_processing(False)
    lora_dir = Path(folder_paths.get_folder_paths("animatediff_motion_lora")[0])
    assert not list(lora_dir.glob("admk_cancelled*"))  # neither the file nor its .tmp
    assert _work_dirs() == before  # the training folder is gone too


def test_bad_inputs_are_refused_before_training(direct, monkeypatch):
    from comfy.supported_models import SDXL

    node_mod, (model, mm, vae, cond, images) = direct
    job = node_mod.job
    import importlib

    train = importlib.import_module(job.__name__.rpartition(".")[0] + ".train")

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "Trainer", no_training)
    node = node_mod.TrainMotionLoRA
    with pytest.raises(job.TrainingInputError, match="at least 4.*camera preset"):
        _execute(node, model, mm, vae, cond, images[:2])
    with pytest.raises(job.TrainingInputError, match="different sizes.*64x64.*72x72"):
        _execute(node, model, mm, vae, cond, [images, torch.zeros(2, 72, 72, 3)])

    class SDXLModel:  # what placement reads of a ModelPatcher: an SDXL checkpoint
        class model:
            model_config = SDXL.__new__(SDXL)
            diffusion_model = None

    from motion_core.errors import MotionFormatError

    with pytest.raises(Exception, match=r"SD1\.5 motion module.*SDXL model") as err:
        _execute(node, SDXLModel(), mm, vae, cond, images)
    assert type(err.value).__name__ == MotionFormatError.__name__

    class Full:
        free = 1024

    monkeypatch.setattr(job.shutil, "disk_usage", lambda path: Full())
    with pytest.raises(job.TrainingInputError, match="Not enough disk space"):
        _execute(node, model, mm, vae, cond, images)


def test_loss_plot_and_name_rules(pack_node):
    job = pack_node("train_motionlora").job
    plot = job.loss_plot([1.0, 0.8, 0.7, 0.5] * 5)
    assert plot.shape == (1, 256, 512, 3) and 0 <= float(plot.min()) and float(plot.max()) <= 1
    assert job.target_path("/x", "zoom").endswith("/x/zoom.safetensors")
    with pytest.raises(job.TrainingInputError, match="plain file name"):
        job.target_path("/x", "../evil")
