"""Specs round-trip between objects, dicts, JSON and the short string form."""

from __future__ import annotations

import json

from lrpilot.schedules import Cosine, Join, Linear, Rewarmup, StepDecay, from_dict, parse, registry, to_dict


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
        "floor_ratio": None,
    }
    assert from_dict(spec) == schedule
    assert parse(schedule.to_string()) == schedule


def test_defaults_fill_only_missing_fields_that_exist() -> None:
    schedule = parse("cosine(peak=1e-3, warmup_steps=10)", defaults={"total_steps": 200, "unrelated": 1})
    assert schedule == Cosine(peak=1e-3, total_steps=200, warmup_steps=10)
    assert parse("cosine(peak=1e-3, total_steps=50)", defaults={"total_steps": 200}).total_steps == 50  # type: ignore[attr-defined]
    assert parse("constant(peak=1e-3)", defaults={"total_steps": 200}) == parse('{"name": "constant", "peak": 0.001}')
