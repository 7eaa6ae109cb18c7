"""The tests' name for tools/workflow_convert.py (the one UI -> API workflow converter): the same module object."""
import sys

from tools import workflow_convert

sys.modules[__name__] = workflow_convert
