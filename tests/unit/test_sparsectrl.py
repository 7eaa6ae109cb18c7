"""SparseCtrl: the official key layouts load, and the forward equals an independent reference of the authors' code."""
import pytest
import torch

from manifest_weights import manifest
from motion_core import MotionFormatError, load_motion_module
from motion_core.sparsectrl import (KIND_RGB, KIND_SCRIBBLE, SparseCtrl, keyframe_condition, load_sparsectrl,
                                    normalize_scribble, parse_keyframe_indices, spec_from_keys)
from sparsectrl_reference import reference_sparsectrl
from tools import standins

pytestmark = pytest.mark.usefixtures("no_grad")

KINDS = [("sparsectrl_latent_condition", KIND_RGB), ("sparsectrl_image_condition", KIND_SCRIBBLE)]


def _flat(x5):
    b, c, f, h, w = x5.shape
    return x5.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _to5(x, f):
    bf, c, h, w = x.shape
    return x.reshape(bf // f, f, c, h, w).permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize("name,kind", KINDS)
def test_network_has_exactly_the_official_keys_and_shapes(name, kind):
    keys = manifest(name)["keys"]
    spec = spec_from_keys({k: tuple(v) for k, v in keys.items()}, name)
    with torch.device("meta"):
        net = SparseCtrl(spec)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == keys
    assert sum(p.numel() for p in net.parameters()) == manifest(name)["_meta"]["n_params"]
    assert spec.skips == 12 and spec.max_frames == 32 and spec.motion_attention_blocks == 1
    assert spec.simplified_embedding == (kind == KIND_RGB)


@pytest.mark.parametrize("name,kind", KINDS[:1])
def test_full_size_file_loads_in_its_precision(tmp_path, name, kind):
    """The real key layout and sizes (~500 M params; zeros cost nothing to make), pe tables absent as the
    authors' code saves them: the loader fills the sinusoid and keeps fp16. (RGB only: ~12 s; the scribble layout
    is checked key by key on the meta device above.)"""
    sd = {k: torch.zeros(v, dtype=torch.float16) for k, v in manifest(name)["keys"].items() if not k.endswith(".pe")}
    sd["conv_in.bias"] = torch.full((320,), 0.5, dtype=torch.float16)
    net = load_sparsectrl(sd, dtype=None)
    assert net.info.kind == kind and net.info.max_frames == 32 and net.info.base == "sd15"
    assert net.info.params == manifest(name)["_meta"]["n_params"] and not net.info.has_pe
    assert net.conv_in.bias.dtype == torch.float16 and float(net.conv_in.bias[0]) == 0.5
    pe = net.down_blocks[0].motion_modules[0].temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe
    assert pe.shape == (1, 32, 320) and float(pe[0, 1, 1]) == pytest.approx(torch.cos(torch.tensor(1.0)).item(), abs=1e-3)


def _inputs(kind, frames, seed=0, keyframes=(0, 5)):
    g = torch.Generator().manual_seed(seed)
    h = w = 8
    cond_channels, ch, cw = (4, h, w) if kind == KIND_RGB else (3, 8 * h, 8 * w)
    images = torch.rand(len(keyframes), cond_channels, ch, cw, generator=g) * 2 - 1
    cond, mask = keyframe_condition(images, keyframes, frames)
    sample = torch.randn(1, 4, frames, h, w, generator=g)
    context = torch.randn(1, 77, 768, generator=g)
    return sample, context, cond, mask


def _to5_batch(t):  # [F, C, H, W] -> [1, C, F, H, W]
    return t.permute(1, 0, 2, 3).unsqueeze(0)


@pytest.mark.parametrize("name,kind", KINDS)
def test_forward_matches_the_authors_code(name, kind):
    """Every key of the official file (widths / 10), random weights with the position tables absent."""
    sd = standins.sparsectrl_state_dict(name, "narrow", seed=3, dtype=torch.float32, std=0.08)
    net = load_sparsectrl(dict(sd))
    frames, t, scale = 6, 601.0, 0.7
    sample, context, cond, mask = _inputs(kind, frames)
    residuals, mid = net(_flat(sample), torch.tensor([t]), context, cond, mask, num_frames=frames,
                         conditioning_scale=scale)
    ref_down, ref_mid = reference_sparsectrl(sd, sample, t, context, _to5_batch(cond), _to5_batch(mask), scale)
    assert len(residuals) == len(ref_down) == 12
    errors = [(_to5(r, frames) - ref).abs().max().item() for r, ref in zip(residuals, ref_down)]
    errors.append((_to5(mid, frames) - ref_mid).abs().max().item())
    size = max(ref.abs().max().item() for ref in ref_down + [ref_mid])
    print(f"{name}: max |ours - reference| = {max(errors):.2e} (largest output {size:.2f})")
    assert size > 0.1  # the comparison is not between near-zero tensors
    assert max(errors) <= 1e-4


def test_frames_without_keyframes_are_driven_through_the_motion_modules():
    """Changing only keyframe 5's condition changes frame 2's residuals (the motion modules carry keyframes to
    other frames); without motion modules it could not."""
    sd = standins.sparsectrl_state_dict("sparsectrl_latent_condition", "narrow", seed=1, dtype=torch.float32, std=0.08)
    net = load_sparsectrl(sd)
    sample, context, cond, mask = _inputs(KIND_RGB, 6)
    a, _ = net(_flat(sample), torch.tensor([500.0]), context, cond, mask, num_frames=6)
    cond2 = cond.clone()
    cond2[5] += 1.0
    b, _ = net(_flat(sample), torch.tensor([500.0]), context, cond2, mask, num_frames=6)
    assert (a[-1][2] - b[-1][2]).abs().max() > 1e-4
    assert torch.equal(a[0][2], b[0][2])  # conv_in + embedding alone act per frame


def test_noisy_latent_is_ignored():
    sd = standins.sparsectrl_state_dict("sparsectrl_latent_condition", "narrow", seed=1, dtype=torch.float32)
    net = load_sparsectrl(sd)
    sample, context, cond, mask = _inputs(KIND_RGB, 4, keyframes=(0,))
    a, ma = net(_flat(sample), torch.tensor([10.0]), context, cond, mask, num_frames=4)
    b, mb = net(_flat(sample) * 5 + 1, torch.tensor([10.0]), context, cond, mask, num_frames=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and torch.equal(ma, mb)


def test_file_round_trip_and_wrong_kinds(tmp_path):
    path = standins.build_sparsectrl_file(tmp_path / "v3_sd15_sparsectrl_scribble.ckpt", "sparsectrl_image_condition",
                                          "reduced")
    net = load_sparsectrl(path, dtype=None)
    assert net.info.kind == KIND_SCRIBBLE and net.conv_in.weight.dtype == torch.float16
    assert "scribble" in net.info.summary() and "32 frames" in net.info.summary()
    with pytest.raises(MotionFormatError, match="Load SparseCtrl"):
        load_motion_module(path)
    mm = standins.motion_state_dict("v3_sd15_mm", layout="reduced")
    with pytest.raises(MotionFormatError, match="motion module.*not a SparseCtrl"):
        load_sparsectrl(mm)
    broken = standins.sparsectrl_state_dict("sparsectrl_image_condition", "reduced")
    del broken["controlnet_mid_block.weight"]
    with pytest.raises(MotionFormatError, match="missing 1 keys"):
        load_sparsectrl(broken)


def test_keyframe_indices():
    assert parse_keyframe_indices("0, 15", 2, 16) == [0, 15]
    assert parse_keyframe_indices("0,8 -1", 3, 16) == [0, 8, 15]
    assert parse_keyframe_indices("spread", 3, 16) == [0, 8, 15]
    assert parse_keyframe_indices("spread", 1, 16) == [0]
    with pytest.raises(MotionFormatError, match="more keyframe images than indices.*one frame index per image"):
        parse_keyframe_indices("0", 2, 16)
    with pytest.raises(MotionFormatError, match="more indices than keyframe images"):
        parse_keyframe_indices("0, 4, 8", 2, 16)
    with pytest.raises(MotionFormatError, match="index 16 is beyond the clip.*16 frames"):
        parse_keyframe_indices("0, 16", 2, 16)
    with pytest.raises(MotionFormatError, match="not a list of frame numbers"):
        parse_keyframe_indices("first, last", 2, 16)


def test_keyframe_condition_and_scribble_normalisation():
    images = torch.rand(2, 4, 3, 3) + 0.5
    cond, mask = keyframe_condition(images, [1, 3], 5)
    assert torch.equal(cond[1], images[0]) and torch.equal(cond[3], images[1])
    assert cond[[0, 2, 4]].abs().sum() == 0 and mask[:, 0, 0, 0].tolist() == [0, 1, 0, 1, 0]
    scribble = torch.zeros(2, 3, 4, 4)
    scribble[0, :, 1, 1] = 0.5
    out = normalize_scribble(scribble)
    assert out[0].max() == 1.0 and out[0].min() == 0.0 and torch.equal(out[1], torch.zeros(3, 4, 4))


@pytest.mark.parametrize("name", [n for n, _ in KINDS])
def test_reduced_standin_fits_the_reduced_unet(name):
    """tools/standins "reduced": the skips of the reduced SD1.5 UNet (conv_in, level-0 resnet, downsample, level-1
    resnet: 320, 320, 320@/2, 640@/2) and a 640-wide mid block, with the official key names."""
    keys = standins.sparsectrl_keys(name, "reduced")
    spec = spec_from_keys({k: tuple(v) for k, v in keys.items()}, name)
    assert [lv.channels for lv in spec.levels] == [320, 640] and spec.skips == 4
    assert [lv.downsample for lv in spec.levels] == [True, False]
    assert [keys[f"controlnet_down_blocks.{i}.weight"][0] for i in range(4)] == [320, 320, 320, 640]
    assert keys["controlnet_mid_block.weight"][0] == 640 and keys["mid_block.resnets.0.time_emb_proj.weight"] == [640, 1280]
    full = standins.sparsectrl_keys(name, "full")
    assert all(k in full for k in keys if not k.startswith(("controlnet_down_blocks", "mid_block")))
