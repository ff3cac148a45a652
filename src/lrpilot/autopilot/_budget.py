"""The training budget: optimizer steps (``300``) or wall-clock time (``5m``, ``90s``, ``1h``).

A step budget is exact and checked before anything runs. A time budget covers the whole fit, the
range test included, and becomes steps once the range test has measured what a step costs here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["OVERRUN", "TIME_MARGIN", "Budget", "parse_budget", "steps_for_time", "time_for"]

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$", re.IGNORECASE)

TIME_MARGIN = 0.85
"""The share of the remaining time given to training steps; the rest pays for the guard's checks and
snapshots, the evaluations and saving, which the range test's step time does not include."""
OVERRUN = 1.1
"""A fit that takes longer than this multiple of its time budget says in its notes what a training
step cost against the range test's forecast (an idle machine keeps within it: 0.76–0.91 of a 10 s
digits budget over four fresh processes)."""


@dataclass(frozen=True)
class Budget:
    """Either `steps` or `seconds` (the other is None)."""

    steps: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g} s"


def parse_budget(value: str | int | None) -> Budget | None:
    """``300`` / ``"300"`` → 300 steps; ``"5m"``, ``"90s"``, ``"1.5h"`` → seconds; None → None.

    >>> parse_budget("300"), parse_budget("5m")
    (Budget(steps=300, seconds=None), Budget(steps=None, seconds=300.0))
    """
    if value is None:
        return None
    bad = f"--budget must be a whole number of steps ≥ 1 (300) or a time > 0 (5m, 90s, 1h), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(bad)
        return Budget(steps=value)
    match = _PATTERN.match(str(value))
    if match is None:
        raise ValueError(bad)
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit:
        if number != int(number) or number < 1:
            raise ValueError(bad)
        return Budget(steps=int(number))
    if unit not in _UNITS or not (math.isfinite(number) and number > 0):
        raise ValueError(bad)
    return Budget(seconds=number * _UNITS[unit])


def steps_for_time(seconds: float, elapsed: float, step_seconds: float) -> int:
    """The training steps that fit in what is left of a time budget, at the measured cost of a step."""
    remaining = seconds - elapsed
    if remaining <= 0 or step_seconds <= 0:
        return 0
    return int(TIME_MARGIN * remaining / step_seconds)


def time_for(steps: int, elapsed: float, step_seconds: float) -> str:
    """The smallest time budget (whole seconds under two minutes, else whole minutes) that
    `steps_for_time` turns into at least `steps` training steps after `elapsed` seconds: what to
    ask for when a budget was spent before training could start.

    >>> time_for(30, 263.0, 2.9)
    '7m'
    """
    need = elapsed + steps * step_seconds / TIME_MARGIN + 1.0  # a second over, against rounding down
    return f"{math.ceil(need)}s" if need < 120 else f"{math.ceil(need / 60)}m"
