"""A whole set of motion modules (one per UNet place) with the official names, and the loader for every
published motion-module file.

Layout and version are read from the keys (what the public loaders do): no `pos_encoder` -> AnimateLCM;
HotshotXL naming -> hotshotxl; three down levels -> SDXL beta; PE length 24 -> v1; a mid-block module -> v2;
otherwise (SD1.5 layout, PE 32) -> v3.
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.nn as nn

from . import detect
from .convert import diffusers_to_original, hotshot_to_original, is_diffusers_layout, is_hotshot_layout
from .errors import MotionFormatError
from .state_dict_io import Source, read_state_dict, source_name
from .temporal import NORM_ACROSS_FRAMES, NORM_PER_FRAME, TemporalModule, sinusoidal_table

DEFAULT_MAX_FRAMES = 32  # what files without a position table (AnimateLCM) were trained with
HOTSHOT_MAX_FRAMES = 24
SD15_CHANNELS = (320, 640, 1280, 1280)
SDXL_CHANNELS = (320, 640, 1280)
_MODULE_KEY = re.compile(r"^(down_blocks\.(\d+)|up_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.(.+)$")


class MotionLocation(NamedTuple):
    name: str      # e.g. "down_blocks.1.motion_modules.0"
    kind: str      # "down" | "mid" | "up"
    level: int     # block index (0 for mid)
    index: int     # module index inside the block
    channels: int


@dataclass(frozen=True)
class MotionModuleInfo:
    version: str          # v1 | v2 | v3 | sdxl | animatelcm | hotshotxl
    base: str             # sd15 | sdxl
    max_frames: int
    source_format: str    # original | diffusers
    has_mid: bool
    has_pe: bool
    norm_mode: str        # per_frame | across_frames
    num_modules: int
    down_channels: tuple
    params: int

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"AnimateDiff {self.version} ({self.base}, {self.num_modules} modules, up to {self.max_frames} frames "
                f"per pass, {self.params / 1e6:.1f} M params, {self.source_format} naming)")


class _Block(nn.Module):
    def __init__(self, modules: List[TemporalModule]):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class MotionModuleSet(nn.Module):
    """`down_blocks.i.motion_modules.j`, `mid_block.motion_modules.0`, `up_blocks.i.motion_modules.j`."""

    def __init__(self, down: List[List[int]], up: List[List[int]], mid: Optional[int], max_frames: int,
                 norm_mode: str, heads: int = 8):
        super().__init__()
        make = lambda c: TemporalModule(c, heads=heads, max_len=max_frames, norm_mode=norm_mode)  # noqa: E731
        self.down_blocks = nn.ModuleList(_Block([make(c) for c in level]) for level in down)
        self.mid_block = _Block([make(mid)]) if mid else None
        self.up_blocks = nn.ModuleList(_Block([make(c) for c in level]) for level in up)
        self.max_frames = max_frames
        self.norm_mode = norm_mode
        self.info: Optional[MotionModuleInfo] = None

    def locations(self) -> List[MotionLocation]:
        """Every module in UNet execution order: down levels, mid, up levels."""
        out = []
        for level, block in enumerate(self.down_blocks):
            for j, m in enumerate(block.motion_modules):
                out.append(MotionLocation(f"down_blocks.{level}.motion_modules.{j}", "down", level, j, m.channels))
        if self.mid_block is not None:
            out.append(MotionLocation("mid_block.motion_modules.0", "mid", 0, 0, self.mid_block.motion_modules[0].channels))
        for level, block in enumerate(self.up_blocks):
            for j, m in enumerate(block.motion_modules):
                out.append(MotionLocation(f"up_blocks.{level}.motion_modules.{j}", "up", level, j, m.channels))
        return out

    def temporal_modules(self):
        for loc in self.locations():
            yield loc, self.get_submodule(loc.name)

    def copy(self) -> "MotionModuleSet":
        """A deep copy (weights included) that keeps `info`."""
        return copy.deepcopy(self)


def _layout(state_dict: dict):
    """{(kind, level): {index: channels}} from proj_in weights."""
    found: Dict[tuple, Dict[int, int]] = {}
    for key, value in state_dict.items():
        m = _MODULE_KEY.match(key)
        if not m:
            continue
        block, down, up, index, rest = m.groups()
        if rest != "temporal_transformer.proj_in.weight":
            continue
        kind, level = ("down", int(down)) if down is not None else ("up", int(up)) if up is not None else ("mid", 0)
        found.setdefault((kind, level), {})[int(index)] = int(value.shape[0])
    return found


def _as_lists(found: dict, kind: str) -> List[List[int]]:
    levels = sorted(level for k, level in found if k == kind)
    if levels != list(range(len(levels))):
        raise MotionFormatError(f"motion module file has gaps in its {kind} blocks: {levels}")
    out = []
    for level in levels:
        idx = found[(kind, level)]
        if sorted(idx) != list(range(len(idx))):
            raise MotionFormatError(f"motion module file has gaps in {kind}_blocks.{level}: {sorted(idx)}")
        out.append([idx[i] for i in range(len(idx))])
    return out


def _wrong_kind(kind: str, name: str) -> MotionFormatError:
    return MotionFormatError(f"{name} is {detect.describe(kind)}, not an AnimateDiff motion module.")


def _weights_dtype(state_dict: dict, dtype: Optional[torch.dtype]) -> torch.dtype:
    if dtype is not None:
        return dtype
    first = next((v.dtype for k, v in state_dict.items() if k.endswith("proj_in.weight")), torch.float32)
    return first if first in (torch.float16, torch.bfloat16, torch.float32) else torch.float32


def fill_from_state_dict(net: nn.Module, state_dict: dict, dtype: torch.dtype, name: str, what: str) -> None:
    """Fill `net` (built on the meta device) from an official state dict, popping each tensor from `state_dict`.

    Refuses missing/unexpected keys and other shapes (a truncated file or another kind: `what` names the kind
    wanted), allocates `net` once in `dtype`, computes the sinusoidal position tables a file may leave out (they
    are non-persistent in the authors' code), and refuses NaN/inf. Popping frees each file tensor once copied, so
    peak memory is about the module, not file + module."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("pos_encoder.pe")]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        detail = (f"missing {len(missing)} keys (first: {missing[:3]})" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {len(unexpected)} keys (first: {unexpected[:3]})" if unexpected else "")
        raise MotionFormatError(f"{name} does not have the structure of {what}: {detail}. "
                                "The file is probably truncated or of another kind.")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise MotionFormatError(f"{name}: '{key}' has shape {tuple(value.shape)}, expected "
                                    f"{tuple(expected[key].shape)}.")
    _allocate(net, dtype)
    with torch.no_grad():
        for key, param in net.state_dict(keep_vars=True).items():
            if key in state_dict:
                param.copy_(state_dict.pop(key))
            else:  # a file without position tables (AnimateLCM, SparseCtrl): the table the code computes
                param.copy_(sinusoidal_table(param.shape[1], param.shape[2]))
        bad = _non_finite_keys(net.state_dict())
    if bad:
        raise MotionFormatError(f"{name} contains NaN/inf values (e.g. in '{bad[0]}'): the file is corrupt.")


def _allocate(net: nn.Module, dtype: torch.dtype) -> None:
    """Give every meta tensor of `net` real (uninitialised) CPU memory in `dtype`, once. `to(dtype).to_empty()`
    does the same through torch's Python reference kernels for meta tensors: 0.5 s of a 0.8 s v2 load."""
    for module in net.modules():
        for table in (module._parameters, module._buffers):
            for key, t in table.items():
                if t is None:
                    continue
                new = torch.empty(tuple(t.shape), dtype=dtype if t.is_floating_point() else t.dtype)
                table[key] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new


def _non_finite_keys(tensors: Dict[str, torch.Tensor]) -> List[str]:
    """Keys of tensors holding NaN or inf.

    One min/max pass per tensor in its own dtype: NaN propagates into both and an inf is the min or the max, so
    the check is exact, allocates nothing the size of the weights and needs no float64 (or float32) pass over
    fp16 files (a float64 sum cost half of a v2 load). One isfinite over the gathered pairs decides."""
    keys, extremes = [], []
    for key, value in tensors.items():
        if value.is_floating_point() and value.numel():
            keys.append(key)
            extremes.extend(torch.aminmax(value))
    if not keys:
        return []
    finite = torch.isfinite(torch.stack([e.float() for e in extremes]).view(-1, 2)).all(dim=1)
    return [k for k, ok in zip(keys, finite.tolist()) if not ok]


def build_from_state_dict(state_dict: dict, name: str = "this file", base_hint: Optional[str] = None,
                          dtype: Optional[torch.dtype] = torch.float32, _owned: bool = False) -> MotionModuleSet:
    """Builds the set matching the keys, loads the weights, and fills `info`.

    `dtype`: precision of the module's weights (None keeps the file's: an fp16 file then costs half the memory).
    The given mapping is never modified (`_owned=True`: it is ours to empty, so file tensors can be freed one
    by one while the module fills)."""
    given = state_dict
    kind = detect.classify(state_dict.keys())
    if kind != detect.MOTION_MODULE:
        raise _wrong_kind(kind, name)
    source_format = "original"
    version = None
    if is_hotshot_layout(state_dict):
        state_dict = hotshot_to_original(state_dict)
        version = "hotshotxl"
    elif is_diffusers_layout(state_dict):
        state_dict = diffusers_to_original(state_dict)
        source_format = "diffusers"
    state_dict = {k: v for k, v in state_dict.items() if _MODULE_KEY.match(k)}  # our own dict from here on
    if _owned:
        given.clear()
    dtype = _weights_dtype(state_dict, dtype)
    found = _layout(state_dict)
    down, up = _as_lists(found, "down"), _as_lists(found, "up")
    mid = found.get(("mid", 0), {}).get(0)
    if not down or not up:
        raise MotionFormatError(f"{name} has motion-module keys but no complete down/up blocks: it is truncated or "
                                "not an AnimateDiff motion module.")
    pe_lengths = {int(v.shape[1]) for k, v in state_dict.items() if k.endswith("pos_encoder.pe")}
    has_pe = bool(pe_lengths)
    if len(pe_lengths) > 1:
        raise MotionFormatError(f"{name} mixes position tables of lengths {sorted(pe_lengths)}.")
    down_channels = tuple(level[0] for level in down)
    if base_hint in ("sd15", "sdxl"):
        base = base_hint
    else:
        base = "sdxl" if (len(down) == 3 and down_channels == SDXL_CHANNELS) or version == "hotshotxl" else "sd15"
    if version is None:
        if not has_pe:
            version = "animatelcm"
        elif base == "sdxl":
            version = "sdxl"
        elif pe_lengths == {24}:
            version = "v1"
        elif mid:
            version = "v2"
        else:
            version = "v3"
    max_frames = pe_lengths.pop() if has_pe else (HOTSHOT_MAX_FRAMES if version == "hotshotxl" else DEFAULT_MAX_FRAMES)
    # SD1.5 official code normalises each frame on its own; the SDXL branch normalises across frames.
    norm_mode = NORM_ACROSS_FRAMES if version == "sdxl" else NORM_PER_FRAME
    # Built on the meta device (no random init of ~450 M parameters), then filled from the file.
    with torch.device("meta"):
        mm = MotionModuleSet(down, up, mid, max_frames, norm_mode)
    fill_from_state_dict(mm, state_dict, dtype, name, "an AnimateDiff motion module")
    mm.requires_grad_(False)
    mm.eval()
    mm.info = MotionModuleInfo(version=version, base=base, max_frames=max_frames, source_format=source_format,
                               has_mid=bool(mid), has_pe=has_pe, norm_mode=norm_mode,
                               num_modules=len(mm.locations()), down_channels=down_channels,
                               params=sum(p.numel() for p in mm.parameters()))
    return mm


def load_motion_module(source: Source, base_hint: Optional[str] = None,
                       dtype: Optional[torch.dtype] = torch.float32) -> MotionModuleSet:
    """Loads any published motion-module file (or state dict) into a MotionModuleSet (eval, frozen).

    `dtype=None` keeps the file's precision (what the ComfyUI node does: the adapter casts to the UNet's
    compute dtype anyway); the default float32 suits maths checks and training."""
    return build_from_state_dict(read_state_dict(source), name=source_name(source), base_hint=base_hint, dtype=dtype,
                                 _owned=True)
