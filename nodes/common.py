"""What every node of the pack shares: the category, the custom types, and the model folders."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.v0_0_2 import io

CATEGORY = "AnimateDiff MotionKit"

# Our own type names, all ADMK_-prefixed: AnimateDiff-Evolved uses MOTION_MODEL_ADE / CONTEXT_OPTIONS /
# MOTION_LORA and ArtVentureX's comfyui-animatediff uses MOTION_MODULE; a shared name would let the editor
# connect one pack's object to the other pack's node.
MotionModule = io.Custom("ADMK_MOTION_MODULE")
ContextOptions = io.Custom("ADMK_CONTEXT_OPTIONS")
FreeInitSettings = io.Custom("ADMK_FREEINIT")

# Folder names shared with the most used AnimateDiff pack, so files users already have are found.
MOTION_MODELS = "animatediff_models"
MOTION_LORAS = "animatediff_motion_lora"
WEIGHT_EXTENSIONS = {".ckpt", ".safetensors", ".pt", ".pth", ".bin", ".sft"}


def register_model_folders() -> None:
    """Registers models/animatediff_models and models/animatediff_motion_lora (idempotent).

    `add_model_folder_path` creates a folder entry with no extension filter; we add ours to whatever set the
    entry has (another pack may have registered the same folder first), so both packs list the same files.
    """
    for name in (MOTION_MODELS, MOTION_LORAS):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        paths, extensions = folder_paths.folder_names_and_paths[name]
        if isinstance(extensions, set):
            extensions.update(WEIGHT_EXTENSIONS)
        else:
            folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | WEIGHT_EXTENSIONS)


def file_list(folder: str) -> list[str]:
    try:
        return folder_paths.get_filename_list(folder)
    except KeyError:  # folder not registered yet (only possible before register_model_folders ran)
        return []


def full_path(folder: str, name: str) -> str:
    """Path of a file chosen in a combo; the error says where the file was looked for."""
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        searched = ", ".join(folder_paths.get_folder_paths(folder)) if folder in folder_paths.folder_names_and_paths else folder
        raise FileNotFoundError(f"'{name}' was not found in {searched}. Put the file there (or add the folder in "
                                "extra_model_paths.yaml) and press R in the ComfyUI window to refresh the list.")
    return path
