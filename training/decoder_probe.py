"""Would a smoother analytic decoder show the demo's shapes better (issue 17)? Prints the PSNR of the analytic
TAESD (nearest x2 upsamples, what the demo uses) and of the same decoder with a [1,2,1] x [1,2,1] blur after each
upsample (about bilinear) on seeded rendered shapes, and writes both reconstructions beside the originals to
`decoder_probe.png` (rows: original, nearest, blurred; x2 nearest so the pixels stay visible).

    python -m training.decoder_probe [out.png]
"""
from __future__ import annotations

import sys


def main(out: str = "decoder_probe.png") -> None:
    from tools.comfy_host import import_comfy

    import_comfy(cpu=None)
    import cv2
    import numpy as np
    import torch
    from comfy.taesd.taesd import TAESD

    from training import base_model as bm
    from training import synthetic

    rng = np.random.default_rng(0)
    shapes = []
    for _ in range(48):
        r = rng.uniform(6, 10)
        shapes.append(synthetic.render_shape(64, synthetic.SHAPES[rng.integers(2)],
                                             list(synthetic.COLOURS.values())[rng.integers(4)],
                                             (rng.uniform(r, 64 - r), rng.uniform(r, 64 - r)), r))
    frames = torch.from_numpy(np.stack(shapes)).float().div(255).permute(0, 3, 1, 2).contiguous()
    taesd = TAESD()
    bm.init_taesd_analytic_(taesd, seed=0)
    encoded = bm.encoder_outputs(taesd, frames)
    rows = [frames]
    with torch.no_grad():
        rows.append(taesd.taesd_decoder(encoded))
        k = torch.tensor([1.0, 2.0, 1.0])
        for i in (7, 12, 17):  # the convolutions after the three nearest upsamples
            for c in range(3):
                taesd.taesd_decoder[i].weight[c, c] = torch.outer(k, k) / 16
        rows.append(taesd.taesd_decoder(encoded))
    print(f"PSNR on {frames.shape[0]} shapes: nearest {bm.psnr(rows[1], frames):.2f} dB, "
          f"blurred {bm.psnr(rows[2], frames):.2f} dB")
    grid = np.concatenate([np.concatenate(list((r[:6].clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy()), 1)
                           for r in rows], 0)
    cv2.imwrite(out, cv2.cvtColor(cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST),
                                  cv2.COLOR_RGB2BGR))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
