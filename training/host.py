"""Finding and importing ComfyUI in-process: training loads checkpoints with ComfyUI's own loaders and puts the
motion module into ComfyUI's UNet with the pack's adapter, so it needs `comfy.*` importable.

ComfyUI's modules expect its root on sys.path and the CLI args set before `comfy.model_management` is
imported (that import probes the device; on a machine without CUDA it must be told `--cpu`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def comfy_root(explicit: str = "") -> Path:
    """explicit > $ADMK_COMFY_ROOT > $COMFYUI_ROOT > the ComfyUI this pack is installed in > .host/ComfyUI."""
    candidates = [explicit, os.environ.get("ADMK_COMFY_ROOT", ""), os.environ.get("COMFYUI_ROOT", "")]
    if REPO_ROOT.parent.name == "custom_nodes":
        candidates.append(str(REPO_ROOT.parent.parent))
    candidates.append(str(REPO_ROOT / ".host" / "ComfyUI"))
    for c in candidates:
        if c and (Path(c) / "comfy" / "model_management.py").is_file():
            return Path(c).resolve()
    raise FileNotFoundError(
        "ComfyUI not found. Set model.comfyui_root (or $COMFYUI_ROOT) to a ComfyUI folder, install this pack "
        "under ComfyUI/custom_nodes/, or run `bash scripts/setup_host.sh` to build .host/ComfyUI.")


def import_comfy(explicit: str = "", cpu: bool | None = None) -> Path:
    """Make `import comfy.*` work; idempotent. cpu=None: CPU unless CUDA is available."""
    root = comfy_root(explicit)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if "comfy.model_management" not in sys.modules:
        import torch
        from comfy.cli_args import args

        if cpu is None:
            cpu = not torch.cuda.is_available()
        args.cpu = bool(cpu)
        import comfy.model_management  # noqa: F401  (must follow the args)
    return root
