"""Loading a motion-module file again costs nothing when the file has not changed.

Switching between workflows makes ComfyUI run Load Motion Module again (its own cache keeps only the last
workflow's outputs), which re-read and re-checked ~450 M weights every time. The cache keys an entry by the
file's identity and modification (real path, device, inode, size, mtime in ns) and the requested precision;
a changed or replaced file is a miss.

It never hands out an object a later node could change for everyone: each call returns a new module tree
(new Module and Parameter objects) whose tensors share the cached storage. Replacing a parameter or an attribute
on it leaves the cache alone; an in-place write to the shared weights bumps their version counter (shared by
`detach()`), which the next lookup sees, and the file is then read again. MotionLoRA merging and the adapter's
dtype copies already make new tensors, so in normal use every hit is a real hit.
"""
from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .motion_module import MotionModuleSet, load_motion_module

DEFAULT_ENTRIES = 2  # a workflow switch back and forth between two motion modules stays a hit


def _file_key(path: str, dtype: Optional[torch.dtype], base_hint: Optional[str]) -> tuple:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, str(dtype), base_hint)


def _tensors(module: nn.Module):
    return list(module.parameters()) + list(module.buffers())


def _versions(module: nn.Module) -> Tuple[int, ...]:
    return tuple(t._version for t in _tensors(module))


def _shell(module: MotionModuleSet) -> MotionModuleSet:
    """A new module tree over the same storage (detach() shares storage and the version counter)."""
    memo = {}
    for t in _tensors(module):
        memo[id(t)] = nn.Parameter(t.detach(), requires_grad=False) if isinstance(t, nn.Parameter) else t.detach()
    return copy.deepcopy(module, memo)


class MotionFileCache:
    """`load(path, dtype)` = `load_motion_module(path, dtype=dtype)`, served from memory while the file is unchanged."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES):
        self.max_entries = max_entries
        self._entries: "OrderedDict[tuple, Tuple[MotionModuleSet, Tuple[int, ...]]]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def load(self, path, dtype: Optional[torch.dtype] = None, base_hint: Optional[str] = None) -> MotionModuleSet:
        path = os.fspath(path)
        try:
            key = _file_key(path, dtype, base_hint)
        except OSError:  # missing file: the loader's own message names the folder and the fix
            return load_motion_module(path, base_hint=base_hint, dtype=dtype)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and _versions(entry[0]) == entry[1]:
                self._entries.move_to_end(key)
                self.hits += 1
                return _shell(entry[0])
            self._entries.pop(key, None)  # absent, or its weights were written to in place
            # Stale entries of the same file (older mtime) are dropped before loading its new contents.
            for old in [k for k in self._entries if k[0] == key[0] and k[1:5] != key[1:5]]:
                del self._entries[old]
        # Normal tensors even when ComfyUI runs nodes in inference mode: inference tensors have no version counter.
        with torch.inference_mode(False):
            module = load_motion_module(path, base_hint=base_hint, dtype=dtype)
        with self._lock:
            self.misses += 1
            self._entries[key] = (module, _versions(module))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return _shell(module)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# The one cache the ComfyUI loader node uses.
MOTION_FILES = MotionFileCache()
