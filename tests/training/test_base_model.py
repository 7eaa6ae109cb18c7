"""The demo's base model pieces: ComfyUI detects the reduced UNet as SD1.5, the TAESD-layout VAE reconstructs
frames through ComfyUI's own VAE object, and its latents are calibrated to unit scale."""
import numpy as np
import pytest
import torch

from training import base_model as bm
from training import synthetic


@pytest.fixture(scope="module")
def comfy():
    from tools.comfy_host import import_comfy

    import_comfy(cpu=True)


def _frames(n=24, size=64, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        colour = list(synthetic.COLOURS)[rng.integers(4)]
        r = rng.uniform(6, 10)
        out.append(synthetic.render_shape(size, synthetic.SHAPES[rng.integers(2)], synthetic.COLOURS[colour],
                                          (rng.uniform(r, size - r), rng.uniform(r, size - r)), r))
    return torch.from_numpy(np.stack(out)).float().div(255).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("channel_mult,middle", [((1,), "none"), ((1, 2), "full")])
def test_reduced_unet_is_detected_as_sd15(comfy, channel_mult, middle):
    import comfy.model_detection
    import comfy.supported_models

    config = bm.reduced_sd15_unet_config(channel_mult=channel_mult, middle=middle)
    model = comfy.supported_models.SD15(config).get_model({}, device=torch.device("meta"))
    sd = {f"model.diffusion_model.{k}": v for k, v in model.diffusion_model.state_dict().items()}
    detected = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(detected) is comfy.supported_models.SD15
    assert detected.unet_config["channel_mult"] == list(channel_mult)


def test_analytic_taesd_reconstructs_through_comfys_vae(comfy):
    import comfy.sd
    from comfy.taesd.taesd import TAESD

    frames = _frames()
    taesd = TAESD()
    bm.init_taesd_analytic_(taesd, seed=0)
    stats = bm.calibrate_latents_(taesd, bm.encoder_outputs(taesd, frames))
    # float32 as build_base makes it: ComfyUI's own choice on a GPU, bf16, moves the mean by ~1e-2
    vae = comfy.sd.VAE(sd=taesd.state_dict(), dtype=torch.float32)
    assert type(vae.first_stage_model).__name__ == "TAESD"
    raw = vae.encode(frames.permute(0, 2, 3, 1))
    latents = raw * bm.SD15_LATENT_SCALE  # what the UNet sees
    assert tuple(latents.shape) == (24, 4, 8, 8)
    assert float(latents.mean()) == pytest.approx(0.0, abs=1e-3) and float(latents.std()) == pytest.approx(1.0, abs=1e-2)
    # no dead channel: each of the four varies with the image and sits near the centre the sampler's noise
    # starts from (a constant channel 3 at +1.46 made seed 0's frame 1 of the demo decode as noise, issue 17)
    per_mean, per_std = latents.mean((0, 2, 3)), latents.std((0, 2, 3))
    assert bool((per_std > 0.3).all()), per_std
    assert bool((per_mean.abs() < 0.6).all()), per_mean
    rec = vae.decode(raw).permute(0, 3, 1, 2)
    assert bm.psnr(rec, frames) > 18.0
    # colour survives: the mean colour of each reconstruction matches its frame's
    assert torch.allclose(rec.mean((2, 3)), frames.mean((2, 3)), atol=0.03)
    assert stats["encoder_std"] > 0


def test_decoder_finetune_never_leaves_a_worse_decoder(comfy):
    from comfy.taesd.taesd import TAESD

    frames = _frames(48)
    taesd = TAESD()
    bm.init_taesd_analytic_(taesd, seed=0)
    encoded = bm.encoder_outputs(taesd, frames)
    enc_before = {k: v.clone() for k, v in taesd.taesd_encoder.state_dict().items()}
    result = bm.finetune_taesd_decoder(taesd, frames, encoded, steps=20, batch=4, lr=3e-3)
    assert result["psnr_after"] >= result["psnr_before"], result  # never worse on held-out frames
    # the reported number is the decoder it leaves behind (a 0-step run measures it again)
    rerun = bm.finetune_taesd_decoder(taesd, frames, encoded, steps=0)
    assert rerun["psnr_before"] == pytest.approx(result["psnr_after"])
    assert all(torch.equal(v, taesd.taesd_encoder.state_dict()[k]) for k, v in enc_before.items())


def test_min_snr_weights_cap_only_the_clean_timesteps():
    from training.diffusion import min_snr_weights

    abar = torch.tensor([0.999, 0.9, 5 / 6, 0.5, 0.01])  # SNR 999, 9, 5, 1, ~0.01
    w = min_snr_weights(abar, 5.0)
    torch.testing.assert_close(w, torch.tensor([5 / 999, 5 / 9, 1.0, 1.0, 1.0]), rtol=1e-4, atol=0)


def test_base_training_with_min_snr_down_weights_the_same_draws(comfy):
    """snr_gamma changes only the per-sample weights (the draws are the same): with lr 0 the first loss is the
    weighted mean of the same errors, so it is lower whenever a batch holds a timestep with SNR > gamma."""
    from training_fixtures import make_tiny_base, text_stub

    latents = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle"] * 8
    emb = {c: text_stub(c) for c in ("", "a red circle")}
    runs = {g: bm.train_unet_on_frames(make_tiny_base().patcher, latents, captions, emb, steps=1, batch=8, lr=0.0,
                                       seed=3, snr_gamma=g)["loss_first"] for g in (0.0, 5.0, 1e9)}
    assert runs[5.0] < runs[0.0]
    assert runs[1e9] == pytest.approx(runs[0.0], rel=1e-6)  # an unreachable cap weights every sample by 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_base_training_on_a_device_draws_the_same_and_puts_the_unet_back(comfy, device, monkeypatch):
    """The demo trains the base on ComfyUI's device (a GPU where there is one): the random draws come from the CPU
    generator either way, so the run matches the in-place one, and the UNet ends where it started."""
    from training_fixtures import make_tiny_base, text_stub

    # torch runs float32 convolutions on a GPU in TF32 by default (10-bit mantissa): off, for float32 on both
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    latents = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", "a blue square"] * 4
    emb = {c: text_stub(c) for c in ("", "a red circle", "a blue square")}
    weights, losses = [], []
    for where in (None, torch.device(device)):
        patcher = make_tiny_base().patcher
        out = bm.train_unet_on_frames(patcher, latents, captions, emb, steps=3, batch=4, lr=1e-3, seed=5,
                                      device=where)
        unet = patcher.model.diffusion_model
        assert {p.device.type for p in unet.parameters()} == {"cpu"}
        weights.append({k: v.detach().clone() for k, v in unet.state_dict().items()})
        losses.append(out["loss_first"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    init = make_tiny_base().patcher.model.diffusion_model.state_dict()
    assert any(not torch.equal(init[k], weights[0][k]) for k in init)  # it did train

    def norm(tensors):
        return sum(float((t.double() ** 2).sum()) for t in tensors) ** 0.5

    # Against the size of the update, not per weight: Adam's first steps move every weight by ~lr whatever its
    # gradient's size, so float rounding alone moves single weights by ~lr/2 (inputs changed by 1e-6 relative:
    # 4.4e-4 at most, 9e-4 of the update's norm; another seed: 1.4 of it)
    differ = norm(weights[1][k] - weights[0][k] for k in init) / norm(weights[0][k] - init[k] for k in init)
    assert differ < 1e-2, f"the run on {device} differs by {differ:.2e} of the update"
