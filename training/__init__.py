"""AnimateDiff training (stages 1-3), the CPU demo, and the code the Train MotionLoRA node runs.

Imported two ways: as the top-level package `training` (the CLI, the demo, the tests; motion_core is then the
top-level `motion_core`) and as `<pack>.training` inside ComfyUI (the Train MotionLoRA node; the pack's own
`<pack>.motion_core`, the copy the other nodes' objects come from). `motion_core()` returns the right one, so
training code never imports a second copy of motion_core.
"""
from __future__ import annotations

import importlib

_PARENT = __name__.rpartition(".")[0]


def motion_core(submodule: str = ""):
    """motion_core (or motion_core.<submodule>) as seen from this copy of the training package."""
    name = f"{_PARENT}.motion_core" if _PARENT else "motion_core"
    return importlib.import_module(f"{name}.{submodule}" if submodule else name)
