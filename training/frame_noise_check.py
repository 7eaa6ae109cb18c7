"""Frame-1 diagnosis (issue 17): does a noisy demo frame follow the noise draw or the batch index?

`python -m training.frame_noise_check demo_output/cache ["prompt"]` samples the demo base (image model, 8 euler steps) with
seed 0, the same noise rolled by one frame, and frame 1's noise re-centred, and prints each frame's total variation."""
import sys, os

from tools.comfy_host import import_comfy
import_comfy(cpu=None)
import torch, numpy as np
import comfy.sd, comfy.sample
torch.set_num_threads(2)
cache = sys.argv[1]
ck = os.path.join(cache, "models/checkpoints/admk_demo_sd15.safetensors")
model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(ck, output_clip=True)
def cond(t):
    c, p = clip.encode_from_tokens(clip.tokenize(t), return_pooled=True)
    return [[c, {"pooled_output": p}]]
pos, neg = cond(sys.argv[2] if len(sys.argv) > 2 else "a red circle"), cond("")
lat = torch.zeros(8, 4, 8, 8)
torch.set_grad_enabled(False)
def run(noise, label, steps=8, sampler="euler"):
    out = comfy.sample.sample(model, noise, steps, 7.5, sampler, "normal", pos, neg, lat, denoise=1.0, disable_pbar=True, seed=0)
    x = (vae.decode(out).detach().clamp(0, 1) * 255).numpy()
    tv = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
    from training.demo_metrics import frame_outliers
    print(f"{label:28s} outliers {frame_outliers(x.astype(np.uint8))} TV per frame {np.round(tv, 1)}  latent mean ch1,2 of frame1 {out[1,1].mean():.2f},{out[1,2].mean():.2f}", flush=True)
n0 = comfy.sample.prepare_noise(lat, 0)
run(n0, "seed0")
run(torch.roll(n0, 1, 0), "seed0 rolled by 1")
c = n0.clone(); c[1] -= c[1].mean(dim=(1, 2), keepdim=True); c[1] /= c[1].std(dim=(1, 2), keepdim=True)
run(c, "seed0, frame1 re-centred")
run(n0, "seed0, 20 steps", steps=20)
for s in (1, 2, 3):
    run(comfy.sample.prepare_noise(lat, s), f"seed{s}")
