"""Packaging and entry points: the Comfy Registry metadata as ComfyUI itself parses it, the license text,
the pytest markers, and the make targets CI and users call."""
from __future__ import annotations

import os
import re
import subprocess
import tomllib

from tools.comfy_host import REPO_ROOT, import_comfy


def test_pyproject_as_comfyui_reads_it():
    import_comfy()
    from comfy_config import config_parser

    cfg = config_parser.extract_node_configuration(str(REPO_ROOT))
    assert cfg is not None
    assert cfg.project.name == "animatediff-motionkit"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*", cfg.project.name)
    assert "comfyui" not in cfg.project.name.lower()
    assert cfg.project.version == "0.1.0"
    assert cfg.project.license.file == "LICENSE"
    assert cfg.project.urls.repository == "https://github.com/motionkit/animatediff-motionkit"
    assert cfg.tool_comfy.publisher_id == "motionkit"
    assert cfg.tool_comfy.display_name == "AnimateDiff MotionKit"


def test_pyproject_dependencies_come_from_requirements_and_comfyui_minimum_is_declared():
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        data = tomllib.load(fh)
    assert data["project"]["dynamic"] == ["dependencies"]
    assert data["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert data["project"]["requires-python"] == ">=3.10"
    assert data["tool"]["comfy"]["requires-comfyui"] == ">=0.3.75"
    assert "Icon" in data["tool"]["comfy"]


def test_license_is_the_full_gpl3_text():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text
    for section in ("0. Definitions.", "15. Disclaimer of Warranty.", "END OF TERMS AND CONDITIONS",
                    "How to Apply These Terms to Your New Programs"):
        assert section in text
    assert len(text) > 30000


def test_pytest_markers_are_registered(pytestconfig):
    declared = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert {"e2e", "integration", "slow"} <= declared


def test_ci_entry_point_runs_make_test():
    run = REPO_ROOT / ".ci" / "run"
    assert os.access(run, os.X_OK)
    lines = run.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines and lines[-1].strip() == "make test"


def test_make_targets_expand_to_the_documented_commands():
    # A make that runs this test passes its command-line variables down through MAKEFLAGS: drop them.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TESTS", "PORT")}

    def dry(*args):
        done = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                              env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    test = dry("test")
    assert "scripts/setup_host.sh" in test and ".venv/bin/python -m pytest tests -q" in test
    serve = dry("serve", "PORT=8765")
    assert "main.py --cpu --listen 127.0.0.1 --port 8765" in serve
    assert "--port 8188" in dry("serve")
    assert ".venv/bin/python -m training.demo" in dry("demo")
    assert "benchmarks/" in dry("bench")
