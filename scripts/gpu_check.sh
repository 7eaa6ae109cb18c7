#!/usr/bin/env bash
# What a machine with an NVIDIA GPU adds to `make test`, which always runs on the CPU (CI has no GPU):
#   1. speed, with the GPU to itself: one SD1.5 step plain vs inflated (benchmarks/sd15_step.py --device cuda)
#      and the motion module alone (benchmarks/motion_module.py --device cuda --quick);
#   2. the test suite without its server and browser tests, with ComfyUI on the GPU ($ADMK_COMFY_GPU=1), beside
#   3. a fresh `training.demo` run on the GPU (so its time is an upper bound: the tests share the GPU and CPUs).
# Usage: scripts/gpu_check.sh OUTDIR   (PY = the Python that has torch, ComfyUI's packages, pytest, pytest-xdist
# and pytest-timeout; default python3; the ComfyUI host is found as for the tests: .host/ComfyUI, $ADMK_COMFY_ROOT;
# PARTS = which parts, default "bench tests"; PYTEST_ARGS = more pytest arguments, e.g. --deselect ...).
# Each part has its own time limit, so one that hangs cannot take the others' time; the logs land in OUTDIR.
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
PY=${PY:-python3}
PARTS=${PARTS:-bench tests}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export ADMK_COMFY_GPU=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
part() { echo "== $(date +%T) $*"; }

part "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch, os; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
"bf16", torch.cuda.is_bf16_supported(), "cpus", os.cpu_count())' || exit 1

if [[ " $PARTS " == *" bench "* ]]; then
part "sd15_step (limit 150 s)"
timeout 150 "$PY" benchmarks/sd15_step.py --device cuda --repeat 5 --json "$OUT/sd15_step.json" \
  > "$OUT/sd15_step.log" 2>&1
echo "exit $?"; grep -v "^\s*$" "$OUT/sd15_step.log" | tail -12

part "motion_module (limit 60 s)"
timeout 60 "$PY" benchmarks/motion_module.py --device cuda --quick > "$OUT/motion_module.log" 2>&1
echo "exit $?"; tail -15 "$OUT/motion_module.log"
fi

if [[ " $PARTS " == *" tests "* ]]; then
part "tests with ComfyUI on the GPU and a fresh demo beside them (limit 270 s, the demo 250 s)"
timeout 270 "$PY" -m pytest tests -m "not e2e and not browser" -q -p no:cacheprovider -n 6 --dist loadfile \
  --timeout 200 --durations 15 --junitxml "$OUT/pytest.xml" ${PYTEST_ARGS:-} > "$OUT/pytest.log" 2>&1 &
tests=$!
start=$(date +%s)
timeout 250 "$PY" -m training.demo --fresh --out /tmp/admk_demo_gpu > "$OUT/demo.log" 2>&1
echo "demo exit $? after $(( $(date +%s) - start )) s"
cp /tmp/admk_demo_gpu/report.md "$OUT/demo_report.md" 2>/dev/null
wait $tests
echo "tests exit $?"; tail -40 "$OUT/pytest.log"
fi
part "done"
