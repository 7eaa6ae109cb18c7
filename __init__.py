"""AnimateDiff MotionKit: AnimateDiff motion modules for ComfyUI as V3 nodes (entry point `comfy_entrypoint`).

No `NODE_CLASS_MAPPINGS` on purpose: when both exist ComfyUI takes the mappings and ignores the entry point.
The nodes are imported inside the entry point so that this package can be imported without ComfyUI (tests,
training tools).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

# Served by ComfyUI at /extensions/<this folder>/: the frontend's node-help panel fetches docs/<NODE_ID>.md there.
WEB_DIRECTORY = "./web"

if TYPE_CHECKING:  # pragma: no cover
    from comfy_api.v0_0_2 import ComfyExtension


async def comfy_entrypoint() -> "ComfyExtension":
    from comfy_api.v0_0_2 import ComfyExtension

    from .nodes import NODES
    from .nodes.common import register_model_folders

    register_model_folders()

    class MotionKitExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return MotionKitExtension()
