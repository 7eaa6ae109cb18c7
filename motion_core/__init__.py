"""motion_core: AnimateDiff motion modules, LoRAs and schedules, usable without ComfyUI.

Only the `motion_core.comfy` package imports ComfyUI; importing this package never does.
"""
from .errors import MotionFormatError
from .lora import (DomainAdapter, FitReport, MotionLoRA, load_domain_adapter, load_motion_lora,
                   merged_motion_module)
from .motion_module import MotionLocation, MotionModuleInfo, MotionModuleSet, load_motion_module
from .state_dict_io import read_state_dict, save_state_dict
from .temporal import TemporalModule

__all__ = [
    "MotionFormatError", "MotionModuleSet", "MotionModuleInfo", "MotionLocation", "TemporalModule",
    "load_motion_module", "load_motion_lora", "load_domain_adapter", "merged_motion_module", "MotionLoRA",
    "DomainAdapter", "FitReport", "read_state_dict", "save_state_dict",
]
__version__ = "0.1.0"
