"""Shared fixtures: in-process ComfyUI, the pack loaded into it, a real server, stand-in model files.

The import path is set in pyproject.toml (tests/ for `harness`, the repo root for `tools`, `motion_core`,
`training`). Never `import nodes` in a test: that name is ComfyUI's nodes.py once ComfyUI is up; reach the
pack's node classes through the `comfy_pack` fixture (the module ComfyUI imported).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

_REPO = Path(__file__).resolve().parents[1]
for _p in (str(_REPO / "tests"), str(_REPO)):
    if _p not in sys.path:  # pytest's `pythonpath` ini does this; kept for runners that ignore it
        sys.path.append(_p)

# One torch thread per test process (and per server it starts) unless ADMK_TEST_THREADS says otherwise: on
# a shared 2-core machine intra-op thread hand-offs cost more than they gain (measured: a checkpoint
# load-and-forward test took 35 s with 2 threads and 16 s with 1 at load average 7).
_THREADS = os.environ.setdefault("ADMK_TEST_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", _THREADS)
torch.set_num_threads(int(_THREADS))


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI running in this process (core + comfy_extras nodes); the harness module, for run_prompt etc."""
    from tools import comfy_inprocess

    comfy_inprocess.bootstrap()
    return comfy_inprocess


@pytest.fixture(scope="session")
def comfy_pack(comfy):
    """This pack, imported by ComfyUI's own custom-node loader; returns the pack module."""
    return comfy.bootstrap(load_pack=True)


@pytest.fixture(scope="session")
def pack_node(comfy_pack):
    """`pack_node("sample")`: the pack's nodes/sample.py module as ComfyUI imported it (its node classes)."""
    import importlib

    return lambda name: importlib.import_module(f"{comfy_pack.__name__}.nodes.{name}")


@pytest.fixture(scope="session")
def sd15_reduced_ckpt() -> Path:
    """Path of the seeded reduced-layout SD1.5 stand-in checkpoint (built once into tests/.cache)."""
    from tools import standins

    return standins.cached_sd15_checkpoint("reduced")


@pytest.fixture(scope="session")
def comfy_server():
    """A real ComfyUI server process (main.py --cpu, own base dir, this pack in custom_nodes); killed at the end."""
    from harness.server import start_server

    server = start_server()
    try:
        yield server
    finally:
        server.stop()
