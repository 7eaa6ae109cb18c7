"""Prompt travel: keyframed prompt text -> one text embedding per frame, blended linearly between keyframes.

Schedule text, one keyframe per line (blank lines, `#`/`//` comments and lone `{`/`}` are ignored; a trailing
comma is fine, so a pasted JSON object or the FizzNodes style works as is)::

    0: "a calm sea"
    "24": "a stormy sea",
    48: a sunset            <- unquoted prompts run to the end of the line
    "0": "a", "12": "b"     <- several quoted keyframes may share a line

Frames before the first keyframe hold its prompt, frames after the last hold the last prompt. A keyframe past
the end of the animation still counts: the frames before it travel towards it (so previewing the first 16
frames of a 64-frame schedule shows the same frames as the full run). Interpolation is on the encoder output
(cross-attention tokens and pooled vector), which is what makes the motion smooth; encoding a mixed text would
jump. Pure Python/torch: the CLIP is reached through an `encode(text)` callable.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Callable

import torch

INTERPOLATIONS = ("linear", "hold")
_KEY = re.compile(r'\s*"?\s*(-?\d+)\s*"?\s*:\s*')
_EXAMPLE = '12: "a stormy sea"'


@dataclass(frozen=True)
class Keyframe:
    frame: int
    prompt: str
    line: int  # 1-based line of the schedule text it came from (for error messages)


def _line_error(number: int, text: str, problem: str) -> ValueError:
    return ValueError(f"Prompt schedule line {number} ({text.strip()!r}): {problem}. "
                      f"Write one keyframe per line, like  {_EXAMPLE}")


def _parse_line(number: int, text: str) -> list[Keyframe]:
    body = text.strip()
    if body.endswith(","):
        body = body[:-1].rstrip()
    out, pos = [], 0
    while pos < len(body):
        m = _KEY.match(body, pos)
        if m is None:
            raise _line_error(number, text, "expected a frame number followed by ':'")
        frame = int(m.group(1))
        if frame < 0:
            raise _line_error(number, text, f"frame {frame} is negative; frames count from 0")
        pos = m.end()
        if body.startswith('"', pos):
            try:
                prompt, end = json.JSONDecoder().raw_decode(body, pos)
            except json.JSONDecodeError:
                raise _line_error(number, text, "the quoted prompt is not closed (missing '\"')") from None
            pos = end
            rest = body[pos:].lstrip()
            if rest and not rest.startswith(","):
                raise _line_error(number, text, f"unexpected text after the quoted prompt: {rest!r}")
            pos = len(body) - len(rest[1:].lstrip()) if rest else len(body)
        else:
            prompt, pos = body[pos:].strip(), len(body)
            if len(prompt) >= 2 and prompt[0] == prompt[-1] == "'":
                prompt = prompt[1:-1]
        out.append(Keyframe(frame, str(prompt), number))
    return out


def parse_keyframes(text: str) -> list[Keyframe]:
    """Parse a schedule into keyframes sorted by frame; errors name the line (number and text) and the fix."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('The prompt schedule is empty; write at least one keyframe, like  0: "a calm sea"')
    keyframes: list[Keyframe] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped in ("{", "}", "{}") or stripped.startswith(("#", "//")):
            continue
        if stripped.startswith("{"):
            stripped = stripped[1:]
        if stripped.endswith("}"):
            stripped = stripped[:-1]
        keyframes += _parse_line(number, stripped)
    if not keyframes:
        raise ValueError('The prompt schedule has no keyframes; write at least one, like  0: "a calm sea"')
    seen: dict[int, Keyframe] = {}
    for kf in keyframes:
        if kf.frame in seen:
            raise ValueError(f"Prompt schedule lines {seen[kf.frame].line} and {kf.line} both set frame {kf.frame}; "
                             f"keep one of them.")
        seen[kf.frame] = kf
    return sorted(keyframes, key=lambda k: k.frame)


def compose_prompt(prompt: str, pre_text: str = "", post_text: str = "") -> str:
    """`pre_text, prompt, post_text`, skipping empty parts and doubled commas at the joins."""
    parts = [pre_text.strip().rstrip(",").rstrip(), prompt.strip().strip(",").strip(),
             post_text.strip().lstrip(",").lstrip()]
    return ", ".join(p for p in parts if p)


def frame_schedule(keyframes: list[Keyframe], num_frames: int, interpolation: str = "linear") -> list[tuple[int, int, float]]:
    """For each frame: (index of the keyframe before, index of the keyframe after, weight of the one after)."""
    if int(num_frames) < 1:
        raise ValueError(f"Prompt travel needs at least 1 frame (got {num_frames}).")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}.")
    frames = [k.frame for k in keyframes]
    out = []
    for f in range(int(num_frames)):
        after = next((i for i, kf in enumerate(frames) if kf > f), None)
        if after is None:  # at or past the last keyframe
            out.append((len(frames) - 1, len(frames) - 1, 0.0))
        elif after == 0:  # before the first keyframe
            out.append((0, 0, 0.0))
        else:
            before = after - 1
            t = (f - frames[before]) / (frames[after] - frames[before])
            out.append((before, after, t if interpolation == "linear" else 0.0))
    return out


def _match_tokens(embeds: list[torch.Tensor]) -> list[torch.Tensor]:
    # Long prompts encode to multiples of 77 tokens. Repeating a whole token sequence leaves cross-attention
    # unchanged (each copy gets the same attention share), so pad by repetition to a common length - the rule
    # ComfyUI itself uses to batch conds of different lengths.
    target = math.lcm(*[e.shape[1] for e in embeds])
    return [e if e.shape[1] == target else e.repeat(1, target // e.shape[1], 1) for e in embeds]


def blend(embeds: list[torch.Tensor], schedule: list[tuple[int, int, float]]) -> torch.Tensor:
    """Stack per-frame blends of `embeds` (each `[1, ...]`) following `schedule` -> `[frames, ...]`."""
    a = torch.cat([embeds[i] for i, _, _ in schedule])
    b = torch.cat([embeds[j] for _, j, _ in schedule])
    t = torch.tensor([w for _, _, w in schedule], dtype=a.dtype, device=a.device).view(-1, *([1] * (a.ndim - 1)))
    return torch.lerp(a, b, t)


def travel_conditioning(text: str, num_frames: int, encode: Callable[[str], tuple[torch.Tensor, torch.Tensor | None]],
                        pre_text: str = "", post_text: str = "", interpolation: str = "linear"):
    """Encode each keyframe prompt once and blend per frame.

    `encode(text) -> (cond [1, tokens, dim], pooled [1, dim] or None)`. Returns `(cond [F, tokens, dim],
    pooled [F, dim] or None)`, F = num_frames: row i conditions frame i (ComfyUI keeps a batch that equals the
    latent batch row for row, and the context-window wrapper slices it per window).
    """
    keyframes = parse_keyframes(text)
    schedule = frame_schedule(keyframes, num_frames, interpolation)
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    conds, pooleds = [], []
    for kf in keyframes:
        full = compose_prompt(kf.prompt, pre_text, post_text)
        if full not in cache:
            cache[full] = encode(full)
        cond, pooled = cache[full]
        conds.append(cond[:1])
        pooleds.append(None if pooled is None else pooled[:1])
    cond = blend(_match_tokens(conds), schedule)
    pooled = None if any(p is None for p in pooleds) else blend(pooleds, schedule)
    return cond, pooled
