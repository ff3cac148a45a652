"""lint() finds the mistakes that waste or wreck a run."""

from __future__ import annotations

import pytest

from lrpilot.schedules import (
    WSD,
    Anneal,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Join,
    Linear,
    OneCycle,
    Rewarmup,
    Schedule,
    StepDecay,
    lint,
)


def codes(schedule: object, total: int) -> list[str]:
    return [w.code for w in lint(schedule, total)]  # type: ignore[arg-type]


def test_a_well_made_schedule_is_clean() -> None:
    assert lint(Cosine(peak=3e-4, total_steps=1000, warmup_steps=100, floor_ratio=0.1), 1000) == []
    assert lint(Constant(peak=1e-3, warmup_steps=50), 1000) == []
    assert lint(Cyclic(low=1e-4, high=1e-3, up_steps=100), 1000) == []


def test_hf_warmup_wastes_the_first_step() -> None:
    (warning,) = lint(Cosine(peak=3e-4, total_steps=1000, warmup_steps=100, warmup_offset=0), 1000)
    assert warning.code == "zero-first-step"
    assert warning.step == 0
    assert "warmup_offset=1" in warning.message


def test_decay_horizon_shorter_or_longer_than_the_run() -> None:
    (short,) = lint(Cosine(peak=1e-3, total_steps=500), 1000)
    assert short.code == "horizon-mismatch"
    assert "last 500 steps" in short.message
    (long,) = lint(Linear(peak=1e-3, total_steps=2000), 1000)
    assert long.code == "horizon-mismatch"
    assert "50% of the peak" in long.message


def test_warmup_as_long_as_the_run() -> None:
    assert "warmup-too-long" in codes(Cosine(peak=1e-3, total_steps=100, warmup_steps=100), 100)
    assert "warmup-too-long" in codes(Constant(peak=1e-3, warmup_steps=200), 100)


def test_a_schedule_that_ends_above_its_peak() -> None:
    bad = Join(segments=(Anneal(start=1e-3, end=1e-4, steps=50), Constant(peak=5e-3)), boundaries=(60,))
    assert codes(bad, 100) == ["floor-above-peak"]


def test_step_decay_milestones_past_the_run() -> None:
    assert codes(StepDecay(peak=1e-3, milestones=(0.5, 0.9), total_steps=100), 100) == []
    assert codes(StepDecay(peak=1e-3, milestones=(50, 200)), 100) == ["horizon-mismatch"]


def test_long_runs_are_sampled_not_enumerated() -> None:
    assert lint(Cosine(peak=1e-3, total_steps=10**9, warmup_steps=1000), 10**9) == []


def test_total_steps_is_checked() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        lint(Constant(peak=1e-3), 0)


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_ends_on_the_last_step_by_construction(three_phase: bool) -> None:
    """torch's OneCycleLR(total_steps=N) reaches its final LR at step N - 1, the run's last: no mismatch."""
    schedule = OneCycle(peak=1e-2, total_steps=1000, three_phase=three_phase)
    assert schedule.horizon == 999
    assert lint(schedule, 1000) == []


def test_a_schedule_built_for_another_length_still_mismatches() -> None:
    (short,) = lint(OneCycle(peak=1e-2, total_steps=500), 1000)
    assert short.code == "horizon-mismatch"
    assert "the last 501 steps" in short.message
    assert codes(OneCycle(peak=1e-2, total_steps=2000), 1000) == ["horizon-mismatch"]
    # A cosine built for 999 steps in a 1000-step run ends one step early: not by construction.
    assert codes(Cosine(peak=1e-3, total_steps=999), 1000) == ["horizon-mismatch"]


def test_a_run_longer_than_int64_is_sampled_and_linted() -> None:
    """10**20 steps: numpy held the Python int as an object and `sample_steps` raised a casting error."""
    from lrpilot.schedules._lint import sample_steps

    steps = sample_steps(10**20)
    assert (steps[0], steps[-1]) == (0.0, float(10**20 - 1))
    assert lint(Cosine(peak=3e-4, total_steps=10**20, warmup_steps=10), 10**20) == []


def test_a_hold_that_fills_the_run_never_decays() -> None:
    (warning,) = lint(Cosine(peak=1e-3, total_steps=1000, warmup_steps=100, hold_steps=900), 1000)
    assert warning.code == "no-decay"
    assert warning.step == 999
    assert "decay to 0 never happens" in warning.message
    assert lint(Cosine(peak=1e-3, total_steps=1000, warmup_steps=100, hold_steps=898), 1000) == []
    # a decay that ends after the run is the horizon mismatch alone, not said twice
    assert codes(Cosine(peak=1e-3, total_steps=2000, warmup_steps=100, hold_steps=1500), 1000) == ["horizon-mismatch"]


@pytest.mark.parametrize(
    ("schedule", "steps", "says"),
    [
        # the default of `lrpilot schedule -n 1`: no warmup, no hold, yet it said "shorten the hold"
        (
            Cosine(peak=3e-4, total_steps=1, floor_ratio=0.1),
            1,
            "the decay begins at the peak on step 0, the run's only one",
        ),
        (
            WSD(peak=1e-3, total_steps=5),
            5,
            "begins at the peak on step 4, the run's last, so the decay to 0 never happens (give a longer decay",
        ),
        (
            Cosine(peak=1e-3, total_steps=100, warmup_steps=99),
            100,
            "on step 99, the run's last, so the decay to 0 never happens (shorten the warmup)",
        ),
        (
            Cosine(peak=1e-3, total_steps=100, warmup_steps=9, hold_steps=90),
            100,
            "on step 99, the run's last, so the decay to 0 never happens (shorten hold_steps)",
        ),
    ],
)
def test_no_decay_says_why_in_the_schedules_own_terms(schedule: Schedule, steps: int, says: str) -> None:
    (warning,) = lint(schedule, steps)
    assert warning.code == "no-decay"
    assert says in warning.message
    assert "hold" not in warning.message or "hold_steps" in says


def test_restarts_cut_off_in_the_middle_of_a_cycle() -> None:
    (warning,) = lint(CosineRestarts(peak=1e-3, period=300), 1000)
    assert warning.code == "ends-mid-cycle"
    assert "75% of the peak" in warning.message
    assert "began at step 899" in warning.message  # the LR's low at step 899, the restart at 900
    assert lint(CosineRestarts(peak=1e-3, period=250), 1000) == []  # four whole cycles
    assert lint(CosineRestarts(peak=1e-3, period=100, period_mult=2.0), 1500) == []  # 100 + 200 + 400 + 800
    assert codes(Cyclic(low=1e-4, high=1e-3, up_steps=50), 1075) == ["ends-mid-cycle"]  # at the top of a cycle


def test_a_long_runs_warnings_give_exact_steps() -> None:
    """Past 200,000 steps the run is sampled and steps were printed with ``:g``: "the decay does (step
    1.23457e+07)" for 12,345,678, and the last cycle "began at step 8999994", the nearest sample to
    the low at 8,999,999 (the 1000-step run's 899, scaled)."""
    (late,) = lint(Cosine(peak=1e-3, total_steps=12_345_678), 10_000_000)
    assert "before the decay does (step 12345678)" in late.message
    (early,) = lint(Cosine(peak=1e-3, total_steps=10_000_000), 12_000_000)
    assert "ends at step 10000000 but the run has 12000000 steps: the last 2000000 steps" in early.message
    (cut,) = lint(CosineRestarts(peak=1e-3, period=3_000_000), 10_000_000)
    assert "its last one began at step 8999999)" in cut.message


def test_a_rewarmup_and_a_one_cycle_are_not_cycles_cut_off() -> None:
    base = Cosine(peak=1e-3, total_steps=1000, warmup_steps=50)
    assert lint(Rewarmup(base=base, at=500, steps=50), 1000) == []
    assert lint(OneCycle(peak=1e-3, total_steps=1000), 1000) == []
