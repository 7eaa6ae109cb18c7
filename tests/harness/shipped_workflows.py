"""Running the shipped example workflows over HTTP, test-sized: what tests/e2e needs around a server.

    install_standins(server)                        # stand-ins under the file names the workflows use
    prompt = sized_prompt(load_workflow(name), server.client.object_info(), prefix)
    frames = saved_frames(server, server.client.run(prompt), save_node(prompt))

Stand-ins are the seeded files of tools/standins.py (reduced SD1.5 layout); frames are shrunk to SIZE x SIZE,
FRAMES frames, 1 step, so one run takes seconds on a CPU.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from tools import standins
from tools.workflow_convert import convert_workflow, find_node, load_workflow  # noqa: F401  (load_workflow: e2e)

FRAMES, SIZE = 8, 64
DEPTH_FOLDER = "depth_frames"  # what depth_guided_animation.json's Load Frames reads (relative to input/)
INPUT_CLIP = "animatediff_input.mp4"  # what vid2vid_sd15_v2.json's Load Frames reads


def install_standins(server) -> None:
    """Every model file and input the shipped workflows name, into the server's folders."""
    install = server.install_model
    install("checkpoints", standins.cached_sd15_checkpoint("reduced"), "v1-5-pruned-emaonly-fp16.safetensors")
    install("animatediff_models", standins.cached_motion_file("mm_sd_v15_v2", layout="reduced"), "mm_sd_v15_v2.ckpt")
    install("animatediff_models", standins.cached_motion_file("v3_sd15_mm", layout="reduced"), "v3_sd15_mm.ckpt")
    install("animatediff_models", standins.cached_motion_file("v3_sd15_adapter_example", layout="reduced"),
            "v3_sd15_adapter.ckpt")
    install("animatediff_motion_lora", standins.cached_motion_file("motion_lora_example", layout="reduced", seed=0),
            "v2_lora_ZoomIn.ckpt")
    install("animatediff_motion_lora", standins.cached_motion_file("motion_lora_example", layout="reduced", seed=1),
            "v2_lora_PanLeft.ckpt")
    # A real pickle file (torch.save of a tensor dict), as the official control_v11f1p_sd15_depth.pth is.
    install("controlnet", standins.cached_controlnet("reduced", ext=".pth"), "control_v11f1p_sd15_depth.pth")
    for manifest, official in (("sparsectrl_latent_condition", "v3_sd15_sparsectrl_rgb.ckpt"),
                               ("sparsectrl_image_condition", "v3_sd15_sparsectrl_scribble.ckpt")):
        install("controlnet", standins.cached_sparsectrl_file(manifest, "reduced"), official)
    input_dir = server.base_dir / "input"
    write_input_clip(input_dir / INPUT_CLIP)
    write_depth_frames(input_dir / DEPTH_FOLDER)
    write_keyframes(input_dir)


def write_input_clip(path: Path, frames: int = FRAMES, size: int = SIZE) -> None:
    """A small moving-gradient MP4 for the video-to-video workflow."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        for i in range(frames):
            rgb = np.stack([np.roll(ramp, 4 * i)[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                            np.full((size, size), 128.0)], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def depth_frame(i: int, frames: int, size: int) -> np.ndarray:
    """Depth-like grey image: near (bright) at the bottom, far (dark) at the top, with a bright disc (an object
    close to the camera) that moves left to right over the clip."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    depth = 0.15 + 0.5 * yy
    cx = 0.2 + 0.6 * i / max(frames - 1, 1)
    depth = np.where((xx - cx) ** 2 + (yy - 0.5) ** 2 < 0.04, 0.95, depth)
    grey = (depth * 255).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def write_depth_frames(folder: Path, frames: int = FRAMES, size: int = SIZE) -> None:
    """A folder of `frames` depth-map PNGs named in frame order (what a depth preprocessor would produce)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        Image.fromarray(depth_frame(i, frames, size)).save(folder / f"depth_{i:03d}.png")


def write_keyframes(folder: Path, size: int = SIZE) -> None:
    """The SparseCtrl workflows' inputs: a first and a last frame (a warm and a cool gradient with a disc on the
    left / right) and three scribbles (a black stroke moving across a white page)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None, :].repeat(size, 0)
    for name, colour, cx in (("sparsectrl_first.png", (1.0, 0.5, 0.2), 0.25), ("sparsectrl_last.png", (0.2, 0.4, 1.0), 0.75)):
        rgb = np.stack([ramp * c for c in colour], -1)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        rgb[(xx - cx) ** 2 + (yy - 0.5) ** 2 < 0.02] = 1.0
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(folder / name)
    for k in range(3):
        page = Image.new("RGB", (size, size), "white")
        x = int(size * (0.2 + 0.3 * k))
        ImageDraw.Draw(page).line([(x, size // 5), (x + size // 8, 4 * size // 5)], fill="black", width=3)
        page.save(folder / f"scribble_{k + 1}.png")


def shrink(prompt: dict, prefix: str, frames: int = FRAMES, size: int = SIZE) -> dict:
    """Same graph, test-sized: every frame count, size and step count of the pack's nodes, and the save prefix."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind in ("ADMK_SampleAnimation", "ADMK_PromptTravel", "ADMK_ControlNetDepthSequence") \
                and not isinstance(inputs.get("frames"), list):  # a wired frame count stays wired
            inputs["frames"] = frames
        if kind == "ADMK_SampleAnimation":
            inputs.update(width=size, height=size, steps=1)
        elif kind == "ADMK_LoadFrames":
            inputs.update(max_frames=frames, width=size, height=size)
        elif kind == "ADMK_SaveAnimation":
            inputs["filename_prefix"] = prefix
    return prompt


def sized_prompt(workflow: dict, object_info: dict, prefix: str) -> dict:
    """The UI workflow as an API prompt (converted with the server's own /object_info), shrunk."""
    return shrink(convert_workflow(workflow, object_info), prefix)


def save_node(prompt: dict) -> str:
    return find_node(prompt, "ADMK_SaveAnimation")


def un_inflated(prompt: dict, prefix: str) -> dict:
    """The same graph with Sample Animation fed the checkpoint's MODEL instead of the inflated one."""
    plain = copy.deepcopy(prompt)
    ckpt = next(k for k, n in plain.items() if n["class_type"] == "CheckpointLoaderSimple")
    for node in plain.values():
        if node["class_type"] == "ADMK_SampleAnimation":
            node["inputs"]["model"] = [ckpt, 0]
        if node["class_type"] == "ADMK_SaveAnimation":
            node["inputs"]["filename_prefix"] = prefix
    return plain


def saved_frames(server, entry: dict, save_id: str) -> np.ndarray:
    """The frames of the one animation file the Save Animation node wrote, [F, H, W, 3] float."""
    from PIL import Image, ImageSequence

    ui = entry["outputs"][save_id]
    assert ui["animated"] == [True] and len(ui["images"]) == 1
    item = ui["images"][0]
    path = server.output_dir / item["subfolder"] / item["filename"]
    assert path.is_file()
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) for f in ImageSequence.Iterator(im)])
