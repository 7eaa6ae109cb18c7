"""Reading and writing weight files without ever running code from them.

Official AnimateDiff files are pickles (`.ckpt`); they are opened with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers. safetensors files are read directly.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Mapping, Union

import torch

from .errors import MotionFormatError

Source = Union[str, os.PathLike, Mapping[str, object]]
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")


def _read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MotionFormatError(
            f"'{os.path.basename(path)}' is not a readable safetensors file ({exc}). It is probably truncated "
            "(an interrupted download): download it again."
        ) from exc


def _read_pickle(path: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise MotionFormatError(
            f"'{os.path.basename(path)}' contains Python objects other than tensors, so it was not opened "
            f"(loading it could run code). Details: {str(exc).splitlines()[0]}. Use the official file or a "
            ".safetensors conversion of it."
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise MotionFormatError(
            f"'{os.path.basename(path)}' could not be read as a PyTorch checkpoint ({str(exc).splitlines()[0]}). "
            "It is probably truncated or not a weight file: download it again."
        ) from exc


def _unwrap(obj: object, name: str) -> dict:
    """Accept `{"state_dict": {...}}` wrappers, DDP `module.` prefixes and non-tensor extras (animatediff_config)."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise MotionFormatError(f"'{name}' does not hold a state dict (found {type(obj).__name__}).")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    if not out:
        raise MotionFormatError(f"'{name}' holds no tensors: it is empty or not a weight file.")
    return out


def read_state_dict(source: Source) -> dict:
    """Returns `{key: tensor}` from a path or a mapping; raises MotionFormatError for anything unusable."""
    if isinstance(source, Mapping):
        return _unwrap(source, "the given state dict")
    path = os.fspath(source)
    name = os.path.basename(path)
    if not os.path.exists(path):
        raise MotionFormatError(
            f"Motion file not found: '{path}'. Put it in ComfyUI/models/animatediff_models (motion modules) or "
            "models/animatediff_motion_lora (MotionLoRAs), or check the path."
        )
    if os.path.isdir(path):
        raise MotionFormatError(f"'{path}' is a folder; choose a weight file inside it.")
    if os.path.getsize(path) == 0:
        raise MotionFormatError(f"'{name}' is empty (0 bytes): the download failed; download it again.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.lower().endswith((".safetensors", ".sft")) or (
        len(head) == 8 and 0 < int.from_bytes(head, "little") < 100_000_000 and not zipfile.is_zipfile(path)
        and head[:1] != b"\x80"
    ):
        return _unwrap(_read_safetensors(path), name)
    return _unwrap(_read_pickle(path), name)


def source_name(source: Source) -> str:
    """How messages name a source: the file name, quoted, or 'the given state dict'."""
    if isinstance(source, Mapping):
        return "the given state dict"
    return f"'{os.path.basename(os.fspath(source))}'"


def read_state_dict_of_kind(source: Source, kind: str, what: str) -> dict:
    """read_state_dict, then MotionFormatError naming what the file really is when it is not of `kind`."""
    from . import detect

    state_dict = read_state_dict(source)
    found = detect.classify(state_dict.keys())
    if found != kind:
        raise MotionFormatError(f"{source_name(source)} is {detect.describe(found)}, not {what}.")
    return state_dict


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, str] | None = None) -> None:
    """Writes safetensors (contiguous CPU copies, shared storage broken so every key is saved)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, os.fspath(path), metadata=dict(metadata or {}))
