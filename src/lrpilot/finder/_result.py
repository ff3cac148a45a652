"""What ``find`` hands back: `FinderResult`, and `analyze`, which turns range-test records (and
probe runs, in thorough mode) into one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lrpilot import _validate as check
from lrpilot.finder._record import RangeTestRecord
from lrpilot.schedules import Cosine, Linear, Schedule

__all__ = ["DECAYS", "FinderResult", "Probe", "recipe_schedule"]

DECAYS = ("cosine", "linear")
"""Decay shapes of the ready-made schedule."""


def recipe_schedule(
    peak: float,
    total_steps: int,
    *,
    warmup_ratio: float = 0.05,
    floor_ratio: float = 0.1,
    decay: str = "cosine",
    owner: str = "recipe_schedule",
) -> Schedule:
    """The recipe the suggested peak is for: linear warmup over `warmup_ratio` of the run (at least
    one step), then cosine (or linear) decay to ``floor_ratio × peak`` at `total_steps`. `owner`: the
    function a bad argument's error names (``find_lr``, whose arguments these are)."""
    total = check.step_count(owner, "total_steps", total_steps, 1)
    check.in_range(owner, "warmup_ratio", warmup_ratio, 0.0, 1.0, high_open=True)
    check.in_range(owner, "floor_ratio", floor_ratio, 0.0, 1.0)
    check.choice(owner, "decay", decay, DECAYS)
    warmup = min(total - 1, max(1, round(warmup_ratio * total))) if warmup_ratio > 0 else 0
    cls = Cosine if decay == "cosine" else Linear
    return cls(peak=peak, total_steps=total, warmup_steps=warmup, floor_ratio=floor_ratio)


@dataclass(frozen=True)
class Probe:
    """One short trial run of the recipe (thorough mode): `steps` optimizer steps of a complete
    warmup + decay schedule peaking at `peak_lr`, from the user's starting state.

    Attributes:
        peak_lr: the candidate peak.
        steps: optimizer steps it ran.
        score: its loss at the end (mean of the last steps' training losses, or the validation
            loss); NaN when it diverged.
        losses: the training loss of every step.
    """

    peak_lr: float
    steps: int
    score: float
    losses: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {
            "peak_lr": self.peak_lr,
            "steps": self.steps,
            "score": self.score if math.isfinite(self.score) else None,
            "losses": [v if math.isfinite(v) else None for v in self.losses],
        }


@dataclass(frozen=True)
class FinderResult:
    """An LR finder's answer, ready to train with.

    Attributes:
        peak_lr: the suggested *peak* LR of a warmup + decay recipe over the whole run (put it in
            ``TrainingArguments(learning_rate=...)`` or an lrpilot schedule's ``peak``), for a run
            of the `total_steps` given (the horizon law, ``details["horizon"]``; without
            `total_steps`, for a run of 150–1000 steps, where the rule is calibrated).
        band: ``(low, high)``: the LRs expected to train about as well as `peak_lr`. Fast mode:
            the bootstrap spread of the suggestion widened by the rule's calibration error,
            capped at `max_stable_lr`; thorough mode: the best probe's neighbours (see
            `lrpilot.finder.analyze`).
        max_stable_lr: the LR at which the range-test loss starts to rise again: an upper bound,
            not a target.
        schedule: the recipe at `peak_lr` (`recipe_schedule`) for the `total_steps` given, or None.
        method: the rule that chose `peak_lr` (``"lrpilot"`` or ``"lrpilot+probes"``).
        records: the range test(s) run.
        probes: the trial runs of thorough mode (empty in the default mode).
        steps_used: optimizer steps spent on the user's model (range tests and probes).
        wall_time_s: seconds spent, snapshot and restore included.
    """

    peak_lr: float
    band: tuple[float, float]
    max_stable_lr: float
    schedule: Schedule | None
    method: str
    records: tuple[RangeTestRecord, ...]
    probes: tuple[Probe, ...] = ()
    steps_used: int = 0
    wall_time_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def learning_rate(self) -> float:
        """`peak_lr` under the name Hugging Face's ``TrainingArguments`` uses."""
        return self.peak_lr

    @property
    def record(self) -> RangeTestRecord:
        """The first (usually the only) range test."""
        return self.records[0]

    def schedule_for(self, total_steps: int, **kwargs: Any) -> Schedule:
        """The recipe at `peak_lr` over another run length (`recipe_schedule`'s keywords)."""
        return recipe_schedule(self.peak_lr, total_steps, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the answer, the schedule's spec, the records and probes."""
        return {
            "peak_lr": self.peak_lr,
            "band": list(self.band),
            "max_stable_lr": self.max_stable_lr,
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
            "method": self.method,
            "steps_used": self.steps_used,
            "wall_time_s": self.wall_time_s,
            "details": dict(self.details),
            "records": [r.to_dict() for r in self.records],
            "probes": [p.to_dict() for p in self.probes],
        }


def _check_records(records: Sequence[RangeTestRecord]) -> tuple[RangeTestRecord, ...]:
    out = tuple(records)
    if not out or not all(isinstance(r, RangeTestRecord) for r in out):
        raise ValueError(f"analyze: records must be a non-empty list of RangeTestRecord, got {records!r}")
    return out
