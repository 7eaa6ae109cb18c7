"""MotionLoRA and the v3 domain adapter: low-rank weight deltas `W += strength * up @ down`.

Official MotionLoRA files use the processor naming
`<block>.motion_modules.<j>.temporal_transformer.transformer_blocks.0.attention_blocks.<a>.processor.to_{q,k,v,out}_lora.{down,up}.weight`
with no alpha/rank scaling; several compose linearly. The other layouts found in the wild are read to the same
deltas: the output of diffusers' `convert_animatediff_motion_lora_to_diffusers.py` (`unet.` prefix, `attn1/attn2`,
no `temporal_transformer.`), PEFT/kohya-style `lora_A/lora_B` or `lora_down/lora_up` pairs with an optional
`.alpha` (scale alpha/rank), kohya's flattened `lora_unet_..._motion_modules_...` names, and `base_model.model.`
prefixes. The v3 domain adapter is the same processor LoRA
on every *spatial* attention of the image UNet.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import detect
from .convert import diffusers_to_original, hotshot_to_original
from .errors import MotionFormatError
from .motion_module import MotionModuleSet
from .state_dict_io import Source, read_state_dict_of_kind, source_name

_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_PEFT = re.compile(r"^(.*)\.(to_q|to_k|to_v|to_out\.0|to_out)\.(lora_A|lora_B|lora_down|lora_up)\.weight$")
_ALPHA = re.compile(r"^(.*)\.(to_q|to_k|to_v|to_out\.0|to_out)\.alpha$")
_PREFIXES = ("base_model.model.", "unet.")
# kohya's flattened names (`lora_unet_<path with _ for .>.lora_down.weight`), on the authors' or diffusers' module
# names; the underscores are put back only in this one known structure, so no other name can be misread.
_KOHYA = re.compile(r"^lora_unet_((?:down|up)_blocks_\d+|mid_block)_motion_modules_(\d+)_(temporal_transformer_)?"
                    r"transformer_blocks_(\d+)_(attention_blocks_\d+|attn[12])_(to_q|to_k|to_v|to_out_0|to_out)"
                    r"\.(lora_down\.weight|lora_up\.weight|alpha)$")


def _unflatten_kohya(key: str) -> str:
    m = _KOHYA.match(key)
    if not m:
        return key
    block, j, temporal, t, attention, proj, suffix = m.groups()
    block = re.sub(r"_(\d+)$", r".\1", block)
    attention = re.sub(r"_(\d+)$", r".\1", attention)
    proj = "to_out.0" if proj.startswith("to_out") else proj
    return (f"{block}.motion_modules.{j}.{'temporal_transformer.' if temporal else ''}transformer_blocks.{t}."
            f"{attention}.{proj}.{suffix}")


def _target(module_path: str, proj: str) -> str:
    proj = "to_out.0" if proj in ("to_out", "to_out.0") else proj
    return f"{module_path}.{proj}.weight"


@dataclass
class LowRankDeltas:
    """{target weight key: (up [out, r], down [r, in], scale)} in the original naming."""

    deltas: Dict[str, Tuple[torch.Tensor, torch.Tensor, float]]
    name: str = "LoRA"

    @property
    def rank(self) -> int:
        return max((d.shape[0] for _, d, _ in self.deltas.values()), default=0)

    @property
    def params(self) -> int:
        return sum(u.numel() + d.numel() for u, d, _ in self.deltas.values())

    def delta(self, key: str) -> torch.Tensor:
        up, down, scale = self.deltas[key]
        return (up.float() @ down.float()) * scale


def _strip_prefixes(state_dict: dict) -> dict:
    """Drop the wrappers' prefixes (`base_model.model.`, `unet.`, in any order) so the block names come first."""
    out = {}
    for k, v in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, stripped = k[len(p):], True
        out[k] = v
    return out


def _parse_lora(state_dict: dict, name: str) -> Dict[str, Tuple[torch.Tensor, torch.Tensor, float]]:
    sd = _strip_prefixes(state_dict)
    pairs: Dict[str, dict] = {}
    alphas: Dict[str, float] = {}
    for key, value in sd.items():
        m = _PROCESSOR.match(key)
        if m:
            path, proj, which = m.groups()
            pairs.setdefault(_target(path, proj), {})[which] = value
            continue
        m = _PEFT.match(key)
        if m:
            path, proj, which = m.groups()
            pairs.setdefault(_target(path, proj), {})["down" if which in ("lora_A", "lora_down") else "up"] = value
            continue
        m = _ALPHA.match(key)
        if m:
            alphas[_target(*m.groups())] = float(value.float().item())
    if not pairs:
        raise MotionFormatError(f"{name} holds no LoRA weights (no '..._lora.down/up' or 'lora_A/B' keys).")
    # One float64 sum per tensor finds NaN/inf (they propagate): a corrupt file would turn every frame to NaN.
    bad = [t for t, pair in pairs.items() for v in pair.values() if not torch.isfinite(v.sum(dtype=torch.float64))]
    if bad:
        raise MotionFormatError(f"{name} contains NaN/inf values (e.g. in the LoRA for '{bad[0]}'): the file is "
                                "corrupt. Download it again.")
    out = {}
    for target, pair in pairs.items():
        if set(pair) != {"up", "down"}:
            raise MotionFormatError(f"{name}: '{target}' has only its {'/'.join(pair)} half: the file is truncated.")
        up, down = pair["up"], pair["down"]
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
            raise MotionFormatError(f"{name}: '{target}' has up {tuple(up.shape)} and down {tuple(down.shape)}, "
                                    "which do not form a low-rank pair.")
        scale = alphas[target] / down.shape[0] if target in alphas else 1.0
        out[target] = (up, down, scale)
    return out


class MotionLoRA(LowRankDeltas):
    """Deltas on the temporal attention projections, keyed by the original motion-module weight names."""

    def fit_report(self, mm: MotionModuleSet) -> "FitReport":
        params = dict(mm.named_parameters())
        report = FitReport()
        for target, (up, down, _) in self.deltas.items():
            if target not in params:
                report.unmatched.append(target)
            elif tuple(params[target].shape) != (up.shape[0], down.shape[1]):
                report.wrong_shape.append(f"{target}: LoRA {up.shape[0]}x{down.shape[1]}, "
                                          f"module {tuple(params[target].shape)}")
            else:
                report.matched.append(target)
        return report

    def check_fits(self, mm: MotionModuleSet, allow_partial: bool = True) -> "FitReport":
        """Raises MotionFormatError if the LoRA cannot be used on `mm`; returns what fits and what is skipped."""
        report = self.fit_report(mm)
        version = mm.info.version if mm.info else "this"
        if report.wrong_shape:
            raise MotionFormatError(
                f"MotionLoRA '{self.name}' does not fit the {version} motion module: {len(report.wrong_shape)} "
                f"weights have other shapes (e.g. {report.wrong_shape[0]}). It was trained for another base "
                "(SD1.5 vs SDXL): use a MotionLoRA made for this motion module.")
        if not report.matched:
            raise MotionFormatError(
                f"MotionLoRA '{self.name}' matches none of the {version} motion module's weights "
                f"(first LoRA key: {report.unmatched[0] if report.unmatched else 'none'}).")
        if report.unmatched and not allow_partial:
            raise MotionFormatError(
                f"MotionLoRA '{self.name}' has {len(report.unmatched)} weights the {version} module lacks "
                f"({report.skipped_summary()}).")
        return report


@dataclass
class FitReport:
    matched: List[str] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)
    wrong_shape: List[str] = field(default_factory=list)

    def skipped_summary(self) -> str:
        mid = sum(1 for k in self.unmatched if k.startswith("mid_block."))
        parts = []
        if mid:
            parts.append(f"{mid} mid-block weights (the module has no mid block: v1/v3 modules; the LoRA was "
                         "trained on v2)")
        if len(self.unmatched) - mid:
            parts.append(f"{len(self.unmatched) - mid} other weights (e.g. {next(k for k in self.unmatched if not k.startswith('mid_block.'))})")
        return "; ".join(parts) or "nothing skipped"

    def summary(self) -> str:
        total = len(self.matched) + len(self.unmatched)
        text = f"applied to {len(self.matched)} of {total} weights"
        return text + (f"; skipped {self.skipped_summary()}" if self.unmatched else "")


def load_motion_lora(source: Source, name: Optional[str] = None) -> MotionLoRA:
    sd = read_state_dict_of_kind(source, detect.MOTION_LORA, "a MotionLoRA")
    name = name or source_name(source).strip("'")
    # Prefixes first: diffusers' conversion script writes `unet.down_blocks...`, which the block renaming below
    # only recognises without the prefix (otherwise the LoRA loads but matches none of the module's weights).
    sd = {_unflatten_kohya(k): v for k, v in _strip_prefixes(sd).items()}
    # diffusers/hotshot module naming -> original, keeping the LoRA suffixes intact
    sd = hotshot_to_original(diffusers_to_original(sd)) if not any(".temporal_transformer." in k for k in sd) else sd
    return MotionLoRA(_parse_lora(sd, f"'{name}'"), name=name)


def merged_motion_module(base: MotionModuleSet, loras: Sequence[Tuple[MotionLoRA, float]],
                         allow_partial: bool = True) -> MotionModuleSet:
    """A new set with `sum(strength * up @ down)` added to the base weights; `base` is never modified.

    Only the weights a LoRA touches are new tensors (the attention projections, ~12 % of a module's
    parameters); every other tensor is shared with `base`, so chains of MotionLoRAs cost little memory.
    """
    merged_weights: Dict[str, torch.Tensor] = {}
    params = dict(base.named_parameters())
    for lora, strength in loras:
        for target in lora.check_fits(base, allow_partial=allow_partial).matched:
            if strength == 0:
                continue
            current = merged_weights.get(target, params[target].detach().float())
            merged_weights[target] = current + strength * lora.delta(target)
    memo = {}
    for name, p in base.named_parameters():
        value = merged_weights[name].to(p.dtype) if name in merged_weights else p.detach()
        memo[id(p)] = nn.Parameter(value, requires_grad=False)
    for b in base.buffers():
        memo[id(b)] = b  # position tables are never changed by a LoRA
    return copy.deepcopy(base, memo)


# ---------------------------------------------------------------- v3 domain adapter (image LoRA)

_ADAPTER_BLOCK = re.compile(r"^(down_blocks\.(\d+)\.attentions\.(\d+)|mid_block\.attentions\.0|up_blocks\.(\d+)\.attentions\.(\d+))\.(.*)$")


class DomainAdapter(LowRankDeltas):
    """The v3 domain adapter: keys in diffusers UNet naming (`down_blocks.N.attentions.M...attn1.to_q.weight`)."""

    def comfy_key(self, key: str, num_res_blocks: int = 2) -> str:
        """diffusers UNet name -> ComfyUI/LDM name (`diffusion_model.input_blocks.K.1...`)."""
        m = _ADAPTER_BLOCK.match(key)
        if not m:
            raise MotionFormatError(f"domain adapter key '{key}' is not on a spatial attention block")
        _, dn, dm, un, um, rest = m.groups()
        if dn is not None:
            block = f"input_blocks.{1 + int(dn) * (num_res_blocks + 1) + int(dm)}.1"
        elif un is not None:
            block = f"output_blocks.{int(un) * (num_res_blocks + 1) + int(um)}.1"
        else:
            block = "middle_block.1"
        return f"diffusion_model.{block}.{rest}"

    def comfy_lora_patches(self, unet_keys: Optional[Iterable[str]] = None, num_res_blocks: int = 2
                           ) -> Dict[str, Tuple[torch.Tensor, torch.Tensor, float]]:
        """{ComfyUI weight key: (up, down, scale)}; with `unet_keys`, every target must exist in the model."""
        out = {self.comfy_key(k, num_res_blocks): v for k, v in self.deltas.items()}
        if unet_keys is not None:
            known = set(unet_keys)
            missing = [k for k in out if k not in known]
            if missing:
                raise MotionFormatError(
                    f"domain adapter '{self.name}' targets {len(missing)} weights this model lacks (e.g. {missing[0]}): "
                    "the v3 adapter is made for SD1.5 UNets only.")
        return out


def load_domain_adapter(source: Source, name: Optional[str] = None) -> DomainAdapter:
    sd = read_state_dict_of_kind(source, detect.DOMAIN_ADAPTER, "the v3 domain adapter")
    name = name or source_name(source).strip("'")
    deltas = _parse_lora(sd, f"'{name}'")
    bad = [k for k in deltas if not _ADAPTER_BLOCK.match(k)]
    if bad:
        raise MotionFormatError(f"'{name}': {len(bad)} LoRA weights are not on spatial attention (e.g. {bad[0]}).")
    return DomainAdapter(deltas, name=name)
