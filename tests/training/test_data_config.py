"""Video-caption loading, deterministic global sampling, latent caching and the config loader."""
import json

import numpy as np
import pytest
import torch

from training import config as tconfig
from training import data, synthetic


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    synthetic.make_synthetic_set(str(root), videos_per_prompt=1, size=40, n_frames=13, colours=["red", "blue"],
                                 shapes=["circle"], directions=["left", "right"], stills_per_prompt=1, seed=0)
    return root


def test_read_captions_csv_and_json(tmp_path):
    (tmp_path / "a.csv").write_text('file,caption\nx.mp4,"a dog, running"\ny.mp4,\n')
    assert data.read_captions(str(tmp_path), "a.csv") == [("x.mp4", "a dog, running"), ("y.mp4", "")]
    (tmp_path / "b.json").write_text(json.dumps([{"file": "x.mp4", "caption": "c"}]))
    (tmp_path / "c.json").write_text(json.dumps({"y.mp4": "d"}))
    assert data.read_captions(str(tmp_path), "b.json") == [("x.mp4", "c")]
    assert data.read_captions(str(tmp_path), "c.json") == [("y.mp4", "d")]
    (tmp_path / "bad.csv").write_text("path,text\nx,y\n")
    with pytest.raises(ValueError, match="file,caption"):
        data.read_captions(str(tmp_path), "bad.csv")
    with pytest.raises(FileNotFoundError, match="captions file"):
        data.read_captions(str(tmp_path), "missing.csv")


def test_clip_indices_stride_and_short_videos():
    rng = np.random.default_rng(0)
    ids = data.clip_indices(61, 16, 4, rng)
    assert np.all(np.diff(ids) == 4) and ids[-1] <= 60
    ids = data.clip_indices(31, 16, 4, rng)  # too short for stride 4: stride drops to 2 as in the official loader
    assert np.all(np.diff(ids) == 2)
    ids = data.clip_indices(5, 8, 4, rng)  # shorter than the clip: the last frame repeats
    assert ids[:5] == [0, 1, 2, 3, 4] and ids[5:] == [4, 4, 4]


def test_clip_dataset_items(toy_set):
    entries = data.scan_entries(str(toy_set), "captions.csv")
    videos = [e for e in entries if not e.is_still]
    assert len(entries) == 6 and len(videos) == 4 and all(e.num_frames == 13 for e in videos)
    ds = data.ClipDataset(videos, frames=4, stride=3, size=32, flip=False, empty_prompt_prob=0.0, seed=1)
    item = ds[5]
    assert tuple(item["pixels"].shape) == (4, 3, 32, 32)
    assert -1.0 <= float(item["pixels"].min()) and float(item["pixels"].max()) <= 1.0
    assert item["caption"] == videos[item["index"]].caption
    assert torch.equal(ds[5]["pixels"], item["pixels"])  # a sample is a pure function of (seed, k)
    # every epoch visits every video once
    assert sorted(ds.entry_for(k) for k in range(4)) == [0, 1, 2, 3]
    assert sorted(ds.entry_for(k) for k in range(4, 8)) == [0, 1, 2, 3]
    # the clip follows the caption's direction
    frames = (item["pixels"].permute(0, 2, 3, 1).numpy() + 1) * 127.5
    colour = "red" if "red" in item["caption"] else "blue"
    t = synthetic.track_object(frames.astype(np.uint8), colour)
    sign = 1 if "right" in item["caption"] else -1
    assert np.all(np.sign(np.diff(t["cx"])) == sign)


def test_flip_and_empty_prompts(toy_set):
    videos = [e for e in data.scan_entries(str(toy_set), "captions.csv") if not e.is_still]
    plain = data.ClipDataset(videos, frames=2, stride=1, size=32, flip=False, empty_prompt_prob=1.0, seed=2)
    flips = data.ClipDataset(videos, frames=2, stride=1, size=32, flip=True, empty_prompt_prob=0.0, seed=2)
    assert all(plain[k]["caption"] == "" for k in range(6))
    assert all(flips[k]["caption"] for k in range(6))
    n_flipped = sum(int(torch.equal(flips[k]["pixels"], torch.flip(plain[k]["pixels"], dims=[-1])))
                    for k in range(12))
    assert 0 < n_flipped < 12


def test_stills_need_camera_motion(toy_set):
    entries = data.scan_entries(str(toy_set), "captions.csv")
    with pytest.raises(ValueError, match="camera_motion"):
        data.ClipDataset(entries, frames=4)
    ds = data.ClipDataset([e for e in entries if e.is_still], frames=6, size=32, flip=False, empty_prompt_prob=0,
                          camera_motion="zoom_in", camera_strength=0.5)
    item = ds[0]
    colour = "red" if "red" in item["caption"] else "blue"
    area = synthetic.track_object(((item["pixels"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8),
                                  colour)["area"]
    assert np.all(np.diff(area) > 0)


def test_global_batches_do_not_depend_on_world_size():
    one = list(data.GlobalBatchSampler(4, 0, 1, start_step=2, max_steps=4))
    two = [list(data.GlobalBatchSampler(2, r, 2, start_step=2, max_steps=4)) for r in range(2)]
    for s in range(2):
        assert one[s] == two[0][s] + two[1][s]
    assert one[0] == [8, 9, 10, 11]


def test_cached_latents_roundtrip(toy_set, tmp_path):
    videos = [e for e in data.scan_entries(str(toy_set), "captions.csv") if not e.is_still]
    encode = lambda pix: torch.nn.functional.avg_pool2d(pix, 8)[:, :3].repeat(1, 2, 1, 1)[:, :4]
    paths = data.cache_latents(videos, 32, encode, str(tmp_path / "lat"))
    assert len(paths) == 4
    ds = data.ClipDataset(videos, frames=3, stride=2, size=32, flip=False, empty_prompt_prob=0,
                          cached_latents=str(tmp_path / "lat"))
    item = ds[0]
    assert tuple(item["latents"].shape) == (3, 4, 4, 4) and "pixels" not in item
    batch = data.collate([ds[0], ds[1]])
    assert tuple(batch["latents"].shape) == (2, 3, 4, 4, 4) and len(batch["caption"]) == 2


def test_config_defaults_are_the_paper_values():
    cfg = tconfig.load_config()
    assert (cfg.data.frames, cfg.data.stride, cfg.data.size) == (16, 4, 256)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.grad_clip, cfg.optim.batch_size) == (1e-4, 1e-2, 1.0, 4)
    off = tconfig.load_config(None, ["optim.gradient_checkpointing=off", "optim.mixed_precision=no"])
    assert (off.optim.gradient_checkpointing, off.optim.mixed_precision) == ("off", "no")  # not YAML booleans
    assert (cfg.schedule.beta_start, cfg.schedule.beta_end, cfg.schedule.num_train_timesteps) == (0.00085, 0.012, 1000)
    assert cfg.schedule.beta_schedule == "linear" and cfg.schedule.latent_scale == 0.0  # 0: the checkpoint's
    assert cfg.data.empty_prompt_prob == 0.1
    assert (cfg.optim.lr_schedule, cfg.optim.warmup_steps) == ("constant", 0)  # the paper's constant rate


def test_lr_schedule_warms_up_then_decays_to_the_final_fraction():
    from training.optim import lr_factor

    assert [lr_factor(s, 10, "constant", warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = [lr_factor(s, 12, "cosine", warmup=2, final=0.1) for s in range(12)]
    assert cos[:3] == [0.5, 1.0, 1.0]  # warm-up, then the cosine starts at the full rate
    assert all(a > b for a, b in zip(cos[2:], cos[3:]))  # strictly decreasing after the warm-up
    assert cos[-1] == pytest.approx(0.1)  # the last step runs at lr x final
    assert lr_factor(6, 12, "cosine", warmup=1, final=0.0) == pytest.approx(0.5)  # halfway through the decay
    with pytest.raises(ValueError, match="constant, cosine"):
        lr_factor(0, 10, "linear")
    with pytest.raises(tconfig.ConfigError, match="lr_schedule"):
        tconfig.load_config(None, ["optim.lr_schedule=step"])


def test_config_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stage: motion\noptim:\n  lr: 3e-4\n  max_steps: 5\ndata:\n  frames: 8\n")
    cfg = tconfig.load_config(str(p), ["data.stride=2", "run.sample_prompts=[a, b]", "optim.lr=1e-3"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.max_steps == 5 and cfg.data.frames == 8 and cfg.data.stride == 2
    assert cfg.run.sample_prompts == ["a", "b"]
    assert tconfig.load_config(str(p), stage="adapter").data.frames == 1  # the adapter learns from single frames
    with pytest.raises(tconfig.ConfigError, match="optim.lrr"):
        tconfig.load_config(str(p), ["optim.lrr=1"])
    with pytest.raises(tconfig.ConfigError, match="expected an integer"):
        tconfig.load_config(str(p), ["data.frames=abc"])
    with pytest.raises(tconfig.ConfigError, match="motion_module"):
        tconfig.load_config(str(p), stage="motionlora")
    with pytest.raises(tconfig.ConfigError, match="zoom_in"):
        tconfig.load_config(str(p), ["model.motion_module=x", "data.camera_motion=dolly"], stage="motionlora")
    cfg.optim.max_steps = 7
    tconfig.save_config(cfg, str(tmp_path / "out.yaml"))
    assert tconfig.load_config(str(tmp_path / "out.yaml")).optim.max_steps == 7


def test_shipped_configs_load():
    import glob
    import os

    paths = sorted(glob.glob(os.path.join(os.path.dirname(tconfig.__file__), "configs", "*.yaml")))
    assert len(paths) >= 5
    for path in paths:
        cfg = tconfig.load_config(path, ["model.motion_module=mm.safetensors"])
        assert cfg.stage in tconfig.STAGES
        if cfg.stage == "motionlora":
            assert cfg.data.camera_motion and not cfg.data.flip


def test_timestep_skew_favours_high_noise_and_defaults_to_uniform():
    from training.train import sample_randomness

    ids = torch.arange(4000)
    uniform, _ = sample_randomness(3, ids, (1, 1, 1, 1), 1000)
    skewed, _ = sample_randomness(3, ids, (1, 1, 1, 1), 1000, skew=2.0)
    assert 0 <= int(skewed.min()) and int(skewed.max()) <= 999
    # P(t >= 500): 1/2 uniform, sqrt(1/2) = 0.71 with skew 2; both draws stay a function of (seed, sample id)
    assert abs(float((uniform >= 500).float().mean()) - 0.5) < 0.03
    assert abs(float((skewed >= 500).float().mean()) - 0.707) < 0.03
    assert torch.equal(sample_randomness(3, ids[:5], (1,), 1000, skew=2.0)[0], skewed[:5])
    assert tconfig.load_config().schedule.timestep_skew == 1.0 and tconfig.load_config().optim.snr_gamma == 0.0
    with pytest.raises(tconfig.ConfigError, match="timestep_skew"):
        tconfig.load_config(None, ["schedule.timestep_skew=0"])
    with pytest.raises(tconfig.ConfigError, match="snr_gamma"):
        tconfig.load_config(None, ["optim.snr_gamma=-1"])


def _centre_x(item) -> np.ndarray:
    """The bright object's horizontal centre per frame of a dataset item."""
    mask = (item["pixels"].mean(dim=1) > 0).float()  # [F, H, W]
    xs = torch.arange(mask.shape[-1]).float()
    return ((mask.sum(dim=1) * xs).sum(dim=-1) / mask.sum(dim=(1, 2))).numpy()


def _still_entries():
    frames = np.zeros((3, 48, 48, 3), np.uint8)
    for i in range(3):
        frames[i, 14 + 4 * i:26 + 4 * i, 16:28] = 255  # one square per still, at different places
    return data.memory_entries(frames, "a square", stills=True)


def test_signed_camera_pair_shows_one_draw_both_ways():
    ds = data.ClipDataset(_still_entries(), frames=5, stride=1, size=48, flip=False, empty_prompt_prob=0.0,
                          camera_motion="pan_left/pan_right", camera_strength=0.3, seed=4)
    batch = data.collate([ds[k] for k in range(6)])
    assert batch["lora_sign"].tolist() == [1, -1, 1, -1, 1, -1]
    assert batch["noise_id"].tolist() == [0, 0, 1, 1, 2, 2]  # a pair shares its timestep and noise
    for j in range(3):
        plus, minus = ds[2 * j], ds[2 * j + 1]
        assert plus["index"] == minus["index"]  # the same still
        # pan left (+1): the content drifts right; pan right (-1): the same still drifts left, mirror-exactly
        assert np.all(np.diff(_centre_x(plus)) > 0) and np.all(np.diff(_centre_x(minus)) < 0)
        assert torch.equal(plus["pixels"], torch.flip(minus["pixels"], dims=[0]))
    keep = batch["lora_sign"] < 0
    part = data.subset(batch, keep)
    assert part["sample"].tolist() == [1, 3, 5] and len(part["frame_keys"]) == 3 and len(part["caption"]) == 3
    assert torch.equal(part["pixels"], batch["pixels"][keep])
    assert "lora_sign" not in data.collate([data.ClipDataset(_still_entries(), frames=5, size=48, flip=False,
                                                             camera_motion="pan_left")[0]])


def test_a_flip_never_turns_a_pan_around():
    ds = data.ClipDataset(_still_entries(), frames=5, stride=1, size=48, flip=True, empty_prompt_prob=0.0,
                          camera_motion="pan_left", camera_strength=0.3, seed=4)
    for k in range(8):  # content drifts right in every clip (a flipped one would drift left)
        assert np.all(np.diff(_centre_x(ds[k])) > 0)


def test_signed_pairs_are_checked():
    for bad in ("pan_left/zoom_in", "pan_left/pan_right,zoom_in"):
        with pytest.raises(tconfig.ConfigError, match="signed pair"):
            tconfig.load_config(None, ["model.motion_module=x", f"data.camera_motion={bad}"], stage="motionlora")
    cfg = tconfig.load_config(None, ["model.motion_module=x", "data.camera_motion=pan_left/pan_right"],
                              stage="motionlora")
    assert cfg.data.camera_motion == "pan_left/pan_right"
    with pytest.raises(ValueError, match="signed pair"):
        data.ClipDataset(_still_entries(), frames=4, camera_motion="zoom_in/pan_left")
