"""Soak, short version (10 prompts; benchmarks/soak.py runs 50 and prints the numbers): one server, prompts
alternating plain image, animation and an animation cancelled while it samples (the image first,
so a patch leaked by the first animation shows). Resident memory after the first
round grows by less than 5 %, and the last plain image is bit-identical to the first."""
from __future__ import annotations

import pytest

from benchmarks.soak import MAX_GROWTH, run_soak

pytestmark = pytest.mark.e2e


def test_ten_prompts_leave_memory_and_the_plain_image_unchanged(comfy_server):
    result = run_soak(comfy_server, prompts=10, log=lambda line: None)
    assert result["cancelled"] == 3 and result["plain_images"] == 4  # image, animation, cancelled, ... image
    assert result["plain_image_bit_identical"], result
    assert result["rss_growth_after_first_round"] < MAX_GROWTH, result
