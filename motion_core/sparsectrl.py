"""SparseCtrl files (v3_sd15_sparsectrl_rgb.ckpt, v3_sd15_sparsectrl_scribble.ckpt) and their keyframe condition.

Loading follows the motion-module rules (safe reader, kind detection, exact key/shape check, NaN check, the
file's precision kept when asked). The condition is built as the authors' pipeline builds it: a clip-long tensor
of zeros with each keyframe's condition written at its index, and a one-channel mask that is 1 on those frames.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from . import detect
from .errors import MotionFormatError
from .motion_module import fill_from_state_dict
from .sparsectrl_net import LevelSpec, NetSpec, SparseControlNet
from .state_dict_io import Source, read_state_dict, source_name

KIND_RGB = "rgb"            # condition = the keyframe's VAE latent (4 channels), one-conv embedding
KIND_SCRIBBLE = "scribble"  # condition = the keyframe image (3 channels), conv-stack embedding
DEFAULT_MAX_FRAMES = 32     # the position-table length of both official files (the table may be absent)
SPREAD = "spread"
_RESNET = re.compile(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.conv1\.weight$")


@dataclass(frozen=True)
class SparseCtrlInfo:
    kind: str            # rgb | scribble
    base: str            # sd15 | sdxl
    max_frames: int
    has_pe: bool
    params: int
    dtype: str

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        what = "RGB keyframes (needs a VAE)" if self.kind == KIND_RGB else "scribble/sketch keyframes"
        return (f"SparseCtrl {self.kind}: {what}, up to {self.max_frames} frames per pass, {self.params / 1e6:.1f} M "
                f"params, {self.dtype}")


class SparseCtrl(SparseControlNet):
    """The network plus what was detected (`info`)."""

    info: Optional[SparseCtrlInfo] = None


def spec_from_keys(shapes: dict, name: str) -> NetSpec:
    """The network structure written in a state dict's keys (key -> shape)."""
    def need(key):
        if key not in shapes:
            raise MotionFormatError(f"{name} is missing '{key}': it is truncated or not a SparseCtrl file.")
        return shapes[key]

    layers: dict = {}
    for key, shape in shapes.items():
        m = _RESNET.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[int(m.group(2))] = int(shape[0])
    if not layers or sorted(layers) != list(range(len(layers))):
        raise MotionFormatError(f"{name} has no complete down blocks ({sorted(layers)}): it is truncated or not a "
                                "SparseCtrl file.")
    levels = []
    for i in range(len(layers)):
        has = lambda part: any(k.startswith(f"down_blocks.{i}.{part}.") for k in shapes)  # noqa: E731
        levels.append(LevelSpec(channels=layers[i][0], layers=len(layers[i]), attention=has("attentions"),
                                motion=has("motion_modules"), downsample=has("downsamplers")))
    conv_in = need("conv_in.weight")
    if "controlnet_cond_embedding.weight" in shapes:
        simplified, cond_in, widths = True, int(shapes["controlnet_cond_embedding.weight"][1]), ()
    else:
        simplified = False
        cond_in = int(need("controlnet_cond_embedding.conv_in.weight")[1])
        widths = [int(shapes["controlnet_cond_embedding.conv_in.weight"][0])]
        j = 1
        while f"controlnet_cond_embedding.blocks.{j}.weight" in shapes:
            widths.append(int(shapes[f"controlnet_cond_embedding.blocks.{j}.weight"][0]))
            j += 2
        widths = tuple(widths)
    context = [int(v[1]) for k, v in shapes.items() if k.endswith("attn2.to_k.weight")]
    pe = {int(v[1]) for k, v in shapes.items() if k.endswith("pos_encoder.pe")}
    if len(pe) > 1:
        raise MotionFormatError(f"{name} mixes position tables of lengths {sorted(pe)}.")
    motion_blocks = len({k.split("attention_blocks.")[1].split(".")[0] for k in shapes
                         if ".motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks." in k})
    return NetSpec(latent_channels=int(conv_in[1]), cond_channels=cond_in - 1, simplified_embedding=simplified,
                   embedding_channels=widths, levels=tuple(levels), context_dim=context[0] if context else 768,
                   max_frames=pe.pop() if pe else DEFAULT_MAX_FRAMES, motion_attention_blocks=max(motion_blocks, 1))


def _base(spec: NetSpec) -> str:
    return "sdxl" if spec.context_dim == 2048 else "sd15"


def build_from_state_dict(state_dict: dict, name: str = "this file", dtype: Optional[torch.dtype] = torch.float32,
                          _owned: bool = False) -> SparseCtrl:
    """A SparseCtrl (eval, frozen) from a state dict in the official layout. `dtype=None` keeps the file's
    precision. The given mapping is not modified unless `_owned` (then it is emptied as the weights are copied)."""
    kind = detect.classify(state_dict.keys())
    if kind != detect.SPARSECTRL:
        raise MotionFormatError(f"{name} is {detect.describe(kind)}, not a SparseCtrl file "
                                "(v3_sd15_sparsectrl_rgb.ckpt / v3_sd15_sparsectrl_scribble.ckpt).")
    spec = spec_from_keys({k: tuple(v.shape) for k, v in state_dict.items()}, name)
    if dtype is None:
        dtype = state_dict["conv_in.weight"].dtype
        dtype = dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32
    with torch.device("meta"):  # no random init of ~500 M parameters
        net = SparseCtrl(spec)
    has_pe = any(k.endswith("pos_encoder.pe") for k in state_dict)
    fill_from_state_dict(net, state_dict if _owned else dict(state_dict), dtype, name, "a SparseCtrl file")
    net.requires_grad_(False)
    net.eval()
    net.info = SparseCtrlInfo(kind=KIND_RGB if spec.simplified_embedding else KIND_SCRIBBLE, base=_base(spec),
                              max_frames=spec.max_frames, has_pe=has_pe,
                              params=sum(p.numel() for p in net.parameters()), dtype=str(dtype).replace("torch.", ""))
    return net


def load_sparsectrl(source: Source, dtype: Optional[torch.dtype] = torch.float32) -> SparseCtrl:
    """Loads an official SparseCtrl file (or state dict). `dtype=None` keeps the file's precision."""
    return build_from_state_dict(read_state_dict(source), name=source_name(source), dtype=dtype, _owned=True)


# ----------------------------------------------------------------------------------------------------------
# keyframes


def parse_keyframe_indices(text: str, num_images: int, num_frames: int) -> List[int]:
    """Frame index of each keyframe image: "0, 15", "0, 8, -1" (negative counts from the end) or "spread"
    (evenly over the clip, first and last included). Raises MotionFormatError naming the fix."""
    if num_images < 1:
        raise MotionFormatError("Apply SparseCtrl got no keyframe images: connect at least one image.")
    text = (text or "").strip()
    if text.lower() == SPREAD or text == "":
        if num_images == 1:
            return [0]
        return [round(i * (num_frames - 1) / (num_images - 1)) for i in range(num_images)]
    try:
        raw = [int(part) for part in re.split(r"[,\s]+", text) if part]
    except ValueError:
        raise MotionFormatError(f"keyframe_indices '{text}' is not a list of frame numbers: write them separated by "
                                "commas, e.g. '0, 15' (first and last of 16 frames), or 'spread'.") from None
    if len(raw) != num_images:
        more = "more keyframe images than indices" if num_images > len(raw) else "more indices than keyframe images"
        raise MotionFormatError(
            f"{more}: {num_images} image{'s' if num_images != 1 else ''} but {len(raw)} "
            f"index{'es' if len(raw) != 1 else ''} ('{text}'). Give one frame index per image (in image order), or "
            f"write 'spread' to spread the images evenly over the clip.")
    out = []
    for i in raw:
        j = i + num_frames if i < 0 else i
        if not 0 <= j < num_frames:
            raise MotionFormatError(
                f"keyframe index {i} is beyond the clip: the animation has {num_frames} frames (0..{num_frames - 1}, "
                f"or -1 for the last). Use an index inside the clip or set frames to the animation's length.")
        out.append(j)
    if len(set(out)) != len(out):
        raise MotionFormatError(f"keyframe_indices '{text}' names a frame twice: give each image its own frame.")
    return out


def keyframe_condition(keyframes: torch.Tensor, indices: Sequence[int], num_frames: int
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(condition [F, C, H, W], mask [F, 1, H, W]) for keyframes [K, C, H, W] placed at `indices`: zeros on every
    other frame (as the authors' pipeline builds `controlnet_cond` and `controlnet_conditioning_mask`)."""
    k, c, h, w = keyframes.shape
    cond = keyframes.new_zeros((num_frames, c, h, w))
    mask = keyframes.new_zeros((num_frames, 1, h, w))
    index = torch.tensor(list(indices), dtype=torch.long, device=keyframes.device)
    cond[index] = keyframes[: len(indices)]
    mask[index] = 1.0
    return cond, mask


def normalize_scribble(images: torch.Tensor) -> torch.Tensor:
    """The authors' `normalize_condition_images` for scribbles: grey (channel mean) stretched to [0, 1] per image;
    images [K, 3, H, W] in [0, 1]."""
    grey = images.mean(dim=1, keepdim=True)
    low = grey.amin(dim=(1, 2, 3), keepdim=True)
    grey = grey - low
    high = grey.amax(dim=(1, 2, 3), keepdim=True)
    grey = grey / torch.where(high > 0, high, torch.ones_like(high))  # a blank page stays 0, not NaN
    return grey.expand(-1, images.shape[1], -1, -1)


def fit_keyframes(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Images [K, C, H, W] centre-cropped to the aspect ratio and resized to height x width (bilinear)."""
    _, _, h, w = images.shape
    if (h, w) == (height, width):
        return images
    target = width / height
    if w / h > target:
        cw = max(1, round(h * target))
        x0 = (w - cw) // 2
        images = images[..., x0:x0 + cw]
    elif w / h < target:
        ch = max(1, round(w / target))
        y0 = (h - ch) // 2
        images = images[..., y0:y0 + ch, :]
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
