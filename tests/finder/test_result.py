"""analyze, the probe logic, recipe_schedule and FinderResult."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from lrpilot.finder import (
    HORIZON_PRIOR,
    FinderResult,
    Probe,
    RangeTestRecord,
    RangeTestWarning,
    analyze,
    choose_probe,
    ema,
    lrpilot,
    plan_probes,
    probe_budget,
    recipe_schedule,
    short_candidates,
    thorough_tests,
)
from lrpilot.rules import HORIZON_EXPONENT, horizon_factor
from lrpilot.schedules import Cosine, Linear, from_dict
from tests.finder.test_rule import LRS, valley


def _record(y: np.ndarray | None = None) -> RangeTestRecord:
    y = valley(noise=0.05) if y is None else y
    return RangeTestRecord(
        lrs=LRS, losses=y, smoothed=ema(y, 0.9), steps=100, num_steps=100, stop_reason="completed", train_losses=y
    )


def test_fast_analysis() -> None:
    record = _record()
    result = analyze([record], total_steps=1000, warmup_ratio=0.1, decay="linear", floor_ratio=0.0)
    assert result.method == "lrpilot"
    assert result.peak_lr == pytest.approx(lrpilot(*record.arrays()).lr)
    assert result.band[0] < result.peak_lr < result.band[1] <= result.max_stable_lr
    assert isinstance(result.schedule, Linear)
    assert result.schedule.peak == result.peak_lr
    assert result.schedule.warmup_steps == 100
    assert result.learning_rate == result.peak_lr
    assert result.record is record


def test_several_records_average_in_log_space() -> None:
    a, b = _record(valley(center=1e-2)), _record(valley(center=4e-2))
    result = analyze([a, b])
    expected = math.sqrt(lrpilot(*a.arrays()).lr * lrpilot(*b.arrays()).lr)
    assert result.peak_lr == pytest.approx(expected)
    assert result.schedule is None


def test_to_dict_is_strict_json_and_the_schedule_round_trips() -> None:
    result = analyze([_record()], total_steps=500)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["peak_lr"] == result.peak_lr
    assert len(data["records"]) == 1
    assert from_dict(data["schedule"]) == result.schedule
    assert result.schedule_for(2000).total_steps == 2000


def test_a_long_run_gets_the_peak_and_band_moved_by_the_horizon_law() -> None:
    """The rule is calibrated on runs of 150–1000 steps: a 10,000-step run's ready schedule peaks
    at 10^-0.63 of the curve's answer, the band moves with it, and the record says so."""
    found = analyze([_record()], total_steps=1000)
    long = analyze([_record()], total_steps=10_000)
    factor = horizon_factor(10_000)
    assert long.peak_lr == pytest.approx(found.peak_lr * factor)
    assert long.band == pytest.approx((found.band[0] * factor, found.band[1] * factor))
    assert long.max_stable_lr == found.max_stable_lr
    assert long.schedule is not None
    assert long.schedule.peak == long.peak_lr
    assert long.details["horizon"] == {
        "found": found.peak_lr,
        "factor": factor,
        "reference_steps": 1000,
        "steps": 10_000,
        "capped": False,
    }
    assert "horizon" not in found.details
    assert "horizon" not in analyze([_record()]).details
    same = analyze([_record()], total_steps=10_000, calibrated_steps=None)  # fit scales the peak itself
    assert same.peak_lr == found.peak_lr
    assert "horizon" not in same.details
    own = analyze([_record()], total_steps=400, calibrated_steps=(250, 250))  # a built-in recipe's own length
    assert own.peak_lr == pytest.approx(found.peak_lr * (250 / 400) ** HORIZON_EXPONENT)


def test_a_very_short_run_gets_a_third_length_runs_peak_under_the_max_stable_lr() -> None:
    """A 2-step run: the law extrapolated would say ×15, past the max stable LR; it is held at a third
    of the calibrated length's ×2 (`SHORTEST_MEASURED`; the max stable LR as a ceiling above that is
    `at_horizon`'s, tests/rules/test_horizon.py)."""
    found = analyze([_record()])
    short = analyze([_record()], total_steps=2)
    assert (150 / 2) ** HORIZON_EXPONENT * found.peak_lr > found.max_stable_lr
    assert short.peak_lr == pytest.approx(found.peak_lr * horizon_factor(50))
    assert short.peak_lr < short.max_stable_lr
    assert short.details["horizon"]["factor"] == pytest.approx(2.0, abs=0.01)
    assert not short.details["horizon"]["capped"]


def test_probes_measure_their_own_horizon() -> None:
    result = analyze([_record()], probes=_probes(1e-2, 2e-2), total_steps=10_000)
    assert result.peak_lr == pytest.approx(choose_probe(_probes(1e-2, 2e-2), 10_000).peak)  # type: ignore[union-attr]
    assert "horizon" not in result.details


def test_unclear_fall_warns() -> None:
    flat = 1.0 + 0.05 * np.random.default_rng(0).standard_normal(100)
    flat[85:] += np.linspace(0.1, 2.0, 15)  # noise, then a blow-up: nothing learnt in between
    with pytest.warns(RangeTestWarning, match="fell by only"):
        analyze([_record(flat)])


def test_still_falling_at_the_end_warns() -> None:
    with pytest.warns(RangeTestWarning, match="still falling at end_lr"):
        analyze([_record(2.0 - np.linspace(0, 1.5, 100))])


def _cut(y: np.ndarray, reason: str) -> RangeTestRecord:
    n = len(y)
    return RangeTestRecord(
        lrs=LRS[:n], losses=y, smoothed=ema(y, 0.9), steps=n, num_steps=100, stop_reason=reason, train_losses=y
    )


def test_a_fall_that_ends_in_one_jump_warns_that_the_minimum_is_the_stop() -> None:
    """A LoRA classifier's test (fit on 720 SST-2 texts) fell until one batch jumped from 0.63 to 0.91
    and stopped it: the running median hides that last point, so the smoothed loss is lowest at the
    end. Raising end_lr (the old advice) would change nothing; the edge of stability is the LR before
    the jump, not the one that blew up."""
    y = np.concatenate([np.full(30, 0.69), 0.69 - np.linspace(0.0, 0.06, 10)])
    y = np.append(y, 0.91)
    record = _cut(y, "diverged")
    with pytest.warns(RangeTestWarning, match=rf"fell until the step that ended it .* at LR {LRS[40]:.3g}\)") as caught:
        result = analyze([record])
    assert not any("end_lr" in str(w.message) for w in caught)
    assert result.max_stable_lr == pytest.approx(LRS[39])
    assert result.peak_lr < result.band[1] <= LRS[39] * (1 + 1e-12)


def test_a_test_that_ends_on_nan_while_falling_names_the_nan_step() -> None:
    y = np.append(2.0 - np.linspace(0, 1.0, 60), np.nan)
    with pytest.warns(RangeTestWarning, match=rf"sudden rise or NaN at LR {LRS[60]:.3g}"):
        analyze([_cut(y, "non-finite")])


def test_an_interrupted_test_still_falling_is_a_lower_bound() -> None:
    y = 2.0 - np.linspace(0, 1.0, 50)
    with pytest.warns(RangeTestWarning, match=rf"interrupted at LR {LRS[49]:.3g} .* lower bound; let the test run on"):
        analyze([_cut(y, "interrupted")])


def test_a_diverged_test_that_rose_keeps_its_edge() -> None:
    """A blow-up the smoothing shows (several rising points) leaves the edge where the curve says."""
    record = _cut(valley(noise=0.0)[:90], "diverged")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RangeTestWarning)
        result = analyze([record])
    from lrpilot.finder import curve_features

    assert result.max_stable_lr == pytest.approx(curve_features(*record.arrays()).lr_stable, rel=1e-12)


def test_analyze_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty list of RangeTestRecord"):
        analyze([])
    with pytest.raises(ValueError, match="probes need total_steps"):
        analyze([_record()], probes=[Probe(1e-3, 20, 1.0)])
    with pytest.raises(ValueError, match=r"calibrated_steps\[1\] must be an integer in \[1000, ∞\], got 150"):
        analyze([_record()], calibrated_steps=(1000, 150))
    with pytest.raises(ValueError, match=r"calibrated_steps must be \(low, high\) run lengths in steps, got 500"):
        analyze([_record()], calibrated_steps=500)  # type: ignore[arg-type]


def _probes(best_long: float, best_short: float, k2: int = 25, k1: int = 10) -> list[Probe]:
    """Parabolic scores in log-LR, lowest at the given peaks, three candidates a factor 2 apart."""
    out = []
    for best, k in ((best_long, k2), (best_short, k1)):
        for f in (0.5, 1.0, 2.0):
            lr = best * f * 1.1
            out.append(Probe(lr, k, 1.0 + (math.log10(lr) - math.log10(best)) ** 2))
    return out


def test_choose_probe_measures_the_horizon_exponent() -> None:
    choice = choose_probe(_probes(1e-2, 2e-2), total_steps=1000)
    assert choice is not None
    assert choice.long_best == pytest.approx(1e-2)
    assert choice.short_best == pytest.approx(2e-2)
    measured = math.log(2.0) / math.log(2.5)
    assert choice.alpha == pytest.approx(0.5 * measured + 0.5 * HORIZON_PRIOR)
    assert choice.peak == pytest.approx(1e-2 * (25 / 1000) ** choice.alpha)
    assert choice.band[0] < choice.peak < choice.band[1]


def test_choose_probe_clips_the_exponent() -> None:
    choice = choose_probe(_probes(1e-2, 5e-3), total_steps=1000)  # shorter runs wanting *less*
    assert choice is not None
    assert choice.alpha == pytest.approx(0.5 * HORIZON_PRIOR)


def test_diverged_probes_are_ignored() -> None:
    probes = [Probe(1e-1, 25, math.nan), *_probes(1e-2, 2e-2)]
    assert choose_probe(probes, 1000) == choose_probe(_probes(1e-2, 2e-2), 1000)
    assert choose_probe([Probe(1e-1, 25, math.nan)], 1000) is None


def test_thorough_tests() -> None:
    assert [thorough_tests(n) for n in (150, 1000, 2999, 3000, 10_000, 10**6)] == [2, 2, 2, 3, 4, 4]
    assert thorough_tests(10_000, num_steps=300) == 3
    with pytest.raises(ValueError, match="total_steps"):
        thorough_tests(0)


def test_probe_plan() -> None:
    assert probe_budget(250) == 84
    assert probe_budget(10_000) == 1000
    plan = plan_probes([_record()], total_steps=10_000)
    assert (plan.long_steps, plan.short_steps) == (238, 95)
    assert len(plan.candidates) == 3
    assert plan.candidates[0] < plan.candidates[-1]
    with pytest.raises(ValueError, match="budget_steps must be an integer in"):
        plan_probes([_record()], total_steps=1000, budget_steps=50)
    long = [Probe(c, plan.long_steps, 1.0 + (math.log10(c / plan.candidates[1])) ** 2) for c in plan.candidates]
    short = short_candidates(plan, long)
    assert short[1] == pytest.approx(plan.candidates[1] * (238 / 95) ** HORIZON_PRIOR)
    assert short[2] / short[1] == pytest.approx(2.0)


def test_analyze_with_probes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = analyze([_record()], probes=_probes(1e-2, 2e-2), total_steps=1000)
    assert result.method == "lrpilot+probes"
    assert result.peak_lr == pytest.approx(choose_probe(_probes(1e-2, 2e-2), 1000).peak)  # type: ignore[union-attr]
    assert result.details["fast_peak"] == pytest.approx(lrpilot(*_record().arrays()).lr)


def test_recipe_schedule() -> None:
    s = recipe_schedule(1e-3, 1000)
    assert isinstance(s, Cosine)
    assert s.warmup_steps == 50
    assert s.min_lr == pytest.approx(1e-4)
    assert recipe_schedule(1e-3, 10, warmup_ratio=0.0).warmup_steps == 0
    assert recipe_schedule(1e-3, 10, warmup_ratio=0.01).warmup_steps == 1  # at least one step
    with pytest.raises(ValueError, match="decay must be one of"):
        recipe_schedule(1e-3, 100, decay="step")
    with pytest.raises(ValueError, match="total_steps must be"):
        recipe_schedule(1e-3, 0)


def test_finder_result_is_frozen() -> None:
    result = analyze([_record()])
    assert isinstance(result, FinderResult)
    with pytest.raises(AttributeError):
        result.peak_lr = 1.0  # type: ignore[misc]
