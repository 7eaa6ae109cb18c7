"""Frame-1 diagnosis (issue 17): does a noisy demo frame follow the noise draw or the batch index?

`python -m training.frame_noise_check demo_output/cache ["prompt"]` samples the demo base (image model, 8 euler
steps) with seed 0, the same noise rolled by one frame, frame 1's noise re-centred, more steps, lower guidance
and other seeds, and prints demo_metrics.frame_outliers and each frame's total variation; then the model-space
channel statistics of the base's training frames encoded by the checkpoint's VAE and, for seed 0, each channel's
mean in the last step's prediction of frames 0-2 (a constant channel the UNet fails to restore is what made frame
1 noise before the VAE's channel 3 carried grey)."""
from __future__ import annotations

import os
import sys


def main(cache: str, text: str = "a red circle") -> None:
    from tools.comfy_host import import_comfy

    import_comfy(cpu=None)
    import comfy.sample
    import comfy.sd
    import numpy as np
    import torch

    from training.demo_metrics import frame_outliers

    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    ckpt = os.path.join(cache, "models", "checkpoints", "admk_demo_sd15.safetensors")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(ckpt, output_clip=True)

    def cond(t: str):
        c, p = clip.encode_from_tokens(clip.tokenize(t), return_pooled=True)
        return [[c, {"pooled_output": p}]]

    pos, neg = cond(text), cond("")
    lat = torch.zeros(8, 4, 8, 8)

    def run(noise, label: str, steps: int = 8, sampler: str = "euler", cfg: float = 7.5, callback=None) -> None:
        out = comfy.sample.sample(model, noise, steps, cfg, sampler, "normal", pos, neg, lat, denoise=1.0,
                                  disable_pbar=True, seed=0, callback=callback)
        x = (vae.decode(out).detach().clamp(0, 1) * 255).numpy()
        tv = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
        print(f"{label:28s} outliers {frame_outliers(x.astype(np.uint8))} TV per frame {np.round(tv, 1)}  "
              f"latent mean ch1,2 of frame1 {out[1, 1].mean():.2f},{out[1, 2].mean():.2f}", flush=True)

    n0 = comfy.sample.prepare_noise(lat, 0)
    x0s = []  # seed 0's denoised prediction after each step
    run(n0, "seed0", callback=lambda step, x0, x, total: x0s.append(x0))
    run(torch.roll(n0, 1, 0), "seed0 rolled by 1")
    centred = n0.clone()
    centred[1] -= centred[1].mean(dim=(1, 2), keepdim=True)
    centred[1] /= centred[1].std(dim=(1, 2), keepdim=True)
    run(centred, "seed0, frame1 re-centred")
    run(n0, "seed0, 20 steps", steps=20)
    for cfg in (5.0, 3.0):
        run(n0, f"seed0, cfg {cfg:g}", cfg=cfg)
    for seed in (1, 2, 3):
        run(comfy.sample.prepare_noise(lat, seed), f"seed{seed}")
    for f in range(3):
        print(f"seed0 last prediction, frame {f} channel means {np.round(x0s[-1][f].mean(dim=(1, 2)).numpy(), 2)}")
    from training import demo
    from training.base_model import SD15_LATENT_SCALE

    frames, _ = demo._frames_for_base({k: os.path.join(cache, "data", k) for k in ("videos", "stills")},
                                      demo.Plan().frame_every)
    latents = vae.encode(frames.permute(0, 2, 3, 1)[..., :3]) * SD15_LATENT_SCALE
    print(f"{frames.shape[0]} base training frames, model-space channel means "
          f"{np.round(latents.mean(dim=(0, 2, 3)).numpy(), 3)} stds {np.round(latents.std(dim=(0, 2, 3)).numpy(), 3)}")
    for seed in (0, 1, 2, 3):  # is a large channel mean alone what breaks a frame?
        means = comfy.sample.prepare_noise(lat, seed).mean(dim=(2, 3))
        frame, channel = divmod(int(means.abs().argmax()), means.shape[1])
        print(f"seed{seed} noise: largest channel mean {means[frame, channel]:+.2f} (frame {frame}, channel "
              f"{channel}); frame {frame}'s channel means {np.round(means[frame].numpy(), 2)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
