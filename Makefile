# Developer entry points. Everything runs in the git-ignored .venv/ and .host/ComfyUI built by `make setup`.
PY := $(CURDIR)/.venv/bin/python
COMFY := $(CURDIR)/.host/ComfyUI
PORT ?= 8188
PYTEST_ARGS ?=
# What to test (default: the whole suite), e.g. `make test TESTS=tests/test_harness_standins.py`.
TESTS ?= tests

# No network on test machines: never let Hugging Face libraries wait on a download.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test serve demo bench standins thumbnails clean-cache

setup:
	bash scripts/setup_host.sh

# pytest's exit code passes through unchanged: 5 ("no tests collected") fails the target too.
test: setup
	$(PY) -m pytest $(TESTS) -q $(PYTEST_ARGS)

# ComfyUI with this pack (linked into .host/ComfyUI/custom_nodes) on 127.0.0.1:$(PORT), CPU only.
serve: setup
	cd $(COMFY) && $(PY) main.py --cpu --listen 127.0.0.1 --port $(PORT)

demo: setup
	$(PY) -m training.demo

# Runs every script in benchmarks/ (Python with the venv, shell with bash); stops at the first failure.
bench: setup
	@set -e; found=0; for f in benchmarks/*; do \
	  case "$$f" in \
	    *.py) found=1; echo "== $$f"; PYTHONPATH=$(CURDIR) $(PY) "$$f";; \
	    *.sh) found=1; echo "== $$f"; bash "$$f";; \
	  esac; \
	done; [ $$found = 1 ] || echo "no benchmark scripts in benchmarks/"

# Seeded stand-in model files into .host/ComfyUI/models (for `make serve`); WHAT selects targets.
WHAT ?= sd15-reduced mm_sd_v15_v2-reduced
standins: setup
	$(PY) -m tools.standins --out $(COMFY)/models --what $(WHAT)

# Template-browser thumbnails example_workflows/<name>.jpg (every workflow, drawn by the real editor) + web/icon.png.
thumbnails: setup
	$(PY) -m tools.thumbnails

clean-cache:
	rm -rf tests/.cache
