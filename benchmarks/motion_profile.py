"""Where the motion layers' own time goes: the 21 temporal modules of a full-size v2 module (seeded stand-in, fp32)
on the shapes of one 64 px, 16-frame, cfg step of SD1.5 (32 latents: 8x8 at 320 channels down to 1x1 at 1280),
run standalone under torch's profiler. Prints the time per pass and the share of each op kind.

    .venv/bin/python benchmarks/motion_profile.py [--threads 2] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _side(name: str) -> int:
    """Latent side at 64 px of the UNet level a module sits at (down_blocks.i: 8 >> i, up_blocks.j: 8 >> 3-j)."""
    if name.startswith("mid"):
        return 1
    level = int(name.split(".")[1])
    return 8 >> (level if name.startswith("down") else 3 - level)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    sys.path[:0] = [str(REPO)]
    import torch
    from torch.profiler import ProfilerActivity, profile

    from motion_core import load_motion_module
    from motion_core.temporal import TemporalModule
    from tools import standins

    torch.set_num_threads(args.threads)
    mm = load_motion_module(standins.cached_motion_file("mm_sd_v15_v2", layout="full"), dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    layers = [(m, torch.randn(32, m.channels, _side(n), _side(n), generator=g))
              for n, m in mm.named_modules() if isinstance(m, TemporalModule)]

    def one_pass():
        with torch.inference_mode():
            for module, x in layers:
                module.delta(x, 16)

    one_pass()
    start = time.perf_counter()
    for _ in range(args.repeat):
        one_pass()
    per_pass = (time.perf_counter() - start) / args.repeat
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_pass()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kinds = {"matmul (aten::addmm, aten::mm)": ("aten::addmm", "aten::mm", "aten::bmm"),
             "attention (scaled_dot_product)": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                                "aten::_scaled_dot_product_attention_math"),
             "layout copies (aten::copy_)": ("aten::copy_",),
             "GEGLU (gelu, mul)": ("aten::gelu", "aten::mul"),
             "norms (layer/group norm)": ("aten::native_layer_norm", "aten::native_group_norm")}
    print(f"{len(layers)} temporal modules, 64 px / 16 frames / cfg shapes, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.1f}: {per_pass:.3f} s per pass (mean of {args.repeat})")
    shown = 0.0
    for label, names in kinds.items():
        share = sum(e.self_cpu_time_total for e in events if e.key in names) / total
        shown += share
        print(f"  {label:<36}{share * 100:6.1f} %")
    print(f"  {'everything else':<36}{(1 - shown) * 100:6.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
