"""UI-workflow -> API-prompt conversion on a small synthetic /object_info (no ComfyUI needed)."""
from __future__ import annotations

import pytest

from tools.workflow_convert import WorkflowConversionError, add_node, convert_workflow, widget_inputs

INFO = {
    "Loader": {"input": {"required": {"name": [["a.ckpt", "b.ckpt"], {}]}},
               "input_order": {"required": ["name"]}, "output": ["MODEL"], "display_name": "Load"},
    "Sampler": {
        "input": {
            "required": {"model": ["MODEL", {}], "seed": ["INT", {"default": 0, "control_after_generate": True}],
                         "steps": ["INT", {"default": 20}], "cfg": ["FLOAT", {"default": 8.0}],
                         "mode": ["COMBO", {"options": ["x", "y"], "default": "x"}]},
            "optional": {"note": ["STRING", {"default": "hi", "multiline": True}],
                         "mask": ["MASK", {}], "strength": ["FLOAT", {"default": 1.0, "forceInput": True}],
                         "late": ["BOOLEAN", {"default": True}]},
            "hidden": {"unique_id": "UNIQUE_ID"}},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "mode"],
                        "optional": ["note", "mask", "strength", "late"], "hidden": ["unique_id"]},
        "output": ["LATENT"], "display_name": "Sampler"},
    "Image": {"input": {"required": {"image": [["p.png"], {"image_upload": True}], "noise_seed": ["INT", {}]}},
              "input_order": {"required": ["image", "noise_seed"]}, "output": ["IMAGE"]},
    "Pass": {"input": {"required": {"latent": ["LATENT", {}]}}, "output": ["LATENT"]},
}


def node(id_, type_, widgets=None, inputs=(), outputs=(), mode=0, title=None):
    n = {"id": id_, "type": type_, "mode": mode, "inputs": list(inputs), "outputs": list(outputs)}
    if widgets is not None:
        n["widgets_values"] = widgets
    if title:
        n["title"] = title
    return n


def wf(nodes, links):
    return {"version": 0.4, "nodes": nodes, "links": links}


def test_widget_order_skips_sockets_and_force_input():
    assert [n for n, _ in widget_inputs(INFO["Sampler"])] == ["seed", "steps", "cfg", "mode", "note", "late"]


def test_control_after_generate_values_are_skipped_and_links_become_refs():
    w = wf([node(1, "Loader", ["b.ckpt"]),
            node(2, "Sampler", [7, "randomize", 30, 6.5, "y", "text", False],
                 inputs=[{"name": "model", "type": "MODEL", "link": 1}], title="My sampler")],
           [[1, 1, 0, 2, 0, "MODEL"]])
    prompt = convert_workflow(w, INFO)
    assert prompt["1"] == {"class_type": "Loader", "inputs": {"name": "b.ckpt"}, "_meta": {"title": "Load"}}
    assert prompt["2"]["inputs"] == {"model": ["1", 0], "seed": 7, "steps": 30, "cfg": 6.5, "mode": "y",
                                     "note": "text", "late": False}
    assert prompt["2"]["_meta"]["title"] == "My sampler"


def test_seed_named_inputs_get_a_control_value_by_convention_and_upload_value_is_skipped():
    prompt = convert_workflow(wf([node(1, "Image", ["p.png", "image", 5, "fixed"])], []), INFO)
    assert prompt["1"]["inputs"] == {"image": "p.png", "noise_seed": 5}


def test_missing_trailing_values_take_defaults_and_control_value_may_be_absent():
    prompt = convert_workflow(wf([node(2, "Sampler", [3, 10, 1.5, "x"])], []), INFO)
    assert prompt["2"]["inputs"] == {"seed": 3, "steps": 10, "cfg": 1.5, "mode": "x", "note": "hi", "late": True}


@pytest.mark.parametrize("values", [
    [0, "fixed", 30, 6.5, "y", "t", True],   # current editors keep the linked widget's old value
    [0, "fixed", 6.5, "y", "t", True],       # older saves dropped it
])
def test_widget_converted_to_input_takes_the_link_and_primitive_is_inlined(values):
    w = wf([node(5, "PrimitiveNode", [42, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [3]}]),
            node(2, "Sampler", values, inputs=[{"name": "steps", "type": "INT", "widget": {"name": "steps"},
                                                "link": 3}])],
           [[3, 5, 0, 2, 1, "INT"]])
    prompt = convert_workflow(w, INFO)
    assert "5" not in prompt
    assert prompt["2"]["inputs"] == {"steps": 42, "seed": 0, "cfg": 6.5, "mode": "y", "note": "t", "late": True}


def test_reroutes_are_followed_notes_dropped_muted_removed_bypass_passes_through():
    w = wf([node(1, "Loader", ["a.ckpt"]),
            node(9, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}],
                 outputs=[{"name": "", "type": "MODEL", "links": [2]}]),
            node(2, "Sampler", [1, "fixed", 2, 3.0, "x", "", True],
                 inputs=[{"name": "model", "type": "MODEL", "link": 2}], outputs=[{"type": "LATENT"}]),
            node(3, "Pass", inputs=[{"name": "latent", "type": "LATENT", "link": 4}],
                 outputs=[{"type": "LATENT"}], mode=4),
            node(4, "Pass", inputs=[{"name": "latent", "type": "LATENT", "link": 5}], outputs=[{"type": "LATENT"}]),
            node(6, "Pass", inputs=[{"name": "latent", "type": "LATENT", "link": 6}], mode=2),
            node(7, "Note", ["just a note"]), node(8, "MarkdownNote", ["# title"])],
           [[1, 1, 0, 9, 0, "MODEL"], [2, 9, 0, 2, 0, "MODEL"], [4, 2, 0, 3, 0, "LATENT"],
            [5, 3, 0, 4, 0, "LATENT"], [6, 4, 0, 6, 0, "LATENT"]])
    prompt = convert_workflow(w, INFO)
    assert sorted(prompt) == ["1", "2", "4"]
    assert prompt["2"]["inputs"]["model"] == ["1", 0]
    assert prompt["4"]["inputs"] == {"latent": ["2", 0]}


def test_dict_widgets_values_are_mapped_by_name():
    prompt = convert_workflow(wf([node(1, "Loader", {"name": "b.ckpt", "extra": 1})], []), INFO)
    assert prompt["1"]["inputs"] == {"name": "b.ckpt"}


def test_unknown_node_type_and_api_format_are_reported():
    with pytest.raises(WorkflowConversionError, match="'Mystery'.*missing custom node"):
        convert_workflow(wf([node(1, "Mystery", [])], []), INFO)
    with pytest.raises(WorkflowConversionError, match="Not a UI workflow"):
        convert_workflow({"1": {"class_type": "Loader", "inputs": {}}}, INFO)


def test_add_node_takes_the_next_free_numeric_id():
    prompt = {"3": {"class_type": "A", "inputs": {}}, "12": {"class_type": "B", "inputs": {}},
              "note": {"class_type": "C", "inputs": {}}}
    first = add_node(prompt, {"class_type": "D", "inputs": {"x": ["12", 0]}})
    second = add_node(prompt, {"class_type": "E", "inputs": {"y": [first, 0]}})
    assert (first, second) == ("13", "14")
    assert prompt[first]["class_type"] == "D" and prompt[second]["inputs"]["y"] == ["13", 0]
    assert add_node({}, {"class_type": "F", "inputs": {}}) == "1"
