"""Real ComfyUI inside this process, the one in-process runner: bootstrap once, run API-format prompts through
ComfyUI's own validator and executor (no HTTP, a stub PromptServer), get back UI results and the nodes' actual
Python outputs. The tests (as `tools.comfy_inprocess`), the training demo and the tools all use this module.

    from tools.comfy_inprocess import bootstrap, run_prompt, install_model
    bootstrap(load_pack=True)
    name = install_model("checkpoints", standins.cached_sd15_checkpoint("reduced"))
    result = run_prompt(prompt)               # raises PromptValidationError / PromptExecutionError
    images = result.output("8")               # first output of node "8" (e.g. an IMAGE tensor)
    result.ui["9"]["images"]                  # what SaveImage reported

UI-format workflows (what the editor saves) become API prompts with tools.workflow_convert.convert_workflow(
workflow, object_info()).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .comfy_host import PACK_DIR_NAME, REPO_ROOT, import_comfy

MODEL_FOLDERS = ("checkpoints", "controlnet", "animatediff_models", "animatediff_motion_lora", "vae", "loras")


class PromptValidationError(RuntimeError):
    """ComfyUI refused the prompt before running it (unknown node, bad input, missing file, ...)."""

    def __init__(self, message: str, error: dict, node_errors: dict):
        super().__init__(message)
        self.error = error
        self.node_errors = node_errors


class PromptExecutionError(RuntimeError):
    """A node raised while the prompt ran. `original` is the exception object the node raised."""

    def __init__(self, message: str, node_id: str, node_type: str, original: BaseException | None, details: dict):
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type
        self.original = original
        self.details = details


class PromptInterrupted(RuntimeError):
    """The run was interrupted (comfy.model_management.interrupt_current_processing)."""


@dataclass
class PromptResult:
    prompt_id: str
    ui: dict[str, dict]                      # node id -> UI dict, as /history's "outputs"
    node_outputs: dict[str, list]            # node id -> ComfyUI's output_data: one list per output slot
    messages: list[tuple[str, dict]]         # (event, data) the executor sent, in order
    progress: list[dict] = field(default_factory=list)  # {"node", "value", "max"} from ProgressBar updates

    def output(self, node_id: str | int, slot: int = 0) -> Any:
        """The value a node produced on an output slot (the whole list when the node ran as a list)."""
        node_id = str(node_id)
        if node_id not in self.node_outputs:
            raise KeyError(f"Node {node_id} has no cached outputs; executed nodes: {sorted(self.node_outputs)}")
        values = self.node_outputs[node_id][slot]
        return values[0] if len(values) == 1 else values


class _ServerStub:
    """What PromptExecutor and progress reporting use of PromptServer; records every message."""

    def __init__(self):
        from aiohttp import web

        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.routes = web.RouteTableDef()
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def send_progress_text(self, text, node_id, sid=None):
        self.messages.append(("progress_text", {"text": text, "node": node_id}))

    def queue_updated(self):
        pass


_state: dict[str, Any] = {"root": None, "booted": False, "pack": None, "dirs": None, "server": None, "executor": None}


def _check_nodes_module(root: Path) -> None:
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(str(root)):
        raise RuntimeError(
            f"`nodes` was already imported from {getattr(mod, '__file__', mod)}, not ComfyUI's nodes.py. "
            f"This repo's nodes/ package shadows ComfyUI's: call bootstrap() before anything imports `nodes`, "
            f"reach the pack through bootstrap(load_pack=True) (tests: the comfy_pack fixture), and run scripts "
            f"as `python -m ...` from the repository root (e.g. `python -m training.demo`)."
        )


def session_dirs() -> dict[str, Path]:
    """This process's ComfyUI folders: base, models/<folder>, input, output, temp, user (created on bootstrap)."""
    if _state["dirs"] is None:
        base = Path(os.environ.get("ADMK_INPROCESS_BASE") or tempfile.mkdtemp(prefix="admk-comfy-"))
        dirs = {"base": base, "models": base / "models", "input": base / "input", "output": base / "output",
                "temp": base / "temp", "user": base / "user"}
        for folder in MODEL_FOLDERS:
            dirs[folder] = dirs["models"] / folder
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        _state["dirs"] = dirs
    return _state["dirs"]


def _register_dirs() -> None:
    import folder_paths

    dirs = session_dirs()
    folder_paths.set_output_directory(str(dirs["output"]))
    folder_paths.set_input_directory(str(dirs["input"]))
    folder_paths.set_temp_directory(str(dirs["temp"]))
    folder_paths.set_user_directory(str(dirs["user"]))
    for folder in MODEL_FOLDERS:
        # is_default puts the session folder first, ahead of any folder the pack registered.
        folder_paths.add_model_folder_path(folder, str(dirs[folder]), is_default=True)


def _progress_hook(value, total, preview_image, prompt_id=None, node_id=None):
    import comfy.model_management
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    ctx = get_executing_context()
    if node_id is None and ctx is not None:
        node_id = ctx.node_id
    # Same as ComfyUI's own hook: a progress update is where an interrupt request takes effect.
    comfy.model_management.throw_exception_if_processing_interrupted()
    server = _state["server"]
    if node_id is None:
        node_id = server.last_node_id
    get_progress_state().update_progress(node_id, value, total, preview_image)
    server.send_sync("progress", {"value": value, "max": total, "node": node_id}, server.client_id)


def bootstrap(load_pack: bool = False, comfyui_root: str = "", cpu: bool | None = True) -> ModuleType | None:
    """Start ComfyUI in this process once (core + comfy_extras nodes, session folders).
    With load_pack=True also import this pack as ComfyUI would; returns the pack module then.
    comfyui_root and cpu are as in tools.comfy_host.import_comfy (only the first call decides)."""
    root = _state["root"] = import_comfy(comfyui_root or _state["root"] or "", cpu=cpu)
    if not _state["booted"]:
        _check_nodes_module(root)
        import utils.extra_config  # noqa: F401  (must precede `nodes`; see docs in comfyui-host facts)
        import comfy.utils
        import nodes
        import server

        stub = _ServerStub()
        _state["server"] = stub
        if getattr(server.PromptServer, "instance", None) is None:
            # Nodes reach the host through PromptServer.instance (progress text, routes); the stub stands in.
            server.PromptServer.instance = stub
        comfy.utils.set_progress_bar_global_hook(_progress_hook)
        # ComfyUI logs a warning per optional extra it cannot import (e.g. audio nodes without torchaudio);
        # none of them is used here, so only errors are shown while the core nodes load.
        previous = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        finally:
            logging.getLogger().setLevel(previous)
        _register_dirs()
        _state["booted"] = True
    if load_pack:
        return _load_pack()
    return _state["pack"]


def _load_pack() -> ModuleType:
    if _state["pack"] is not None:
        return _state["pack"]
    pack_path = _state["root"] / "custom_nodes" / PACK_DIR_NAME
    if not pack_path.exists():
        pack_path = REPO_ROOT  # host built without the symlink: load the repo directly
    module, node_ids = load_custom_node_dir(pack_path)
    _register_dirs()  # after the pack registered its folders, put the session folders first again
    _state["pack"] = module
    _state["pack_nodes"] = node_ids
    return module


def load_custom_node_dir(path: str | os.PathLike) -> tuple[ModuleType, list[str]]:
    """Import a custom-node folder with ComfyUI's own loader; returns (module, node ids it added).
    Raises RuntimeError naming the folder when ComfyUI reports the import failed."""
    bootstrap()
    import nodes

    path = Path(path)
    before = set(nodes.NODE_CLASS_MAPPINGS)
    ok = asyncio.run(nodes.load_custom_node(str(path), ignore=before, module_parent="custom_nodes"))
    module_name = str(path).replace(".", "_x_")
    if not ok or module_name not in sys.modules:
        raise RuntimeError(
            f"ComfyUI could not load the custom nodes in {path} (its traceback is in the log above): the "
            f"folder's __init__.py must import cleanly and export NODE_CLASS_MAPPINGS or comfy_entrypoint."
        )
    return sys.modules[module_name], sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)


def use_folders(output: str | os.PathLike | None = None, models: dict[str, str] | None = None) -> None:
    """Point ComfyUI's output folder at `output` and put `models` ({folder name: directory}) first in each
    model folder's search list (the training demo's own cache instead of the session folders)."""
    bootstrap()
    import folder_paths

    if output is not None:
        os.makedirs(output, exist_ok=True)
        folder_paths.set_output_directory(str(output))
    for folder, path in (models or {}).items():
        folder_paths.add_model_folder_path(folder, str(path), is_default=True)


def pack_node_ids() -> list[str]:
    """Node ids the pack registered (after bootstrap(load_pack=True))."""
    return list(_state.get("pack_nodes") or [])


def install_model(folder: str, source: str | os.PathLike, name: str | None = None) -> str:
    """Make a file visible to loaders in `folder` (symlink into the session models dir); returns the name
    to use in a prompt."""
    bootstrap()
    dirs = session_dirs()
    if folder not in dirs:
        import folder_paths

        target_dir = dirs["models"] / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        folder_paths.add_model_folder_path(folder, str(target_dir), is_default=True)
    else:
        target_dir = dirs[folder]
    source = Path(source).resolve()
    name = name or source.name
    link = target_dir / name
    if link.is_symlink() or link.exists():
        if link.resolve() == source:
            return name
        link.unlink()
    link.symlink_to(source)
    return name


def object_info() -> dict[str, dict]:
    """What GET /object_info would answer, built in-process the same way server.py does."""
    bootstrap()
    import nodes
    from comfy_api.internal import _ComfyNodeInternal

    out = {}
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        if issubclass(cls, _ComfyNodeInternal):
            out[name] = cls.GET_NODE_INFO_V1()
            continue
        inputs = cls.INPUT_TYPES()
        out[name] = {
            "input": inputs,
            "input_order": {k: list(v.keys()) for k, v in inputs.items()},
            "output": cls.RETURN_TYPES,
            "output_is_list": getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES)),
            "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
            "name": name,
            "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
            "description": getattr(cls, "DESCRIPTION", ""),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
        }
    return out


def _format_validation(error: dict, node_errors: dict) -> str:
    lines = [f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".rstrip(": ")]
    for node_id, info in node_errors.items():
        for err in info.get("errors", []):
            lines.append(f"  node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(lines)


def _executor():
    import execution

    class _RecordingExecutor(execution.PromptExecutor):
        # Keeps the exception object a node raised (ComfyUI itself only reports its text).
        def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
            self.last_exception = ex
            return super().handle_execution_error(prompt_id, prompt, current_outputs, executed, error, ex)

    return _RecordingExecutor(_state["server"], cache_type=execution.CacheType.CLASSIC,
                              cache_args={"lru": 0, "ram": 0})


def run_prompt(prompt: dict, fresh: bool = False, extra_data: dict | None = None) -> PromptResult:
    """Validate and execute an API-format prompt like the server's queue worker does.

    The executor (and so ComfyUI's node-output cache) is shared across calls, as in a running server: a node
    whose inputs did not change is not run again. fresh=True uses a new executor with an empty cache.
    """
    bootstrap()
    import execution

    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid:
        raise PromptValidationError(_format_validation(error, node_errors), error, node_errors)
    if fresh or _state["executor"] is None:
        _state["executor"] = _executor()
    executor = _state["executor"]
    executor.last_exception = None
    server = _state["server"]
    server.messages.clear()
    server.last_prompt_id = prompt_id
    executor.execute(prompt, prompt_id, dict(extra_data or {}), outputs)

    messages = list(executor.status_messages)
    for event, data in messages:
        if event == "execution_interrupted":
            raise PromptInterrupted(f"Prompt interrupted at node {data.get('node_id')} ({data.get('node_type')})")
        if event == "execution_error":
            msg = (f"Node {data.get('node_id')} ({data.get('node_type')}) raised {data.get('exception_type')}: "
                   f"{data.get('exception_message')}")
            raise PromptExecutionError(msg, str(data.get("node_id")), data.get("node_type"),
                                       executor.last_exception, data)
    node_outputs = {}
    for node_id in prompt:
        entry = executor.caches.outputs.get(node_id)
        if entry is not None:
            node_outputs[node_id] = entry.outputs
    progress = [d for e, d in server.messages if e == "progress"]
    return PromptResult(prompt_id, dict(executor.history_result.get("outputs", {})), node_outputs, messages, progress)


def interrupt() -> None:
    """Ask the running prompt to stop at its next progress update (as POST /interrupt does)."""
    import nodes

    nodes.interrupt_processing(True)
