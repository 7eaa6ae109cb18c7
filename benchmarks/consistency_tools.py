"""FreeNoise, FreeInit and the motion strength schedule, measured on the embedded demo's trained tiny models.

Real AnimateDiff weights cannot be downloaded here, so the test bed is what `make demo` trains and caches in
demo_output/cache/ (a 64 px SD1.5-family base model and a motion module trained on coloured shapes moving in
prompted directions, "a red circle moving left"). Run `make demo` first; point --cache (or ADMK_DEMO_CACHE) at
another demo cache to use that one (it is only read). Every case runs the pack's nodes through ComfyUI's
executor in its own subprocess (so its memory high-water mark is its own), over several seeds; seed k uses
the demo's k-th direction prompt (red left, blue right, green up, yellow down), the workflow's sampler
(euler_ancestral, cfg 7.5) and the demo's 8 steps.

Printed per case, mean over the seeds (and the per-seed values where they matter):
- long clip, 4x the window (32 frames, windows of 8 overlapping by 2, uniform, pyramid), without / with FreeNoise:
  `seam` = mean |frame difference| over the frame pairs at window joins (the overlaps and the pairs entering and
  leaving them) / the same over the pairs inside single windows (1 = no seam);
  `jump seam` = the tracked object's centroid jump at joins / inside;
  identity drift from the first to the last window: |log(object area last / first)|, the distance between the
  object's mean colour in the two windows (0-1), and the fraction of frames where the object is present.
- FreeInit N = 1 vs 3 (8 frames, one window, butterworth d_s = d_t = 0.25): frame-to-frame mask IoU, centroid
  jump, presence and the R^2 of the motion line (training/demo_metrics.py).
- motion strength 0.5 / 1 / 1.5 (Motion Strength Schedule with a constant step factor; bit-identical to
  Inflate Model's motion_strength, tests/integration/test_consistency.py): the object's speed along the prompted
  direction (least-squares px/frame) and its mean centroid jump (px/frame).
- Motion Contrast Guidance 2 against the demo's pan LoRA at -1 (`contrast_2`): its cost against `strength_1.0`.
- cost: sampling CPU seconds and wall seconds per run, and the growth of the process's peak RSS over sampling
  (after a warm-up run loaded the models). CPU time is less disturbed than wall time on a shared machine.

Measured so far (shared 2-core CPU under heavy load, 3 seeds, `--seeds 3`), ONLY on a smoke demo cache
(`training.demo --smoke`: base 8 steps, motion module 4 steps, i.e. barely trained): its frames hold no coherent
object (frame IoU 0.00-0.05, centroid jumps ~20 px on 64 px frames), so the tracker-based numbers below are noise
and prove the plumbing only; rerun on a full `make demo` cache for numbers that mean something.
  long clip  default:   seam 0.998, jump seam 0.86, area drift 0.83 (per seed 0.19 / 1.20 / 1.10), colour drift 0.036
             freenoise: seam 0.985, jump seam 1.12, area drift 0.27 (per seed 0.00 / 0.11 / 0.69), colour drift 0.058
             cpu 31.5 vs 31.1 s per 32-frame run (x0.99): FreeNoise costs nothing
  FreeInit   N=1: IoU 0.018, R^2 0.33, cpu 6.9 s;  N=3: IoU 0.000, R^2 0.48, cpu 19.2 s (x2.79)
  strength   0.5 / 1.0 / 1.5: -0.39 / -5.26 / -5.59 px/frame along the prompted direction (per seed mixed signs)
  peak RSS growth over sampling: 0 MB in every case (64 px runs stay below the model-loading high-water mark)
On the full demo cache (2026-12-04, quiet 2-core AVX512-BF16 EPYC, `--cases strength_1.0 contrast_2`, 4 seeds):
  Motion Contrast Guidance 2: cpu 7.3 s vs 3.7 s per 8-frame run (x1.97: one more UNet pass per step), 0 MB peak
  RSS growth

    .venv/bin/python benchmarks/consistency_tools.py                      # every case, 4 seeds
    .venv/bin/python benchmarks/consistency_tools.py --seeds 6 --cases long_default long_freenoise
    ADMK_DEMO_CACHE=/path/to/demo_output/cache .venv/bin/python benchmarks/consistency_tools.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WINDOW, OVERLAP, LONG_FRAMES, SHORT_FRAMES = 8, 2, 32, 8
CASES = {
    "long_default": dict(frames=LONG_FRAMES, noise="default"),
    "long_freenoise": dict(frames=LONG_FRAMES, noise="freenoise"),
    "freeinit_1": dict(frames=SHORT_FRAMES),
    "freeinit_3": dict(frames=SHORT_FRAMES, freeinit=3),
    "strength_0.5": dict(frames=SHORT_FRAMES, strength=0.5),
    "strength_1.0": dict(frames=SHORT_FRAMES, strength=1.0),
    "strength_1.5": dict(frames=SHORT_FRAMES, strength=1.5),
    # Motion Contrast Guidance 2 against the demo's pan LoRA at -1: what the extra UNet pass per step costs
    "contrast_2": dict(frames=SHORT_FRAMES, contrast=2.0),
}


def demo_cache(arg: str | None) -> tuple[Path, str]:
    """The demo cache and, when its trained models are missing, the message that says what to do."""
    cache = Path(arg or os.environ.get("ADMK_DEMO_CACHE") or REPO / "demo_output" / "cache")
    sys.path[:0] = [str(REPO)]
    from training.demo import BASE_NAME, MM_NAME

    needed = [cache / "models" / "checkpoints" / BASE_NAME, cache / "models" / "animatediff_models" / MM_NAME]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        return cache, (f"The demo's trained models are missing ({', '.join(missing)}). Run `make demo` first (it "
                       f"trains them into demo_output/cache/, about 20-30 minutes on a CPU), or point --cache / "
                       f"ADMK_DEMO_CACHE at an existing demo cache.")
    return cache, ""


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- one case, in a subprocess -----------------------------------------------------------------------------------

def build_prompt(runner, text: str, seed: int, case: dict, steps: int, sampler: str | None) -> dict:
    from tools.workflow_convert import find_node
    from training.demo import _prepare, _set

    sampling = {"steps": steps}
    if sampler:
        sampling["sampler_name"] = sampler
    prompt = _prepare(runner, "txt2anim_sd15_v2.json", text, seed, sampling, "admk_bench/consistency")
    del prompt[find_node(prompt, "ADMK_SaveAnimation", 1)]  # the demo's second save node (MP4): not needed here
    sample = _set(prompt, "ADMK_SampleAnimation", frames=case["frames"])
    inputs = prompt[sample]["inputs"]
    if case["frames"] > WINDOW:
        prompt["900"] = {"class_type": "ADMK_ContextOptions", "inputs": {
            "context_length": WINDOW, "context_overlap": OVERLAP, "context_stride": 1, "mode": "uniform",
            "fuse_method": "pyramid", "noise": case.get("noise", "default")}}
        inputs["context_options"] = ["900", 0]
    if case.get("freeinit"):
        prompt["901"] = {"class_type": "ADMK_FreeInit", "inputs": {
            "iterations": case["freeinit"], "filter": "butterworth", "spatial_stop": 0.25, "temporal_stop": 0.25,
            "order": 4, "coarse_to_fine": False}}
        inputs["freeinit"] = ["901", 0]
    if "strength" in case:
        s = case["strength"]
        prompt["902"] = {"class_type": "ADMK_MotionStrengthSchedule", "inputs": {
            "model": inputs["model"], "down_scale": 1.0, "mid_scale": 1.0, "up_scale": 1.0, "start_strength": s,
            "end_strength": s, "ramp_start_percent": 0.0, "ramp_end_percent": 100.0, "keyframes": ""}}
        inputs["model"] = ["902", 0]
    if case.get("contrast"):
        from training.demo import LORA_NAMES, PAN_CAMERA

        inflate = prompt[inputs["model"][0]]["inputs"]
        prompt["903"] = {"class_type": "ADMK_ApplyMotionLoRA", "inputs": {
            "motion_module": inflate["motion_module"], "lora_name": LORA_NAMES[PAN_CAMERA], "strength": -1.0}}
        prompt["904"] = {"class_type": "ADMK_MotionContrastGuidance", "inputs": {
            "model": inputs["model"], "contrast_motion_module": ["903", 0], "scale": case["contrast"],
            "start_percent": 0.0, "end_percent": 1.0}}
        inputs["model"] = ["904", 0]
    return prompt


def window_pairs(frames: int) -> tuple[list[int], list[int]]:
    """Frame pairs (i, i+1) at window joins (touching an overlap) and inside single windows, by i."""
    from motion_core.context import ContextOptions

    windows = ContextOptions(length=WINDOW, overlap=OVERLAP).windows(frames)
    joins = set()
    for prev, win in zip(windows, windows[1:]):
        joins.update(range(max(win[0] - 1, 0), min(prev[-1] + 1, frames - 1)))
    return sorted(joins), [i for i in range(frames - 1) if i not in joins]


def long_clip_metrics(frames, colour: str) -> dict:
    import numpy as np

    from motion_core.context import ContextOptions
    from training.demo_metrics import MIN_AREA
    from training.synthetic import track_object

    f = frames.astype(np.float32) / 255.0
    diff = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))
    joins, inside = window_pairs(len(f))
    t = track_object(frames, colour)
    present = t["area"] >= MIN_AREA
    jumps = np.hypot(np.diff(t["cx"]), np.diff(t["cy"]))
    ok = present[1:] & present[:-1]
    jump_join = [jumps[i] for i in joins if ok[i]]
    jump_in = [jumps[i] for i in inside if ok[i]]
    windows = ContextOptions(length=WINDOW, overlap=OVERLAP).windows(len(f))
    first, last = windows[0], windows[-1]

    def object_stats(idx):
        mask = t["mask"][idx]
        area = float(t["area"][idx].mean())
        colour_mean = (f[idx][mask].mean(axis=0) if mask.any() else np.full(3, np.nan))
        return area, colour_mean, float(present[idx].mean())

    a0, c0, p0 = object_stats(first)
    a1, c1, p1 = object_stats(last)
    return {"seam": float(diff[joins].mean() / max(diff[inside].mean(), 1e-9)),
            "jump_seam": float(np.mean(jump_join) / max(np.mean(jump_in), 1e-9)) if jump_join and jump_in else math.nan,
            "area_drift": float(abs(math.log(max(a1, 1.0) / max(a0, 1.0)))),
            "colour_drift": float(np.linalg.norm(c1 - c0)) if p0 and p1 else math.nan,
            "present": float(present.mean()), "present_first": p0, "present_last": p1}


def run_case(name: str, args) -> dict:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    import torch

    torch.set_num_threads(args.threads)
    from training.demo import DIRECTION_PROMPTS, _frames_of, make_runner
    from training.demo_metrics import measure

    cache, missing = demo_cache(args.cache)
    if missing:
        raise SystemExit(missing)
    case = CASES[name]
    out = tempfile.mkdtemp(prefix="admk_consistency_")
    runner = make_runner(str(cache), out)  # ComfyUI in this process, reading the demo's models
    warm = build_prompt(runner, DIRECTION_PROMPTS[0][0], 0, dict(frames=2), 1, args.sampler)
    runner.run_prompt(warm)  # loads the models: the memory high-water mark after this is the baseline
    base_rss = _rss_peak_mb()
    runs = []
    for seed in range(args.seeds):
        text, colour, direction = DIRECTION_PROMPTS[seed % len(DIRECTION_PROMPTS)]
        prompt = build_prompt(runner, text, seed, case, args.steps, args.sampler)
        c0, t0 = _cpu_seconds(), time.perf_counter()
        frames = _frames_of(runner.run_prompt(prompt), prompt)
        cpu, wall = _cpu_seconds() - c0, time.perf_counter() - t0
        metrics = measure(frames, colour, direction)
        if case["frames"] > WINDOW:
            metrics.update(long_clip_metrics(frames, colour))
        runs.append({"seed": seed, "cpu_s": cpu, "wall_s": wall, **metrics})
    return {"case": name, "runs": runs, "rss_growth_mb": _rss_peak_mb() - base_rss}


# --- the table ---------------------------------------------------------------------------------------------------

def _mean(runs, key):
    values = [r[key] for r in runs if key in r and r[key] is not None and not math.isnan(r[key])]
    return sum(values) / len(values) if values else math.nan


def report(results: dict) -> None:
    def cost(name):
        r = results[name]
        return (f"cpu {_mean(r['runs'], 'cpu_s'):6.1f} s  wall {_mean(r['runs'], 'wall_s'):6.1f} s  "
                f"peak RSS growth {r['rss_growth_mb']:6.0f} MB")

    def has(*names):
        return all(n in results for n in names)

    if has("long_default", "long_freenoise"):
        print(f"\nLong clip: {LONG_FRAMES} frames, windows of {WINDOW} overlapping by {OVERLAP} (mean over seeds)")
        print(f"{'noise':10} {'seam':>6} {'jump seam':>10} {'area drift':>11} {'colour drift':>13} {'present':>8}"
              f" {'IoU':>6}   cost")
        for name in ("long_default", "long_freenoise"):
            runs = results[name]["runs"]
            print(f"{name[5:]:10} {_mean(runs, 'seam'):6.3f} {_mean(runs, 'jump_seam'):10.3f} "
                  f"{_mean(runs, 'area_drift'):11.3f} {_mean(runs, 'colour_drift'):13.3f} "
                  f"{_mean(runs, 'present'):8.2f} {_mean(runs, 'iou'):6.3f}   {cost(name)}")
        for key in ("seam", "area_drift"):
            a = [r[key] for r in results["long_default"]["runs"]]
            b = [r[key] for r in results["long_freenoise"]["runs"]]
            print(f"  per seed {key}: default {[round(x, 3) for x in a]}  freenoise {[round(x, 3) for x in b]}")
        ratio = _mean(results["long_freenoise"]["runs"], "cpu_s") / _mean(results["long_default"]["runs"], "cpu_s")
        print(f"  cost ratio freenoise/default (cpu): x{ratio:.2f}")
    if has("freeinit_1", "freeinit_3"):
        print(f"\nFreeInit, {SHORT_FRAMES} frames (one window), butterworth d_s = d_t = 0.25")
        print(f"{'iterations':10} {'IoU':>6} {'jump px':>8} {'present':>8} {'R^2':>6}   cost")
        for name in ("freeinit_1", "freeinit_3"):
            runs = results[name]["runs"]
            print(f"{name[-1]:10} {_mean(runs, 'iou'):6.3f} {_mean(runs, 'jump_px'):8.2f} "
                  f"{_mean(runs, 'present'):8.2f} {_mean(runs, 'r2'):6.2f}   {cost(name)}")
        a = [round(r["iou"], 3) for r in results["freeinit_1"]["runs"]]
        b = [round(r["iou"], 3) for r in results["freeinit_3"]["runs"]]
        print(f"  per seed IoU: N=1 {a}  N=3 {b}")
        print(f"  cost ratio N=3/N=1 (cpu): "
              f"x{_mean(results['freeinit_3']['runs'], 'cpu_s') / _mean(results['freeinit_1']['runs'], 'cpu_s'):.2f}")
    if has("strength_1.0", "contrast_2"):
        ratio = _mean(results["contrast_2"]["runs"], "cpu_s") / _mean(results["strength_1.0"]["runs"], "cpu_s")
        print(f"\nMotion Contrast Guidance 2 (against the pan LoRA at -1), {SHORT_FRAMES} frames: "
              f"{cost('contrast_2')}; cost ratio contrast/plain (cpu) x{ratio:.2f}")
    names = [n for n in ("strength_0.5", "strength_1.0", "strength_1.5") if n in results]
    if names:
        print(f"\nMotion strength, {SHORT_FRAMES} frames: speed along the prompted direction")
        print(f"{'strength':10} {'px/frame':>9} {'jump px':>8} {'present':>8}   per-seed px/frame   cost")
        for name in names:
            runs = results[name]["runs"]
            per = [round(r.get("slope_px_per_frame", math.nan), 2) for r in runs]
            print(f"{name[9:]:10} {_mean(runs, 'slope_px_per_frame'):9.2f} {_mean(runs, 'jump_px'):8.2f} "
                  f"{_mean(runs, 'present'):8.2f}   {per}   {cost(name)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", help="the demo cache (default: $ADMK_DEMO_CACHE or demo_output/cache)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=8, help="sampling steps (the demo's 8)")
    p.add_argument("--sampler", default=None, help="sampler name (default: the workflow's euler_ancestral)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per case")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print one JSON line
    args = p.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args)))
        return 0
    _, missing = demo_cache(args.cache)
    if missing:  # `make bench` on a fresh clone: say what to do and skip (an explicit --cache is an error)
        print(("skipped: " if not args.cache else "") + missing, file=sys.stderr)
        return 2 if args.cache else 0
    results = {}
    for name in args.cases:
        cmd = [sys.executable, __file__, "--case", name, "--seeds", str(args.seeds), "--steps", str(args.steps),
               "--threads", str(args.threads)] + (["--cache", args.cache] if args.cache else []) + \
              (["--sampler", args.sampler] if args.sampler else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"case {name} failed")
        results[name] = json.loads(line[len("RESULT "):])
        print(f"[{name}] done: cpu {_mean(results[name]['runs'], 'cpu_s'):.1f} s per run", flush=True)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
