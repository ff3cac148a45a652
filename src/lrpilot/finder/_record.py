"""What a range test collected: `RangeTestRecord`, one frozen value with a JSON round-trip.

The record is the boundary between collecting (a framework runner) and deciding (the pure
suggestion functions): everything a suggestion, a plot or a report needs is in it, and nothing
else is. A record written by ``to_dict`` today reads back with ``from_dict`` tomorrow, so range
tests can be re-analysed offline with a newer rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check

__all__ = ["METRICS", "RAMPS", "STOP_REASONS", "RangeTestRecord"]

STOP_REASONS = ("completed", "diverged", "settled", "non-finite", "interrupted")
"""Why a range test ended: it ran every planned step; the smoothed loss rose past the divergence
rule; the minimum had settled (`DivergenceRule.settle`, opt-in); a loss was NaN/Inf; or the user
interrupted it (KeyboardInterrupt) and the partial curve was kept."""

RAMPS = ("exp", "linear")
"""How the LR rises over the test: geometrically (the default: equal time per decade) or linearly
(Smith's original test; spends almost every step in the top decade)."""

METRICS = ("train", "val")
"""What the curve measures: the training loss of each step's batch, or the loss on a few fixed
validation batches after the step."""


def _floats(values: Sequence[float] | npt.ArrayLike) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class RangeTestRecord:
    """One LR range test, as collected.

    Attributes:
        lrs: the LR of each point of the curve (the LR the optimizer step used).
        losses: the raw loss of each point (training loss of the step's batch, or the validation
            loss after the step when ``metric == "val"``); non-finite values are kept as they were.
        smoothed: the bias-corrected EMA of `losses` that the stop rule watched (see `ema`).
        steps: optimizer steps taken (micro-batches of gradient accumulation and AMP-overflow
            steps that the GradScaler skipped do not count).
        num_steps: optimizer steps planned.
        stop_reason: one of `STOP_REASONS`.
        ramp: one of `RAMPS`.
        start_lr, end_lr: the planned range; step ``i`` of ``num_steps`` uses
            ``ramp_schedule(start_lr, end_lr, num_steps, ramp)(i)``.
        metric: one of `METRICS`.
        beta: the EMA coefficient of `smoothed`.
        train_losses: the training loss of every optimizer step taken (equal to `losses` when
            ``metric == "train"``; in validation mode the curve has a point every `val_every` steps).
        skipped_steps: AMP-overflow steps that the GradScaler skipped (they used no LR of the ramp).
        seed: the seed label of this test when several are run (None for a single test).
        wall_time_s: seconds the test took, snapshot and restore included.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    steps: int
    num_steps: int
    stop_reason: str
    ramp: str = "exp"
    start_lr: float = 1e-7
    end_lr: float = 10.0
    metric: str = "train"
    beta: float = 0.9
    train_losses: tuple[float, ...] = ()
    skipped_steps: int = 0
    seed: int | None = None
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        owner = "RangeTestRecord"
        for name in ("lrs", "losses", "smoothed", "train_losses"):
            object.__setattr__(self, name, _floats(getattr(self, name)))
        if not len(self.lrs) == len(self.losses) == len(self.smoothed):
            raise ValueError(
                f"{owner}: lrs, losses and smoothed must have the same length, got "
                f"{len(self.lrs)}, {len(self.losses)} and {len(self.smoothed)}"
            )
        if any(not (math.isfinite(lr) and lr > 0) for lr in self.lrs):
            raise ValueError(f"{owner}: lrs must be finite numbers > 0, got {list(self.lrs)!r}")
        check.step_count(owner, "num_steps", self.num_steps, 1)
        check.step_count(owner, "steps", self.steps, 0, self.num_steps)
        check.step_count(owner, "skipped_steps", self.skipped_steps, 0)
        check.choice(owner, "stop_reason", self.stop_reason, STOP_REASONS)
        check.choice(owner, "ramp", self.ramp, RAMPS)
        check.choice(owner, "metric", self.metric, METRICS)
        check.positive(owner, "start_lr", self.start_lr)
        check.positive(owner, "end_lr", self.end_lr)
        check.in_range(owner, "beta", self.beta, 0.0, 1.0, high_open=True)

    def __len__(self) -> int:
        """Points on the curve."""
        return len(self.lrs)

    def arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(lrs, losses)`` as float64 arrays: the input every suggestion function takes."""
        return np.asarray(self.lrs, dtype=np.float64), np.asarray(self.losses, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite losses become None (JSON has no NaN)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [_json_float(v) for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RangeTestRecord:
        """The inverse of `to_dict` (None losses come back as NaN); unknown keys are an error."""
        check.known_keys("RangeTestRecord.from_dict", data, (f.name for f in fields(cls)))
        kwargs = dict(data)
        for name in ("lrs", "losses", "smoothed", "train_losses"):
            if name in kwargs:
                kwargs[name] = tuple(math.nan if v is None else float(v) for v in kwargs[name])
        return cls(**kwargs)
