"""The environment for a test that runs `python -m <this repo's module>` in a child process."""
from __future__ import annotations

import os

from tools.comfy_host import REPO_ROOT


def repo_env(**overrides: str) -> dict:
    """os.environ with the repo first on PYTHONPATH, then whatever PYTHONPATH the caller had (e.g. packages
    installed with `pip --target`, which the child would otherwise lose), and `overrides` on top."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, **overrides, PYTHONPATH=path)
