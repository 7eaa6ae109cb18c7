"""The three training stages on a tiny in-process SD1.5-structured UNet: what trains, what stays frozen,
that the loss falls, that outputs load with motion_core's loaders, and that resuming continues exactly."""
import json
import os

import numpy as np
import pytest
import torch

from training_fixtures import make_tiny_base
from training import config as tconfig
from training.data import Entry
from training.train import Trainer

FORMATS = os.path.join(os.path.dirname(__file__), "..", "data", "formats")


def _cfg(stage, root, out, *extra):
    return tconfig.load_config(None, [f"data.root={root}", "data.frames=4", "data.stride=2", "data.size=32",
                                      "optim.batch_size=2", "optim.max_steps=3", f"run.output_dir={out}",
                                      "run.sample_every=0", "run.log_every=1", "run.progress=false",
                                      "model.adapter_rank=4", "model.motion_lora_rank=4", *extra], stage=stage)


@pytest.fixture(scope="module")
def motion_file(tmp_path_factory):
    """A motion module for the tiny UNet with an open residual branch (a new one is the identity, which
    would hide what a MotionLoRA does)."""
    from motion_core import save_state_dict
    from training.stages import new_motion_module

    mm = new_motion_module(make_tiny_base().patcher.model.diffusion_model, 32, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in mm.named_parameters():
            if "proj_out" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    path = str(tmp_path_factory.mktemp("mm") / "tiny_mm.safetensors")
    save_state_dict(mm.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def still_images(tmp_path_factory):
    from training import synthetic

    root = tmp_path_factory.mktemp("stills")
    synthetic.make_synthetic_set(str(root), videos_per_prompt=0, size=32, colours=["red", "blue"], shapes=["circle"],
                                 directions=[], stills_per_prompt=1, seed=3)
    return root


def _unet_snapshot(base):
    return {k: v.detach().clone() for k, v in base.patcher.model.diffusion_model.state_dict().items()}


def _assert_unet_untouched(base, snapshot):
    now = base.patcher.model.diffusion_model.state_dict()
    assert set(now) == set(snapshot), "modules were left in the UNet"
    changed = [k for k in snapshot if not torch.equal(now[k], snapshot[k])]
    assert not changed, f"frozen base weights changed: {changed[:3]}"
    assert not any(p.requires_grad for p in base.patcher.model.parameters())


def test_motion_stage_trains_only_the_motion_module(toy_videos, tmp_path):
    from motion_core import load_motion_module

    base = make_tiny_base()
    before = _unet_snapshot(base)
    trainer = Trainer(_cfg("motion", toy_videos, tmp_path, "optim.lr=1e-3"), base=base)
    mm = trainer.stage.trainables
    init = {k: v.clone() for k, v in mm.state_dict().items()}
    seen = {}

    original_loss = trainer.loss

    def spying_loss(batch):  # what requires grad while the UNet is patched for training
        unet = trainer.stage.patcher.model.diffusion_model
        seen["trainable"] = {n for n, p in unet.named_parameters() if p.requires_grad}
        return original_loss(batch)

    trainer.loss = spying_loss
    result = trainer.train()
    assert seen["trainable"] and all(".motion_modules." in n or "module." in n for n in seen["trainable"])
    assert len(seen["trainable"]) == sum(1 for _ in mm.parameters())
    _assert_unet_untouched(base, before)
    assert result["steps"] == 3 and len(result["losses"]) == 3
    assert not torch.equal(mm.state_dict()[next(k for k in init if k.endswith("proj_out.weight"))],
                           init[next(k for k in init if k.endswith("proj_out.weight"))])

    loaded = load_motion_module(result["output"])
    saved = loaded.state_dict()
    assert set(saved) == set(mm.state_dict()) and not any(k.startswith("module.") for k in saved)
    assert any(k.endswith("pos_encoder.pe") for k in saved)
    assert all(torch.equal(saved[k], v.float().cpu()) for k, v in mm.state_dict().items())
    assert loaded.info.version == "v3" and loaded.info.base == "sd15"
    assert len(loaded.locations()) == 10  # 2 levels x (2 down + 3 up) for the tiny UNet
    rows = [json.loads(line) for line in open(tmp_path / "train_log.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("kind, end, inflate_name", [("linear", 0.012, "animatediff_linear"),
                                                     ("scaled_linear", 0.020, "sdxl")])
def test_training_noises_with_the_schedule_inflate_model_samples_with(kind, end, inflate_name):
    """One beta schedule: the training config's name means what Inflate Model's beta_schedule means."""
    base = make_tiny_base()
    from motion_core.comfy import model_sampling_for  # after make_tiny_base: it imports ComfyUI
    from training.stages import _model_sampling

    cfg = tconfig.load_config(None, [f"schedule.beta_schedule={kind}", f"schedule.beta_end={end}"])
    trained = _model_sampling(base.patcher, cfg.schedule).sigmas
    sampled = model_sampling_for(base.patcher, inflate_name).sigmas
    assert torch.equal(trained, sampled)  # bit for bit (float64 betas in both; float32 ones drift 1e-5 at t=922)
    # linear in beta: beta_500 = 0.00085 + 500 * 0.01115 / 999; abar from ComfyUI's sigma = sqrt((1 - abar) / abar)
    if kind == "linear":
        abar = 1 / (1 + trained.double() ** 2)
        assert (1 - abar[500] / abar[499]).item() == pytest.approx(0.00643058058058058, rel=1e-5)


def test_new_motion_module_starts_as_the_image_model(toy_videos):
    """Zero-initialised proj_out: the inflated UNet computes exactly what the base UNet computes."""
    from training.diffusion import predict_eps
    from training.stages import new_motion_module

    base = make_tiny_base()
    unet = base.patcher.model.diffusion_model
    mm = new_motion_module(unet, 32)
    from motion_core.comfy import inflate

    x = torch.randn(6, 4, 4, 4)
    t = torch.full((6,), 500)
    ctx = torch.randn(6, 77, 32)
    with torch.no_grad():
        plain = predict_eps(base.patcher, x, t, ctx, clips=2)
        patched = inflate(base.patcher, mm, beta_schedule="sd_default")
        patched.patch_model()
        try:
            assert sum(1 for m in unet.modules() if type(m).__name__ == "MotionLayer") == len(mm.locations())
            inflated = predict_eps(patched, x, t, ctx, clips=2)
        finally:
            patched.unpatch_model()
    assert torch.allclose(plain, inflated, atol=1e-6)


class _FixedBatch(torch.utils.data.Dataset):
    """Always the same clip with the same sample number, hence the same noise and timestep every step."""

    def __init__(self, item):
        self.item = item
        self.entries = [Entry("fixed", item["caption"], 4)]

    def __getitem__(self, k):
        return dict(self.item)


@pytest.mark.parametrize("stage", ["adapter", "motion", "motionlora"])
def test_loss_falls_on_a_fixed_batch(stage, toy_videos, still_images, motion_file, tmp_path):
    from training.data import build_dataset

    extra = {"adapter": ["optim.lr=1e-2"], "motion": ["optim.lr=1e-2"],
             "motionlora": ["optim.lr=1e-2", f"model.motion_module={motion_file}", "data.camera_motion=zoom_in",
                            f"data.root={still_images}"]}[stage]
    cfg = _cfg(stage, toy_videos, tmp_path, "optim.max_steps=10", "data.empty_prompt_prob=0", "optim.seed=5", *extra)
    trainer = Trainer(cfg, base=make_tiny_base())
    item = build_dataset(cfg.data, 0, frames=trainer.stage.frames)[0]
    item["sample"] = 123
    losses = trainer.train(dataset=_FixedBatch(item))["losses"]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_motionlora_leaves_the_module_alone_and_saves_official_keys(still_images, motion_file, tmp_path):
    from motion_core import load_motion_lora, load_motion_module, merged_motion_module

    base = make_tiny_base()
    before = _unet_snapshot(base)
    original = load_motion_module(motion_file)
    cfg = _cfg("motionlora", still_images, tmp_path, f"model.motion_module={motion_file}", "optim.lr=1e-2",
               "data.camera_motion=zoom_in,pan_left")
    trainer = Trainer(cfg, base=base)
    result = trainer.train()
    _assert_unet_untouched(base, before)
    # the loaded file's module and the file itself are unchanged
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                  load_motion_module(motion_file).state_dict().values()))
    trained = trainer.stage.motion_module
    for name, p in trained.named_parameters():
        assert ("lora" in name or "parametrizations" in name) or not p.requires_grad

    from safetensors import safe_open

    with safe_open(result["output"], "pt") as f:
        keys = list(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    n_modules = len(original.locations())
    assert len(keys) == n_modules * 2 * 4 * 2  # modules x attention blocks x q/k/v/out x down/up
    for k in keys:
        assert ".temporal_transformer.transformer_blocks.0.attention_blocks." in k and ".processor.to_" in k
        c = original.get_submodule(k.split(".temporal_transformer")[0]).channels
        assert shapes[k] == ((4, c) if k.endswith("down.weight") else (c, 4))
    lora = load_motion_lora(result["output"])
    assert lora.check_fits(original).summary().startswith(f"applied to {len(keys) // 2} of {len(keys) // 2}")
    merged = merged_motion_module(original, [(lora, 1.0)])
    q = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight"
    assert torch.allclose(merged.state_dict()[q], trained.get_submodule(q.rsplit(".", 1)[0]).weight.cpu(), atol=1e-6)
    assert not torch.equal(merged.state_dict()[q], original.state_dict()[q])


def test_adapter_stage_trains_spatial_lora_only(toy_videos, tmp_path):
    from motion_core import load_domain_adapter

    base = make_tiny_base()
    before = _unet_snapshot(base)
    result = Trainer(_cfg("adapter", toy_videos, tmp_path, "optim.lr=1e-2"), base=base).train()
    _assert_unet_untouched(base, before)
    adapter = load_domain_adapter(result["output"])
    assert adapter.rank == 4
    deltas = [adapter.delta(k).abs().max() for k in adapter.deltas]
    assert all(d > 0 for d in deltas)  # up left zero-init: every projection learnt something
    # the official adapter's key suffixes, block indices aside
    with open(os.path.join(FORMATS, "v3_sd15_adapter_example.json")) as f:
        official = json.load(f)["keys"]
    strip = lambda k: ".".join(k.split(".")[3 if k.startswith(("down", "up")) else 2:])  # noqa: E731
    from safetensors import safe_open

    with safe_open(result["output"], "pt") as f:
        ours = set(f.keys())
    assert {strip(k) for k in ours} == {strip(k) for k in official}
    # and on a num_res_blocks=2 UNet the file maps back onto ComfyUI's weight names
    patches = adapter.comfy_lora_patches(base.patcher.model_state_dict().keys())
    assert len(patches) == len(ours) // 2


def test_official_sd15_names():
    """On the real SD1.5 layout (built on the meta device) our key names are exactly the official ones."""
    from tools.comfy_host import import_comfy

    import_comfy(cpu=True)
    import comfy.supported_models

    from motion_core.motion_module import MotionModuleSet
    from training.base_model import reduced_sd15_unet_config
    from training.lora_layers import motion_attention_projections, spatial_attention_names

    cfg = reduced_sd15_unet_config(channel_mult=(1, 2, 4, 4), num_res_blocks=2, middle="full")
    cfg["transformer_depth"] = [1, 1, 1, 1, 1, 1, 0, 0]
    cfg["transformer_depth_output"] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    model = comfy.supported_models.SD15(cfg).get_model({}, device=torch.device("meta"))
    stems = {stem for _, stem in spatial_attention_names(model.diffusion_model)}
    with open(os.path.join(FORMATS, "v3_sd15_adapter_example.json")) as f:
        official = {k.rsplit(".", 2)[0] for k in json.load(f)["keys"]}
    assert stems == official

    with torch.device("meta"):
        mm = MotionModuleSet([[320, 320], [640, 640], [1280, 1280], [1280, 1280]],
                             [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3], 1280, 32, "per_frame")
    ours = {stem for _, _, stem in motion_attention_projections(mm)}
    with open(os.path.join(FORMATS, "motion_lora_example.json")) as f:
        official = {k.rsplit(".", 2)[0] for k in json.load(f)["keys"]}
    assert ours == official


def test_resume_continues_exactly(toy_videos, tmp_path):
    from safetensors.torch import load_file

    straight = Trainer(_cfg("motion", toy_videos, tmp_path / "a", "optim.max_steps=4", "optim.lr=1e-3"),
                       base=make_tiny_base()).train()
    first = Trainer(_cfg("motion", toy_videos, tmp_path / "b", "optim.max_steps=2", "optim.lr=1e-3"),
                    base=make_tiny_base()).train()
    assert first["steps"] == 2
    after_two = load_file(first["output"])
    resumed = Trainer(_cfg("motion", toy_videos, tmp_path / "b", "optim.max_steps=4", "optim.lr=1e-3"),
                      base=make_tiny_base()).train()
    assert resumed["start_step"] == 2 and resumed["steps"] == 4
    a, b = load_file(straight["output"]), load_file(resumed["output"])
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    assert any(not torch.equal(a[k], after_two[k]) for k in a)


def test_cosine_schedule_sets_each_steps_rate_and_resumes_on_the_same_curve(toy_videos, tmp_path):
    from safetensors.torch import load_file

    from training.optim import lr_factor

    opts = ("optim.lr=1e-3", "optim.lr_schedule=cosine", "optim.warmup_steps=1", "optim.lr_final=0.2")
    straight = Trainer(_cfg("motion", toy_videos, tmp_path / "a", "optim.max_steps=4", *opts),
                       base=make_tiny_base()).train()
    with open(tmp_path / "a" / "train_log.jsonl") as f:
        logged = [json.loads(line)["lr"] for line in f]
    assert logged == pytest.approx([1e-3 * lr_factor(s, 4, "cosine", 1, 0.2) for s in range(4)])
    assert logged[-1] == pytest.approx(2e-4)
    Trainer(_cfg("motion", toy_videos, tmp_path / "b", "optim.max_steps=2", *opts), base=make_tiny_base()).train()
    resumed = Trainer(_cfg("motion", toy_videos, tmp_path / "b", "optim.max_steps=4", *opts),
                      base=make_tiny_base()).train()
    assert resumed["start_step"] == 2
    a, b = load_file(straight["output"]), load_file(resumed["output"])
    constant = load_file(Trainer(_cfg("motion", toy_videos, tmp_path / "c", "optim.max_steps=4", "optim.lr=1e-3"),
                                 base=make_tiny_base()).train()["output"])
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    assert any(not torch.allclose(a[k], constant[k], atol=1e-6) for k in a)


def test_preview_samples_are_animations(toy_videos, tmp_path):
    from PIL import Image

    cfg = _cfg("motion", toy_videos, tmp_path, "optim.max_steps=2", "run.sample_every=2", "run.sample_steps=2",
               "run.sample_prompts=[a red circle moving left, a blue circle moving right]")
    Trainer(cfg, base=make_tiny_base()).train()
    gifs = sorted(os.listdir(tmp_path / "samples"))
    assert gifs == ["step_000002_0.gif", "step_000002_1.gif"]
    with Image.open(tmp_path / "samples" / gifs[0]) as im:
        assert im.n_frames == 4 and im.size == (32, 32)


def test_errors_name_the_fix(toy_videos, tmp_path):
    with pytest.raises(ValueError, match="exceeds the motion module"):
        Trainer(_cfg("motion", toy_videos, tmp_path, "data.frames=40", "model.motion_pe_length=32"),
                base=make_tiny_base())
    with pytest.raises(tconfig.ConfigError, match="needs a GPU"):
        Trainer(_cfg("motion", toy_videos, tmp_path, "optim.mixed_precision=fp16", "run.device=cpu"),
                base=make_tiny_base())


def test_gradient_checkpointing_gives_the_same_training(toy_videos, tmp_path):
    """Recomputing layers in the backward pass (object patches on the clone) changes memory, not maths."""
    from safetensors.torch import load_file

    outs = []
    for mode in ("off", "on"):
        base = make_tiny_base()
        before = _unet_snapshot(base)
        trainer = Trainer(_cfg("motion", toy_videos, tmp_path / mode, "optim.max_steps=2", "optim.lr=1e-2",
                               f"optim.gradient_checkpointing={mode}"), base=base)
        assert trainer.checkpointing == (mode == "on")
        outs.append(load_file(trainer.train()["output"]))
        _assert_unet_untouched(base, before)
        unet = base.patcher.model.diffusion_model
        # the patched forwards were undone (ComfyUI restores an object patch by setting the saved bound method)
        leftover = [m for m in unet.modules() if "forward" in vars(m)]
        assert all(getattr(vars(m)["forward"], "__func__", None) is type(m).forward for m in leftover)
        assert bool(leftover) == (mode == "on")
    assert all(torch.allclose(outs[0][k], outs[1][k], atol=1e-6) for k in outs[0])


def test_sdxl_motion_stage_uses_pooled_text_and_saves_an_sdxl_module(toy_videos, tmp_path):
    from motion_core import load_motion_module
    from training_fixtures import make_tiny_sdxl_base

    base = make_tiny_sdxl_base()
    before = _unet_snapshot(base)
    trainer = Trainer(_cfg("motion", toy_videos, tmp_path, "optim.lr=1e-3", "run.sample_every=3",
                           "run.sample_steps=2", "schedule.beta_schedule=scaled_linear", "schedule.beta_end=0.020"),
                      base=base)
    mm = trainer.stage.trainables
    assert mm.info.base == "sdxl" and mm.norm_mode == "across_frames"
    seen = []
    unet = base.patcher.model.diffusion_model
    hook = unet.label_emb.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    try:
        result = trainer.train()
    finally:
        hook.remove()
    assert seen and seen[0][-1] == 2816  # the y vector reached the UNet
    _assert_unet_untouched(base, before)
    loaded = load_motion_module(result["output"], base_hint="sdxl")
    assert loaded.info.base == "sdxl" and loaded.info.norm_mode == "across_frames"
    assert (tmp_path / "samples" / "step_000003_0.gif").exists()
    # y differs between prompts: the pooled text is part of it
    y = trainer.adm(["a red circle moving left", "a blue circle moving right"], 32, 32)
    assert y.shape == (2, 2816) and not torch.equal(y[0], y[1])


def test_min_snr_weighting_scales_each_clip_by_its_snr(toy_videos, tmp_path):
    from training.data import build_dataset, collate
    from training.train import sample_randomness

    # loss() is called outside train(), which moves the UNet to the training device: keep both on the CPU
    plain = Trainer(_cfg("motion", toy_videos, tmp_path, "data.empty_prompt_prob=0", "run.device=cpu"),
                    base=make_tiny_base())
    weighted = Trainer(_cfg("motion", toy_videos, tmp_path, "data.empty_prompt_prob=0", "optim.snr_gamma=1",
                            "run.device=cpu"), base=plain.base)
    ds = build_dataset(plain.cfg.data, 0, frames=plain.stage.frames)
    seen = set()
    for k in range(40):  # clips at a low-noise (SNR > 1) and a high-noise (SNR < 1) timestep
        item = dict(ds[0], sample=k)
        t = int(sample_randomness(plain.cfg.optim.seed, torch.tensor([k]), (1,), 1000)[0][0])
        abar = float(plain.alphas()[t])
        snr = abar / (1 - abar)
        if (snr > 1) in seen:
            continue
        seen.add(snr > 1)
        batch = collate([item])
        with torch.no_grad():
            ratio = float(weighted.loss(batch)) / float(plain.loss(batch))
        assert ratio == pytest.approx(min(snr, 1.0) / snr, rel=1e-4), (t, snr)
    assert seen == {True, False}


@pytest.mark.parametrize("kind", ["stills_under_zoom", "video_frames"])
def test_recurring_frames_are_encoded_once_and_train_the_same(kind, still_images, toy_videos, motion_file, tmp_path,
                                                               monkeypatch):
    """Frames recur: camera-motion clips of stills every epoch, video frames in overlapping clips. Their latents
    are memoised, which must not change the result (same weights as encoding every frame every step) while the
    VAE sees each distinct frame exactly once."""
    from safetensors.torch import load_file

    import training.train as ttrain
    from training.data import build_dataset
    from training_fixtures import pixels_stub

    if kind == "stills_under_zoom":
        args = ("motionlora", still_images, f"model.motion_module={motion_file}", "data.camera_motion=zoom_in")
    else:
        args = ("motion", toy_videos)

    def run(out, memo_bytes):
        monkeypatch.setattr(ttrain, "MEMO_BYTES", memo_bytes)
        base = make_tiny_base()
        encoded = []

        def counting(pixels):
            encoded.append(pixels.shape[0])
            return pixels_stub(pixels)

        base.encode_pixels = counting
        cfg = _cfg(args[0], args[1], out, *args[2:], "optim.lr=1e-2", "data.flip=false", "optim.max_steps=6")
        result = Trainer(cfg, base=base).train()
        return load_file(result["output"]), sum(encoded), cfg

    memo, n_memo, cfg = run(tmp_path / "memo", ttrain.MEMO_BYTES)
    plain, n_plain, _ = run(tmp_path / "plain", 0)
    assert n_plain == 6 * 2 * 4  # steps x clips x frames
    ds = build_dataset(cfg.data, cfg.optim.seed, frames=4)
    distinct = {k for s in range(6 * 2) for k in ds[s]["frame_keys"]}
    assert n_memo == len(distinct) < n_plain
    if kind == "stills_under_zoom":
        assert n_memo == 2 * 4  # two stills, one zoom each: the first batch holds both
    assert memo.keys() == plain.keys()
    for k in plain:
        torch.testing.assert_close(memo[k], plain[k], rtol=0, atol=1e-6)


class _FixedPair(torch.utils.data.Dataset):
    """The same signed pair (samples 0 and 1 of a dataset) every step."""

    def __init__(self, dataset):
        self.items = [dataset[0], dataset[1]]
        self.entries = dataset.entries

    def __getitem__(self, k):
        return dict(self.items[int(k) % 2])


def test_signed_pair_trains_one_lora_for_both_moves(still_images, motion_file, tmp_path):
    """camera pan_left/pan_right: the +1 clip trains the LoRA at +1 and the -1 clip at -1, so afterwards each
    clip denoises better at its own sign than at the other's; the file records which sign is which."""
    from safetensors import safe_open

    from training.data import build_dataset, collate, subset

    cfg = _cfg("motionlora", still_images, tmp_path, f"model.motion_module={motion_file}", "optim.lr=1e-2",
               "optim.max_steps=30", "data.empty_prompt_prob=0", "data.camera_motion=pan_left/pan_right",
               "data.camera_strength=1.0", "data.flip=false", "data.frames=6")
    trainer = Trainer(cfg, base=make_tiny_base())
    dataset = build_dataset(cfg.data, cfg.optim.seed, frames=trainer.stage.frames)
    result = trainer.train(dataset=_FixedPair(dataset))
    lora = trainer.stage.trainables
    assert all(d.scale == 1.0 for d in lora.deltas.values())  # put back after every step
    batch = collate([dataset[0], dataset[1]])
    trainer._patch()
    try:
        with torch.no_grad():
            loss = {}
            for clip, sign in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
                lora.set_scale(sign)
                loss[clip, sign] = float(trainer._loss(subset(batch, batch["lora_sign"] == clip)))
            lora.set_scale(1.0)
            both = float(trainer.loss(batch))
    finally:
        trainer._unpatch()
    # the LoRA is partly even in its sign (q and k both carry it, so attention logits hold a strength^2 term),
    # and what both clips share at one sign is not what training constrains: the pairing is. Each clip at its
    # own sign beats each at the other's, summed over the pair (seen: 0.011 better; -0.003 when both trained at +1).
    matched, swapped = loss[1.0, 1.0] + loss[-1.0, -1.0], loss[1.0, -1.0] + loss[-1.0, 1.0]
    assert swapped - matched > 0.005, loss
    assert both == pytest.approx((loss[1.0, 1.0] + loss[-1.0, -1.0]) / 2, rel=1e-5)
    with safe_open(result["output"], "pt") as f:
        assert f.metadata()["admk_strength_sign"] == "positive: pan_left, negative: pan_right"


def test_signed_pair_with_gradient_checkpointing_trains_the_same(still_images, motion_file, tmp_path):
    """A checkpointed layer runs its forward again in the backward pass, after loss() has put the LoRA's sign
    back to +1: the -1 clips must still be trained at -1 (the same LoRA as without checkpointing)."""
    from safetensors.torch import load_file

    from training.data import build_dataset

    outs = []
    for mode in ("off", "on"):
        cfg = _cfg("motionlora", still_images, tmp_path / mode, f"model.motion_module={motion_file}", "optim.lr=1e-2",
                   "optim.max_steps=3", "data.empty_prompt_prob=0", "data.camera_motion=pan_left/pan_right",
                   "data.camera_strength=1.0", "data.flip=false", f"optim.gradient_checkpointing={mode}")
        trainer = Trainer(cfg, base=make_tiny_base())
        assert trainer.checkpointing == (mode == "on")
        dataset = build_dataset(cfg.data, cfg.optim.seed, frames=trainer.stage.frames)
        outs.append(load_file(trainer.train(dataset=_FixedPair(dataset))["output"]))
    assert outs[0].keys() == outs[1].keys()
    moved = [k for k in outs[0] if k.endswith("up.weight") and outs[0][k].abs().max() > 0]
    assert moved, "the LoRA did not train"
    for k in outs[0]:
        torch.testing.assert_close(outs[1][k], outs[0][k], rtol=1e-4, atol=1e-6)
