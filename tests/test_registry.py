"""Registry-ready: pyproject.toml carries the Comfy Registry fields, and comfy-cli's own `comfy node validate`
(what publishing runs: pyproject parsing plus ruff's exec/eval/one-line-statement rules) passes without network."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from tools.comfy_host import REPO_ROOT

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def test_pyproject_has_the_registry_fields():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    meta, comfy = project["project"], project["tool"]["comfy"]
    assert SEMVER.match(meta["version"]), meta["version"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", meta["name"]) and "comfyui" not in meta["name"].lower()
    assert meta["license"] == {"file": "LICENSE"} and (REPO_ROOT / "LICENSE").is_file()
    assert meta["urls"]["Repository"].startswith("https://github.com/")
    for key in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert comfy.get(key), f"[tool.comfy] {key} is empty"
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith("/web/icon.png")
    assert (REPO_ROOT / "web" / "icon.png").is_file()  # what the Icon URL serves once pushed
    assert isinstance(comfy["includes"], list)
    assert "web" not in comfy, "a [tool.comfy] web key makes ComfyUI serve web/ twice (see pyproject.toml)"


def test_comfy_node_validate_passes_offline():
    # A dead proxy: any attempt to reach the network fails instead of silently succeeding.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "", "PYTHONUNBUFFERED": "1"}
    try:
        import comfy_cli  # noqa: F401
    except ImportError:
        raise AssertionError("comfy-cli is not installed: run `make setup` (requirements-host.txt lists it)")
    done = subprocess.run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "--no-enable-telemetry", "node",
                           "validate"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "All validation checks passed" in out, out
    assert "Security warnings" not in out and "Warning" not in out, out
