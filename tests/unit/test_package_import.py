"""The pack's entry point and motion_core import outside ComfyUI without pulling ComfyUI in."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("admk_pack", {str(REPO / '__init__.py')!r},
                                              submodule_search_locations=[{str(REPO)!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["admk_pack"] = pack
spec.loader.exec_module(pack)
assert callable(pack.comfy_entrypoint)
assert not hasattr(pack, "NODE_CLASS_MAPPINGS")  # it would make ComfyUI ignore the V3 entrypoint
sys.path.insert(0, {str(REPO)!r})
import motion_core
assert motion_core.load_motion_module and motion_core.MotionFormatError
bad = sorted(m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "comfy_api", "folder_paths")))
assert not bad, bad
print("ok")
"""


def test_entry_point_and_motion_core_import_without_comfyui():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_only_the_comfy_package_reaches_comfyui():
    """The boundary, read from the source: outside motion_core/comfy/ no file imports ComfyUI or looks its
    modules up by name (a `sys.modules.get("comfy...")` would hide the dependency from the import test above)."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(comfy|comfy_api|comfy_extras|folder_paths|nodes)\b|[\"']comfy[._]",
                         re.M)
    offenders = [str(p.relative_to(REPO)) for p in sorted((REPO / "motion_core").rglob("*.py"))
                 if "comfy" not in p.relative_to(REPO / "motion_core").parts[:-1] and pattern.search(p.read_text())]
    assert not offenders, offenders
    assert (REPO / "motion_core" / "comfy" / "inflate.py").is_file()
