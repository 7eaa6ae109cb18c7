"""Benchmarks run each case in its own Python process (a fresh allocator and peak-memory counter per case)."""
from __future__ import annotations

import json
import subprocess
import sys


def run_cases(script: str, cases, args: list[str], cwd: str) -> dict:
    """{case: the JSON the script printed last} for `script --case <case> *args`; exits with the failing case's code
    (after echoing its output) when one fails."""
    results = {}
    for case in cases:
        proc = subprocess.run([sys.executable, script, "--case", case, *args], capture_output=True, text=True, cwd=cwd)
        if proc.returncode:
            sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
            raise SystemExit(proc.returncode)
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results
