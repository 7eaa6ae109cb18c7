"""What SparseCtrl costs: a 16-frame v3 animation step with and without the RGB SparseCtrl (first/last keyframe).

Both cases run through ComfyUI's real loaders and sampler on the reduced SD1.5 stand-in checkpoint (its TAESD VAE
encodes the keyframes): "v3" samples with the MODEL inflated with the reduced v3 motion module, "sparsectrl" adds
Apply SparseCtrl's control (reduced-layout RGB stand-in, keyframes at 0 and -1) to both conditionings. Each case
runs in its own subprocess. Reported per case: median seconds per sampling step over --repeat runs (weights loaded
beforehand; the keyframe encode, once per run, is included) and the peak growth of the process RSS while sampling
(on CUDA: torch's peak allocated memory), plus the process CPU seconds per step (1 torch thread by default), which
a busy shared machine distorts far less than wall time. Read the ratios.

    .venv/bin/python benchmarks/sparsectrl.py                 # table + ratios
    .venv/bin/python benchmarks/sparsectrl.py --case sparsectrl
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("v3", "sparsectrl")


def run_case(case: str, args) -> dict:
    sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]
    from tools.comfy_host import import_comfy

    import_comfy()
    import torch

    import comfy.model_management as mm
    import comfy.sample
    import comfy.sd
    from animation_overhead import PeakRSS
    from motion_core import load_motion_module
    from motion_core.comfy import inflate
    from motion_core.comfy.sparsectrl import SparseCtrlModel, sparsectrl_control
    from motion_core.sparsectrl import load_sparsectrl
    from tools import standins

    torch.set_num_threads(args.threads)
    ckpt = standins.cached_sd15_checkpoint("reduced")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True)
    model = inflate(model, load_motion_module(standins.cached_motion_file("v3_sd15_mm", layout="reduced")))

    def encode(text):
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))

    positive, negative = encode("a red fox walking through snow"), encode("blurry")
    extra = []
    if case == "sparsectrl":
        sc = SparseCtrlModel(load_sparsectrl(standins.cached_sparsectrl_file("sparsectrl_latent_condition", "reduced"),
                                             dtype=None))
        g = torch.Generator().manual_seed(0)
        control = sparsectrl_control(sc, torch.rand(2, args.size, args.size, 3, generator=g), "0, -1")
        control = control.copy().set_cond_hint(None, 1.0, (0.0, 1.0))
        control.vae = vae
        positive = [[c, {**d, "control": control}] for c, d in positive]
        negative = [[c, {**d, "control": control}] for c, d in negative]
        extra = [sc.patcher]
    latent = torch.zeros(args.frames, 4, args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, 0)

    def sample():
        with torch.inference_mode():
            return comfy.sample.sample(model, noise, args.steps, 7.0, "euler", "normal", positive, negative, latent,
                                       disable_pbar=True, seed=0)

    mm.load_models_gpu([model] + extra)
    times, cpu_times, peaks = [], [], []
    cuda = mm.get_torch_device().type == "cuda"
    for _ in range(args.repeat):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            start, cpu_start = time.perf_counter(), time.process_time()
            out = sample()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) / args.steps)
            cpu_times.append((time.process_time() - cpu_start) / args.steps)
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else rss.growth_mb)
    assert torch.isfinite(out).all(), "non-finite latents"
    return {"case": case, "frames": args.frames, "size": args.size, "steps": args.steps,
            "device": str(mm.get_torch_device()), "memory": "cuda_allocated" if cuda else "rss_growth",
            "step_seconds": statistics.median(times), "step_seconds_all": times,
            "step_cpu_seconds": statistics.median(cpu_times), "peak_mb": max(peaks),
            "threads": args.threads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels (latent = size/8)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the CPU seconds per step are then comparable on a busy machine)")
    parser.add_argument("--case", choices=CASES, help="run one case in this process and print its JSON")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return 0
    sys.path.insert(0, str(REPO))
    from tools.bench_cases import run_cases

    results = run_cases(__file__, CASES, ["--frames", str(args.frames), "--size", str(args.size), "--steps",
                                          str(args.steps), "--repeat", str(args.repeat), "--threads", str(args.threads)],
                        str(REPO))
    base, sc = results["v3"], results["sparsectrl"]
    print(f"{args.frames} frames, {args.size}x{args.size}, cfg 7, reduced SD1.5 + v3 stand-ins, device {base['device']}, "
          f"{args.threads} threads, median of {args.repeat} runs of {args.steps} steps")
    print(f"{'case':<12}{'wall s/step':>12}{'CPU s/step':>12}{'peak MiB':>10}")
    for r in (base, sc):
        print(f"{r['case']:<12}{r['step_seconds']:>12.2f}{r['step_cpu_seconds']:>12.2f}{r['peak_mb']:>10.1f}")
    ratio_t = sc["step_seconds"] / base["step_seconds"]
    ratio_c = sc["step_cpu_seconds"] / base["step_cpu_seconds"]
    ratio_m = sc["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else float("nan")
    print(f"ratio sparsectrl/v3: step wall time {ratio_t:.2f}x, step CPU time {ratio_c:.2f}x, peak memory "
          f"{ratio_m:.2f}x ({base['memory']})")
    print(json.dumps({"v3": base, "sparsectrl": sc, "time_ratio": ratio_t, "cpu_time_ratio": ratio_c,
                      "memory_ratio": ratio_m}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
