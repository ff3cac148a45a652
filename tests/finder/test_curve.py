"""Ramps, bias-corrected smoothing and the sign-safe divergence rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrpilot.finder import (
    SETTLE,
    DivergenceRule,
    RangeTestMonitor,
    curve_features,
    default_beta,
    ema,
    lrpilot,
    noise_level,
    ramp_schedule,
)
from lrpilot.finder._features import CLEAR_FALL, second_difference_noise
from lrpilot.schedules import Anneal


def test_exponential_ramp_hits_both_ends_and_is_geometric() -> None:
    ramp = ramp_schedule(1e-7, 10.0, 100)
    assert isinstance(ramp, Anneal)  # an lrpilot schedule, serialisable like any other
    lrs = ramp.values(np.arange(100))
    assert lrs[0] == 1e-7
    assert lrs[-1] == pytest.approx(10.0, rel=1e-12)
    assert np.allclose(lrs[1:] / lrs[:-1], 10 ** (8 / 99))


def test_linear_ramp() -> None:
    lrs = ramp_schedule(0.01, 1.0, 5, "linear").values(np.arange(5))
    assert np.allclose(lrs, [0.01, 0.2575, 0.505, 0.7525, 1.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1e-3, 1e-3, 10), "start_lr must be < end_lr"),
        ((1.0, 0.1, 10), "start_lr must be < end_lr"),
        ((0.0, 1.0, 10), "start_lr must be a finite number > 0"),
        ((1e-3, 1.0, 1), "num_steps must be an integer in"),
    ],
)
def test_bad_ramps(args: tuple[float, float, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ramp_schedule(*args)


def test_bias_correction_makes_a_constant_curve_constant() -> None:
    """An uncorrected average starting from 0 reads 0.3, 0.57, 0.81, ... for a constant 3 (a
    rise out of nowhere); the corrected one reads 3 from the first point."""
    assert np.allclose(ema([3.0] * 20, beta=0.9), 3.0)
    uncorrected = ema([3.0] * 20, beta=0.9) * (1 - 0.9 ** np.arange(1, 21))
    assert uncorrected[:3] == pytest.approx([0.3, 0.57, 0.813])


def test_ema_closed_form() -> None:
    x = np.array([4.0, 2.0, 1.0])
    b = 0.5
    expected = [4.0, (0.5 * 0.5 * 4 + 0.5 * 2) / 0.75, (0.125 * 4 + 0.25 * 2 + 0.5 * 1) / 0.875]
    assert np.allclose(ema(x, b), expected)


def test_ema_stays_nan_after_a_non_finite_loss() -> None:
    out = ema([1.0, 2.0, math.inf, 1.0], 0.9)
    assert np.isfinite(out[:2]).all()
    assert np.isnan(out[2:]).all()


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.floats(0.0, 0.99))
def test_online_monitor_matches_offline_ema(losses: list[float], beta: float) -> None:
    monitor = RangeTestMonitor(beta=beta, rule=DivergenceRule(min_points=10**6))
    for x in losses:
        monitor.update(x)
    assert np.array_equal(np.asarray(monitor.smoothed), ema(losses, beta), equal_nan=True)


def test_default_beta_is_a_window_of_a_tenth_of_the_curve() -> None:
    assert default_beta(100) == pytest.approx(0.9)
    assert default_beta(1000) == pytest.approx(0.99)
    assert default_beta(10) == 0.5


def _stop(losses: list[float], rule: DivergenceRule | None = None, beta: float = 0.0) -> tuple[int | None, str | None]:
    monitor = RangeTestMonitor(beta=beta, rule=rule or DivergenceRule())
    for i, x in enumerate(losses):
        reason = monitor.update(x)
        if reason is not None:
            return i, reason
    return None, None


def test_non_finite_stops_at_once_even_where_ratio_rules_never_would() -> None:
    assert _stop([2.0, 1.5, 1.0, math.nan, 1.0]) == (3, "non-finite")
    assert _stop([2.0, 1.5, -math.inf]) == (2, "non-finite")


# Flat, then a linear fall of 1.5, then a rise of 0.1 per point: noise-free, so the drop decides.
CURVE = [2.0] * 4 + [2.0 - 0.15 * k for k in range(1, 11)] + [0.5 + 0.1 * k for k in range(1, 12)]
STOP = 4 + 10 + 8 - 1  # the first point above 0.5 + 0.5 · 1.5 = 1.25 is 0.5 + 0.8


def test_rise_is_measured_against_the_drop() -> None:
    assert _stop(CURVE) == (STOP, "diverged")


@pytest.mark.parametrize("shift", [0.0, -10.0, -100.0, 50.0])
def test_divergence_is_shift_invariant_and_works_for_negative_losses(shift: float) -> None:
    """fastai's ``smooth > 4 * best`` stops at once on a negative loss (fastai #962); the drop-based
    rule stops at the same point whatever constant is added to the loss (while the drop, 1.5, is
    above 1 % of the loss's magnitude)."""
    assert _stop([x + shift for x in CURVE]) == (STOP, "diverged")


def test_a_curve_that_has_not_fallen_needs_a_clear_rise() -> None:
    rng = np.random.default_rng(0)
    flat = list(1.0 + 0.01 * rng.standard_normal(200))
    assert noise_level(flat) == pytest.approx(0.01, rel=0.25)
    for seed in range(100):
        noisy = list(1.0 + 0.01 * np.random.default_rng(seed).standard_normal(300))
        assert _stop(noisy, beta=0.9) == (None, None)
    step_up = [*flat, *(1.0 + 0.01 * rng.standard_normal(30) + 0.15)]  # a rise of 15 noise levels
    stop, reason = _stop(step_up, beta=0.9)
    assert reason == "diverged"
    assert stop is not None
    assert stop > 200
    assert _stop([x - 10 for x in step_up], beta=0.9) == (stop, reason)


# A real curve: full fine-tuning of all-MiniLM-L6-v2 on SST-2 (benchmarks/finder_regret.py, sst2-full,
# seed 1, 100 steps from 1e-7 to 10): flat, a fall to 0.53 (smoothed) at point 48, then a blow-up.
MINILM = [
    0.734, 0.687, 0.666, 0.701, 0.689, 0.706, 0.697, 0.701, 0.723, 0.69, 0.66, 0.67, 0.698, 0.674, 0.687,
    0.668, 0.718, 0.66, 0.676, 0.698, 0.667, 0.674, 0.693, 0.655, 0.712, 0.688, 0.68, 0.656, 0.703, 0.661,
    0.664, 0.651, 0.689, 0.654, 0.649, 0.588, 0.569, 0.597, 0.531, 0.519, 0.668, 0.514, 0.42, 0.445, 0.428,
    0.68, 0.601, 0.382, 0.262, 0.834, 0.454, 1.041, 0.298, 0.464, 2.884, 0.852, 1.478, 0.904, 0.654, 0.55,
    0.873, 0.73, 1.585, 0.721, 0.699, 0.66, 1.085, 0.83, 0.713, 0.64, 2.03, 0.85, 1.535, 0.91, 1.007, 2.073,
    1.328, 1.854, 2.001, 6.167, 6.575, 3.77, 1.205, 11.025, 0.758, 36.543, 19.357, 38.579, 40.216, 85.341,
    1.172, 63.799, 114.185, 18.965, 145.871, 40.285, 226.523, 296.882, 289.573, 446.419,
]  # fmt: skip


def test_a_blow_up_does_not_count_as_noise() -> None:
    """The recent noise is read up to the best point: read over the last points, the blow-up raised
    the threshold as fast as the loss, and this test ran to its end with the loss at 446."""
    rise_only = DivergenceRule(clear_fall=math.inf)  # without the give-back stop (below)
    stop, reason = _stop(MINILM, rise_only, beta=0.9)  # the runner's β for a 100-point test
    assert reason == "diverged"
    assert stop == 75  # smoothed 1.10, twice its best (0.53): it has given back more than half the fall
    assert ema(MINILM[: stop + 1])[-1] > 2 * min(ema(MINILM))


def test_a_classifier_back_at_its_starting_loss_has_given_back_everything() -> None:
    """The same curve stops 21 points (1.7 decades) sooner once its smoothed loss is back above its
    start (chance, 0.70), and the rule's answer on it is the same."""
    stop, reason = _stop(MINILM, beta=0.9)
    assert (stop, reason) == (54, "diverged")
    smoothed = ema(MINILM[: stop + 1], 0.9)
    start = float(np.median(MINILM[:10]))
    assert smoothed[-1] > start > min(smoothed) + 0.15  # back above the start after a fall of 0.17
    lrs = np.geomspace(1e-7, 10.0, 100)
    assert lrpilot(lrs[: stop + 1], MINILM[: stop + 1]).lr == pytest.approx(lrpilot(lrs[:76], MINILM[:76]).lr, rel=1e-3)


def test_giving_back_needs_a_clear_and_settled_fall() -> None:
    """Noise-free: a fall of 0.3 from 1.0, then back to 1.0 + 2 % stops (the margins fall to
    `rel_floor`); a wobble of 0.5 % below and above the start does not; nor a fall whose lowest
    point comes before the average has settled (2 × min_points in)."""
    back = [1.0] * 20 + [1.0 - 0.03 * k for k in range(1, 11)] + [0.7 + 0.04 * k for k in range(1, 10)]
    stop, reason = _stop(back, DivergenceRule(rise=2.0))  # the rise rule alone would wait for 1.3
    assert reason == "diverged"
    assert back[stop] > 1.01 >= back[stop - 1]
    assert _stop(back, DivergenceRule(clear_fall=math.inf, rise=2.0)) == (None, None)
    wobble = [1.0] * 20 + [0.995] * 10 + [1.005] * 10
    assert _stop(wobble, DivergenceRule(rise=10.0)) == (None, None)
    early = [1.0] * 10 + [0.7] * 5 + [1.05] * 10  # lowest at point 10 < 20
    assert _stop(early, DivergenceRule(rise=10.0)) == (None, None)


def test_clear_fall_may_be_infinite_but_not_negative() -> None:
    assert DivergenceRule(clear_fall=math.inf).clear_fall == math.inf
    with pytest.raises(ValueError, match=r"clear_fall must be a number ≥ 0 \(math.inf: no give-back stop\), got -1"):
        DivergenceRule(clear_fall=-1)
    with pytest.raises(ValueError, match="give_back must be a finite number ≥ 0"):
        DivergenceRule(give_back=math.nan)


def test_a_deterministic_flat_curve_tolerates_a_wobble() -> None:
    """Validation losses on fixed batches have no noise: a 0.1 % wobble is not a divergence."""
    flat = [0.6950] * 15 + [0.6955, 0.6957] + [0.6950] * 5
    assert _stop(flat) == (None, None)
    assert _stop([*flat, 0.71])[1] == "diverged"


def test_noise_level_ignores_a_linear_trend() -> None:
    assert noise_level(np.linspace(3.0, 1.0, 50)) == pytest.approx(0.0, abs=1e-12)


def test_no_stop_before_min_points() -> None:
    curve = [1.0, 0.9, 0.8, 0.7, 0.6, 2.0, 2.0, 2.0]
    assert _stop(curve, DivergenceRule(min_points=5)) == (5, "diverged")
    assert _stop(curve, DivergenceRule(min_points=7)) == (6, "diverged")
    assert _stop(curve) == (None, None)  # the default waits for 10 points


def test_first_stop_offline() -> None:
    assert DivergenceRule().first_stop(CURVE, beta=0.0) == STOP
    assert DivergenceRule().first_stop([2.0, 1.8, 1.5]) is None


def test_bad_rules() -> None:
    with pytest.raises(ValueError, match="rise must be a finite number > 0"):
        DivergenceRule(rise=0.0)
    with pytest.raises(ValueError, match="beta must be in"):
        ema([1.0], beta=1.0)


# --- the settled stop ----------------------------------------------------------------------------

STORED = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "range_test_budget.json"


def _falls_then_blows_up(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The package docstring's curve: a fall around 1e-3, a blow-up past 1e-2."""
    lrs = np.geomspace(1e-7, 10.0, n)
    u = np.log10(lrs / 1e-2)
    return lrs, 2.0 - 1.5 / (1 + np.exp(-3 * (u + 1))) + np.where(u > 0, 4 * u**2, 0.0)


def test_the_settled_stop_ends_the_test_once_more_points_would_not_move_the_answer() -> None:
    lrs, losses = _falls_then_blows_up()
    rule = DivergenceRule(settle=SETTLE)
    stop = rule.first_stop(losses, lrs=lrs)
    assert stop is not None
    diverged = DivergenceRule().first_stop(losses)
    assert diverged is not None
    assert stop < diverged  # it stops before the lagging average's rise does
    assert lrpilot(lrs[: stop + 1], losses[: stop + 1]).lr == pytest.approx(lrpilot(lrs, losses).lr, rel=0.01)


def test_a_bump_after_a_first_fall_is_not_a_settled_minimum() -> None:
    """Two falls with a bump between (a curve that learns in stages): the first minimum is 0.65
    decades behind on the bump, but the loss gave back only a sixth of its fall, not half."""
    lrs = np.geomspace(1e-6, 1.0, 75)
    u = np.log10(lrs)
    falls = 3.0 - 0.6 / (1 + np.exp(-6 * (u + 4.5))) - 1.2 / (1 + np.exp(-6 * (u + 2)))
    losses = falls + 0.1 * np.exp(-0.5 * ((u + 3.2) / 0.3) ** 2) + np.where(u > -1, 6 * (u + 1) ** 2, 0.0)
    stop = DivergenceRule(settle=SETTLE).first_stop(losses, lrs=lrs)
    assert stop is not None
    assert lrs[stop] > 1e-2  # past the second fall
    assert lrpilot(lrs[: stop + 1], losses[: stop + 1]).lr == pytest.approx(lrpilot(lrs, losses).lr, rel=0.01)
    hasty = DivergenceRule(settle=SETTLE, rise=1e-9).first_stop(losses, lrs=lrs)  # no rise asked for
    assert hasty is not None
    assert lrs[hasty] < 1e-3  # on the bump


def test_the_settled_stop_moves_no_suggestion_on_fits_stored_curves() -> None:
    """fit's own range tests on the four built-in tasks (5 seeds each, ``range_test_budget.json``):
    stopped where the settled minimum stops them, the suggestion moves by under 0.01 decades, and
    the SST-2 tests, which the divergence rules let run on, end sooner."""
    stored = json.loads(STORED.read_text(encoding="utf-8"))["tasks"]
    saved = {}
    for task, seeds in stored.items():
        saved[task] = 0
        for curves in seeds.values():
            curve = curves["1:12.5"]
            lrs, losses = np.asarray(curve["lrs"]), np.asarray(curve["losses"])
            planned = round(math.log10(10.0 / lrs[0]) / math.log10(lrs[1] / lrs[0])) + 1  # the ramp ends at 10
            stop = DivergenceRule(settle=SETTLE).first_stop(losses, beta=default_beta(planned), lrs=lrs)
            end = len(losses) if stop is None else stop + 1
            moved = math.log10(lrpilot(lrs[:end], losses[:end]).lr / lrpilot(lrs, losses).lr)
            assert abs(moved) < 0.01, (task, moved)
            saved[task] += len(losses) - end
    assert saved["sst2-lora"] >= 20, saved
    assert saved["sst2-full"] >= 20, saved


def test_the_settled_stop_needs_the_lrs() -> None:
    monitor = RangeTestMonitor(rule=DivergenceRule(settle=SETTLE))
    with pytest.raises(ValueError, match="settle needs the LR of every point"):
        monitor.update(1.0)
    with pytest.raises(ValueError, match="settle must be > 0 decades"):
        DivergenceRule(settle=0.0)


@given(
    n=st.integers(5, 60),
    centre=st.floats(-4.5, -0.5),
    noise=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
    cut=st.integers(0, 60),
    settle=st.sampled_from([0.3, SETTLE, 1.0]),
)
def test_the_settled_check_reads_the_same_minimum_as_the_curve_features(
    *, n: int, centre: float, noise: float, seed: int, cut: int, settle: float
) -> None:
    """The check runs at every point of fit's range test, so it computes only the landmarks it
    needs; on any curve (noisy falls and blow-ups anywhere on the ramp, a non-finite point cut
    where it falls) it answers as the definition on `curve_features` does."""
    lrs = np.geomspace(1e-5, 1.0, n)
    u = np.log10(lrs)
    losses = 2.0 - np.tanh(2 * (u - centre + 1)) + np.where(u > centre, 3 * (u - centre) ** 2, 0.0)
    losses += noise * np.random.default_rng(seed).standard_normal(n)
    if cut < n:
        losses[cut] = math.nan
    rule = DivergenceRule(settle=settle, min_points=5)
    if min(cut, n) < 5:
        assert not rule.settled(lrs, losses)
        return
    f = curve_features(lrs, losses)
    clear = f.i_min > 0 and f.drop_sigma >= CLEAR_FALL
    behind = math.log10(lrs[-1] / f.lr_min) >= settle
    expected = clear and behind and f.smoothed[-1] >= f.loss_min + rule.rise * f.drop
    assert rule.settled(lrs, losses) == expected


class _FromScratch(RangeTestMonitor):
    """The monitor with the settled check taken over the whole curve at every point, as defined."""

    def _settled(self, noise: float) -> bool:
        return self.rule.settled(self.lrs, self.losses)


@given(
    n=st.integers(10, 90),
    centre=st.floats(-4.5, -0.5),
    noise=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
    settle=st.sampled_from([0.3, SETTLE, 1.0]),
    beta=st.sampled_from([0.6, 0.9]),
)
def test_the_monitor_carries_the_settled_check_from_point_to_point(
    *, n: int, centre: float, noise: float, seed: int, settle: float, beta: float
) -> None:
    """The monitor keeps the check's running median and the curve's second differences from one
    point to the next rather than taking them over the whole curve again: it stops where, and
    why, the check taken from scratch does, with the same noise levels at every point."""
    lrs = np.geomspace(1e-5, 1.0, n)
    u = np.log10(lrs)
    losses = 2.0 - np.tanh(2 * (u - centre + 1)) + np.where(u > centre, 3 * (u - centre) ** 2, 0.0)
    losses += noise * np.random.default_rng(seed).standard_normal(n)
    carried, scratch = (cls(beta=beta, rule=DivergenceRule(settle=settle)) for cls in (RangeTestMonitor, _FromScratch))
    for lr, loss in zip(lrs, losses, strict=True):
        stop = carried.update(float(loss), float(lr))
        assert stop == scratch.update(float(loss), float(lr))
        assert second_difference_noise(np.array(carried._second)) == noise_level(carried.losses)
        end, recent = carried._recent
        if end >= 0:  # the noise up to the best point, kept until it moves
            assert end == carried._i_best + 1
            assert recent == noise_level(carried.losses[max(0, end - carried.rule.noise_window) : end])
        if stop is not None:
            break
    assert carried.smoothed == scratch.smoothed
