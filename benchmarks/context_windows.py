"""Peak memory and time of sampling 16 / 64 / 128 frames: no windows vs our context windows vs core's.

Each case runs in its own subprocess (a fresh process, so its peak RSS high-water mark belongs to that case
alone; tracemalloc does not see torch's allocations). Reported per case: the RSS high-water mark before
sampling (imports + model), the growth of that mark during sampling, and the sampling time. The model is a
reduced SD1.5-family UNet built in-process with ComfyUI's own classes (seeded random weights), sampled through
ComfyUI's real sampler (comfy.sample.sample: CFG, cond batching) on CPU, with per-frame prompts.

Modes: none (all frames in one UNet batch), admk (motion_core.comfy.windows, length 16, overlap 4, uniform, pyramid),
core (ComfyUI 0.3.75's IndexListContextHandler with the same settings; with frames in the batch dimension it
raises as soon as the clip is longer than one window - its step lookup compares the per-frame timestep with
the sigma list - and is reported as FAILED).

Measured on the shared 2-core CPU test machine (defaults, 1 thread): peak RSS growth during sampling
  none 187 / 649 / 1212 MB for 16 / 64 / 128 frames (x6.5), admk 174 / 248 / 275 MB (x1.6; 274 MB at 256
  frames): flat once the clip is longer than one window. CPU time admk / none: x1.05 / x1.17 / x1.37, i.e.
  the frames evaluated twice in the overlaps (11 windows x 16 = 176 frame passes for 128 frames).

  With the reduced SD1.5 layout the issue asks for (--channels 320 --latent 32, i.e. 256 px, 1 step), our windows:
  peak RSS growth 2604 / 2631 / 2615 MB for 16 / 64 / 128 frames (128 vs 16: x1.004), 2.5 / 3.2 / 3.5 CPU s per
  frame (the overlaps); 'none' at 16 frames: 2602 MB (larger 'none' cases need tens of GB at this size).

    .venv/bin/python benchmarks/context_windows.py                    # all cases, table + ratios
    .venv/bin/python benchmarks/context_windows.py --channels 320 --latent 32 --modes admk   # reduced SD1.5
    .venv/bin/python benchmarks/context_windows.py --frames 16 64 --modes none admk
    .venv/bin/python benchmarks/context_windows.py --case 64 admk     # one case, prints one JSON line
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("none", "admk", "core")
CONTEXT_LENGTH, CONTEXT_OVERLAP = 16, 4


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    # CPU time as well as wall time: on a shared machine wall time mostly measures the neighbours.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(frames: int, mode: str, args) -> dict:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from tools.comfy_host import import_comfy

    import_comfy()
    import torch

    import comfy.context_windows
    import comfy.model_patcher
    import comfy.sample
    import comfy.supported_models
    from motion_core.context import ContextOptions
    from motion_core.comfy import install_context_windows

    torch.set_num_threads(args.threads)
    unet_config = {
        "in_channels": 4, "out_channels": 4, "model_channels": args.channels, "num_res_blocks": [1, 1],
        "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
        "transformer_depth_middle": 1, "context_dim": 64, "use_linear_in_transformer": False,
        "adm_in_channels": None, "use_temporal_attention": False, "use_spatial_transformer": True,
        "legacy": False, "num_head_channels": -1, "num_heads": 4, "image_size": 32, "dtype": torch.float32,
    }
    model = comfy.supported_models.SD15(unet_config).get_model({})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    if mode == "admk":
        patcher = patcher.clone()
        install_context_windows(patcher, ContextOptions(CONTEXT_LENGTH, CONTEXT_OVERLAP, 1, "uniform", "pyramid"))
    elif mode == "core":
        patcher = patcher.clone()
        patcher.model_options["context_handler"] = comfy.context_windows.IndexListContextHandler(
            context_schedule=comfy.context_windows.get_matching_context_schedule("standard_uniform"),
            fuse_method=comfy.context_windows.get_matching_fuse_method("pyramid"),
            context_length=CONTEXT_LENGTH, context_overlap=CONTEXT_OVERLAP)
        comfy.context_windows.create_prepare_sampling_wrapper(patcher)

    size = args.latent
    positive = [[torch.randn(frames, 77, 64, generator=g), {}]]  # per-frame prompts, as prompt travel makes
    negative = [[torch.zeros(1, 77, 64), {}]]
    latent = torch.zeros(frames, 4, size, size)
    noise = torch.randn(frames, 4, size, size, generator=g)
    before = _rss_peak_mb()
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    with torch.inference_mode():
        out = comfy.sample.sample(patcher, noise, args.steps, 5.0, "euler", "normal", positive, negative, latent,
                                  disable_pbar=True, seed=0)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    assert out.shape[0] == frames and bool(torch.isfinite(out).all())
    after = _rss_peak_mb()
    return {"frames": frames, "mode": mode, "rss_before_mb": round(before, 1), "peak_growth_mb": round(after - before, 1),
            "peak_mb": round(after, 1), "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "cpu_s_per_frame": round(cpu / frames, 4)}


def _spawn(frames: int, mode: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", str(frames), mode, "--latent", str(args.latent),
           "--channels", str(args.channels), "--steps", str(args.steps), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        # core's handler raises for frames in the batch dimension; report that instead of stopping
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        return {"frames": frames, "mode": mode, "error": last[0][:160]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--latent", type=int, default=16, help="latent side (pixels / 8)")
    ap.add_argument("--channels", type=int, default=32, help="UNet model_channels")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--case", nargs=2, metavar=("FRAMES", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), args.case[1], args)), flush=True)
        return 0

    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} (1/5 min) on {os.cpu_count()} CPUs: a shared machine, CPU "
          "times are less noisy than wall times")
    print(f"reduced SD1.5 UNet (model_channels {args.channels}, 2 levels), latent {args.latent}x{args.latent}, "
          f"{args.steps} euler steps, cfg 5, per-frame prompts; windows: length {CONTEXT_LENGTH}, overlap "
          f"{CONTEXT_OVERLAP}, uniform, pyramid; CPU, {args.threads} threads")
    results = {}
    print(f"{'mode':6} {'frames':>6} {'rss before':>11} {'peak growth':>12} {'wall s':>8} {'cpu s':>8} {'cpu s/frame':>12}")
    for mode in args.modes:
        for frames in args.frames:
            r = _spawn(frames, mode, args)
            results[(mode, frames)] = r
            if "error" in r:
                print(f"{mode:6} {frames:6d}  FAILED: {r['error']}", flush=True)
                continue
            print(f"{mode:6} {frames:6d} {r['rss_before_mb']:9.0f}MB {r['peak_growth_mb']:10.0f}MB "
                  f"{r['seconds']:8.2f} {r['cpu_seconds']:8.2f} {r['cpu_s_per_frame']:12.4f}", flush=True)
    lo, hi = min(args.frames), max(args.frames)
    print(f"\nratios {hi} frames / {lo} frames (peak growth during sampling, CPU time):")
    for mode in args.modes:
        a, b = results[(mode, lo)], results[(mode, hi)]
        if "error" in a or "error" in b:
            print(f"  {mode:6} n/a (a case failed)")
            continue
        growth = b["peak_growth_mb"] / a["peak_growth_mb"] if a["peak_growth_mb"] > 0 else float("nan")
        print(f"  {mode:6} memory x{growth:.2f}   cpu time x{b['cpu_seconds'] / a['cpu_seconds']:.2f}")
    if "admk" in args.modes:
        # Linear in windows: the CPU time per window stays constant; flat memory: the peak growth stays constant.
        sys.path.insert(0, str(REPO))
        from motion_core.context import build_windows

        print(f"\nadmk windows (length {CONTEXT_LENGTH}, overlap {CONTEXT_OVERLAP}): time per window and peak memory")
        first = None
        for frames in args.frames:
            r = results[("admk", frames)]
            if "error" in r:
                continue
            count = len(build_windows(frames, CONTEXT_LENGTH, CONTEXT_OVERLAP, 1, "uniform"))
            per_window = r["cpu_seconds"] / count
            first = first or (per_window, r["peak_growth_mb"])
            print(f"  {frames:4d} frames: {count:3d} windows, {per_window:7.3f} cpu s/window "
                  f"(x{per_window / first[0]:.2f} of the shortest clip), peak growth {r['peak_growth_mb']:.0f} MB "
                  f"(x{r['peak_growth_mb'] / first[1]:.3f})")
    for frames in args.frames:
        a, b = results.get(("admk", frames)), results.get(("none", frames))
        if a and b and "error" not in a and "error" not in b:
            print(f"  {frames:4d} frames: admk / none  memory x{a['peak_growth_mb'] / b['peak_growth_mb']:.2f}"
                  f"   cpu time x{a['cpu_seconds'] / b['cpu_seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
