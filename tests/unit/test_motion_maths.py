"""The temporal module's maths against an independent computation, on the exact official shapes."""
import pytest
import torch

from manifest_weights import manifest_state_dict
from motion_core import load_motion_module
from motion_core.temporal import NORM_ACROSS_FRAMES, NORM_PER_FRAME, TemporalModule, sinusoidal_table
from motion_reference import module_weights, reference_module, sinusoid

pytestmark = pytest.mark.usefixtures("no_grad")  # inference-only maths


def _module_from(sd, prefix, norm_mode):
    w = module_weights(sd, prefix)
    c = w["proj_in.weight"].shape[0]
    m = TemporalModule(c, max_len=w["transformer_blocks.0.attention_blocks.0.pos_encoder.pe"].shape[1], norm_mode=norm_mode)
    m.temporal_transformer.load_state_dict(w)
    return m, w


def _video(b, c, f, h, w, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    # per-frame offsets make per-frame and across-frame statistics differ, as real latents do
    return scale * (torch.randn(b, c, f, h, w, generator=g) + torch.linspace(-1, 1, f).view(1, 1, f, 1, 1))


def _flat(x5):
    b, c, f, h, w = x5.shape
    return x5.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), f


def _to5(x, f):
    bf, c, h, w = x.shape
    return x.reshape(bf // f, f, c, h, w).permute(0, 2, 1, 3, 4)


def test_position_table_is_the_official_sinusoid():
    assert torch.allclose(sinusoidal_table(32, 320), sinusoid(32, 320), atol=1e-5)  # float32 sin of p*freq


@pytest.mark.parametrize("prefix,frames", [("down_blocks.0.motion_modules.0", 16), ("up_blocks.3.motion_modules.2", 9)])
def test_sd15_module_matches_reference_per_frame_norm(v2_state_dict, prefix, frames):
    m, w = _module_from(v2_state_dict, prefix, NORM_PER_FRAME)
    x5 = _video(2, 320, frames, 4, 3)
    x, f = _flat(x5)
    out = _to5(m(x, num_frames=f), f)
    ref = reference_module(w, x5, norm_across_frames=False)
    assert torch.allclose(out, ref, atol=2e-5, rtol=1e-4), (out - ref).abs().max()


def test_groupnorm_mode_matters_and_sd15_uses_per_frame(v2_state_dict):
    """Fails if the SD1.5 module normalised across frames (what the SDXL branch and diffusers do)."""
    m, w = _module_from(v2_state_dict, "down_blocks.1.motion_modules.1", NORM_PER_FRAME)
    x5 = _video(1, 640, 8, 4, 4, seed=3)
    x, f = _flat(x5)
    out = _to5(m(x, num_frames=f), f)
    per_frame = reference_module(w, x5, norm_across_frames=False)
    across = reference_module(w, x5, norm_across_frames=True)
    assert (per_frame - across).abs().max() > 1e-3  # the two modes are distinguishable on these inputs
    assert torch.allclose(out, per_frame, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(out, across, atol=1e-4)


def test_loaded_sd15_file_uses_per_frame_and_sdxl_file_across_frames():
    sdxl = manifest_state_dict("mm_sdxl_v10_beta", seed=2)
    mm = load_motion_module(sdxl)
    assert mm.info.norm_mode == NORM_ACROSS_FRAMES
    prefix = "down_blocks.2.motion_modules.1"
    w = module_weights(sdxl, prefix)
    x5 = _video(1, 1280, 6, 2, 2, seed=5)
    x, f = _flat(x5)
    out = _to5(mm.get_submodule(prefix)(x, num_frames=f), f)
    assert torch.allclose(out, reference_module(w, x5, norm_across_frames=True), atol=3e-5, rtol=1e-4)
    assert not torch.allclose(out, reference_module(w, x5, norm_across_frames=False), atol=1e-4)


def test_pe_is_added_to_normed_input_only(v2_state_dict):
    """Changing the PE table changes attention only; with zero attention output projections it has no effect."""
    prefix = "down_blocks.0.motion_modules.1"
    sd = {k: v.clone() for k, v in v2_state_dict.items() if k.startswith(prefix)}
    for a in (0, 1):
        sd[f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}.to_out.0.weight"].zero_()
        sd[f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}.to_out.0.bias"].zero_()
    m1, _ = _module_from(sd, prefix, NORM_PER_FRAME)
    for a in (0, 1):
        sd[f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}.pos_encoder.pe"] += 5.0
    m2, _ = _module_from(sd, prefix, NORM_PER_FRAME)
    x, f = _flat(_video(1, 320, 5, 3, 3))
    assert torch.equal(m1(x, f), m2(x, f))  # PE never reaches the residual stream


def test_zero_proj_out_is_identity(v2_state_dict):
    m, _ = _module_from(v2_state_dict, "mid_block.motion_modules.0", NORM_PER_FRAME)
    m.temporal_transformer.proj_out.weight.zero_()
    m.temporal_transformer.proj_out.bias.zero_()
    x, f = _flat(_video(1, 1280, 4, 2, 2))
    assert torch.equal(m(x, f), x)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, None])
def test_chunk_size_does_not_change_results(v2_state_dict, chunk):
    m, _ = _module_from(v2_state_dict, "down_blocks.1.motion_modules.0", NORM_PER_FRAME)
    x, f = _flat(_video(2, 640, 8, 6, 5, seed=9))
    full = m(x, f, chunk_size=None)
    out = m(x, f, chunk_size=chunk)
    # 1e-5 (values of order 1): how a CPU's kernels block the matmuls for another batch size changes the last
    # float32 bits (an H200 machine's 16-core CPU gave 1.07e-6 at chunk 1)
    assert torch.allclose(out, full, atol=1e-5, rtol=0), (out - full).abs().max()


def test_attention_function_is_pluggable(v2_state_dict):
    """A ComfyUI-style attention function ([B, N, heads*dim] in/out) is used for every call."""
    from motion_core.attention import sdpa_attention

    calls = []

    def spy(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False):
        calls.append((q.shape, heads))
        return sdpa_attention(q, k, v, heads)

    m, _ = _module_from(v2_state_dict, "down_blocks.0.motion_modules.0", NORM_PER_FRAME)
    x, f = _flat(_video(1, 320, 4, 4, 4))
    assert torch.allclose(m(x, f, attn_fn=spy, chunk_size=5), m(x, f), atol=1e-6)
    assert calls and all(heads == 8 and s[1] == 4 and s[2] == 320 for s, heads in calls)
    assert sum(s[0] for s, _ in calls) == 2 * 16  # two attentions x 16 pixel sequences, split in chunks of 5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_finite_and_close(v2_state_dict, dtype):
    m, _ = _module_from(v2_state_dict, "up_blocks.0.motion_modules.0", NORM_PER_FRAME)
    x, f = _flat(_video(1, 1280, 16, 4, 4, scale=4.0))  # latents/activations of normal scale
    ref = m(x, f)
    out = m.to(dtype)(x.to(dtype), f)
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < (0.05 if dtype == torch.float16 else 0.25)


def test_too_many_frames_is_refused_with_the_fix(v2_state_dict):
    m, _ = _module_from(v2_state_dict, "down_blocks.0.motion_modules.0", NORM_PER_FRAME)
    x, f = _flat(_video(1, 320, 33, 2, 2))
    with pytest.raises(ValueError, match="33 frames.*limit of 32.*context options"):
        m(x, f)
