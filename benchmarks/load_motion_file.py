"""Load time and peak memory of a full-size official-layout motion module file (seeded stand-in, fp16).

Run: .venv/bin/python benchmarks/load_motion_file.py [manifest ...]   (default: mm_sd_v15_v2)
Each load runs in a fresh subprocess; peak = max RSS of that process minus its RSS before loading.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path: str, keep: bool) -> dict:
    import resource
    import time

    import psutil

    sys.path.insert(0, ROOT)
    import motion_core

    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    mm = motion_core.load_motion_module(path, dtype=None if keep else __import__("torch").float32)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"seconds": seconds, "peak_mib": peak / 2**20, "params": mm.info.params, "version": mm.info.version}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--load":
        print(json.dumps(_load(sys.argv[2], sys.argv[3] == "keep")))
        return
    sys.path.insert(0, ROOT)
    from tools import standins

    names = sys.argv[1:] or ["mm_sd_v15_v2"]
    print("peak = RSS growth; it includes the file's pages when the reader memory-maps it (clean page cache)")
    print(f"{'file':<22}{'format':<13}{'weights':<16}{'MiB':>6}{'load s':>8}{'peak MiB':>10}{'peak/file':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for suffix in (".safetensors", ".ckpt"):
                path = os.path.join(tmp, name + suffix)
                standins.build_motion_file(path, name)
                size = os.path.getsize(path) / 2**20
                for mode in ("fp32", "keep"):
                    res = json.loads(subprocess.run([sys.executable, __file__, "--load", path, mode], check=True,
                                                    capture_output=True, text=True).stdout.strip().splitlines()[-1])
                    label = "fp32" if mode == "fp32" else "file's (fp16)"
                    print(f"{name:<22}{suffix:<13}{label:<16}{size:>6.0f}{res['seconds']:>8.2f}"
                          f"{res['peak_mib']:>10.0f}{res['peak_mib'] / size:>10.2f}")
                os.remove(path)


if __name__ == "__main__":
    main()
