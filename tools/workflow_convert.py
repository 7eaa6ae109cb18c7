"""Convert a UI-format workflow (what the ComfyUI editor saves: "version": 0.4, nodes[] with widgets_values,
links[]) into the API prompt format that POST /prompt takes, using /object_info to name the widget values.

The editor gives every widget input one entry in widgets_values, in the order of the node's required then
optional inputs (object_info's input_order), plus:
  - one extra "control_after_generate" value (fixed/increment/decrement/randomize) after every input that has
    `control_after_generate` (and, by frontend convention, after INT inputs named seed/noise_seed);
  - one extra value after an input with `image_upload`/`video_upload`/`audio_upload` (the upload button).
A widget converted to an input keeps its entry; when linked, the link wins. Older saves that left linked
widgets out of widgets_values are recognised by their length.
UI-only nodes are dropped: Note/MarkdownNote, Reroute (links are followed through), PrimitiveNode (its
value is inlined into every input it feeds). Muted nodes (mode 2) are dropped; bypassed nodes (mode 4) pass
each output through from their first input of the same type.

This is the one converter: the tests, the e2e harness (with the server's /object_info), the training demo and
the tools use it (in-process, with tools.comfy_inprocess.object_info()). Below it, small helpers that edit an API
prompt (find a node, bypass one) and load the shipped example workflows.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "example_workflows"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowConversionError(ValueError):
    pass


def _is_widget(spec: Any) -> bool:
    if not isinstance(spec, (list, tuple)) or not spec:
        return False
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput") or opts.get("rawLink"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def _options(spec: Any) -> dict:
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def widget_inputs(info: dict) -> list[tuple[str, Any]]:
    """(name, spec) of a node type's widget inputs, in the order the editor creates the widgets."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v.keys()) for k, v in inputs.items()}
    out = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section, list(specs)):
            if name in specs and _is_widget(specs[name]):
                out.append((name, specs[name]))
    return out


def _has_control(name: str, spec: Any) -> bool:
    opts = _options(spec)
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def _default(spec: Any) -> Any:
    opts = _options(spec)
    if "default" in opts:
        return opts["default"]
    if isinstance(spec[0], (list, tuple)):
        return spec[0][0] if spec[0] else None
    if spec[0] == "COMBO":
        choices = opts.get("options") or []
        return choices[0] if choices else None
    return None


def _map_widget_values(node: dict, info: dict, linked: set[str]) -> dict[str, Any]:
    values = node.get("widgets_values")
    widgets = widget_inputs(info)
    if values is None:
        values = []  # nothing saved: the editor shows every widget at its default
    if isinstance(values, dict):  # some custom nodes save widgets as {name: value}
        return {name: values[name] for name, _ in widgets if name in values and name not in linked}

    def count(skip_linked: bool) -> int:
        n = 0
        for name, spec in widgets:
            if skip_linked and name in linked:
                continue
            n += 1 + _has_control(name, spec) + any(_options(spec).get(k) for k in UPLOAD_OPTIONS)
        return n

    # Current editors keep an entry for linked widgets; some old saves dropped them.
    skip_linked = len(values) == count(True) and len(values) != count(False)
    out: dict[str, Any] = {}
    pos = 0
    for name, spec in widgets:
        if skip_linked and name in linked:
            continue
        if pos < len(values):
            value = values[pos]
            pos += 1
        else:
            value = _default(spec)  # saved before this input existed: the editor would show the default
        if _has_control(name, spec) and pos < len(values) and isinstance(values[pos], str) \
                and values[pos] in CONTROL_VALUES:
            pos += 1
        has_upload = any(_options(spec).get(k) for k in UPLOAD_OPTIONS)
        if has_upload and pos < len(values) and (values[pos] is None or (isinstance(values[pos], str)
                                                        and values[pos] in ("image", "video", "audio", ""))):
            pos += 1
        if name not in linked:
            out[name] = value
    return out


def convert_workflow(workflow: dict, object_info: dict[str, dict]) -> dict[str, dict]:
    """UI workflow -> API prompt {node_id: {"class_type", "inputs", "_meta": {"title"}}}."""
    if "nodes" not in workflow or "links" not in workflow:
        raise WorkflowConversionError("Not a UI workflow: expected 'nodes' and 'links' (an API prompt needs no conversion).")
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    links: dict[int, tuple[str, int, str, int]] = {}
    for link in workflow["links"]:
        if isinstance(link, dict):  # some editors save links as objects
            link_id, src, src_slot, dst, dst_slot = (link["id"], link["origin_id"], link["origin_slot"],
                                                     link["target_id"], link["target_slot"])
        else:
            link_id, src, src_slot, dst, dst_slot = link[:5]
        links[int(link_id)] = (str(src), int(src_slot), str(dst), int(dst_slot))

    subgraphs = {sg.get("id") for sg in (workflow.get("definitions") or {}).get("subgraphs", [])}
    for node in nodes.values():
        kind = node.get("type")
        if kind in subgraphs:
            raise WorkflowConversionError(f"Node {node['id']} is a subgraph ({kind}); subgraphs are not supported.")
        if kind not in UI_ONLY and kind not in object_info and node.get("mode", 0) != MODE_MUTED:
            raise WorkflowConversionError(
                f"Node {node['id']} has type {kind!r}, which this server does not know (missing custom node pack?).")

    def resolve(link_id: int) -> Any:
        """What a link carries into an API input: [node_id, slot] or a PrimitiveNode's inline value."""
        seen = set()
        while True:
            if link_id in seen:
                raise WorkflowConversionError(f"Link cycle through link {link_id}.")
            seen.add(link_id)
            src, slot, _dst, _ = links[link_id]
            node = nodes.get(src)
            if node is None:
                raise WorkflowConversionError(f"Link {link_id} starts at missing node {src}.")
            kind = node.get("type")
            if kind == "Reroute":
                link_id = node["inputs"][0].get("link")
                if link_id is None:
                    return None
                continue
            if kind == "PrimitiveNode":
                return ("value", (node.get("widgets_values") or [None])[0])
            if node.get("mode", 0) == MODE_BYPASS:
                out_type = (node.get("outputs") or [])[slot].get("type") if node.get("outputs") else None
                through = next((i for i in node.get("inputs", []) if i.get("link") is not None
                                and (i.get("type") == out_type or out_type is None)), None)
                if through is None:
                    return None
                link_id = through["link"]
                continue
            if node.get("mode", 0) == MODE_MUTED:
                return None
            return ("link", [src, slot])

    prompt: dict[str, dict] = {}
    for node_id, node in nodes.items():
        kind = node.get("type")
        if kind in UI_ONLY or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        info = object_info[kind]
        inputs: dict[str, Any] = {}
        linked: set[str] = set()
        for inp in node.get("inputs", []) or []:
            if inp.get("link") is None:
                continue
            name = (inp.get("widget") or {}).get("name") or inp["name"]
            resolved = resolve(int(inp["link"]))
            if resolved is None:
                continue
            linked.add(name)
            inputs[name] = resolved[1]
        widget_values = _map_widget_values(node, info, linked)
        for name, value in widget_values.items():
            inputs.setdefault(name, value)
        title = node.get("title") or info.get("display_name") or kind
        prompt[node_id] = {"class_type": kind, "inputs": inputs, "_meta": {"title": title}}
    return prompt


# --- API prompts and the shipped workflows ----------------------------------------------------------------------

def load_workflow(name: str | Path) -> dict:
    """A UI workflow from a file path, or a shipped one by name ("txt2anim_sd15_v2" or "txt2anim_sd15_v2.json")."""
    path = Path(name)
    if not path.is_file():
        path = WORKFLOWS_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if not path.is_file():
        raise WorkflowConversionError(f"No workflow file {name!r} (nor {path}).")
    return json.loads(path.read_text(encoding="utf-8"))


def find_node(prompt: dict, class_type: str, nth: int = 0) -> str:
    """Id of the nth node of `class_type` in an API prompt, counting in node-id order."""
    order = sorted(prompt, key=lambda k: (0, int(k), "") if str(k).isdigit() else (1, 0, str(k)))
    ids = [k for k in order if prompt[k]["class_type"] == class_type]
    if len(ids) <= nth:
        raise WorkflowConversionError(f"The workflow has no {class_type} node #{nth + 1}.")
    return ids[nth]


def add_node(prompt: dict, node: dict) -> str:
    """Put `node` ({"class_type": ..., "inputs": ...}) into an API prompt under the next free numeric id; return
    the id (for links to it: [id, output])."""
    node_id = str(max((int(k) for k in prompt if str(k).isdigit()), default=0) + 1)
    prompt[node_id] = node
    return node_id


def bypass(prompt: dict, node_id: str, through: str) -> dict:
    """A copy of an API prompt without `node_id`: whoever used its output 0 gets what fed its input `through`
    instead (what the editor's bypass does to a pass-through node)."""
    out = copy.deepcopy(prompt)
    source = out[node_id]["inputs"][through]
    del out[node_id]
    for node in out.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                node["inputs"][name] = list(source)
    return out
