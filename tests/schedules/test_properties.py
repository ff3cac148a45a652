"""Invariants that hold for every valid schedule (hypothesis draws the parameters)."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given, settings

from lrpilot import schedules
from lrpilot.schedules import Schedule, from_json, parse, to_json
from lrpilot.schedules._recipes import _Decay

from .strategies import any_schedules, decay_schedules


def _probe_steps(schedule: Schedule, extra: tuple[float, ...] = ()) -> np.ndarray:
    """Steps around every boundary and spread over the run, plus far beyond."""
    end = float(schedule.horizon or 10**6)
    points = {0.0, 1.0, 2.0, end, end + 1, 1e12}
    for x in (*extra, float(getattr(schedule, "warmup_steps", 0))):
        points.update({max(x - 1, 0.0), x, x + 1})
    points.update(np.linspace(0, end * 1.1, 400).tolist())
    return np.array(sorted(points))


@settings(max_examples=300, deadline=None)
@given(any_schedules())
def test_never_negative_never_nan(schedule: Schedule) -> None:
    values = schedule.values(_probe_steps(schedule))
    assert np.all(np.isfinite(values))
    assert np.all(values >= 0)


@settings(max_examples=200, deadline=None)
@given(any_schedules())
def test_pickle_and_spec_round_trip(schedule: Schedule) -> None:
    steps = _probe_steps(schedule)
    expected = schedule.values(steps)
    for copy in (
        pickle.loads(pickle.dumps(schedule)),
        parse(schedule.to_dict()),
        from_json(to_json(schedule)),
        parse(schedule.to_string()),
        eval(repr(schedule), vars(schedules)),  # the repr is the Python that builds it
    ):
        assert copy == schedule
        assert np.array_equal(copy.values(steps), expected)


@settings(max_examples=300, deadline=None)
@given(decay_schedules())
def test_decay_recipes_warm_up_then_decay_to_their_floor(schedule: _Decay) -> None:
    peak = schedule.peak  # type: ignore[attr-defined]
    total = schedule.total_steps  # type: ignore[attr-defined]
    warmup = schedule.warmup_steps
    slack = 1e-12 * peak
    rising = schedule.values(np.linspace(0, warmup, 200))
    assert np.all(np.diff(rising) >= -slack), "warmup must be non-decreasing"
    falling = schedule.values(np.linspace(warmup, total * 1.5, 400))
    assert np.all(np.diff(falling) <= slack), "decay must be non-increasing"
    assert np.all(falling >= schedule.min_lr - slack), "the floor must hold"
    assert np.all(falling <= peak + slack)
    assert abs(schedule(total) - schedule.min_lr) <= slack or schedule(total) == peak


@settings(max_examples=300, deadline=None)
@given(decay_schedules())
def test_decay_recipes_are_continuous_at_their_joins(schedule: _Decay) -> None:
    warmup = schedule.warmup_steps
    total = schedule.total_steps  # type: ignore[attr-defined]
    joins = [b for b in (warmup, warmup + schedule._hold, total) if b > 1]
    peak = schedule.peak  # type: ignore[attr-defined]
    for b in joins:
        # Continuous means the gap closes as we approach the join; a jump would keep its size.
        # (1-sqrt and low-power shapes have an infinite slope at one end, so no Lipschitz bound.)
        near, nearer = (abs(schedule(b * (1 - d)) - schedule(b)) for d in (1e-6, 1e-12))
        assert nearer <= 0.5 * near + 1e-9 * peak, f"jump at step {b}"


@settings(max_examples=200, deadline=None)
@given(decay_schedules())
def test_a_spec_names_one_floor_and_one_decay_length(schedule: _Decay) -> None:
    """Of two ways to give the same setting (floor or floor_ratio; a WSD's decay_steps or
    decay_fraction) the spec holds the one in effect, and it round-trips."""
    spec = schedule.to_dict()
    assert len({"floor", "floor_ratio"} & spec.keys()) == 1
    if schedule.name == "wsd":
        assert len({"decay_steps", "decay_fraction"} & spec.keys()) == 1
    assert parse(spec) == schedule
