"""Prompt-travel parsing, scheduling and embedding interpolation (no ComfyUI: a fake encoder)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from motion_core.prompt_travel import (  # noqa: E402
    Keyframe, compose_prompt, frame_schedule, parse_keyframes, travel_conditioning)


def frames_prompts(text):
    return [(k.frame, k.prompt) for k in parse_keyframes(text)]


def test_parses_the_documented_forms():
    text = '''
    # a comment
    0: "a calm sea"
    "24": "a stormy sea",

    48: a sunset, golden hour
    // another comment
    60: 'single quoted'
    '''
    assert frames_prompts(text) == [(0, "a calm sea"), (24, "a stormy sea"), (48, "a sunset, golden hour"),
                                    (60, "single quoted")]


def test_parses_json_object_and_several_keys_per_line():
    assert frames_prompts('{"0": "a", "12": "b, with comma",\n "30": "c \\"quoted\\""}') == [
        (0, "a"), (12, "b, with comma"), (30, 'c "quoted"')]
    assert frames_prompts('{\n  "8": "late",\n  "0": "early"\n}') == [(0, "early"), (8, "late")]


def test_keyframes_are_sorted_and_remember_their_line():
    kfs = parse_keyframes('10: "b"\n0: "a"')
    assert kfs == [Keyframe(0, "a", 2), Keyframe(10, "b", 1)]


@pytest.mark.parametrize("text,match", [
    ('0: "a"\nhello world', r"line 2 \('hello world'\).*frame number"),
    ('0: "a"\n\n5: "unclosed', r"line 3 .*not closed"),
    ('-3: "neg"', r"line 1 .*negative"),
    ('0: "a" extra', r"line 1 .*unexpected text"),
    ('0 "missing colon"', r"line 1 .*':'"),
    ('0: "a"\n4: "b"\n0: "c"', r"lines 1 and 3 both set frame 0"),
    ("", "empty"),
    ("# only a comment\n{}", "no keyframes"),
])
def test_errors_name_the_line_and_the_problem(text, match):
    with pytest.raises(ValueError, match=match):
        parse_keyframes(text)


def test_compose_prompt():
    assert compose_prompt("a calm sea", "masterpiece,", ", 4k") == "masterpiece, a calm sea, 4k"
    assert compose_prompt("a calm sea") == "a calm sea"
    assert compose_prompt("", "pre", "post") == "pre, post"


def test_schedule_interpolates_holds_before_first_and_after_last():
    kfs = parse_keyframes('2: "a"\n6: "b"')
    sched = frame_schedule(kfs, 9)
    assert sched[0] == (0, 0, 0.0) and sched[2] == (0, 1, 0.0)  # before/at the first keyframe: all prompt a
    assert sched[3] == (0, 1, 0.25) and sched[5] == (0, 1, 0.75)
    assert sched[6] == (1, 1, 0.0) and sched[8] == (1, 1, 0.0)  # at/after the last: prompt b
    assert [w for _, _, w in frame_schedule(kfs, 9, "hold")] == [0.0] * 9
    assert [(i, j) for i, j, _ in frame_schedule(kfs, 9, "hold")][3:7] == [(0, 1)] * 3 + [(1, 1)]


def test_keyframe_past_the_end_still_steers_the_last_frames():
    sched = frame_schedule(parse_keyframes('0: "a"\n32: "b"'), 16)
    assert sched[-1] == (0, 1, 15 / 32)


def fake_encoder(calls):
    # prompt "p<k>" (optionally with pre/post text) -> cond filled with k; "long ..." prompts take 154 tokens
    def encode(text):
        calls.append(text)
        k = float(len(text))
        tokens = 154 if text.startswith("long") else 77
        return torch.full((1, tokens, 4), k), torch.full((1, 3), -k)
    return encode


def test_travel_conditioning_blends_embeddings_per_frame():
    calls = []
    cond, pooled = travel_conditioning('0: "aa"\n4: "aaaaaa"\n8: "aa"', 10, fake_encoder(calls))
    assert cond.shape == (10, 77, 4) and pooled.shape == (10, 3)
    assert sorted(set(calls)) == ["aa", "aaaaaa"] and len(calls) == 2  # each distinct prompt encoded once
    expected = torch.tensor([2, 3, 4, 5, 6, 5, 4, 3, 2, 2], dtype=torch.float32)
    assert torch.allclose(cond[:, 0, 0], expected)
    assert torch.allclose(cond[:, 76, 3], expected)
    assert torch.allclose(pooled[:, 0], -expected)


def test_pre_and_post_text_reach_the_encoder():
    calls = []
    travel_conditioning('0: "x"\n4: "y"', 5, fake_encoder(calls), pre_text="best,", post_text="4k")
    assert calls == ["best, x, 4k", "best, y, 4k"]


def test_prompts_of_different_token_lengths_are_padded_by_repetition():
    cond, _ = travel_conditioning('0: "long prompt"\n2: "s"', 3, fake_encoder([]))
    assert cond.shape == (3, 154, 4)
    assert torch.allclose(cond[2], torch.full((154, 4), 1.0))  # the short prompt repeated
    assert torch.allclose(cond[1], torch.full((154, 4), (11 + 1) / 2))


def test_single_keyframe_and_single_frame():
    cond, pooled = travel_conditioning('5: "abc"', 1, fake_encoder([]))
    assert cond.shape == (1, 77, 4) and float(cond[0, 0, 0]) == 3.0
    with pytest.raises(ValueError, match="at least 1 frame"):
        travel_conditioning('0: "a"', 0, fake_encoder([]))


def test_no_pooled_output_is_allowed():
    cond, pooled = travel_conditioning('0: "a"\n2: "bbb"', 3, lambda t: (torch.full((1, 77, 2), float(len(t))), None))
    assert pooled is None and torch.allclose(cond[:, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
