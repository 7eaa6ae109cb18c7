"""Finding and importing ComfyUI in this process: the one bootstrap step shared by the tests, training (and its
demo), the benchmarks and the tools. Running prompts in-process builds on it in tools/comfy_inprocess.py.

ComfyUI's modules assume its root is on sys.path and that the CLI args were parsed before
`comfy.model_management` is imported (that import probes the device and asserts CUDA unless `args.cpu` is set).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "comfyui-animatediff-motionkit"


def _is_comfy(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy" / "model_management.py").is_file()


def comfy_root(explicit: str = "") -> Path:
    """The ComfyUI checkout to use: `explicit` > $ADMK_COMFY_ROOT > $COMFYUI_ROOT > the ComfyUI whose
    custom_nodes/ this repository sits in > the repository's .host/ComfyUI (built by `make setup`)."""
    candidates = [explicit, os.environ.get("ADMK_COMFY_ROOT", ""), os.environ.get("COMFYUI_ROOT", "")]
    if REPO_ROOT.parent.name == "custom_nodes":
        candidates.append(str(REPO_ROOT.parent.parent))
    candidates.append(str(REPO_ROOT / ".host" / "ComfyUI"))
    for candidate in candidates:
        if candidate and _is_comfy(Path(candidate)):
            return Path(candidate).resolve()
    named = [c for c in candidates if c]
    raise FileNotFoundError(
        f"No ComfyUI found (looked in {', '.join(named)}: no main.py and comfy/model_management.py there). Run "
        f"`make setup` (scripts/setup_host.sh) to build the test host, point $ADMK_COMFY_ROOT or $COMFYUI_ROOT "
        f"(training: model.comfyui_root) at a ComfyUI folder, or install this pack under ComfyUI/custom_nodes/.")


def import_comfy(explicit: str = "", cpu: bool | None = True) -> Path:
    """Make `import comfy.*` work in this process. Idempotent; returns the ComfyUI root.

    cpu: True = CPU only (tests, tools); None = CPU unless torch sees CUDA (training, the demo); False = leave the
    device to ComfyUI. Only the first call in a process decides (ComfyUI picks its device once, on import).
    $ADMK_COMFY_GPU=1 turns cpu=True into None, so the test suite and tools can be run on a GPU machine
    (scripts/gpu_check.sh) without editing them; unset, the tests stay on the CPU wherever they run.
    The root goes ahead of the repository root on sys.path so ComfyUI's top-level `nodes`/`utils` win over
    same-named folders (this repo has a `nodes/` package, and `python -m ...` puts the repo root on sys.path).
    """
    root = comfy_root(explicit)
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

        if cpu is True and os.environ.get("ADMK_COMFY_GPU") == "1":
            cpu = None

        if cpu is None:
            import torch

            cpu = not torch.cuda.is_available()
        if cpu:
            args.cpu = True
        import comfy.model_management  # noqa: F401  (must follow args.cpu)
    return root
