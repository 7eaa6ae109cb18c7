"""Locating and importing the test host's ComfyUI (built by scripts/setup_host.sh) from tools and tests.

ComfyUI's modules assume its root is on sys.path and that the CLI args were parsed before
`comfy.model_management` is imported (that import probes for a GPU and asserts CUDA unless `args.cpu` is set).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "comfyui-animatediff-motionkit"


def comfy_root() -> Path:
    """The ComfyUI checkout to use: $ADMK_COMFY_ROOT, else the repo's .host/ComfyUI."""
    root = Path(os.environ.get("ADMK_COMFY_ROOT", REPO_ROOT / ".host" / "ComfyUI")).resolve()
    if not (root / "main.py").is_file():
        raise FileNotFoundError(
            f"No ComfyUI found at {root} (main.py missing). Run `make setup` (scripts/setup_host.sh) to build the "
            f"test host, or point ADMK_COMFY_ROOT at a ComfyUI checkout."
        )
    return root


def import_comfy() -> Path:
    """Make `import comfy.*` work in this process, CPU-only. Idempotent; returns the ComfyUI root.

    The root goes first on sys.path so ComfyUI's top-level `nodes`/`utils` win over same-named folders
    (this repo has a `nodes/` package, and `python -m pytest` puts the repo root on sys.path).
    """
    root = comfy_root()
    entries = [os.path.realpath(p or os.getcwd()) for p in sys.path]
    repo_at = [i for i, p in enumerate(entries) if p == str(REPO_ROOT)]
    if str(root) not in entries:
        sys.path.insert(0, str(root))
    elif repo_at and entries.index(str(root)) > repo_at[0]:
        # Listed, but behind the repo root (whose nodes/ would then shadow ComfyUI's nodes.py): move it ahead.
        del sys.path[entries.index(str(root))]
        sys.path.insert(repo_at[0], str(root))
    if "comfy.model_management" not in sys.modules:
        from comfy.cli_args import args

        args.cpu = True
        import comfy.model_management  # noqa: F401  (must follow args.cpu)
    return root
