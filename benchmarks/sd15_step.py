"""One denoising step of the exact SD1.5 UNet (full width and depth, seeded random weights, no download), plain
vs inflated with a full-size v2 motion module: is the inflated step at its FLOP limit?

Per size (default 64 px and 256 px), 16 frames, cfg (cond and uncond: a batch of 32 latents), one euler step
through ComfyUI's real sampler (comfy.sample.sample). Cases run alternately in one process (plain, inflated,
inflated, plain, ...: paired, so the load of the shared machine hits both alike):
  plain     the checkpoint's MODEL
  inflated  motion_core.comfy.inflate(MODEL, v2 module) with precision auto (fp32, the exact path)
  bf16      the same with precision bf16 (only where the CPU/GPU computes bf16 natively)
  bf16_unet the whole step in bf16: the UNet's weights in bf16 (what ComfyUI's --bf16-unet gives) and the motion
            module with precision auto, which follows the UNet (bf16 hardware only; the motion module alone is
            a third of the step, so its own bf16 cannot speed the whole step up by more than ~1.2x)
Printed per case: median, min and max wall seconds and CPU seconds (process CPU time: less sensitive to the
neighbours' load than wall time); the FLOPs of one step counted by torch.utils.flop_counter.FlopCounterMode
(attention through the math kernel so it is counted); a per-part split from forward hooks (time inside the
motion layers vs the rest of the UNet), which shows whether the rest of the UNet slows down when inflated; and
for bf16 its speed-up and its largest difference from the fp32 inflated step on the same inputs.

    .venv/bin/python benchmarks/sd15_step.py                        # 64 px x3 pairs, 256 px x1 pair (minutes)
    .venv/bin/python benchmarks/sd15_step.py --sizes 64 --repeat 7   # more pairs, smaller spread
    .venv/bin/python benchmarks/sd15_step.py --sizes 256 --repeat 3 --cases plain inflated
    python benchmarks/sd15_step.py --device cuda --repeat 5         # 512 px on ComfyUI's GPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("plain", "inflated", "bf16", "bf16_unet")


class PartTimer:
    """Wall and process CPU time spent inside the motion layers (forward pre/post hooks on every MotionLayer)."""

    def __init__(self, layer_cls, sync=None):
        import torch

        self.layer_cls = layer_cls
        self.sync = sync or (lambda: None)  # on a GPU: wait for queued kernels, else the times are launch times
        self.inside = 0.0
        self.inside_cpu = 0.0
        self._start = None
        self._handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre),
            torch.nn.modules.module.register_module_forward_hook(self._post),
        ]

    def _pre(self, module, args):
        if isinstance(module, self.layer_cls):
            self.sync()
            self._start = (time.perf_counter(), time.process_time())

    def _post(self, module, args, out):
        if isinstance(module, self.layer_cls) and self._start is not None:
            self.sync()
            self.inside += time.perf_counter() - self._start[0]
            self.inside_cpu += time.process_time() - self._start[1]
            self._start = None

    def close(self):
        for h in self._handles:
            h.remove()


def _build(args):
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from tools.comfy_host import import_comfy

    import_comfy(cpu=args.device == "cpu")  # cuda: ComfyUI's own device choice (the GPU)
    import torch

    import comfy.model_patcher
    import comfy.supported_models
    from motion_core import load_motion_module
    from tools import standins

    torch.set_num_threads(args.threads)
    cfg = dict(standins.unet_config("full"), dtype=torch.float32)
    model = comfy.supported_models.SD15(cfg).get_model({})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():  # ComfyUI's ops leave weights uninitialised
            if p.ndim > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5, generator=g)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=g)
    cpu, dev = torch.device("cpu"), torch.device(args.device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=cpu)
    motion = load_motion_module(standins.cached_motion_file("mm_sd_v15_v2", layout="full"), dtype=torch.float32)
    bf16 = None
    if "bf16_unet" in args.cases:  # the same weights, stored in bf16
        bf16_model = comfy.supported_models.SD15(dict(cfg, dtype=torch.bfloat16)).get_model({})
        bf16_model.load_state_dict(model.state_dict())
        bf16 = comfy.model_patcher.ModelPatcher(bf16_model, load_device=dev, offload_device=cpu)
    return patcher, motion, bf16


def _step_fn(model, size: int, frames: int):
    import torch

    import comfy.sample

    g = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    latent = torch.zeros(frames, 4, size // 8, size // 8)
    noise = torch.randn(latent.shape, generator=g)

    def step():
        with torch.inference_mode():
            return comfy.sample.sample(model, noise, 1, 7.0, "euler", "normal", positive, negative, latent,
                                       disable_pbar=True, seed=0)
    return step


def _count_flops(step) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        step()
    return counter.get_total_flops()


def _spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def run(args) -> dict:
    t0 = time.perf_counter()
    patcher, motion, bf16_unet = _build(args)  # puts the repo on sys.path and boots ComfyUI first
    print(f"built the UNet and the motion module in {time.perf_counter() - t0:.0f} s", flush=True)
    import torch

    from motion_core import precision as precision_mod
    from motion_core.comfy import MotionLayer, inflate

    cases = [c for c in args.cases
             if not c.startswith("bf16") or precision_mod.native(torch.bfloat16, torch.device(args.device))]
    skipped = sorted(set(args.cases) - set(cases))
    models = {"plain": patcher, "inflated": inflate(patcher, motion),
              "bf16": inflate(patcher, motion, precision="bf16")}
    if bf16_unet is not None:
        models["bf16_unet"] = inflate(bf16_unet, motion)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    out = {"device": args.device, "threads": args.threads, "frames": args.frames, "skipped": skipped,
           "cpu_bf16": precision_mod.cpu_has_native_bf16(), "sizes": {}}
    for size in args.sizes:
        steps = {c: _step_fn(models[c], size, args.frames) for c in cases}
        res = {c: {"wall": [], "cpu": [], "motion": [], "motion_cpu": []} for c in cases}
        latents = {}
        for c in cases:  # warm-up (first-call allocations, weight casts) and the outputs compared below
            t0 = time.perf_counter()
            latents[c] = steps[c]()
            print(f"  warm-up {c} {size} px: {time.perf_counter() - t0:.1f} s", flush=True)
        repeat = args.repeat or (3 if size <= 64 else 1)
        for i in range(repeat):
            order = cases if i % 2 == 0 else list(reversed(cases))
            for c in order:
                timer = PartTimer(MotionLayer, sync)
                cpu0, t0 = time.process_time(), time.perf_counter()
                steps[c]()
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                timer.close()
                res[c]["wall"].append(wall)
                res[c]["cpu"].append(cpu)
                res[c]["motion"].append(timer.inside)
                res[c]["motion_cpu"].append(timer.inside_cpu)
        flops = {c: _count_flops(steps[c]) for c in cases if c in ("plain", "inflated")} if not args.no_flops else {}
        entry = {}
        for c in cases:
            rest = [w - m for w, m in zip(res[c]["wall"], res[c]["motion"])]
            rest_cpu = [w - m for w, m in zip(res[c]["cpu"], res[c]["motion_cpu"])]
            entry[c] = {"wall": _spread(res[c]["wall"]), "cpu": _spread(res[c]["cpu"]),
                        "motion": _spread(res[c]["motion"]), "rest": _spread(rest),
                        "motion_cpu": _spread(res[c]["motion_cpu"]), "rest_cpu": _spread(rest_cpu)}
        for c in ("bf16", "bf16_unet"):
            if c in cases and "inflated" in cases:
                entry[f"{c}_max_abs_err"] = (latents[c].float() - latents["inflated"]).abs().max().item()
        if "plain" in cases and "inflated" in cases:  # the scale the bf16 errors are read against
            entry["motion_effect"] = (latents["inflated"] - latents["plain"]).abs().max().item()
        entry["flops"] = flops
        out["sizes"][str(size)] = entry
        _print_size(size, entry, cases, args, repeat)
    return out


def _print_size(size, entry, cases, args, repeat):
    print(f"\n{size} px ({size // 8}x{size // 8} latent), {args.frames} frames x cond+uncond, 1 euler step, "
          f"{repeat} paired runs, {args.threads} threads; seconds median [min-max]", flush=True)
    print(f"{'case':<10}{'wall s':>24}{'cpu s':>24}{'motion wall/cpu s':>19}{'rest wall/cpu s':>17}")
    for c in cases:
        e = entry[c]
        w, cp = e["wall"], e["cpu"]
        print(f"{c:<10}{w['median']:>9.2f} [{w['min']:6.2f}-{w['max']:6.2f}]{cp['median']:>9.2f} "
              f"[{cp['min']:6.2f}-{cp['max']:6.2f}]{e['motion']['median']:>12.2f}/{e['motion_cpu']['median']:<6.2f}"
              f"{e['rest']['median']:>10.2f}/{e['rest_cpu']['median']:<6.2f}")
    def r(a, b, key_a, key_b=None):  # ratio of medians
        return a[key_a]["median"] / b[key_b or key_a]["median"]

    if "plain" in cases and "inflated" in cases:
        p, f = entry["plain"], entry["inflated"]
        pairs = [a / b for a, b in zip(f["wall"]["all"], p["wall"]["all"])]
        print(f"inflated/plain: wall x{r(f, p, 'wall'):.2f} (per-pair min/max x{min(pairs):.2f}-{max(pairs):.2f}), "
              f"cpu x{r(f, p, 'cpu'):.2f}")
        print(f"rest of the UNet inflated / plain UNet: wall x{r(f, p, 'rest', 'wall'):.2f}, cpu "
              f"x{r(f, p, 'rest_cpu', 'cpu'):.2f} (1.00 = no slowdown outside the motion layers); motion layers / "
              f"rest: wall {r(f, f, 'motion', 'rest'):.2f}, cpu {r(f, f, 'motion_cpu', 'rest_cpu'):.2f}")
        if entry["flops"]:
            fp, fi = entry["flops"]["plain"], entry["flops"]["inflated"]
            print(f"FLOPs per step: plain {fp / 1e12:.3f} T, inflated {fi / 1e12:.3f} T -> FLOP limit x{fi / fp:.3f} "
                  f"(motion/rest by FLOPs {(fi - fp) / fp:.2f}); plain runs at "
                  f"{fp / p['wall']['median'] / 1e9:.0f} GFLOP/s wall")
    for c, label in (("bf16", "bf16 motion module"), ("bf16_unet", "bf16 UNet + motion module (auto)")):
        if c in cases and "inflated" in cases:
            f, b = entry["inflated"], entry[c]
            print(f"{label} vs fp32 inflated: step x{r(f, b, 'wall'):.2f} faster (cpu x{r(f, b, 'cpu'):.2f}; motion "
                  f"layers wall x{r(f, b, 'motion'):.2f}, cpu x{r(f, b, 'motion_cpu'):.2f}); max |latent difference| "
                  f"{entry[c + '_max_abs_err']:.2e} (what the motion module changes: up to "
                  f"{entry.get('motion_effect') or float('nan'):.2e})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="pixels (default 64 256; cuda: 512)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (ComfyUI's GPU; motion layer times then wait "
                    "for the GPU at each layer's start and end)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="paired runs per size (default 3 at 64 px, 1 at larger sizes)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one more step per case)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    args.sizes = args.sizes or ([64, 256] if args.device == "cpu" else [512])
    load = os.getloadavg()
    print(f"exact SD1.5 UNet (860 M, random weights) + v2 motion module (453 M, random), fp32, {args.device}; "
          f"load average "
          f"{load[0]:.1f} / {load[1]:.1f} (1/5 min) on {os.cpu_count()} CPUs: a shared machine, so pairs and medians",
          flush=True)
    results = run(args)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} / {load[1]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
