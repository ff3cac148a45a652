"""The --budget grammar: steps or a wall time."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrpilot.autopilot import Budget, parse_budget
from lrpilot.autopilot._budget import steps_for_time, time_for


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (300, Budget(steps=300)),
        ("300", Budget(steps=300)),
        ("5m", Budget(seconds=300.0)),
        ("90s", Budget(seconds=90.0)),
        ("1.5h", Budget(seconds=5400.0)),
        ("2 min", Budget(seconds=120.0)),
        (None, None),
    ],
)
def test_parse(value: object, expected: Budget | None) -> None:
    assert parse_budget(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -3, "0", "2.5", "5x", "m", "abc", True, "-1m"])
def test_bad_budgets_are_refused_with_the_grammar(value: object) -> None:
    with pytest.raises(ValueError, match=r"--budget must be a whole number of steps ≥ 1 \(300\) or a time > 0 \(5m"):
        parse_budget(value)  # type: ignore[arg-type]


def test_time_becomes_steps_after_what_was_spent() -> None:
    assert steps_for_time(100.0, elapsed=20.0, step_seconds=0.1) == 680  # 85 % of the 80 s left
    assert steps_for_time(10.0, elapsed=20.0, step_seconds=0.1) == 0


@pytest.mark.parametrize(("elapsed", "step_seconds"), [(263.0, 2.9), (3.0, 0.001), (100.0, 0.7), (0.5, 4.0)])
def test_the_budget_asked_for_trains_the_steps_it_says(elapsed: float, step_seconds: float) -> None:
    """A 2m LoRA fit spent 263 s loading and range-testing and said only "give a larger one"."""
    asked = parse_budget(time_for(30, elapsed, step_seconds))
    assert asked is not None
    assert asked.seconds is not None
    assert steps_for_time(asked.seconds, elapsed, step_seconds) >= 30


def test_a_budget_spent_before_training_says_what_budget_would_do(tmp_path: Path) -> None:
    from lrpilot.autopilot import fit

    with pytest.raises(ValueError, match=r"give a larger one \(--budget \d+s trains about 30 steps here\) or steps"):
        fit("digits", budget="0.01s", out=tmp_path / "run", report=False)
