"""`Guarded`: a running schedule as the training guard leaves it after cutting or raising the LR.

The guard never replaces the user's schedule; it wraps it. ``Guarded(base, scale, cap, at, steps)``
is ``base(t) * scale``, capped at `cap`, times a fresh linear warmup of `steps` steps from step `at`
(the re-warmup after a rollback, same convention as `Rewarmup`). Because it is a schedule like any
other, the LR the guard is running can be printed, saved with the checkpoint and resumed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrpilot import _validate as check
from lrpilot.schedules._base import SCALAR, Schedule

__all__ = ["Guarded", "guard_multiplier"]


def guard_multiplier(t: Any, at: float, steps: float, xp: Any) -> Any:
    """The re-warmup ramp: 1 before `at`, then ``min((t - at + 1) / (steps + 1), 1)``; 1 if steps == 0."""
    if steps <= 0:
        return 1.0 + 0.0 * t
    k = xp.maximum(t - at, 0.0)
    ramp = xp.minimum((k + 1.0) / (steps + 1.0), 1.0)
    return xp.where(t < at, 1.0, ramp)


@dataclass(frozen=True, repr=False)
class Guarded(Schedule, name="guarded"):
    """`base` × `scale`, capped at `cap` (None: no cap), re-warmed up over `steps` steps from `at`."""

    base: Schedule
    scale: float = 1.0
    cap: float | None = None
    at: float = 0.0
    steps: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.base, Schedule):
            raise ValueError(f"guarded: base must be a schedule, got {self.base!r}")
        check.positive("guarded", "scale", self.scale)
        if self.cap is not None:
            check.positive("guarded", "cap", self.cap)
        check.non_negative("guarded", "at", self.at)
        check.non_negative("guarded", "steps", self.steps)

    def _evaluate(self, t: Any, xp: Any) -> Any:
        lr = self.base._evaluate(t, xp) * self.scale
        if self.cap is not None:
            lr = min(lr, self.cap) if xp is SCALAR else xp.minimum(lr, self.cap)
        return lr * guard_multiplier(t, self.at, self.steps, xp)

    @property
    def horizon(self) -> float | None:
        base = self.base.horizon
        if base is None:
            return None
        return max(base, float(self.at + self.steps)) if self.steps else base
