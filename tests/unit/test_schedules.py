"""The one beta-schedule implementation (motion_core.schedules), checked against values worked out by hand.

"linear" is linear in beta (AnimateDiff's configs: beta_schedule "linear", 0.00085 -> 0.012 over 1000 steps):
    beta_t = 0.00085 + t * (0.012 - 0.00085) / 999
"scaled_linear" is linear in sqrt(beta) (Stable Diffusion's):
    beta_t = (sqrt(0.00085) + t * (sqrt(0.012) - sqrt(0.00085)) / 999) ** 2
The expected numbers below are those formulas evaluated with 30-digit decimals, not with the code under test.
"""
import pytest
import torch

from motion_core import schedules

# t: (linear 0.00085 -> 0.012, scaled_linear 0.00085 -> 0.012)
HAND = {
    0: (0.00085, 0.00085),
    1: (0.000861161161161161, 0.000854698655405686),
    500: (0.00643058058058058, 0.00481495414171188),
    999: (0.012, 0.012),
}


@pytest.mark.parametrize("t", sorted(HAND))
def test_linear_is_linear_in_beta_and_scaled_linear_in_sqrt_beta(t):
    linear, scaled = HAND[t]
    assert schedules.betas_between("linear", 0.00085, 0.012)[t].item() == pytest.approx(linear, rel=1e-12)
    assert schedules.betas_between("scaled_linear", 0.00085, 0.012)[t].item() == pytest.approx(scaled, rel=1e-12)


def test_named_schedules_use_the_kinds_the_modules_were_trained_with():
    assert schedules.betas("animatediff_linear")[500].item() == pytest.approx(HAND[500][0], rel=1e-12)
    assert schedules.betas("lcm")[500].item() == pytest.approx(HAND[500][0], rel=1e-12)
    assert schedules.betas("sd_default")[500].item() == pytest.approx(HAND[500][1], rel=1e-12)
    # SDXL beta module: scaled-linear up to 0.020, (sqrt(0.00085) + 500 (sqrt(0.02) - sqrt(0.00085)) / 999) ** 2
    assert schedules.betas("sdxl")[500].item() == pytest.approx(0.00728364055465196, rel=1e-12)
    b = schedules.betas("animatediff_linear")
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert torch.allclose(b[1:] - b[:-1], torch.full((999,), 0.01115 / 999, dtype=torch.float64), rtol=0, atol=1e-15)


def test_unknown_names_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'linear'.*'scaled_linear'"):
        schedules.betas_between("sqrt_linear", 0.00085, 0.012)  # ComfyUI's name: not ours
    with pytest.raises(ValueError, match="animatediff_linear"):
        schedules.betas("linear")
