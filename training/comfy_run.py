"""Running a shipped example workflow through ComfyUI's own validator and executor, in this process.

The workflows in example_workflows/ are in the editor's format (nodes with `widgets_values`, links); the
executor takes the API format (`{id: {class_type, inputs}}`). `ui_to_api` names each widget value from the
node's INPUT_TYPES (required then optional, link-type inputs skipped, plus the editor's extra
"control_after_generate" value after seed inputs). Edits for the demo (file names, prompts, size) are
applied to the API prompt, and `bypass` removes a pass-through node the way the editor's bypass does.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Dict

from . import host

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UI_ONLY = {"Note", "MarkdownNote"}
PACK_DIR_NAME = "comfyui-animatediff-motionkit"


class WorkflowError(RuntimeError):
    pass


class _ServerStub:
    """The parts of PromptServer the executor and nodes use (messages are kept, nothing is sent)."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def send_progress_text(self, text, node_id, sid=None):
        pass

    def queue_updated(self):
        pass


class ComfyRunner:
    """Boots ComfyUI's nodes (core, extras and this pack) once and runs API prompts."""

    def __init__(self, output_dir: str, model_dirs: Dict[str, str], comfyui_root: str = ""):
        root = host.import_comfy(comfyui_root)
        mod = sys.modules.get("nodes")
        if mod is not None and not str(getattr(mod, "__file__", "")).startswith(str(root)):
            raise WorkflowError(f"`nodes` was imported from {mod.__file__}, not ComfyUI's nodes.py; run the demo as "
                                "`python -m training.demo` from the repository root")
        import utils.extra_config  # noqa: F401  (before `nodes`)
        import execution
        import folder_paths
        import nodes
        import server

        self.server = _ServerStub()
        if getattr(server.PromptServer, "instance", None) is None:
            server.PromptServer.instance = self.server  # nodes reach the host through this
        # ComfyUI logs a warning per optional extra it cannot import (e.g. audio nodes without torchaudio);
        # none of them is used here, so only errors are shown while the nodes load.
        previous = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        finally:
            logging.getLogger().setLevel(previous)
        pack = root / "custom_nodes" / PACK_DIR_NAME
        if not pack.exists():
            pack = host.REPO_ROOT
        if "ADMK_SampleAnimation" not in nodes.NODE_CLASS_MAPPINGS:
            ok = asyncio.run(nodes.load_custom_node(str(pack), ignore=set(nodes.NODE_CLASS_MAPPINGS),
                                                    module_parent="custom_nodes"))
            if not ok:
                raise WorkflowError(f"ComfyUI could not import the pack at {pack} (see the log above)")
        os.makedirs(output_dir, exist_ok=True)
        folder_paths.set_output_directory(output_dir)
        for folder, path in model_dirs.items():
            folder_paths.add_model_folder_path(folder, path, is_default=True)
        self.nodes = nodes
        self.executor = execution.PromptExecutor(self.server, cache_type=execution.CacheType.CLASSIC,
                                                 cache_args={"lru": 0, "ram": 0})

    def run(self, prompt: dict) -> Dict[str, list]:
        """Validate and execute; returns {node id: outputs} of every node that ran (or was cached)."""
        import execution

        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            details = "; ".join(f"node {k}: {e.get('errors')}" for k, e in (node_errors or {}).items())
            raise WorkflowError(f"ComfyUI refused the workflow: {error.get('message')} {error.get('details', '')} "
                                f"{details}")
        self.server.messages.clear()
        self.executor.execute(prompt, prompt_id, {}, outputs)
        for event, data in self.executor.status_messages:
            if event == "execution_error":
                raise WorkflowError(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                    f"{data.get('exception_type')}: {data.get('exception_message')}")
        result = {}
        for node_id in prompt:
            entry = self.executor.caches.outputs.get(node_id)
            if entry is not None:
                result[node_id] = entry.outputs
        return result

    def input_types(self, class_type: str) -> dict:
        cls = self.nodes.NODE_CLASS_MAPPINGS.get(class_type)
        if cls is None:
            raise WorkflowError(f"the workflow uses node type {class_type!r}, which is not installed")
        return cls.INPUT_TYPES()


def _is_widget(spec: Any) -> bool:
    if not isinstance(spec, (list, tuple)) or not spec:
        return False
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput") or opts.get("rawLink"):
        return False
    return isinstance(spec[0], (list, tuple)) or spec[0] in WIDGET_TYPES


def _has_control(name: str, spec: Any) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def ui_to_api(workflow: dict, input_types) -> dict:
    """Editor-format workflow -> API prompt. input_types(class_type) returns that node's INPUT_TYPES()."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt: Dict[str, dict] = {}
    for node in workflow.get("nodes", []):
        if node["type"] in UI_ONLY or node.get("mode", 0) == 2:
            continue
        spec = input_types(node["type"])
        ordered = list(spec.get("required", {}).items()) + list(spec.get("optional", {}).items())
        values = list(node.get("widgets_values") or [])
        inputs: Dict[str, Any] = {}
        i = 0
        for name, s in ordered:
            if not _is_widget(s):
                continue
            if i < len(values):
                inputs[name] = values[i]
            i += 1
            if _has_control(name, s):
                i += 1
        for slot in node.get("inputs", []):
            link_id = slot.get("link")
            if link_id is not None:
                link = links[link_id]
                inputs[slot["name"]] = [str(link[1]), int(link[2])]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def find_node(prompt: dict, class_type: str, nth: int = 0) -> str:
    ids = [k for k, v in sorted(prompt.items(), key=lambda kv: int(kv[0])) if v["class_type"] == class_type]
    if len(ids) <= nth:
        raise WorkflowError(f"the workflow has no {class_type} node #{nth + 1}")
    return ids[nth]


def bypass(prompt: dict, node_id: str, through: str) -> dict:
    """A copy without `node_id`: whoever used its output 0 gets what fed its input `through` instead."""
    out = copy.deepcopy(prompt)
    source = out[node_id]["inputs"][through]
    del out[node_id]
    for node in out.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                node["inputs"][name] = list(source)
    return out


def load_workflow(path: str) -> dict:
    import json

    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def example_workflow(name: str) -> str:
    path = Path(host.REPO_ROOT) / "example_workflows" / name
    if not path.is_file():
        raise WorkflowError(f"shipped workflow {path} is missing")
    return str(path)
