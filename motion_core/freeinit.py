"""FreeInit (Wu et al. 2023, "FreeInit: Bridging Initialization Gap in Video Diffusion Models", arXiv 2312.07537):
re-initialise the noise from the low frequencies of a finished sample and sample again.

Iteration 1 samples as usual. Each further iteration diffuses the previous result back to the first timestep,
keeps its low spatio-temporal frequencies (3-D FFT over frames x height x width, per channel) and takes the high
frequencies from fresh noise, then samples again. The low frequencies carry the layout and the coarse motion
the first pass settled on, which the training noise never had (the "initialization gap").

The masks are those of the authors' freeinit_utils.py, on the fftshift-ed spectrum (the DC term at index
T//2, H//2, W//2), with the normalised squared distance
    d2(t, h, w) = ((d_s / d_t) * (2t/T - 1))^2 + (2h/H - 1)^2 + (2w/W - 1)^2
- gaussian:    exp(-d2 / (2 d_s^2))
- butterworth: 1 / (1 + (d2 / d_s^2)^n)
- ideal:       1 where d2 <= 2 d_s (the authors' code compares with d_s*2, not d_s^2; kept for fidelity:
               it passes a wider band than the name suggests), else 0
- box:         1 on the centred block [T//2 -+ round(T//2 d_t)) x [H//2 -+ round(H//2 d_s)) x [W//2 -+ the same)
Every mask is all zeros when d_s or d_t is 0 (then nothing of the previous result is kept).

Coarse-to-fine ("fast sampling" in the paper): iteration i of N (1-based) runs int(steps * i / N) steps (at
least 1), so early iterations are cheap and the last one runs every step.

Pure torch (ComfyUI-free); the sampler wiring is in motion_core/comfy/freeinit.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fft as fft

FILTERS = ("butterworth", "gaussian", "ideal", "box")


@dataclass(frozen=True)
class FreeInitOptions:
    """What the FreeInit node outputs (type ADMK_FREEINIT); validated on construction."""

    iterations: int = 3
    filter: str = "butterworth"
    d_s: float = 0.25
    d_t: float = 0.25
    order: int = 4  # butterworth n
    coarse_to_fine: bool = False
    seed_offset: int = 1  # iteration i's fresh noise uses seed + seed_offset * (i - 1)

    def __post_init__(self):
        if int(self.iterations) < 1:
            raise ValueError(f"FreeInit iterations must be at least 1 (got {self.iterations}); 1 means off.")
        if self.filter not in FILTERS:
            raise ValueError(f"Unknown FreeInit filter {self.filter!r}; choose one of {', '.join(FILTERS)}.")
        for name in ("d_s", "d_t"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FreeInit {name} is a normalised stop frequency between 0 and 1 (got {value}); "
                                 "0.25 is the paper's default.")
        if int(self.order) < 1:
            raise ValueError(f"The butterworth order must be at least 1 (got {self.order}); 4 is the default.")

    def mask(self, frames: int, height: int, width: int) -> torch.Tensor:
        return low_pass_mask(self.filter, (frames, height, width), self.d_s, self.d_t, self.order)

    def steps_for(self, iteration: int, steps: int) -> int:
        return iteration_steps(iteration, self.iterations, steps, self.coarse_to_fine)


def _squared_distance(shape: tuple[int, int, int], d_s: float, d_t: float) -> torch.Tensor:
    T, H, W = (int(s) for s in shape)
    t = (2 * torch.arange(T, dtype=torch.float64) / T - 1) * (d_s / d_t)
    h = 2 * torch.arange(H, dtype=torch.float64) / H - 1
    w = 2 * torch.arange(W, dtype=torch.float64) / W - 1
    return t.view(T, 1, 1) ** 2 + h.view(1, H, 1) ** 2 + w.view(1, 1, W) ** 2


def low_pass_mask(kind: str, shape: tuple[int, int, int], d_s: float = 0.25, d_t: float = 0.25,
                  order: int = 4) -> torch.Tensor:
    """The low-pass mask `[T, H, W]` (float32, values in [0, 1]) for an fftshift-ed spectrum."""
    T, H, W = (int(s) for s in shape)
    if kind not in FILTERS:
        raise ValueError(f"Unknown FreeInit filter {kind!r}; choose one of {', '.join(FILTERS)}.")
    if d_s == 0 or d_t == 0:
        return torch.zeros(T, H, W)
    if kind == "box":
        mask = torch.zeros(T, H, W)
        ts, tt = round(int(H // 2) * d_s), round(T // 2 * d_t)  # the authors' code uses H's threshold for W too
        ct, ch, cw = T // 2, H // 2, W // 2
        mask[max(ct - tt, 0):ct + tt, max(ch - ts, 0):ch + ts, max(cw - ts, 0):cw + ts] = 1.0
        return mask
    d2 = _squared_distance((T, H, W), d_s, d_t)
    if kind == "gaussian":
        mask = torch.exp(-d2 / (2 * d_s ** 2))
    elif kind == "butterworth":
        mask = 1 / (1 + (d2 / d_s ** 2) ** int(order))
    else:  # ideal
        mask = (d2 <= d_s * 2).to(torch.float64)
    return mask.to(torch.float32)


def freq_mix_3d(x: torch.Tensor, noise: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """Low frequencies of `x`, high frequencies of `noise`, over the last three dims (frames, height, width).

    x, noise: `[..., T, H, W]`; low_pass: `[T, H, W]` on the shifted spectrum. Computed in float32 (complex64)
    and returned in x's dtype.
    """
    dims = (-3, -2, -1)
    lpf = low_pass.to(device=x.device, dtype=torch.float32)
    x_freq = fft.fftshift(fft.fftn(x.float(), dim=dims), dim=dims)
    n_freq = fft.fftshift(fft.fftn(noise.float(), dim=dims), dim=dims)
    mixed = x_freq * lpf + n_freq * (1 - lpf)
    return fft.ifftn(fft.ifftshift(mixed, dim=dims), dim=dims).real.to(x.dtype)


def mix_frames(x: torch.Tensor, noise: torch.Tensor, options: FreeInitOptions) -> torch.Tensor:
    """freq_mix_3d on ComfyUI's frame-major latents `[frames, channels, H, W]` (FFT over frames, H, W)."""
    mask = options.mask(x.shape[0], x.shape[-2], x.shape[-1])
    out = freq_mix_3d(x.movedim(0, 1), noise.movedim(0, 1), mask)
    return out.movedim(1, 0).contiguous()


def iteration_steps(iteration: int, iterations: int, steps: int, coarse_to_fine: bool) -> int:
    """Steps of iteration `iteration` (1-based) of `iterations`."""
    if not coarse_to_fine:
        return int(steps)
    return max(1, int(int(steps) / int(iterations) * int(iteration)))
