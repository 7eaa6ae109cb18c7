"""motion_core.comfy (the ComfyUI adapter) inside a real in-process ComfyUI 0.3.75 sampler, on a tiny SD1.5-family UNet.

The UNet (32/64 channels, two levels, two res blocks with attention, context 32) is built with ComfyUI's own
SD15 model class and ModelPatcher; the motion module set is a MotionModuleSet built for exactly that UNet. Every
check runs ComfyUI's real sampling path (comfy.sample.sample -> CFGGuider -> load_models_gpu -> patch/inject).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if not (REPO / ".host" / "ComfyUI").is_dir():
    pytest.skip("in-process ComfyUI not built (run scripts/setup_host.sh)", allow_module_level=True)
for p in (str(REPO / "tests"), str(REPO)):
    if p not in sys.path:
        sys.path.append(p)

from tools.comfy_inprocess import bootstrap  # noqa: E402

bootstrap()  # ComfyUI's import order (args.cpu, utils.extra_config, nodes), shared with every other test
import comfy.model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.model_sampling  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.supported_models  # noqa: E402
from comfy.ldm.modules.attention import SpatialTransformer  # noqa: E402
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, UNetModel, Upsample  # noqa: E402

from motion_core import comfy as comfy_adapter  # noqa: E402
from motion_core.comfy import injection as comfy_injection  # noqa: E402
from motion_core.comfy import MotionLayer, check_frames, inflate  # noqa: E402
from motion_core.errors import MotionFormatError  # noqa: E402
from motion_core.motion_module import MotionModuleInfo, MotionModuleSet, build_from_state_dict  # noqa: E402
from motion_core.context import ContextOptions  # noqa: E402

pytestmark = pytest.mark.integration

CPU = torch.device("cpu")
CONTEXT = 32
TINY_UNET = {
    "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [2, 2], "channel_mult": [1, 2],
    "transformer_depth": [1, 1, 1, 1], "transformer_depth_output": [1, 1, 1, 1, 1, 1],
    "transformer_depth_middle": 1, "context_dim": CONTEXT, "num_heads": 8, "num_head_channels": -1,
    "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_spatial_transformer": True, "legacy": False, "image_size": 32, "use_temporal_resblock": False,
}
# The motion layout that fits TINY_UNET: per level, the channels of each module (down: 2, up: 3 per level).
TINY_DOWN, TINY_UP, TINY_MID = [[32, 32], [64, 64]], [[64, 64, 64], [32, 32, 32]], 64


def _fill(module: torch.nn.Module, seed: int) -> None:
    """Seeded weights with sane scales (ComfyUI's ops leave them uninitialised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def tiny_model_patcher(seed: int = 0):
    model = comfy.supported_models.SD15(dict(TINY_UNET)).get_model({})
    _fill(model, seed)
    return comfy.model_patcher.ModelPatcher(model, CPU, CPU)


def tiny_motion_module(seed: int = 1, pe_len: int = 32, mid: bool = True, zero_out: bool = False,
                       base_hint=None, down=None, up=None):
    mm = MotionModuleSet(down or TINY_DOWN, up or TINY_UP, TINY_MID if mid else None, pe_len, "per_frame")
    _fill(mm, seed)
    sd = mm.state_dict()
    if zero_out:
        sd = {k: torch.zeros_like(v) if ".proj_out." in k else v for k, v in sd.items()}
    return build_from_state_dict(sd, base_hint=base_hint)


def conds(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return ([[torch.randn(1, 77, CONTEXT, generator=g), {}]], [[torch.randn(1, 77, CONTEXT, generator=g), {}]])


def run(patcher, frames: int = 4, steps: int = 2, seed: int = 0, callback=None, latent=None):
    pos, neg = conds()
    latent = torch.zeros(frames, 4, 8, 8) if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(patcher, noise, steps, 5.0, "euler", "normal", pos, neg, latent, callback=callback,
                               disable_pbar=True, seed=seed)


def tree(model) -> list:
    return [(name, type(m).__name__) for name, m in model.named_modules()]


def unet_tree(model) -> list:
    # model_sampling (the beta schedule) is an object patch: like every core object patch it stays on the shared
    # model until ComfyUI loads another clone; the UNet itself must be clean as soon as a run ends.
    return tree(model.diffusion_model)


def snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def patcher():
    return tiny_model_patcher()


@pytest.fixture(scope="module")
def motion():
    return tiny_motion_module()


# ----------------------------------------------------------------------------------------------------------
# placement


def _record_layers(unet, events: list) -> list:
    """Forward hooks on every resnet / attention / resampler of the UNet -> events (kind, where)."""
    handles = []
    for bname in ("input_blocks", "output_blocks"):
        for k, block in enumerate(getattr(unet, bname)):
            for layer in block:
                if isinstance(layer, (ResBlock, SpatialTransformer, Downsample, Upsample)):
                    handles.append(layer.register_forward_hook(
                        lambda m, a, o, tag=(type(layer).__name__, f"{bname}.{k}"): events.append(tag)))
    for layer in unet.middle_block:
        handles.append(layer.register_forward_hook(
            lambda m, a, o, tag=(type(layer).__name__, "middle_block"): events.append(tag)))
    return handles


def _record_motion(mm, events: list) -> list:
    return [module.temporal_transformer.register_forward_hook(
        lambda m, a, o, name=loc.name: events.append(("motion", name, a[0].shape[1], tuple(a[0].shape))))
        for loc, module in mm.temporal_modules()]


def test_modules_run_at_the_official_places_in_order(patcher, motion):
    """Order inside each block: resnet -> attention -> motion module (-> Upsample); mid: attn -> motion -> resnet."""
    events: list = []
    unet = patcher.model.diffusion_model
    handles = _record_layers(unet, events) + _record_motion(motion, events)
    try:
        run(inflate(patcher, motion, beta_schedule="sd_default"), frames=4, steps=1)
    finally:
        for h in handles:
            h.remove()
    first_call = events[: events.index(("SpatialTransformer", "output_blocks.5")) + 2]
    flat = [e[0] if e[0] != "motion" else f"motion:{e[1]}:{e[2]}" for e in first_call]
    expected = []
    for k, name in ((1, "down_blocks.0.motion_modules.0"), (2, "down_blocks.0.motion_modules.1")):
        expected += ["ResBlock", "SpatialTransformer", f"motion:{name}:32"]
    expected += ["Downsample"]
    for name in ("down_blocks.1.motion_modules.0", "down_blocks.1.motion_modules.1"):
        expected += ["ResBlock", "SpatialTransformer", f"motion:{name}:64"]
    expected += ["ResBlock", "SpatialTransformer", "motion:mid_block.motion_modules.0:64", "ResBlock"]
    for j in range(3):
        expected += ["ResBlock", "SpatialTransformer", f"motion:up_blocks.0.motion_modules.{j}:64"]
    expected += ["Upsample"]
    for j in range(3):
        expected += ["ResBlock", "SpatialTransformer", f"motion:up_blocks.1.motion_modules.{j}:32"]
    assert flat == expected
    # cond + uncond clips of 4 frames each, at the block's resolution
    shapes = [e[3] for e in first_call if e[0] == "motion"]
    assert shapes[0] == (8, 32, 8, 8) and shapes[2] == (8, 64, 4, 4) and shapes[-1] == (8, 32, 8, 8)


def _meta_patcher(config_cls, unet_kwargs):
    unet = UNetModel(**unet_kwargs, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init)

    class _Model:  # only what placement reads: the family and the UNet
        model_config = config_cls.__new__(config_cls)
        diffusion_model = unet

    class _Patcher:
        model = _Model()

    return _Patcher()


def _meta_motion(down, up, mid, version, base, pe):
    with torch.device("meta"):
        mm = MotionModuleSet(down, up, mid, pe, "per_frame")
    mm.info = MotionModuleInfo(version=version, base=base, max_frames=pe, source_format="original",
                               has_mid=bool(mid), has_pe=True, norm_mode="per_frame", num_modules=0,
                               down_channels=tuple(d[0] for d in down), params=0)
    return mm


SD15_FULL = {**TINY_UNET, "model_channels": 320, "num_res_blocks": [2] * 4, "channel_mult": [1, 2, 4, 4],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [0, 0, 0] + [1] * 9,
             "context_dim": 768}
SDXL_FULL = {**TINY_UNET, "model_channels": 320, "num_res_blocks": [2] * 3, "channel_mult": [1, 2, 4],
             "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
             "transformer_depth_middle": 10, "context_dim": 2048, "num_head_channels": 64, "num_heads": -1,
             "use_linear_in_transformer": True, "adm_in_channels": 2816, "num_classes": "sequential"}


@pytest.mark.parametrize("version,mid", [("v1", False), ("v2", True), ("v3", False)])
def test_official_sd15_layout_lands_after_the_documented_blocks(version, mid):
    patcher = _meta_patcher(comfy.supported_models.SD15, SD15_FULL)
    mm = _meta_motion([[320, 320], [640, 640], [1280, 1280], [1280, 1280]],
                      [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3], 1280 if mid else None, version, "sd15",
                      24 if version == "v1" else 32)
    pairs = comfy_adapter.match_slots(patcher, mm)
    down = [s.block_index for _, s in pairs if s.kind == "down"]
    up = [s.block_index for _, s in pairs if s.kind == "up"]
    assert down == [1, 2, 4, 5, 7, 8, 10, 11]
    assert up == list(range(12))
    assert [s.kind for _, s in pairs].count("mid") == (1 if mid else 0)
    # before the Upsample in output blocks 2, 5, 8 (it is the last layer there)
    unet = patcher.model.diffusion_model
    for _, s in pairs:
        if s.kind == "up" and s.block_index in (2, 5, 8):
            assert isinstance(unet.output_blocks[s.block_index][s.position], Upsample)
        if s.kind == "mid":
            assert s.position == 2 and isinstance(unet.middle_block[2], ResBlock)
    assert len(pairs) == (21 if mid else 20)


def test_sdxl_layout_and_family_errors():
    sdxl = _meta_patcher(comfy.supported_models.SDXL, SDXL_FULL)
    mm_xl = _meta_motion([[320, 320], [640, 640], [1280, 1280]], [[1280] * 3, [640] * 3, [320] * 3], None,
                         "sdxl", "sdxl", 32)
    pairs = comfy_adapter.match_slots(sdxl, mm_xl)
    assert len(pairs) == 15
    assert [s.block_index for _, s in pairs if s.kind == "down"] == [1, 2, 4, 5, 7, 8]
    mm_15 = _meta_motion([[320, 320], [640, 640], [1280, 1280], [1280, 1280]],
                         [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3], 1280, "v2", "sd15", 32)
    with pytest.raises(MotionFormatError, match=r"SD1\.5 motion module.*SDXL model"):
        comfy_adapter.match_slots(sdxl, mm_15)


def test_sdxl_module_on_sd15_model_is_refused_naming_both(patcher):
    mm = tiny_motion_module(base_hint="sdxl", mid=False)
    assert mm.info.base == "sdxl"
    with pytest.raises(MotionFormatError) as err:
        inflate(patcher, mm)
    assert "SDXL motion module" in str(err.value) and "SD1.5 model" in str(err.value)
    assert "mm_sd_v15_v2" in str(err.value)  # names a module that would fit


def test_channel_mismatch_names_the_place(patcher):
    mm = tiny_motion_module(down=[[32, 32], [96, 96]], up=[[96] * 3, [32] * 3], mid=False)
    with pytest.raises(MotionFormatError, match=r"down_blocks\.1\.motion_modules\.0 has 96 channels but the UNet "
                                                r"has 64"):
        inflate(patcher, mm)


# ----------------------------------------------------------------------------------------------------------
# never mutating the inputs


def test_user_model_and_motion_module_unchanged_after_runs_and_a_cancelled_run(patcher, motion):
    unet = patcher.model.diffusion_model
    tree_before, weights_before = tree(patcher.model), snapshot(patcher.model)
    mm_before = snapshot(motion)
    options_before = repr(patcher.model_options)
    sampling_before = patcher.model.model_sampling

    unet_before = unet_tree(patcher.model)
    inflated = inflate(patcher, motion)
    assert tree(patcher.model) == tree_before  # nothing happens before ComfyUI loads the clone
    run(inflated, frames=4, steps=2)
    assert unet_tree(patcher.model) == unet_before
    assert not any(isinstance(m, MotionLayer) for m in unet.modules())

    seen = []

    def cancel(step, x0, x, total):
        seen.append(sum(isinstance(m, MotionLayer) for m in unet.modules()))
        raise comfy.model_management.InterruptProcessingException()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run(inflated, frames=4, steps=3, callback=cancel)
    assert seen == [len(motion.locations())]  # the layers were in during the cancelled run...
    assert unet_tree(patcher.model) == unet_before  # ...and are gone right after it
    assert not inflated.is_injected

    run(patcher, frames=4, steps=1)  # loading the user's model restores the schedule object patch too
    assert patcher.model.model_sampling is sampling_before
    assert tree(patcher.model) == tree_before
    assert_same_weights(snapshot(patcher.model), weights_before)
    assert_same_weights(snapshot(motion), mm_before)
    assert repr(patcher.model_options) == options_before
    assert patcher.patches == {} and patcher.object_patches == {} and patcher.injections == {}


def test_plain_image_workflow_bit_identical_before_and_after_an_animation(patcher, motion):
    before = run(patcher, frames=2, steps=2, seed=3)
    animated = run(inflate(patcher, motion), frames=4, steps=2, seed=3)
    after = run(patcher, frames=2, steps=2, seed=3)
    assert torch.equal(before, after)
    assert torch.isfinite(animated).all()


# ----------------------------------------------------------------------------------------------------------
# what the motion does


def test_identity_modules_reproduce_the_plain_model_frame_by_frame(patcher):
    """With every proj_out zeroed each temporal module adds exactly 0, so every frame equals the plain model's."""
    identity = tiny_motion_module(zero_out=True)
    plain = run(patcher, frames=6, steps=2, seed=7)
    animated = run(inflate(patcher, identity, beta_schedule="sd_default"), frames=6, steps=2, seed=7)
    for f in range(6):
        assert torch.equal(animated[f], plain[f]), f


def test_motion_changes_frames_and_strength_zero_is_the_image_model(patcher, motion):
    plain = run(patcher, frames=4, steps=2, seed=11)
    moved = run(inflate(patcher, motion, beta_schedule="sd_default"), frames=4, steps=2, seed=11)
    off = run(inflate(patcher, motion, beta_schedule="sd_default", motion_strength=0.0), frames=4, steps=2, seed=11)
    assert torch.equal(off, plain)
    assert all((moved[f] - plain[f]).abs().max() > 1e-3 for f in range(4))


def test_frames_are_coupled_only_through_the_motion_module(patcher, motion):
    """Changing the noise of frame 0 changes frame 3 only when the model is inflated."""
    def two_runs(p):
        latent = torch.zeros(4, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, 0)
        pos, neg = conds()
        a = comfy.sample.sample(p, noise, 1, 5.0, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=0)
        noise2 = noise.clone()
        noise2[0] += 1.0
        b = comfy.sample.sample(p, noise2, 1, 5.0, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=0)
        return a, b

    a, b = two_runs(patcher)
    assert torch.equal(a[3], b[3])
    a, b = two_runs(inflate(patcher, motion, beta_schedule="sd_default"))
    assert not torch.equal(a[3], b[3])


def test_v1_normalises_base_resnets_across_frames(patcher):
    v1 = tiny_motion_module(pe_len=24, mid=False, zero_out=True)  # identity modules: only the GroupNorms differ
    assert v1.info.version == "v1"
    inflated = inflate(patcher, v1, beta_schedule="sd_default")
    pos, neg = conds()
    latent = torch.zeros(4, 4, 8, 8)

    def sample(p, noise):
        return comfy.sample.sample(p, noise, 1, 5.0, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=0)

    def rel(a, b):
        return ((a - b).abs().max() / b.abs().max()).item()

    one = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    # identical frames: clip statistics equal each frame's own, so v1 matches the plain model (up to rounding)
    assert rel(sample(inflated, one.repeat(4, 1, 1, 1)), sample(patcher, one.repeat(4, 1, 1, 1))) < 1e-5
    # different frames: the statistics over the clip differ from each frame's own
    noise = comfy.sample.prepare_noise(latent, 2)
    assert rel(sample(inflated, noise), sample(patcher, noise)) > 1e-3
    assert not any(type(m).__name__ == "FrameGroupNorm" for m in patcher.model.modules())


# ----------------------------------------------------------------------------------------------------------
# schedule, frame limits


def test_beta_schedule_object_patch(patcher, motion):
    inflated = inflate(patcher, motion)  # auto -> AnimateDiff linear-beta for an SD1.5 module
    sampling = inflated.get_model_object("model_sampling")
    # what ComfyUI itself computes for betas linear 0.00085 -> 0.012 (its "sqrt_linear")
    class _Config:
        sampling_settings = {"beta_schedule": "sqrt_linear", "linear_start": 0.00085, "linear_end": 0.012}
    expected = comfy.model_sampling.ModelSamplingDiscrete(_Config())
    assert torch.equal(sampling.sigmas, expected.sigmas)
    assert isinstance(sampling, comfy.model_sampling.EPS)
    assert not torch.allclose(sampling.sigmas, patcher.get_model_object("model_sampling").sigmas)
    assert "model_sampling" not in inflate(patcher, motion, beta_schedule="sd_default").object_patches
    assert patcher.object_patches == {}


def count_unet_calls(model) -> list:
    """A list that gets one entry per UNet call `model` makes (a DIFFUSION_MODEL wrapper on the clone)."""
    calls = []
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "count",
                               lambda executor, *a, **k: calls.append(1) or executor(*a, **k))
    return calls


def test_frame_limit_error_before_any_unet_call(patcher):
    short = tiny_motion_module(pe_len=8)
    inflated = inflate(patcher, short, beta_schedule="sd_default")
    calls = count_unet_calls(inflated)
    with pytest.raises(MotionFormatError, match=r"12 frames.*at most 8 frames.*Context Options"):
        check_frames(inflated, 12)
    with pytest.raises(MotionFormatError, match="at most 8 frames"):
        run(inflated, frames=12, steps=1)  # core sampler path: refused by the outer-sample check
    assert calls == []
    check_frames(inflated, 8)
    check_frames(inflated, 12, ContextOptions(length=8, overlap=2))
    with pytest.raises(MotionFormatError, match="context_length 12"):
        inflate(patcher, short, context_options=ContextOptions(length=12, overlap=2))


def core_context_windows(model, length: int = 8, overlap: int = 2):
    """What core's "Context Windows (Manual)" node returns for `model` (a clone with model_options["context_handler"])."""
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode

    return ContextWindowsManualNode.execute(model, length, overlap, "standard_uniform", 1, False, "pyramid", 0).result[0]


def test_core_context_windows_on_an_animating_model_are_refused_before_sampling(patcher, motion):
    # after Inflate Model: refused by the frame check, before any UNet call, whichever sampler runs
    windowed = core_context_windows(inflate(patcher, motion, beta_schedule="sd_default"))
    calls = count_unet_calls(windowed)
    with pytest.raises(MotionFormatError, match=r"Context Windows \(Manual\).*ADMK_ContextOptions"):
        check_frames(windowed, 4)
    with pytest.raises(MotionFormatError, match="ADMK_ContextOptions"):
        run(windowed, frames=12, steps=1)
    with pytest.raises(MotionFormatError, match="ADMK_ContextOptions"):
        run(windowed, frames=4, steps=1)  # even a clip that fits one window: the windows are set, so refuse
    assert calls == []
    # before Inflate Model: refused by Inflate Model itself, the user's model left as it was
    core_first = core_context_windows(patcher)
    options_before = dict(core_first.model_options)
    with pytest.raises(MotionFormatError, match="ADMK_ContextOptions"):
        inflate(core_first, motion)
    assert core_first.model_options == options_before and comfy_adapter.motion_attachment(core_first) is None
    # a plain image model keeps core's windows (nothing to refuse without a motion module)
    assert run(core_context_windows(patcher, length=2, overlap=0), frames=2, steps=1).shape[0] == 2


def test_context_windows_from_inflate_let_long_clips_sample(patcher):
    short = tiny_motion_module(pe_len=8)
    inflated = inflate(patcher, short, beta_schedule="sd_default", context_options=ContextOptions(length=8, overlap=4))
    seen = []
    handle = short.get_submodule("down_blocks.0.motion_modules.0").temporal_transformer.register_forward_hook(
        lambda m, a, o: seen.append(a[0].shape[0] // 2))
    try:
        out = run(inflated, frames=12, steps=1)
    finally:
        handle.remove()
    assert out.shape[0] == 12 and torch.isfinite(out).all()
    assert seen and max(seen) == 8  # never more frames per pass than the module can see


def test_sample_animation_windows_attach_through_the_adapter_and_leave_the_input_alone(patcher):
    from motion_core.comfy import sampling_model
    from motion_core.comfy.windows import CALC_COND_BATCH, WRAPPER_KEY

    short = tiny_motion_module(pe_len=8)
    from_inflate, from_sampler = ContextOptions(length=8, overlap=4), ContextOptions(length=6, overlap=2)
    inflated = inflate(patcher, short, beta_schedule="sd_default", context_options=from_inflate)
    attachment = comfy_adapter.motion_attachment(inflated)
    assert attachment.context_options is from_inflate
    windowed = sampling_model(inflated, from_sampler)
    assert windowed is not inflated
    assert comfy_adapter.motion_attachment(windowed).context_options is from_sampler  # replaces Inflate Model's
    assert comfy_adapter.motion_attachment(inflated) is attachment and attachment.context_options is from_inflate
    assert [w.options for w in windowed.get_wrappers(CALC_COND_BATCH, WRAPPER_KEY)] == [from_sampler]
    assert [w.options for w in inflated.get_wrappers(CALC_COND_BATCH, WRAPPER_KEY)] == [from_inflate]
    checks = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    assert len(windowed.get_wrappers(checks, comfy_adapter.KEY)) == 1  # the pre-sampling check, not stacked
    with pytest.raises(MotionFormatError, match="context_length 12"):
        sampling_model(inflated, ContextOptions(length=12, overlap=2))
    # an un-inflated MODEL gets the windows and the checks, and no attachment
    plain = sampling_model(patcher, from_sampler)
    assert comfy_adapter.motion_attachment(plain) is None and len(plain.get_wrappers(checks, comfy_adapter.KEY)) == 1
    assert run(plain, frames=10, steps=1).shape[0] == 10


def test_inflating_twice_is_refused(patcher, motion):
    with pytest.raises(MotionFormatError, match="already has a motion module"):
        inflate(inflate(patcher, motion), motion)


def test_weight_cache_casts_a_copy_and_shares_when_it_can(motion):
    cache = comfy_injection._WeightCache(motion)
    assert cache.get(CPU, torch.float32) is motion
    half = cache.get(CPU, torch.float16)
    assert half is not motion and next(half.parameters()).dtype == torch.float16
    assert next(motion.parameters()).dtype == torch.float32
    assert cache.get(CPU, torch.float16) is half
    assert half.info == motion.info


def _tiny_adapter_state_dict(rank: int = 4, seed: int = 3) -> dict:
    """A v3-style domain adapter (processor LoRA on every spatial attention) for TINY_UNET."""
    g = torch.Generator().manual_seed(seed)
    blocks = [(f"down_blocks.{i}.attentions.{j}", c) for i, c in enumerate((32, 64)) for j in range(2)]
    blocks += [("mid_block.attentions.0", 64)]
    blocks += [(f"up_blocks.{i}.attentions.{j}", c) for i, c in enumerate((64, 32)) for j in range(3)]
    sd = {}
    for prefix, c in blocks:
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                fan_in = CONTEXT if attn == "attn2" and proj in ("to_k", "to_v") else c
                base = f"{prefix}.transformer_blocks.0.{attn}.processor.{proj}_lora"
                sd[f"{base}.down.weight"] = 0.1 * torch.randn(rank, fan_in, generator=g)
                sd[f"{base}.up.weight"] = 0.1 * torch.randn(c, rank, generator=g)
    return sd


def test_domain_adapter_patches_the_spatial_attention_with_the_user_scale(patcher, motion):
    from motion_core.lora import load_domain_adapter

    sd = _tiny_adapter_state_dict()
    adapter = load_domain_adapter(sd)
    inflated = inflate(patcher, motion, adapter=adapter, adapter_scale=0.5)
    key = "diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"  # up_blocks.1.attentions.1
    assert len(inflated.patches) == len(sd) // 2 and key in inflated.patches
    assert inflate(patcher, motion, adapter=adapter, adapter_scale=0.0).patches == {}

    original = patcher.model.diffusion_model.output_blocks[4][1].transformer_blocks[0].attn2.to_k.weight.detach().clone()
    up = sd["up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor.to_k_lora.up.weight"]
    down = sd["up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor.to_k_lora.down.weight"]
    comfy.model_management.load_models_gpu([inflated])
    patched = patcher.model.diffusion_model.output_blocks[4][1].transformer_blocks[0].attn2.to_k.weight
    assert torch.allclose(patched, original + 0.5 * up @ down, atol=1e-6)
    comfy.model_management.load_models_gpu([patcher])  # the user's model again: weights restored exactly
    assert torch.equal(patcher.model.diffusion_model.output_blocks[4][1].transformer_blocks[0].attn2.to_k.weight,
                       original)
    assert patcher.patches == {}


def test_animatelcm_gets_the_lcm_schedule_and_samples(patcher):
    mm = MotionModuleSet(TINY_DOWN, TINY_UP, None, 32, "per_frame")
    _fill(mm, 4)
    lcm = build_from_state_dict({k: v for k, v in mm.state_dict().items() if not k.endswith("pos_encoder.pe")})
    assert lcm.info.version == "animatelcm"
    inflated = inflate(patcher, lcm)
    sampling = inflated.get_model_object("model_sampling")
    from comfy_extras.nodes_model_advanced import LCM

    assert isinstance(sampling, LCM) and sampling.sigmas.shape == (50,)
    # the 50 LCM timesteps are every 20th of the AnimateDiff linear-beta schedule, ending at its last sigma
    full = inflate(patcher, lcm, beta_schedule="animatediff_linear").get_model_object("model_sampling").sigmas
    assert torch.equal(sampling.sigmas, full[19::20])
    pos, neg = conds()
    latent = torch.zeros(4, 4, 8, 8)
    out = comfy.sample.sample(inflated, comfy.sample.prepare_noise(latent, 0), 2, 1.0, "lcm", "sgm_uniform", pos, neg,
                              latent, disable_pbar=True, seed=0)
    assert torch.isfinite(out).all()


def test_callers_outside_the_sampler_can_state_the_clip_length(patcher, motion):
    """Training runs the UNet on B clips of F frames without the sampler: it passes the patcher's
    transformer_options (they carry the motion layers' patch) plus the clip length."""
    inflated = inflate(patcher, motion, beta_schedule="sd_default")
    seen = []
    h = motion.get_submodule("mid_block.motion_modules.0").temporal_transformer.register_forward_hook(
        lambda m, a, o: seen.append(a[1] if len(a) > 1 else None))
    comfy.model_management.load_models_gpu([inflated])
    try:
        x = torch.randn(6, 4, 8, 8)
        t = torch.full((6,), 5.0)
        ctx = torch.randn(6, 77, CONTEXT)
        options = {**inflated.model_options["transformer_options"], comfy_adapter.FRAMES_KEY: 3}
        out = inflated.model.apply_model(x, t, c_crossattn=ctx, transformer_options=options)
        assert out.shape == x.shape
        assert seen == [3]  # two clips of three frames, not one clip of six
    finally:
        h.remove()
        inflated.eject_model()
    assert not any(isinstance(m, MotionLayer) for m in patcher.model.modules())


def test_accelerator_weight_copies_are_dropped_when_comfyui_detaches_the_model(patcher, motion):
    inflated = inflate(patcher, motion)
    cache = inflated.injections[comfy_adapter.KEY][0].inject.__self__.weights
    meta = cache.get(torch.device("meta"), torch.float16)  # stands in for a GPU copy
    assert next(meta.parameters()).device.type == "meta" and len(cache.copies) == 1
    run(inflated, frames=2, steps=1)
    assert len(cache.copies) == 1  # kept across runs while the model stays loaded
    inflated.detach(unpatch_all=False)  # ComfyUI loads another clone of the same UNet: its weights stay put
    assert len(cache.copies) == 1
    inflated.detach()  # what ComfyUI does when it unloads the model to free memory
    assert cache.copies == {}


def test_models_that_already_carry_core_loras_keep_them(patcher):
    """A MODEL from core LoraLoader (weight patches on the clone) animates with its LoRA applied."""
    from comfy.weight_adapter.lora import LoRAAdapter

    g = torch.Generator().manual_seed(21)
    key = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    w = dict(patcher.model.named_parameters())[key]
    up, down = torch.randn(w.shape[0], 4, generator=g), torch.randn(4, w.shape[1], generator=g)
    lora_model = patcher.clone()
    assert lora_model.add_patches({key: LoRAAdapter(set(), (up, down, None, None, None, None))}, 1.0) == [key]
    identity = tiny_motion_module(zero_out=True)
    plain = run(patcher, frames=3, steps=2, seed=4)
    with_lora = run(lora_model, frames=3, steps=2, seed=4)
    animated = run(inflate(lora_model, identity, beta_schedule="sd_default"), frames=3, steps=2, seed=4)
    assert not torch.equal(with_lora, plain)  # the LoRA matters...
    assert torch.equal(animated, with_lora)   # ...and survives inflation (identity motion => same frames)
    assert patcher.patches == {}              # the user's MODEL never got the LoRA


@pytest.mark.parametrize("version,pe_len,mid", [("v1", 24, False), ("v2", 32, True), ("v3", 32, False)])
def test_strength_zero_is_the_plain_model_under_the_same_schedule(patcher, version, pe_len, mid):
    """motion_strength 0 = the un-inflated model with only the module's beta schedule, bit for bit (v1's
    across-frame GroupNorm included: it is part of the motion, so it is off at 0)."""
    mm = tiny_motion_module(seed=4, pe_len=pe_len, mid=mid)
    assert mm.info.version == version
    inflated = inflate(patcher, mm, motion_strength=0.0)  # beta_schedule auto -> AnimateDiff linear
    schedule_only = patcher.clone()
    schedule_only.add_object_patch("model_sampling", comfy_adapter.model_sampling_for(patcher, "animatediff_linear"))
    expected = run(schedule_only, frames=4, steps=2, seed=13)
    assert torch.equal(run(inflated, frames=4, steps=2, seed=13), expected)
    # and the comparison can fail: the plain schedule differs, and so does any non-zero strength
    assert not torch.equal(run(patcher, frames=4, steps=2, seed=13), expected)
    assert not torch.equal(run(inflate(patcher, mm, motion_strength=0.05), frames=4, steps=2, seed=13), expected)
