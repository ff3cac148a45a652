"""Building blocks: `Anneal` (one segment from a start LR to an end LR), `Join` (the one combinator:
segments in sequence, each seeing `step - boundary`) and `Rewarmup` (a fresh warmup over any
schedule after resuming without optimizer state). Every recipe in `_recipes.py` is made of these.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from lrpilot import _validate as check
from lrpilot.schedules._base import SCALAR, Schedule

__all__ = ["SHAPES", "Anneal", "Join", "Rewarmup", "decay_profile"]

SHAPES = ("linear", "cosine", "poly", "exp", "1-sqrt")
"""Anneal shapes. Each is a decay profile d(p) from 1 to 0 over progress p ∈ [0, 1]; a rising
segment (a warmup) runs the same profile backwards in time, as Hugging Face's WSD does."""


def decay_profile(shape: str, p: Any, power: float, xp: Any) -> Any:
    """d(p) for p ∈ [0, 1]: 1 at p = 0, 0 at p = 1 (not used for the geometric "exp" shape)."""
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        return 0.5 * (1.0 + xp.cos(xp.pi * p))
    if shape == "poly":
        return (1.0 - p) ** power
    return 1.0 - xp.sqrt(p)  # "1-sqrt", the cooldown of Hägele et al. 2024 (arXiv:2405.18392)


@dataclass(frozen=True, repr=False)
class Anneal(Schedule, name="anneal"):
    """One segment from `start` to `end` over `steps` steps, then `end` for ever.

    Progress is ``p = min(1, (t + offset) / (steps + offset))``. With ``offset=0`` the segment
    starts exactly at `start` (the torch/optax/Hugging Face convention, which gives a warmup from 0
    an LR of 0 on its first step); with ``offset=1`` the first step already moves by one
    ``1/(steps + 1)`` of the way (nanoGPT's warmup), and `end` is reached at ``t = steps``.

    Shapes: ``linear``; ``cosine`` (half cosine); ``poly`` (``(1 - p) ** power`` decay, ``p ** power``
    rise); ``1-sqrt`` (``1 - sqrt(p)`` decay, ``1 - sqrt(1 - p)`` rise); ``exp`` (geometric
    interpolation ``start * (end / start) ** p``; both ends > 0).
    """

    start: float
    end: float
    steps: float
    shape: str = "linear"
    power: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        owner = "anneal"
        check.non_negative(owner, "start", self.start)
        check.non_negative(owner, "end", self.end)
        check.positive(owner, "steps", self.steps)
        check.choice(owner, "shape", self.shape, SHAPES)
        check.positive(owner, "power", self.power)
        check.non_negative(owner, "offset", self.offset)
        if self.shape == "exp" and (self.start <= 0 or self.end <= 0):
            raise ValueError(
                f"anneal: shape='exp' interpolates geometrically, so start and end must be > 0, "
                f"got start={self.start!r}, end={self.end!r}"
            )

    def _evaluate(self, t: Any, xp: Any) -> Any:
        p = xp.minimum((t + self.offset) / (self.steps + self.offset), 1.0)
        if self.shape == "exp":
            return self.start * (self.end / self.start) ** p
        if self.start >= self.end:
            w = decay_profile(self.shape, p, self.power, xp)
        else:
            w = 1.0 - decay_profile(self.shape, 1.0 - p, self.power, xp)
        # Weights rather than `end + (start - end) * w`, so both ends are exact in floating point.
        return self.start * w + self.end * (1.0 - w)

    @property
    def horizon(self) -> float:
        return float(self.steps)


@dataclass(frozen=True, repr=False)
class Join(Schedule, name="join"):
    """Segments in sequence: segment ``i`` runs from ``boundaries[i-1]`` (0 for the first) and sees
    ``step - boundaries[i-1]``, so every segment is written from its own step 0 (optax's
    `join_schedules`, with the lengths checked instead of silently truncated)."""

    segments: tuple[Schedule, ...]
    boundaries: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "boundaries", tuple(float(b) for b in self.boundaries))
        if not self.segments or not all(isinstance(s, Schedule) for s in self.segments):
            raise ValueError(f"join: segments must be a non-empty list of schedules, got {self.segments!r}")
        if len(self.boundaries) != len(self.segments) - 1:
            raise ValueError(
                f"join: needs one boundary between each pair of segments: {len(self.segments)} "
                f"segments need {len(self.segments) - 1} boundaries, got {len(self.boundaries)}"
            )
        previous = 0.0
        for i, b in enumerate(self.boundaries):
            check.positive("join", f"boundaries[{i}]", b)
            if b <= previous:
                raise ValueError(f"join: boundaries must be strictly increasing and > 0, got {list(self.boundaries)}")
            previous = b

    def _evaluate(self, t: Any, xp: Any) -> Any:
        if xp is SCALAR:
            i = bisect.bisect_right(self.boundaries, t)
            origin = self.boundaries[i - 1] if i else 0.0
            return self.segments[i]._evaluate(t - origin, xp)
        out = self.segments[0]._evaluate(t, xp)
        for boundary, segment in zip(self.boundaries, self.segments[1:], strict=True):
            out = xp.where(t < boundary, out, segment._evaluate(xp.maximum(t - boundary, 0.0), xp))
        return out

    @property
    def horizon(self) -> float | None:
        last = self.segments[-1].horizon
        if last is None:
            return None
        return (self.boundaries[-1] if self.boundaries else 0.0) + last


@dataclass(frozen=True, repr=False)
class Rewarmup(Schedule, name="rewarmup"):
    """`base` with a fresh linear warmup from 0 starting at step `at`.

    Resuming from a checkpoint without the optimizer state (Adam's moments start again from zero)
    needs a new warmup; this keeps the running schedule and multiplies it by a ramp over `steps`
    steps, with the same step convention as every warmup here (`offset`, see `Anneal`).
    """

    base: Schedule
    at: float
    steps: float
    offset: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.base, Schedule):
            raise ValueError(f"rewarmup: base must be a schedule, got {self.base!r}")
        check.non_negative("rewarmup", "at", self.at)
        check.positive("rewarmup", "steps", self.steps)
        check.non_negative("rewarmup", "offset", self.offset)

    def _evaluate(self, t: Any, xp: Any) -> Any:
        k = xp.maximum(t - self.at, 0.0)
        ramp = xp.minimum((k + self.offset) / (self.steps + self.offset), 1.0)
        return self.base._evaluate(t, xp) * xp.where(t < self.at, 1.0, ramp)

    @property
    def horizon(self) -> float | None:
        base = self.base.horizon
        return None if base is None else max(base, float(self.at + self.steps))
