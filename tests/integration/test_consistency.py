"""FreeNoise, FreeInit and the motion strength schedule on ComfyUI's real sampler (tiny inflated UNet, in-process).

comfy.sample.sample is what core KSampler runs, so what holds here holds under KSampler on an inflated model;
Sample Animation's FreeInit path is reached through the pack's nodes/sample.py as ComfyUI imported it.
"""
from __future__ import annotations

import pytest
import torch

# test_inflate bootstraps ComfyUI and holds the tiny UNet / motion module fixtures these tests share
from test_inflate import conds, motion, patcher, tiny_motion_module  # noqa: E402,F401

import comfy.model_management  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.utils  # noqa: E402
from harness.tiny_models import tiny_controlnet, tiny_unet  # noqa: E402
from motion_core.comfy import (SCALE_KEY, StepScale, inflate, install_context_windows, with_motion_contrast,  # noqa: E402
                               with_motion_scale)
from motion_core.comfy import windows as windows_mod  # noqa: E402
from motion_core.comfy.freeinit import reinit_noise  # noqa: E402
from motion_core.context import ContextOptions  # noqa: E402
from motion_core.errors import MotionFormatError  # noqa: E402
from motion_core.freeinit import FreeInitOptions  # noqa: E402
from motion_core.freenoise import reschedule_noise  # noqa: E402
from motion_core.motion_scale import MotionScale  # noqa: E402

pytestmark = pytest.mark.integration


def sample(model, noise, steps=2, seed=0, positive=None, negative=None, sampler="euler"):
    pos, neg = conds() if positive is None else (positive, negative)
    latent = torch.zeros_like(noise)
    return comfy.sample.sample(model, noise, steps, 5.0, sampler, "normal", pos, neg, latent, disable_pbar=True,
                               seed=seed)


def noise_for(frames, seed=0, size=8):
    return comfy.sample.prepare_noise(torch.zeros(frames, 4, size, size), seed)


# --- motion strength over block groups and steps --------------------------------------------------------------

def test_constant_schedules_are_bit_identical_to_the_scalar(patcher, motion):
    noise = noise_for(4)
    plain = sample(inflate(patcher, motion, motion_strength=1.3), noise)
    halved = inflate(patcher, motion, motion_strength=0.65)
    doubled = with_motion_scale(halved, MotionScale(start=2.0, end=2.0))  # 0.65 * 2.0 == 1.3 exactly
    assert SCALE_KEY in doubled.model_options["transformer_options"]
    assert torch.equal(sample(doubled, noise), plain)
    identity = with_motion_scale(inflate(patcher, motion, motion_strength=1.3), MotionScale(keyframes=((0.0, 1.0),)))
    assert SCALE_KEY not in identity.model_options.get("transformer_options", {})
    assert torch.equal(sample(identity, noise), plain)
    zero = with_motion_scale(inflate(patcher, motion), MotionScale(down=0.0, mid=0.0, up=0.0))
    assert torch.equal(sample(zero, noise), sample(inflate(patcher, motion, motion_strength=0.0), noise))
    assert SCALE_KEY not in halved.model_options.get("transformer_options", {})  # the input MODEL is untouched


def test_schedule_follows_groups_and_steps(patcher, motion, monkeypatch):
    seen = []
    original = StepScale.__call__

    def spy(self, group, options):
        factor = original(self, group, options)
        seen.append((group, round(self.progress(options), 6), factor))
        return factor

    monkeypatch.setattr(StepScale, "__call__", spy)
    noise = noise_for(4)
    scale = MotionScale(down=0.5, mid=1.0, up=2.0, start=1.0, end=0.0)
    out = sample(with_motion_scale(inflate(patcher, motion), scale), noise, steps=3)
    assert {g for g, _, _ in seen} == {"down", "mid", "up"}
    assert {p for _, p, _ in seen} == {0.0, 0.5, 1.0}  # 3 euler steps: progress 0, 1/2, 1
    for group, progress, factor in seen:
        assert factor == pytest.approx({"down": 0.5, "mid": 1.0, "up": 2.0}[group] * (1.0 - progress))
    assert not torch.equal(out, sample(inflate(patcher, motion), noise, steps=3))


def test_schedule_needs_an_inflated_model(patcher):
    with pytest.raises(MotionFormatError, match="after Inflate Model"):
        with_motion_scale(patcher, MotionScale(up=2.0))


# --- Motion Contrast Guidance --------------------------------------------------------------------------------

def test_contrast_guidance_is_the_formula_over_two_independent_runs(patcher, motion):
    # One euler step ends at sigma 0, so the sample IS that step's denoised prediction: the guided run must give
    # A + s (A - B), where A and B are plain runs of each module inflated on its own (CFG 5 in both).
    other = tiny_motion_module(seed=2)
    noise = noise_for(4)
    a = sample(inflate(patcher, motion), noise, steps=1)
    b = sample(inflate(patcher, other), noise, steps=1)
    guided = sample(with_motion_contrast(inflate(patcher, motion), other, 2.5), noise, steps=1)
    assert not torch.allclose(a, b, atol=1e-3)
    torch.testing.assert_close(guided, a + 2.5 * (a - b), atol=1e-5, rtol=1e-5)


def test_contrast_guidance_off_and_against_itself_is_the_plain_model(patcher, motion):
    noise = noise_for(4)
    model = inflate(patcher, motion)
    plain = sample(model, noise)
    assert torch.equal(sample(with_motion_contrast(model, tiny_motion_module(seed=2), 0.0), noise), plain)
    torch.testing.assert_close(sample(with_motion_contrast(model, motion, 3.0), noise), plain, atol=1e-6, rtol=1e-6)
    guided = with_motion_contrast(model, tiny_motion_module(seed=2), 3.0)
    assert guided.model_options.get("sampler_post_cfg_function")
    assert not model.model_options.get("sampler_post_cfg_function")  # the input MODEL is untouched
    assert torch.equal(sample(model, noise), plain)  # and samples as before after the guided clone ran
    assert not torch.equal(sample(guided, noise), plain)


def test_contrast_guidance_only_in_its_part_of_the_sampling(patcher, motion):
    # One step at sigma max (0 % of the sampling): a window starting later leaves it alone.
    noise = noise_for(4)
    other = tiny_motion_module(seed=2)
    plain = sample(inflate(patcher, motion), noise, steps=1)
    late = with_motion_contrast(inflate(patcher, motion), other, 2.0, start_percent=0.5, end_percent=1.0)
    assert torch.equal(sample(late, noise, steps=1), plain)
    early = with_motion_contrast(inflate(patcher, motion), other, 2.0, start_percent=0.0, end_percent=0.5)
    assert not torch.equal(sample(early, noise, steps=1), plain)


def test_contrast_guidance_inside_context_windows(patcher, motion):
    # 10 frames in 4-frame windows: the contrast pass goes through the same windowed calc_cond_batch, so against
    # itself it is the plain windowed run, and against another module it changes it.
    noise = noise_for(10)
    options = ContextOptions(length=4, overlap=1)
    model = inflate(patcher, motion, context_options=options)
    plain = sample(model, noise)
    torch.testing.assert_close(sample(with_motion_contrast(model, motion, 2.0), noise), plain, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(sample(with_motion_contrast(model, tiny_motion_module(seed=2), 2.0), noise), plain,
                              atol=1e-4)


def test_contrast_guidance_refuses_what_cannot_be_contrasted(patcher, motion):
    with pytest.raises(MotionFormatError, match="after Inflate Model"):
        with_motion_contrast(patcher, motion, 2.0)
    with pytest.raises(MotionFormatError, match="same motion module file"):
        with_motion_contrast(inflate(patcher, motion), tiny_motion_module(seed=2, mid=False), 2.0)
    with pytest.raises(MotionFormatError, match="frames per pass"):
        with_motion_contrast(inflate(patcher, motion), tiny_motion_module(seed=2, pe_len=8), 2.0)
    with pytest.raises(MotionFormatError, match="start_percent"):
        with_motion_contrast(inflate(patcher, motion), motion, 2.0, start_percent=0.8, end_percent=0.2)


def test_contrast_weight_copies_stay_while_the_unet_stays_on_the_device(patcher, motion):
    import comfy.patcher_extension

    from motion_core.comfy.contrast import CONTRAST_KEY

    guided = with_motion_contrast(inflate(patcher, motion), tiny_motion_module(seed=2), 2.0)
    (callback,) = guided.callbacks[comfy.patcher_extension.CallbacksMP.ON_DETACH][CONTRAST_KEY]
    cache = callback.__self__  # the contrast weights' cache
    cache.get(torch.device("meta"), torch.float16)  # stands in for a GPU copy
    assert len(cache.copies) == 1
    guided.detach(unpatch_all=False)  # ComfyUI switches to another clone of the same UNet
    assert len(cache.copies) == 1
    guided.detach()  # ComfyUI unloads the UNet's weights
    assert cache.copies == {}


# --- FreeNoise -------------------------------------------------------------------------------------------------

def test_freenoise_lays_out_the_samplers_noise(patcher, motion):
    # The OUTER_SAMPLE wrapper reschedules whatever noise the sampler node made from its seed: KSampler's path.
    options = ContextOptions(length=4, overlap=1, noise="freenoise")
    plain = ContextOptions(length=4, overlap=1)
    for seed in (0, 3):
        noise = noise_for(10, seed)
        with_freenoise = sample(inflate(patcher, motion, context_options=options), noise, seed=seed)
        by_hand = sample(inflate(patcher, motion, context_options=plain), reschedule_noise(noise, options, seed),
                         seed=seed)
        assert torch.equal(with_freenoise, by_hand)
        independent = sample(inflate(patcher, motion, context_options=plain), noise, seed=seed)
        assert not torch.equal(with_freenoise, independent)


def test_freenoise_single_window_is_unchanged(patcher, motion):
    noise = noise_for(4)
    a = sample(inflate(patcher, motion, context_options=ContextOptions(length=4, overlap=1, noise="freenoise")), noise)
    b = sample(inflate(patcher, motion, context_options=ContextOptions(length=4, overlap=1)), noise)
    assert torch.equal(a, b)


def test_later_context_options_replace_the_noise_layout(patcher, motion):
    model = inflate(patcher, motion, context_options=ContextOptions(length=4, overlap=1, noise="freenoise"))
    assert model.get_wrappers(windows_mod.OUTER_SAMPLE, windows_mod.WRAPPER_KEY)
    clone = model.clone()
    install_context_windows(clone, ContextOptions(length=4, overlap=1))
    assert not clone.get_wrappers(windows_mod.OUTER_SAMPLE, windows_mod.WRAPPER_KEY)
    assert model.get_wrappers(windows_mod.OUTER_SAMPLE, windows_mod.WRAPPER_KEY)  # the original keeps its own


@pytest.mark.parametrize("mode", ["uniform", "looped"])
def test_freenoise_with_prompt_travel_and_windowed_controlnet_hints(mode):
    # A plain tiny UNet, per-frame prompts and per-frame ControlNet hints: FreeNoise changes the noise only, so
    # the run equals the windowed run on the rescheduled noise (the conds still follow their frames).
    ctx = 8
    unet, controlnet = tiny_unet(ctx, seed=0), tiny_controlnet(ctx, seed=1)
    n = 10
    hints = ((torch.arange(n, dtype=torch.float32) + 1) / (n + 1)).view(n, 1, 1, 1).expand(n, 3, 48, 64).clone()
    control = controlnet.copy().set_cond_hint(hints, 0.8, (0.0, 1.0))
    travel = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 4, ctx).clone() * 0.1
    positive, negative = [[travel, {"control": control}]], [[torch.zeros(1, 4, ctx), {"control": control}]]
    options = ContextOptions(length=4, overlap=2, mode=mode, noise="freenoise")
    noise = noise_for(n, 5)
    fn, plain = unet.clone(), unet.clone()
    install_context_windows(fn, options)
    install_context_windows(plain, ContextOptions(length=4, overlap=2, mode=mode))
    a = sample(fn, noise, seed=5, positive=positive, negative=negative)
    b = sample(plain, reschedule_noise(noise, options, 5), seed=5, positive=positive, negative=negative)
    assert torch.equal(a, b)


# --- FreeInit --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_node(pack_node):
    return pack_node("sample")


def run_node(sample_node, model, freeinit=None, frames=4, steps=2, seed=0):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    pos, neg = conds()
    return sample_node.sample_latent(model, pos, neg, latent, seed, steps, 5.0, "euler", "normal", 1.0,
                                     freeinit)["samples"]


def test_freeinit_one_iteration_is_todays_run(sample_node, patcher, motion):
    model = inflate(patcher, motion)
    assert torch.equal(run_node(sample_node, model, FreeInitOptions(iterations=1)), run_node(sample_node, model))


@pytest.fixture
def progress_events(monkeypatch):
    events = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None:
                        events.append((value, total)))
    return events


def test_freeinit_passes_share_one_progress_bar(sample_node, patcher, motion, progress_events):
    model = inflate(patcher, motion)
    one = run_node(sample_node, model, steps=3)
    progress_events.clear()
    three = run_node(sample_node, model, FreeInitOptions(iterations=3), steps=3)
    assert progress_events == [(v, 9) for v in range(1, 10)]
    assert torch.isfinite(three).all() and not torch.equal(three, one)
    progress_events.clear()
    run_node(sample_node, model, FreeInitOptions(iterations=3, coarse_to_fine=True), steps=3)
    assert progress_events == [(v, 6) for v in range(1, 7)]  # passes of 1, 2, 3 steps


def test_freeinit_cancel_stops_between_passes(sample_node, patcher, motion, monkeypatch):
    events = []

    def hook(value, total, preview, node_id=None):
        events.append(value)
        if value == 2:  # the end of the first pass
            comfy.model_management.interrupt_current_processing(True)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_node(sample_node, inflate(patcher, motion), FreeInitOptions(iterations=3), steps=2)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert events == [1, 2]


def test_freeinit_passes_get_the_reinitialised_noise(sample_node, patcher, motion, monkeypatch):
    options = ContextOptions(length=4, overlap=1, noise="freenoise")
    model = inflate(patcher, motion, context_options=options)
    calls = []
    real = comfy.sample.sample

    def spy(model_, noise, *args, **kwargs):
        calls.append((model_, noise.clone()))
        return real(model_, noise, *args, **kwargs)

    monkeypatch.setattr(comfy.sample, "sample", spy)
    run_node(sample_node, model, FreeInitOptions(iterations=2), frames=10, seed=4)
    (m1, n1), (m2, n2) = calls
    assert torch.equal(n1, reschedule_noise(noise_for(10, 4), options, 4))  # pass 1: FreeNoise's layout, once
    for m in (m1, m2):  # the passes run without the wrapper, so the mixed noise is not shuffled again
        assert not m.get_wrappers(windows_mod.OUTER_SAMPLE, windows_mod.WRAPPER_KEY)
    assert not torch.allclose(n2, n1)


def test_reinit_keeps_low_frequencies_of_the_diffused_result(patcher):
    sampling = patcher.get_model_object("model_sampling")
    g = torch.Generator().manual_seed(0)
    result, first, fresh = (torch.randn(8, 4, 8, 8, generator=g) for _ in range(3))
    latent = torch.zeros_like(result)
    sigma = float(sampling.sigma_max)
    # d_s = 0 keeps nothing of the result: the new noise is the fresh noise
    nothing = reinit_noise(sampling, sigma, True, result, first, fresh, latent, FreeInitOptions(d_s=0.0))
    assert torch.allclose(nothing, fresh, atol=1e-5)
    # otherwise the sampler's start (noise_scaling of the returned noise) is lowpass(diffused) + highpass(fresh)
    options = FreeInitOptions(filter="gaussian")
    new = reinit_noise(sampling, sigma, True, result, first, fresh, latent, options)
    s = torch.tensor([sigma])
    start = sampling.noise_scaling(s, new, latent, True)
    from motion_core.freeinit import mix_frames
    expected = mix_frames(sampling.noise_scaling(s, first, result, True),
                          sampling.noise_scaling(s, fresh, latent, True), options)
    assert torch.allclose(start, expected, atol=1e-3)


# --- the nodes ---------------------------------------------------------------------------------------------------

def test_pan_probe_freeinit_wires_the_node_with_inputs_it_takes(pack_node):
    """pan_probe --freeinit N: Sample Animation reads a FreeInit node of N passes whose inputs the real node accepts
    (by name); at 1 the prompt is left as it was."""
    from training.pan_probe import with_freeinit

    prompt = {"3": {"class_type": "ADMK_SampleAnimation", "inputs": {"seed": 0}},
              "9": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0]}}}
    assert with_freeinit({k: dict(v, inputs=dict(v["inputs"])) for k, v in prompt.items()}, 1) == prompt
    wired = with_freeinit(prompt, 3)
    link = wired["3"]["inputs"]["freeinit"]
    node = wired[link[0]]
    assert link[1] == 0 and link[0] not in ("3", "9") and node["class_type"] == "ADMK_FreeInit"
    options = pack_node("freeinit").FreeInitNode.execute(**node["inputs"]).result[0]
    # the node's defaults otherwise (compared by fields: the pack's copy of motion_core is another module object)
    assert vars(options) == vars(FreeInitOptions(iterations=3))


def test_nodes_build_the_settings(pack_node, patcher, motion):
    ctx = pack_node("context_options").ContextOptionsNode.execute(8, 2, 1, "uniform", "pyramid", "freenoise").result[0]
    assert ctx.noise == "freenoise"
    plain = pack_node("context_options").ContextOptionsNode.execute(8, 2, 1, "uniform", "pyramid").result[0]
    assert plain.noise == "default"
    fi = pack_node("freeinit").FreeInitNode.execute(3, "gaussian", 0.3, 0.2, 4, True).result[0]
    assert (fi.iterations, fi.filter, fi.d_s, fi.d_t, fi.coarse_to_fine) == (3, "gaussian", 0.3, 0.2, True)
    node = pack_node("motion_scale").MotionStrengthSchedule
    model = node.execute(inflate(patcher, motion), 0.5, 1.0, 1.5, 1.0, 0.5, 10.0, 90.0, "").result[0]
    scale = model.model_options["transformer_options"][SCALE_KEY].scale
    assert (scale.down, scale.up, scale.end, scale.ramp_start) == (0.5, 1.5, 0.5, 10.0)
    keyed = node.execute(inflate(patcher, motion), 1, 1, 1, 1, 1, 0, 100, "0:1.5, 100:1").result[0]
    assert keyed.model_options["transformer_options"][SCALE_KEY].scale.keyframes == ((0.0, 1.5), (100.0, 1.0))
    with pytest.raises(ValueError, match="percent:value"):
        node.execute(inflate(patcher, motion), 1, 1, 1, 1, 1, 0, 100, "fast")
    contrast = pack_node("contrast_guidance").MotionContrastGuidance
    guided = contrast.execute(inflate(patcher, motion), tiny_motion_module(seed=2), 2.0, 0.0, 0.4).result[0]
    assert len(guided.model_options["sampler_post_cfg_function"]) == 1
