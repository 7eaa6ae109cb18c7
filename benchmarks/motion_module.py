"""Forward time and peak memory of the motion module, versus frames and chunk size.

Run: .venv/bin/python benchmarks/motion_module.py [--device cuda] [--quick]
Each case runs in a fresh subprocess so peak memory (CPU: max RSS growth; GPU: torch.cuda.max_memory_allocated)
belongs to that case alone (on a GPU after one untimed pass of the same shapes). Prints a table with ratios
against the first row of each group.
Cases: one 1280-channel module at 16x16 (a 512 px image's third level), and the full SD1.5 v2 set (21 modules)
at every level of a 256 px image (32x32 latent; 512 px on a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _case(kind: str, frames: int, chunk: int, device: str, latent: int, dtype: str) -> dict:
    import torch

    sys.path.insert(0, ROOT)
    from motion_core.motion_module import MotionModuleSet
    from motion_core.temporal import TemporalModule

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    with torch.no_grad():
        if kind == "one1280":
            mods = [(TemporalModule(1280), 1280, 16)]
        else:
            mm = MotionModuleSet([[320, 320], [640, 640], [1280, 1280], [1280, 1280]],
                                 [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3], 1280, 32, "per_frame")
            size = {320: latent, 640: latent // 2}
            mods = []
            for loc in mm.locations():
                side = size.get(loc.channels, latent // 4 if loc.level in (2,) and loc.kind == "down" else latent // 8)
                if loc.kind == "up":
                    side = [latent // 8, latent // 4, latent // 2, latent][loc.level]
                elif loc.kind == "mid":
                    side = latent // 8
                else:
                    side = [latent, latent // 2, latent // 4, latent // 8][loc.level]
                mods.append((mm.get_submodule(loc.name), loc.channels, side))
        for m, _, _ in mods:
            m.to(device=device, dtype=dt)
        inputs = [torch.randn(frames, c, s, s, device=device, dtype=dt) for _, c, s in mods]
        # warm-up on a small input so one-time allocations are not counted as the case's peak
        mods[0][0](inputs[0][:2], num_frames=2, chunk_size=chunk)
        if device == "cuda":
            for (m, _, _), x in zip(mods, inputs):  # and one whole untimed pass: kernels are picked per shape
                m(x, num_frames=frames, chunk_size=chunk)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        for (m, _, _), x in zip(mods, inputs):
            out = m(x, num_frames=frames, chunk_size=chunk)
            assert torch.isfinite(out).all()
            del out
        if device == "cuda":
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        return {"seconds": time.perf_counter() - t0, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or float16 (GPU default)")
    ap.add_argument("--quick", action="store_true", help="fewer cases")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dtype = args.dtype or ("float16" if args.device == "cuda" else "float32")
    if args.case:
        kind, frames, chunk, latent = args.case.split(",")
        print(json.dumps(_case(kind, int(frames), int(chunk), args.device, int(latent), dtype)))
        return
    latent = 64 if args.device == "cuda" else 32
    frames_list = [8, 16] if args.quick else [8, 16, 32]
    chunks = [0, 256] if args.quick else [0, 4096, 1024, 256]
    print(f"motion module forward, device={args.device}, dtype={dtype}, torch threads={os.cpu_count()}")
    print(f"{'case':<34}{'frames':>7}{'chunk':>7}{'time s':>9}{'x time':>8}{'peak MiB':>10}{'x peak':>8}")
    for kind, label in [("one1280", "one 1280-ch module @16x16"), ("full", f"full v2 set @{latent * 8}px")]:
        first = None
        for frames in frames_list:
            for chunk in chunks:
                cmd = [sys.executable, __file__, "--device", args.device, "--dtype", dtype,
                       "--case", f"{kind},{frames},{chunk},{latent}"]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                first = first or res
                print(f"{label:<34}{frames:>7}{(chunk or 'none'):>7}{res['seconds']:>9.3f}"
                      f"{res['seconds'] / first['seconds']:>8.2f}{res['peak_mib']:>10.1f}"
                      f"{res['peak_mib'] / max(first['peak_mib'], 1e-9):>8.2f}")


if __name__ == "__main__":
    main()
