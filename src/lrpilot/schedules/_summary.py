"""The key points of a schedule over a run: what `lrpilot schedule` tabulates and plots mark."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrpilot import _validate as check
from lrpilot.schedules._base import Schedule
from lrpilot.schedules._lint import sample_steps

__all__ = ["KeyPoint", "key_points"]


@dataclass(frozen=True)
class KeyPoint:
    """A labelled step of the run with its LR and the LR as a fraction of the run's peak."""

    label: str
    step: int
    lr: float
    fraction_of_peak: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_points(schedule: Schedule, total_steps: int) -> list[KeyPoint]:
    """Start, end of warmup, peak, start of decay (after a hold or a WSD's stable phase), the
    quartiles of the run and its last step, in step order."""
    total = check.step_count("key_points", "total_steps", total_steps, 1)
    warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
    # A WSD's decay starts late in the run, between quartiles: without it the table showed the peak
    # at every quartile and then the floor, and never said when the LR begins to fall.
    decay = warmup + int(getattr(schedule, "_hold", 0) or 0)
    # The warmup's end is sampled even in a long run (sampled, not every step): else the first
    # sample after it, a hair lower, was the max, and "peak" landed millions of steps on.
    steps = sample_steps(total, extra=(float(warmup),))
    lrs = schedule.values(steps)
    peak_step = int(steps[int(np.argmax(lrs))])
    peak = float(lrs.max()) or 1.0
    labelled: dict[int, str] = {0: "start"}
    if 0 < warmup < total:
        labelled[warmup] = "end of warmup"
    labelled.setdefault(peak_step, "peak")
    if warmup < decay < total:
        labelled.setdefault(decay, "decay starts")
    labelled.setdefault(total - 1, "last step")  # before the quartiles: in a run of 2-4 steps it is one
    for quarter in (1, 2, 3):
        labelled.setdefault(quarter * total // 4, f"{25 * quarter}% of run")
    return [KeyPoint(label, step, schedule(step), schedule(step) / peak) for step, label in sorted(labelled.items())]
