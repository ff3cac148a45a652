"""lrpilot's rule, the curve landmarks and the smoothing, on hand-written curves."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrpilot.finder import (
    PEAK_FACTOR,
    PROGRESS_REF,
    curve_features,
    curve_learnt_share,
    learnt_share,
    lrpilot,
    lrpilot_band,
    peak_factor,
    smooth_curve,
    steps_per_decade,
)

LRS = np.geomspace(1e-7, 10.0, 100)
Array = npt.NDArray[np.float64]


def valley(center: float = 1e-2, noise: float = 0.0, seed: int = 0, lrs: Array = LRS) -> Array:
    """Flat at 2, falling to 0.5 around `center` / 10, blowing up above `center` (log-LR valley)."""
    u = np.log10(lrs) - math.log10(center)
    fall = 1.5 / (1.0 + np.exp(-3.0 * (u + 1.0)))
    rise = np.where(u > 0, 4.0 * u**2, 0.0)
    return 2.0 - fall + rise + noise * np.random.default_rng(seed).standard_normal(len(lrs))


def test_the_peak_sits_below_the_smoothed_minimum() -> None:
    s = lrpilot(LRS, valley())
    f = curve_features(LRS, valley())
    assert s.index == f.i_min
    share = (f.loss_start - f.loss_min) / f.loss_start  # the valley falls from 2 towards 0.5
    assert 0.6 < share < 0.75
    assert curve_learnt_share(LRS, valley()) == pytest.approx(share)
    assert curve_learnt_share(LRS, valley() - 10.0) == PROGRESS_REF  # no zero to read it against
    assert s.lr == pytest.approx(peak_factor(share) * f.lr_min)  # 100 steps over 8 decades: no ramp correction
    assert f.lr_steep < f.lr_min <= f.lr_stable
    assert 1e-3 < f.lr_min < 1e-2 < f.lr_stable * 10


def test_a_test_that_learnt_more_puts_the_peak_further_below_its_minimum() -> None:
    """Two valleys with the same minimum: the one that took about 70 % of its loss off within the test gets
    a lower peak than one that took 30 % off, by the ratio of their factors (about 0.5)."""
    deep = valley()
    shallow = 2.0 + 0.4 * (deep - 2.0)  # the same shape, falling from 2 by 0.6 instead of 1.5
    f_deep, f_shallow = curve_features(LRS, deep), curve_features(LRS, shallow)
    assert f_deep.i_min == f_shallow.i_min
    ratio = lrpilot(LRS, deep).lr / lrpilot(LRS, shallow).lr
    expected = peak_factor(learnt_share(f_deep.loss_start, f_deep.loss_min)) / peak_factor(
        learnt_share(f_shallow.loss_start, f_shallow.loss_min)
    )
    assert ratio == pytest.approx(expected)
    assert 0.4 < ratio < 0.6


def test_the_learnt_share_is_bounded_and_falls_back_without_a_zero() -> None:
    assert learnt_share(2.0, 0.0) == learnt_share(2.0, 1e-9) == pytest.approx(0.8)  # not extrapolated past MAX_PROGRESS
    assert learnt_share(1.0, 1.2) == 0.0  # a curve that never fell below its start
    assert learnt_share(-1.0, -5.0, positive=False) == PROGRESS_REF
    assert peak_factor(PROGRESS_REF) == pytest.approx(PEAK_FACTOR)
    assert peak_factor(0.0) > peak_factor(0.3) > peak_factor(0.8) > 0


@given(st.floats(0.01, 100))
@settings(max_examples=25, deadline=None)
def test_scale_does_not_change_the_answer(scale: float) -> None:
    y = valley(noise=0.05)
    assert lrpilot(LRS, scale * y).lr == pytest.approx(lrpilot(LRS, y).lr, rel=1e-9)


@given(st.floats(-100, -3), st.floats(-100, -3))
@settings(max_examples=25, deadline=None)
def test_shifting_a_loss_without_a_zero_does_not_change_the_answer(shift: float, other: float) -> None:
    """A loss that is not positive throughout gets the reference factor, so where it sits does not matter."""
    y = valley(noise=0.05)
    assert lrpilot(LRS, y + shift).lr == pytest.approx(lrpilot(LRS, y + other).lr, rel=1e-9)
    f = curve_features(LRS, y)
    assert lrpilot(LRS, y + shift).lr == pytest.approx(PEAK_FACTOR * f.lr_min)


def test_nan_tail_is_cut() -> None:
    y = valley(noise=0.02)
    tail = y.copy()
    tail[90:] = math.nan
    assert lrpilot(LRS, tail).lr == lrpilot(LRS[:90], y[:90]).lr
    tail[95] = 3.0  # values after the first NaN are ignored too
    assert lrpilot(LRS, tail).lr == lrpilot(LRS[:90], y[:90]).lr


def test_an_early_spike_changes_nothing() -> None:
    """A running median removes one-batch spikes before the smoothing (Lightning #1767)."""
    y = valley(noise=0.02)
    spiked = y.copy()
    spiked[3] = 50.0
    assert lrpilot(LRS, spiked).lr == pytest.approx(lrpilot(LRS, y).lr, rel=0.05)


def test_noise_moves_the_answer_little() -> None:
    answers = [lrpilot(LRS, valley(noise=0.1, seed=s)).lr for s in range(10)]
    assert max(answers) / min(answers) < 2.0


def test_a_denser_ramp_is_corrected_for_its_speed() -> None:
    """A ramp with 3× the steps per decade has its minimum lower by about 3^0.6 in real training;
    the rule scales that back. On a static curve (no training) the answer therefore moves up by
    exactly that factor."""
    dense = np.geomspace(1e-7, 10.0, 298)
    assert steps_per_decade(LRS, 50) == pytest.approx(99 / 8)
    assert steps_per_decade(dense, 100) == pytest.approx(297 / 8)
    ratio = lrpilot(dense, valley(lrs=dense)).lr / lrpilot(LRS, valley()).lr
    assert ratio == pytest.approx(3.0**0.6, rel=0.1)


def test_validation_points_count_their_steps() -> None:
    every5 = lrpilot(LRS[::5], valley()[::5], steps_per_point=5).lr
    assert every5 == pytest.approx(lrpilot(LRS, valley()).lr, rel=0.3)  # a 5× coarser grid


def test_linear_ramp() -> None:
    lrs = np.linspace(1e-4, 0.1, 100)
    s = lrpilot(lrs, valley(lrs=lrs))
    assert 1e-4 < s.lr < 1e-2


def test_a_curve_lowest_at_its_start_has_no_answer() -> None:
    with pytest.raises(ValueError, match="lowest at the first LR"):
        lrpilot(LRS, np.linspace(1.0, 5.0, 100))


def test_too_few_finite_points() -> None:
    y = valley()
    y[4] = math.nan
    with pytest.raises(ValueError, match="at least 5 finite points"):
        lrpilot(LRS, y)


def test_smoothing_is_zero_phase() -> None:
    """A symmetric bump stays where it is (an EMA would drag it to the right)."""
    u = np.log10(LRS)
    bump = np.exp(-0.5 * ((u + 3.0) / 0.5) ** 2)
    smoothed = smooth_curve(LRS, bump)
    assert int(np.argmax(smoothed)) == int(np.argmax(bump))


def test_features_of_a_curve_that_never_rises() -> None:
    y = 2.0 - np.linspace(0, 1.5, 100)
    f = curve_features(LRS, y)
    assert not f.rises
    assert f.i_stable == f.i_min == 99
    assert f.drop == pytest.approx(1.5, rel=0.03)
    assert f.drop_sigma == math.inf  # a noise-free line has no noise


def test_band_brackets_the_answer_and_is_deterministic() -> None:
    y = valley(noise=0.1)
    lo, mid, hi = lrpilot_band(LRS, y)
    assert lo <= mid <= hi
    assert lo <= lrpilot(LRS, y).lr * 1.5
    assert hi >= lrpilot(LRS, y).lr / 1.5
    assert lrpilot_band(LRS, y) == (lo, mid, hi)
    assert lrpilot_band(LRS, valley(noise=0.0)) == pytest.approx((mid,) * 3, rel=0.5)
