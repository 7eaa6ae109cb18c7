"""The tests' name for tools/comfy_inprocess.py (the one in-process ComfyUI runner): the same module object, so
there is one bootstrap state, one server stub and one executor whichever name a test imports."""
import sys

from tools import comfy_inprocess

sys.modules[__name__] = comfy_inprocess
