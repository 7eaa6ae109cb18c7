"""All nodes of the pack. Each node file exports `NODES = [...]`; this list is what the pack registers."""
from __future__ import annotations

from . import (context_options, contrast_guidance, controlnet_depth, freeinit, inflate, load_frames, motion_loaders,
               motion_scale, prompt_travel, sample, save_animation, sparsectrl, train_motionlora)

NODE_MODULES = [motion_loaders, inflate, sample, save_animation, context_options, prompt_travel, load_frames,
                controlnet_depth, sparsectrl, freeinit, motion_scale, contrast_guidance,
                train_motionlora]
NODES = [node for module in NODE_MODULES for node in module.NODES]
