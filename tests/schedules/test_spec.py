"""Specs round-trip between objects, dicts, JSON and the short string form."""

from __future__ import annotations

import json

import pytest

from lrpilot import schedules
from lrpilot.schedules import (
    WSD,
    Constant,
    Cosine,
    Guarded,
    Join,
    Linear,
    Rewarmup,
    Schedule,
    StepDecay,
    from_dict,
    parse,
    registry,
    to_dict,
)


def test_every_registered_name_has_a_distinct_class() -> None:
    names = registry()
    assert len(set(names.values())) == len(names)
    assert {
        "constant",
        "cosine",
        "linear",
        "polynomial",
        "wsd",
        "exponential",
        "step",
        "inverse_sqrt",
        "inverse_time",
        "cosine_restarts",
        "cyclic",
        "one_cycle",
        "anneal",
        "join",
        "rewarmup",
    } <= set(names)


def test_string_form_lists_only_what_differs_from_defaults() -> None:
    schedule = Cosine(peak=3e-4, total_steps=10_000, warmup_steps=500, floor_ratio=0.1)
    assert schedule.to_string() == "cosine(peak=0.0003, total_steps=10000, warmup_steps=500, floor_ratio=0.1)"
    assert repr(schedule) == "Cosine(peak=0.0003, total_steps=10000, warmup_steps=500, floor_ratio=0.1)"


def test_the_repr_of_a_nested_schedule_is_the_python_that_builds_it() -> None:
    """It printed ``Rewarmup(base=cosine(peak=0.001, ...), ...)``: lower-case names inside, which
    no Python namespace holds, so the repr (in error messages, LRPilotScheduler's repr) could not be
    pasted back."""
    schedule = Guarded(
        Rewarmup(Join((Constant(peak=1e-3, warmup_steps=30), Linear(peak=1e-3, total_steps=500)), (1200,)), 300, 20),
        scale=0.5,
    )
    assert repr(schedule) == (
        "Guarded(base=Rewarmup(base=Join(segments=[Constant(peak=0.001, warmup_steps=30), "
        "Linear(peak=0.001, total_steps=500)], boundaries=[1200.0]), at=300, steps=20), scale=0.5)"
    )
    assert eval(repr(schedule), vars(schedules)) == schedule


def test_nested_schedules_round_trip_through_json() -> None:
    schedule = Rewarmup(
        base=Join(
            segments=(Linear(peak=1e-3, total_steps=100), StepDecay(peak=1e-4, milestones=(10, 20))), boundaries=(100,)
        ),
        at=150,
        steps=20,
    )
    spec = json.loads(json.dumps(to_dict(schedule)))
    assert spec["base"]["segments"][1] == {
        "name": "step",
        "peak": 1e-4,
        "factor": 0.1,
        "milestones": [10, 20],
        "every": None,
        "total_steps": None,
        "warmup_steps": 0,
        "warmup_start": 0.0,
        "warmup_shape": "linear",
        "warmup_offset": 1.0,
        "floor": 0.0,
    }
    assert from_dict(spec) == schedule
    assert parse(schedule.to_string()) == schedule


@pytest.mark.parametrize(
    ("schedule", "shown", "left_out"),
    [
        (Linear(peak=5e-5, total_steps=150, warmup_steps=15), {"floor": 0.0}, "floor_ratio"),
        (Cosine(peak=6e-4, total_steps=1500, floor_ratio=0.1), {"floor_ratio": 0.1}, "floor"),
        (Cosine(peak=6e-4, total_steps=1500, floor=3e-5), {"floor": 3e-5}, "floor_ratio"),
        (Cosine(peak=6e-4, total_steps=1500, floor_ratio=0.0), {"floor_ratio": 0.0}, "floor"),
    ],
)
def test_the_dict_names_only_the_floor_in_effect(schedule: Schedule, shown: dict[str, float], left_out: str) -> None:
    """``lrpilot recommend --json`` printed ``"floor": 0.0, "floor_ratio": null`` in its schedule:
    which one did it decay to? The spec now holds the one given; the other, at its default, is left
    out and filled back in, and a spec with both that an earlier lrpilot wrote still loads."""
    spec = json.loads(json.dumps(schedule.to_dict()))
    assert {key: spec[key] for key in shown} == shown
    assert left_out not in spec
    assert from_dict(spec) == schedule
    assert from_dict(spec | {"floor": 0.0, "floor_ratio": None} | shown) == schedule  # the earlier form


@pytest.mark.parametrize(
    ("schedule", "shown", "left_out"),
    [
        (WSD(peak=1e-3, total_steps=20_000, decay_steps=2000), {"decay_steps": 2000}, "decay_fraction"),
        (WSD(peak=1e-3, total_steps=20_000, decay_fraction=0.2), {"decay_fraction": 0.2}, "decay_steps"),
        (WSD(peak=1e-3, total_steps=20_000), {"decay_fraction": 0.1}, "decay_steps"),
    ],
)
def test_a_wsd_spec_names_only_the_decay_length_in_effect(
    schedule: Schedule, shown: dict[str, float], left_out: str
) -> None:
    """``lrpilot schedule "wsd(..., decay_steps=2000)" --json`` printed ``"decay_steps": 2000`` beside
    ``"decay_fraction": 0.1``: which one sets the decay? The spec now holds the one in effect, round
    trips exactly, and a spec with both that an earlier lrpilot wrote still loads."""
    spec = json.loads(json.dumps(schedule.to_dict()))
    assert {key: spec[key] for key in shown} == shown
    assert left_out not in spec
    assert from_dict(spec) == parse(schedule.to_string()) == schedule
    assert from_dict(spec | {"decay_steps": None, "decay_fraction": 0.1} | shown) == schedule  # the earlier form


def test_defaults_fill_only_missing_fields_that_exist() -> None:
    schedule = parse("cosine(peak=1e-3, warmup_steps=10)", defaults={"total_steps": 200, "unrelated": 1})
    assert schedule == Cosine(peak=1e-3, total_steps=200, warmup_steps=10)
    assert parse("cosine(peak=1e-3, total_steps=50)", defaults={"total_steps": 200}).total_steps == 50  # type: ignore[attr-defined]
    assert parse("constant(peak=1e-3)", defaults={"total_steps": 200}) == parse('{"name": "constant", "peak": 0.001}')


def test_numpy_numbers_are_kept_as_the_python_numbers_they_hold() -> None:
    """A step count from numpy (``np.ceil(n / batch).astype(int) * epochs``), a float32 peak from a
    scaling rule, milestones as an array: the spec used to keep the numpy objects, so ``to_dict``
    was not JSON and ``to_string`` printed ``np.float32(0.0004)``, which ``parse`` refuses."""
    import numpy as np

    schedule = Cosine(peak=np.float32(3e-4) * np.sqrt(np.float32(2)), total_steps=np.ceil(1000 / 32).astype(int) * 3)
    assert type(schedule.peak) is float
    assert type(schedule.total_steps) is int
    assert schedule.to_string() == f"cosine(peak={float(np.float32(3e-4) * np.sqrt(np.float32(2)))!r}, total_steps=96)"
    assert parse(json.loads(json.dumps(schedule.to_dict()))) == parse(schedule.to_string()) == schedule
    steps = StepDecay(peak=1.0, factor=np.float64(0.5), milestones=np.array([10, 20]))
    assert steps.to_string() == "step(peak=1.0, factor=0.5, milestones=[10, 20])"
    assert parse(steps.to_string()) == steps


def test_defaults_reach_the_base_a_rewarmup_or_guarded_wraps_but_not_a_join_segment() -> None:
    """`lrpilot schedule "rewarmup(base=cosine(peak=1e-3), at=50, steps=10)" -n 200` was refused with
    'cosine: missing required parameter(s) total_steps', though total_steps defaults to --steps: the
    base runs on the run's own steps. A join segment counts from its boundary, so it takes no default."""
    defaults = {"total_steps": 200}
    rewarmup = parse("rewarmup(base=cosine(peak=1e-3), at=50, steps=10)", defaults=defaults)
    assert rewarmup == Rewarmup(Cosine(peak=1e-3, total_steps=200), at=50, steps=10)
    guarded = parse('{"name": "guarded", "base": {"name": "cosine", "peak": 0.001}, "scale": 0.5}', defaults=defaults)
    assert guarded == Guarded(Cosine(peak=1e-3, total_steps=200), scale=0.5)
    given = parse("rewarmup(base=cosine(peak=1e-3, total_steps=80), at=50, steps=10)", defaults=defaults)
    assert given.base.total_steps == 80  # type: ignore[attr-defined]
    join = "join(segments=[constant(peak=1e-3), cosine(peak=1e-3)], boundaries=[10])"
    with pytest.raises(ValueError, match=r"cosine: missing required parameter\(s\) total_steps"):
        parse(join, defaults=defaults)
    assert parse("join(segments=[constant(peak=1e-3)], boundaries=[])", defaults=defaults).segments == (
        Constant(peak=1e-3),
    )
