"""Small core-node workflows (no pack nodes) used to prove the harness against a real ComfyUI."""
from __future__ import annotations


def core_image_prompt(ckpt_name: str, size: int = 64, steps: int = 1, seed: int = 0,
                      prefix: str = "admk_core") -> dict:
    """API prompt: CheckpointLoaderSimple -> CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode
    -> SaveImage."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def core_image_workflow_ui(ckpt_name: str, size: int = 64, steps: int = 1, seed: int = 0,
                           prefix: str = "admk_ui") -> dict:
    """The same graph as the editor saves it (UI format, version 0.4), with what real saves contain: a
    control_after_generate value after the seed, a Note, a Reroute on the VAE link, and the width driven by
    a PrimitiveNode through a widget converted to an input."""
    links = [
        # id, from_node, from_slot, to_node, to_slot, type
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 6, 0, 3, 1, "CONDITIONING"],
        [3, 7, 0, 3, 2, "CONDITIONING"],
        [4, 5, 0, 3, 3, "LATENT"],
        [5, 4, 1, 6, 0, "CLIP"],
        [6, 4, 1, 7, 0, "CLIP"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 10, 0, "VAE"],
        [9, 10, 0, 8, 1, "VAE"],
        [10, 8, 0, 9, 0, "IMAGE"],
        [11, 12, 0, 5, 0, "INT"],
    ]
    nodes = [
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [0, 0], "size": [315, 98], "flags": {}, "order": 0,
         "mode": 0, "inputs": [],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]},
                     {"name": "CLIP", "type": "CLIP", "links": [5, 6]},
                     {"name": "VAE", "type": "VAE", "links": [8]}],
         "properties": {"Node name for S&R": "CheckpointLoaderSimple"}, "widgets_values": [ckpt_name]},
        {"id": 6, "type": "CLIPTextEncode", "pos": [400, 0], "size": [400, 200], "flags": {}, "order": 2,
         "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}],
         "title": "Positive", "properties": {}, "widgets_values": ["a red fox in snow"]},
        {"id": 7, "type": "CLIPTextEncode", "pos": [400, 250], "size": [400, 200], "flags": {}, "order": 3,
         "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 6}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [3]}],
         "properties": {}, "widgets_values": ["blurry"]},
        {"id": 12, "type": "PrimitiveNode", "pos": [0, 300], "size": [210, 82], "flags": {}, "order": 1,
         "mode": 0, "inputs": [],
         "outputs": [{"name": "INT", "type": "INT", "links": [11], "widget": {"name": "width"}}],
         "title": "width", "properties": {"Run widget replace on values": False},
         "widgets_values": [size, "fixed"]},
        {"id": 5, "type": "EmptyLatentImage", "pos": [400, 500], "size": [315, 106], "flags": {}, "order": 4,
         "mode": 0,
         "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 11},
                    {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": None},
                    {"name": "batch_size", "type": "INT", "widget": {"name": "batch_size"}, "link": None}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [4]}],
         "properties": {}, "widgets_values": [512, size, 1]},
        {"id": 3, "type": "KSampler", "pos": [850, 0], "size": [315, 262], "flags": {}, "order": 5, "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 2},
                    {"name": "negative", "type": "CONDITIONING", "link": 3},
                    {"name": "latent_image", "type": "LATENT", "link": 4}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}],
         "properties": {}, "widgets_values": [seed, "randomize", steps, 7.0, "euler", "normal", 1.0]},
        {"id": 10, "type": "Reroute", "pos": [850, 400], "size": [75, 26], "flags": {}, "order": 6, "mode": 0,
         "inputs": [{"name": "", "type": "*", "link": 8}],
         "outputs": [{"name": "", "type": "VAE", "links": [9]}], "properties": {"showOutputText": False}},
        {"id": 8, "type": "VAEDecode", "pos": [1200, 0], "size": [210, 46], "flags": {}, "order": 7, "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 9}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [10]}], "properties": {}},
        {"id": 9, "type": "SaveImage", "pos": [1450, 0], "size": [315, 270], "flags": {}, "order": 8, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 10}], "outputs": [], "properties": {},
         "widgets_values": [prefix]},
        {"id": 13, "type": "Note", "pos": [0, 500], "size": [300, 100], "flags": {}, "order": 9, "mode": 0,
         "inputs": [], "outputs": [], "properties": {}, "widgets_values": ["Stand-in checkpoint; 1 step."]},
    ]
    return {"last_node_id": 13, "last_link_id": 11, "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}
