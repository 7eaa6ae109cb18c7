"""Load time and peak memory of a full-size official-layout motion module file (seeded stand-in, fp16), its
first load against the file's read speed, and a reload through Load Motion Module's cache (a workflow switch).

Run: .venv/bin/python benchmarks/load_motion_file.py [--repeat N] [manifest ...]   (default: mm_sd_v15_v2)
Each load runs in a fresh subprocess; peak = max RSS of that process minus its RSS before loading.
"read s" = reading the file's bytes once (page cache warm, as for the load right after it): the floor for a
first load, which must copy the weights into memory it owns (the readers memory-map the file, and a mapped
file that is replaced or truncated later would crash the process) and check them for NaN/inf once.
"own s" = copying the file's tensors into new memory in the load's precision, the floor for a loader that
owns its weights (mostly the kernel's first-touch page faults); "load/own" is what the loader adds to it.
"hit s" = MotionFileCache.load of the same unchanged file again (what the node does on a workflow switch).
The machine is shared: medians of --repeat runs; the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_seconds(path: str) -> float:
    import time

    buf = bytearray(1 << 24)
    view = memoryview(buf)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(view):
            pass
    return time.perf_counter() - start


def _own_seconds(path: str, dtype) -> float:
    """Copying the file's tensors into new memory in the load's precision: the floor for a loader that owns
    its weights (most of it is the kernel handing out fresh pages, not the copy itself)."""
    import time

    import torch

    from motion_core.state_dict_io import read_state_dict

    sd = read_state_dict(path)
    start = time.perf_counter()
    owned = [torch.empty(v.shape, dtype=dtype or v.dtype).copy_(v) for v in sd.values()]
    seconds = time.perf_counter() - start
    del owned
    return seconds


def _load(path: str, keep: bool, hits: int) -> dict:
    import resource
    import time

    import psutil
    import torch

    sys.path.insert(0, ROOT)
    from motion_core.module_cache import MotionFileCache

    dtype = None if keep else torch.float32
    read = _read_seconds(path)  # also warms the page cache, so the load measures the loader, not the disk
    cache = MotionFileCache()
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    mm = cache.load(path, dtype=dtype)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    hit_times = []
    for _ in range(hits):
        t0 = time.perf_counter()
        again = cache.load(path, dtype=dtype)
        hit_times.append(time.perf_counter() - t0)
        assert again is not mm and cache.misses == 1
    own = _own_seconds(path, dtype)  # after the load, while the module still holds its memory
    return {"seconds": seconds, "read_seconds": read, "own_seconds": own, "peak_mib": peak / 2**20, "params": mm.info.params,
            "version": mm.info.version, "hit_seconds": statistics.median(hit_times) if hit_times else None}


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        print(json.dumps(_load(sys.argv[2], sys.argv[3] == "keep", int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=["mm_sd_v15_v2"])
    ap.add_argument("--repeat", type=int, default=1, help="fresh-process loads per case (median printed)")
    ap.add_argument("--hits", type=int, default=5, help="cache hits timed per process (median)")
    ap.add_argument("--formats", nargs="+", default=[".safetensors", ".ckpt"])
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from tools import standins

    print(f"load average {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} (1/5 min) on {os.cpu_count()} CPUs: "
          "a shared machine, times are noisy")
    print("peak = RSS growth; it includes the file's pages when the reader memory-maps it (clean page cache)")
    print(f"{'file':<15}{'format':<13}{'weights':<15}{'MiB':>5}{'read s':>8}{'own s':>7}{'load s':>8}{'load/read':>10}{'load/own':>9}"
          f"{'MB/s':>7}{'hit s':>8}{'peak MiB':>9}{'peak/file':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            for suffix in args.formats:
                path = os.path.join(tmp, name + suffix)
                standins.build_motion_file(path, name)
                size = os.path.getsize(path) / 2**20
                for mode in ("fp32", "keep"):
                    runs = []
                    for _ in range(args.repeat):
                        out = subprocess.run([sys.executable, __file__, "--load", path, mode, str(args.hits)],
                                             check=True, capture_output=True, text=True).stdout
                        runs.append(json.loads(out.strip().splitlines()[-1]))
                    med = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "read_seconds", "own_seconds", "peak_mib",
                                                                              "hit_seconds")}
                    label = "fp32" if mode == "fp32" else "file's (fp16)"
                    print(f"{name:<15}{suffix:<13}{label:<15}{size:>5.0f}{med['read_seconds']:>8.2f}"
                          f"{med['own_seconds']:>7.2f}{med['seconds']:>8.2f}{med['seconds'] / med['read_seconds']:>10.1f}"
                          f"{med['seconds'] / med['own_seconds']:>9.1f}"
                          f"{size * 1.048576 / med['seconds']:>7.0f}{med['hit_seconds']:>8.3f}"
                          f"{med['peak_mib']:>9.0f}{med['peak_mib'] / size:>10.2f}", flush=True)
                os.remove(path)
    print("Load Motion Module keeps the file's precision (fp16 rows); a workflow switch costs the 'hit s' column.")


if __name__ == "__main__":
    main()
