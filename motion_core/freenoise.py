"""FreeNoise noise rescheduling (Qiu et al. 2023, "FreeNoise: Tuning-Free Longer Video Diffusion via Noise
Rescheduling", arXiv 2310.15169): the initial noise of a clip longer than one context window.

With independent noise per frame every window starts from different noise, so a long clip denoised in windows
drifts: the object of window 1 is not the object of window 4. FreeNoise draws fresh noise only for the first
window's frames; every later frame reuses the noise of an earlier frame, shuffled, so that every window starts
from a permutation of the same noise (statistically the same start, different order, hence still motion).

The authors' loop (window W, stride s = W - overlap): for f = W, W+s, ...: frames [f, f+s) take the noises of
frames [f-W, f-W+s) in a seeded random order (a shorter final chunk takes the first frames of its source chunk).
Frame f copies an already rescheduled frame, so every frame's noise is in the end one of the first window's.

Our uniform windows spread their starts evenly (context.py), so they need not sit at multiples of s. The layout
follows the actual windows instead: when window k (frames [a_k, b_k)) follows window k-1 (starting at a_{k-1}),
its new frames [b_{k-1}, b_k) take the noises of frames [a_{k-1}, a_{k-1} + d) shuffled (d = b_k - b_{k-1}), i.e.
of the frames window k-1 had and window k has lost. By induction every contiguous window then holds a permutation
of the first window's noise, and with starts at multiples of s this is exactly the authors' loop. Looped
windows lay out their windows that do not wrap, plus one ending at the last frame (a wrap-around window then
holds the end of one permutation and the start of another); static windows (no overlap) each take a shuffled
copy of their predecessor's noise. Dilated (stride) passes do not change the layout.

Pure torch, deterministic: the shuffles come from a CPU generator seeded with the sampling seed.
"""
from __future__ import annotations

import torch

from .context import NOISE_MODES, ContextOptions, _balanced_split, _circular_windows, _sliding_windows

__all__ = ["NOISE_MODES", "freenoise_sources", "reschedule_noise"]


def _layout_windows(num_frames: int, options: ContextOptions) -> list[list[int]]:
    frames = list(range(num_frames))
    if options.mode == "static":
        return _balanced_split(frames, options.length)
    if options.mode == "looped":  # the windows that do not wrap, then one that ends at the last frame
        plain = [w for w in _circular_windows(frames, options.length, options.overlap)
                 if w == list(range(w[0], w[0] + len(w)))]
        if plain[-1][-1] != num_frames - 1:
            plain.append(frames[num_frames - options.length:])
        return plain
    return _sliding_windows(frames, options.length, options.overlap)


def freenoise_sources(num_frames: int, options: ContextOptions, seed: int) -> list[int]:
    """For every frame, the frame (of the first window) whose initial noise it takes. Identity when the clip fits
    one window."""
    num_frames = int(num_frames)
    if num_frames <= options.length:
        return list(range(num_frames))
    windows = _layout_windows(num_frames, options)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)
    sources = list(range(len(windows[0])))
    for prev, win in zip(windows, windows[1:]):
        new = win[-1] + 1 - len(sources)  # frames [len(sources), win end) are new in this window
        if new <= 0:
            continue
        order = torch.randperm(new, generator=generator).tolist()
        chunk = [prev[0] + i for i in order]  # frames window k-1 had at its start, shuffled
        sources += [sources[c] for c in chunk]
    return sources


def reschedule_noise(noise: torch.Tensor, options: ContextOptions, seed: int) -> torch.Tensor:
    """`noise` `[frames, ...]` rearranged along frames by `freenoise_sources`; returned as is for one window."""
    sources = freenoise_sources(noise.shape[0], options, seed)
    if sources == list(range(noise.shape[0])):
        return noise
    return noise[torch.tensor(sources, device=noise.device)]
