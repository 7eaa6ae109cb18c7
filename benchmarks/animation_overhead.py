"""What the motion module costs: a 16-frame animation on the reduced SD1.5 stand-in checkpoint, with and without it.

Both cases run the same graph through ComfyUI's real loaders and sampler (CheckpointLoader -> CLIP text encode ->
comfy.sample.sample with CFG): "plain" samples the 16 latents with the checkpoint's MODEL, "motion" with the MODEL
from motion_core.comfy.inflate() (reduced-layout v2 motion module, its linear-beta schedule). Each case runs in its
own subprocess so the two never share caches or memory. Reported per case: median wall time of the sampling call
over --repeat runs (weights loaded beforehand), and the peak growth of the process RSS during sampling (sampled every
2 ms by a thread; tracemalloc does not see torch's allocations) or, on CUDA, torch's peak allocated memory.

    .venv/bin/python benchmarks/animation_overhead.py                 # table + ratios
    .venv/bin/python benchmarks/animation_overhead.py --frames 16 --size 256 --steps 2 --repeat 3
    .venv/bin/python benchmarks/animation_overhead.py --case motion   # one case, one JSON line
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("plain", "motion")


class PeakRSS:
    """Highest resident set size seen while the block runs, minus the RSS when it started (MiB)."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def run_case(case: str, args) -> dict:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from tools.comfy_host import import_comfy

    import_comfy(cpu=not args.gpu)  # --gpu: ComfyUI picks the device itself
    import torch

    import comfy.model_management as mm
    import comfy.sample
    import comfy.sd
    from motion_core import load_motion_module
    from motion_core.comfy import inflate
    from tools import standins

    torch.set_num_threads(args.threads)
    ckpt = standins.cached_sd15_checkpoint("reduced")
    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=False)
    if case == "motion":
        model = inflate(model, load_motion_module(standins.cached_motion_file("mm_sd_v15_v2", layout="reduced")))

    def encode(text):
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))

    positive, negative = encode("a sailboat on a lake, waves"), encode("blurry")
    latent = torch.zeros(args.frames, 4, args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, 0)

    def sample():
        with torch.inference_mode():
            return comfy.sample.sample(model, noise, args.steps, 7.0, "euler", "normal", positive, negative, latent,
                                       disable_pbar=True, seed=0)

    mm.load_models_gpu([model])  # weights in place before measuring: only sampling is timed
    times, peaks = [], []
    for _ in range(args.repeat):
        cuda = mm.get_torch_device().type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            start = time.perf_counter()
            out = sample()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else rss.growth_mb)
    assert torch.isfinite(out).all(), "non-finite latents"
    return {"case": case, "frames": args.frames, "size": args.size, "steps": args.steps,
            "device": str(mm.get_torch_device()), "memory": "cuda_allocated" if cuda else "rss_growth",
            "seconds": statistics.median(times), "seconds_all": times, "peak_mb": max(peaks),
            "threads": args.threads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="frame size in pixels (latent = size/8)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--gpu", action="store_true", help="let ComfyUI use a GPU if it finds one")
    parser.add_argument("--case", choices=CASES, help="run one case in this process and print its JSON")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return 0
    sys.path.insert(0, str(REPO))
    from tools.bench_cases import run_cases

    results = run_cases(__file__, CASES, ["--frames", str(args.frames), "--size", str(args.size), "--steps",
                                          str(args.steps), "--repeat", str(args.repeat), "--threads", str(args.threads)]
                        + (["--gpu"] if args.gpu else []), str(REPO))
    plain, motion = results["plain"], results["motion"]
    print(f"{args.frames} frames, {args.size}x{args.size}, {args.steps} steps, cfg 7, reduced SD1.5 stand-in, "
          f"device {plain['device']}, {args.threads} threads, median of {args.repeat}")
    print(f"{'case':<8}{'seconds':>10}{'peak MiB':>10}")
    for r in (plain, motion):
        print(f"{r['case']:<8}{r['seconds']:>10.2f}{r['peak_mb']:>10.1f}")
    ratio_t = motion["seconds"] / plain["seconds"]
    ratio_m = motion["peak_mb"] / plain["peak_mb"] if plain["peak_mb"] > 0 else float("nan")
    print(f"ratio motion/plain: time {ratio_t:.2f}x, peak memory {ratio_m:.2f}x ({plain['memory']})")
    print(json.dumps({"plain": plain, "motion": motion, "time_ratio": ratio_t, "memory_ratio": ratio_m}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
