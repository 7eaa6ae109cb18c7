"""Installed side by side with the two other public AnimateDiff packs, over HTTP on a real server.

The other packs are stand-ins written into a temporary folder by this test: small classic node packs with their
public surface (node ids, custom type names, model folders registered the way they register them), no models.
- AnimateDiff-Evolved (Kosinkadink): `ADE_*` ids, types MOTION_MODEL_ADE / CONTEXT_OPTIONS / MOTION_LORA, and
  it registers the folders animatediff_models / animatediff_motion_lora (its own pack folder first, then
  models/<folder>, extensions added to the existing entry) - the folders we share with it.
- comfyui-animatediff (ArtVentureX): `AnimateDiff*` ids, type MOTION_MODULE, its own "AnimateDiff" folders.
Checks: every pack imports, ComfyUI keeps all their nodes and ours (same ids would silently replace each other),
no type name of ours is one of theirs, both loaders list the same motion files, and a shipped workflow runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.server import start_server
from harness.shipped_workflows import (FRAMES, SIZE, install_standins, load_workflow, save_node, saved_frames,
                                       sized_prompt)
from tools.comfy_host import PACK_DIR_NAME

pytestmark = pytest.mark.e2e

ADE_IDS = ("ADE_AnimateDiffLoaderGen1", "ADE_ApplyAnimateDiffModel", "ADE_StandardUniformContextOptions",
           "ADE_AnimateDiffLoRALoader", "ADE_LoadAnimateDiffModel")
ADE_TYPES = {"MOTION_MODEL_ADE", "CONTEXT_OPTIONS", "MOTION_LORA", "M_MODELS"}
AVX_IDS = ("AnimateDiffModuleLoader", "AnimateDiffSampler", "AnimateDiffLoraLoader", "AnimateDiffCombine")
AVX_TYPES = {"MOTION_MODULE", "MOTION_LORA_STACK", "SLIDING_WINDOW_OPTS"}
OUR_TYPES = {"ADMK_MOTION_MODULE", "ADMK_CONTEXT_OPTIONS", "ADMK_SPARSECTRL", "ADMK_FREEINIT"}

# Every stub node: a classic node that refuses to run (the stubs are only their public surface).
NODE_BASE = '''class Node:
    CATEGORY = "Animate Diff stub"
    FUNCTION = "run"

    def run(self, **kwargs):
        raise RuntimeError("stub node: not meant to run")
'''

ADE_STUB = '''
"""Stand-in for ComfyUI-AnimateDiff-Evolved's public surface (test only; no models, no sampling)."""
import os

import folder_paths

PACK = os.path.dirname(os.path.abspath(__file__))
MODELS, LORAS = "animatediff_models", "animatediff_motion_lora"
# Registered like that pack does: its own folder, then models/<name>; extensions added to whatever entry exists.
for name, own in ((MODELS, "models"), (LORAS, "motion_lora")):
    folder_paths.add_model_folder_path(name, os.path.join(PACK, own))
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    folder_paths.folder_names_and_paths[name][1].update(folder_paths.supported_pt_extensions)
    os.makedirs(os.path.join(folder_paths.models_dir, name), exist_ok=True)


{NODE_BASE}

class LoaderGen1(Node):
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "model_name": (folder_paths.get_filename_list(MODELS),),
                             "beta_schedule": (["autoselect", "sqrt_linear (AnimateDiff)"],)},
                "optional": {"context_options": ("CONTEXT_OPTIONS",), "motion_lora": ("MOTION_LORA",)}}


class LoadModel(Node):
    RETURN_TYPES = ("MOTION_MODEL_ADE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (folder_paths.get_filename_list(MODELS),)}}


class ApplyModel(Node):
    RETURN_TYPES = ("M_MODELS",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion_model": ("MOTION_MODEL_ADE",)}, "optional": {"motion_lora": ("MOTION_LORA",)}}


class UniformContext(Node):
    RETURN_TYPES = ("CONTEXT_OPTIONS",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"context_length": ("INT", {"default": 16})}}


class LoRALoader(Node):
    RETURN_TYPES = ("MOTION_LORA",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (folder_paths.get_filename_list(LORAS),), "strength": ("FLOAT", {})},
                "optional": {"prev_motion_lora": ("MOTION_LORA",)}}


NODE_CLASS_MAPPINGS = {"ADE_AnimateDiffLoaderGen1": LoaderGen1, "ADE_LoadAnimateDiffModel": LoadModel,
                       "ADE_ApplyAnimateDiffModel": ApplyModel, "ADE_StandardUniformContextOptions": UniformContext,
                       "ADE_AnimateDiffLoRALoader": LoRALoader}
'''

AVX_STUB = '''
"""Stand-in for ArtVentureX comfyui-animatediff's public surface (test only; no models, no sampling)."""
import os

import folder_paths

PACK = os.path.dirname(os.path.abspath(__file__))
# That pack assigns its own folder entries outright (sharing ComfyUI's extension set).
folder_paths.folder_names_and_paths["AnimateDiff"] = (
    [os.path.join(folder_paths.models_dir, "AnimateDiff"), os.path.join(PACK, "models")],
    folder_paths.supported_pt_extensions)
folder_paths.folder_names_and_paths["AnimateDiffLora"] = (
    [os.path.join(folder_paths.models_dir, "AnimateDiffLora"), os.path.join(PACK, "loras")],
    folder_paths.supported_pt_extensions)


{NODE_BASE}

class ModuleLoader(Node):
    RETURN_TYPES = ("MOTION_MODULE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (folder_paths.get_filename_list("AnimateDiff"),)}}


class Sampler(Node):
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion_module": ("MOTION_MODULE",), "model": ("MODEL",), "positive": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "latent_image": ("LATENT",)},
                "optional": {"sliding_window_opts": ("SLIDING_WINDOW_OPTS",), "lora_stack": ("MOTION_LORA_STACK",)}}


class LoraLoader(Node):
    RETURN_TYPES = ("MOTION_LORA_STACK",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (folder_paths.get_filename_list("AnimateDiffLora"),)},
                "optional": {"lora_stack": ("MOTION_LORA_STACK",)}}


class Combine(Node):
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "frame_rate": ("INT", {"default": 8})}}


NODE_CLASS_MAPPINGS = {"AnimateDiffModuleLoader": ModuleLoader, "AnimateDiffSampler": Sampler,
                       "AnimateDiffLoraLoader": LoraLoader, "AnimateDiffCombine": Combine}
'''

STUBS = {"ComfyUI-AnimateDiff-Evolved": ADE_STUB, "comfyui-animatediff": AVX_STUB}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    packs = tmp_path_factory.mktemp("other_packs")
    dirs = {}
    for name, source in STUBS.items():
        (packs / name).mkdir()
        (packs / name / "__init__.py").write_text(source.replace("{NODE_BASE}", NODE_BASE).lstrip())
        dirs[name] = packs / name
    server = start_server(extra_custom_nodes=dirs)
    try:
        install_standins(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def object_info(server):
    return server.client.object_info()


def owner(info: dict) -> str:
    """The custom-node folder a node came from ('' for core nodes)."""
    module = info.get("python_module", "")
    return module.split(".", 1)[1] if module.startswith("custom_nodes.") else ""


def types_of(infos) -> set[str]:
    """Every type name the nodes take or give (combo lists and core-widget types are not types)."""
    found = set()
    for info in infos:
        found.update(t for t in info["output"] if isinstance(t, str))
        for section in ("required", "optional"):
            for spec in info["input"].get(section, {}).values():
                if isinstance(spec[0], str) and spec[0] != "COMBO":
                    found.add(spec[0])
    return found


def test_all_three_packs_import_and_keep_all_their_nodes(server, object_info):
    assert server.import_failures() == [], "\n".join(server.import_failures())
    ours = {k for k, v in object_info.items() if owner(v) == PACK_DIR_NAME}
    assert ours and all(k.startswith("ADMK_") for k in ours)
    # ComfyUI silently lets a later pack replace a node id: every id must still belong to its own pack
    assert {k: owner(object_info[k]) for k in ADE_IDS} == dict.fromkeys(ADE_IDS, "ComfyUI-AnimateDiff-Evolved")
    assert {k: owner(object_info[k]) for k in AVX_IDS} == dict.fromkeys(AVX_IDS, "comfyui-animatediff")
    assert not ours & (set(ADE_IDS) | set(AVX_IDS))
    assert not any(k.startswith("ADMK_") for k, v in object_info.items() if owner(v) != PACK_DIR_NAME)


def test_no_type_name_of_ours_is_one_of_theirs(object_info):
    by_owner: dict[str, list] = {}
    for info in object_info.values():
        by_owner.setdefault(owner(info), []).append(info)
    core = types_of(by_owner[""])
    ours = types_of(by_owner[PACK_DIR_NAME]) - core
    theirs = types_of(by_owner["ComfyUI-AnimateDiff-Evolved"] + by_owner["comfyui-animatediff"]) - core
    assert ours == OUR_TYPES
    assert ADE_TYPES | AVX_TYPES <= theirs  # the stand-ins really publish the names we must avoid
    assert not ours & theirs


def test_both_loaders_list_the_shared_motion_files(server):
    models = server.models_dir("animatediff_models")
    ade_own = server.base_dir / "custom_nodes" / "ComfyUI-AnimateDiff-Evolved" / "models"
    ade_own.mkdir(exist_ok=True)  # (that pack ships this folder; files users put there count too)
    (models / "shared_motion.ckpt").write_bytes(b"placeholder")
    (ade_own / "in_ade_folder.safetensors").write_bytes(b"placeholder")
    (server.models_dir("animatediff_motion_lora") / "shared_lora.ckpt").write_bytes(b"placeholder")
    info = server.client.object_info()

    def options(node_id, name):
        spec = info[node_id]["input"]["required"][name]
        return set(spec[1]["options"] if spec[0] == "COMBO" else spec[0])

    ours, theirs = options("ADMK_LoadMotionModule", "model_name"), options("ADE_AnimateDiffLoaderGen1", "model_name")
    assert {"shared_motion.ckpt", "in_ade_folder.safetensors", "mm_sd_v15_v2.ckpt"} <= ours
    assert ours == theirs
    assert "shared_lora.ckpt" in options("ADMK_ApplyMotionLoRA", "lora_name") \
        & options("ADE_AnimateDiffLoRALoader", "lora_name")


def test_a_shipped_workflow_runs_with_the_other_packs_installed(server, object_info):
    prompt = sized_prompt(load_workflow("txt2anim_sd15_v2"), object_info, "coexist_txt2anim")
    frames = saved_frames(server, server.client.run(prompt, timeout=600), save_node(prompt))
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.isfinite(frames).all() and frames.std() > 0
    assert server.import_failures() == []
