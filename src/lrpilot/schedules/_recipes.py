"""The schedules people train with. Each is a frozen dataclass of the parameters a person chooses
(peak, total steps, warmup, floor, ...); its curve is built from `Anneal` and `Join` or written as a
closed-form body after the warmup.

Conventions shared by every recipe:

* ``step`` counts optimizer steps already taken: the first update uses ``schedule(0)``.
* ``total_steps`` is the whole run, warmup and hold included (as in Hugging Face and optax).
* Warmup runs from ``warmup_start`` (default 0) to ``peak`` over ``warmup_steps`` steps. By default
  (``warmup_offset=1``) step ``s < W`` gets ``start + (peak - start) * (s + 1) / (W + 1)``: the
  first update is not wasted at LR 0 and the peak is reached exactly at step ``W``. Set
  ``warmup_offset=0`` for the torch / optax / Hugging Face convention ``start + (peak - start) * s / W``.
* A floor is absolute (``floor``) or a fraction of the peak (``floor_ratio``), never both; decays end
  at it, open-ended decays are clipped at it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lrpilot import _validate as check
from lrpilot.schedules._base import SCALAR, Schedule, floor_div
from lrpilot.schedules._primitives import SHAPES, Anneal, Join

__all__ = [
    "WSD",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "InverseSqrt",
    "InverseTime",
    "Linear",
    "OneCycle",
    "Polynomial",
    "StepDecay",
]


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, kw_only=True, repr=False)
class _Warmup(Schedule):
    """Adds an optional warmup in front of the recipe's body (the curve from its peak on)."""

    warmup_steps: int = 0
    warmup_start: float = 0.0
    warmup_shape: str = "linear"
    warmup_offset: float = 1.0
    _warmup: Anneal | None = field(init=False, repr=False, compare=False, default=None)

    def _check_warmup(self, peak: float, total_steps: int | None = None) -> None:
        owner = self.name
        high = math.inf if total_steps is None else total_steps
        _set(self, "warmup_steps", check.step_count(owner, "warmup_steps", self.warmup_steps, 0, high))
        check.in_range(owner, "warmup_start", self.warmup_start, 0.0, peak)
        check.choice(owner, "warmup_shape", self.warmup_shape, SHAPES)
        check.non_negative(owner, "warmup_offset", self.warmup_offset)
        if self.warmup_steps and self.warmup_shape == "exp" and not self.warmup_start > 0:
            # checked here, not left to `Anneal`, whose message names its own start=0.0, not this field
            raise ValueError(
                f"{owner}: warmup_shape='exp' rises geometrically from warmup_start, so warmup_start must be in "
                f"(0, peak={peak!r}], got {self.warmup_start!r} (e.g. warmup_start={peak / 100:.3g})"
            )
        if self.warmup_steps:
            warmup = Anneal(self.warmup_start, peak, self.warmup_steps, self.warmup_shape, offset=self.warmup_offset)
            _set(self, "_warmup", warmup)

    def _body(self, t: Any, xp: Any) -> Any:
        """The curve after the warmup, in its own time (t = 0 at the end of the warmup)."""
        raise NotImplementedError

    def _body_horizon(self) -> float | None:
        return None

    def _evaluate(self, t: Any, xp: Any) -> Any:
        warmup = self._warmup
        if warmup is None:
            return self._body(t, xp)
        w = self.warmup_steps
        if xp is SCALAR:
            return warmup._evaluate(t, xp) if t < w else self._body(t - w, xp)
        return xp.where(t < w, warmup._evaluate(t, xp), self._body(xp.maximum(t - w, 0.0), xp))

    @property
    def horizon(self) -> float | None:
        body = self._body_horizon()
        return None if body is None else self.warmup_steps + body


@dataclass(frozen=True, kw_only=True, repr=False)
class _Floor(_Warmup):
    if TYPE_CHECKING:  # declared by every concrete recipe; not a field of this base
        peak: float

    floor: float = 0.0
    floor_ratio: float | None = None

    @property
    def min_lr(self) -> float:
        """The floor as an absolute LR."""
        peak: float = self.peak
        return self.floor if self.floor_ratio is None else self.floor_ratio * peak

    def _superseded(self) -> tuple[str, ...]:
        """The floor given one way leaves the other at its default: a spec with both (``"floor": 0.0,
        "floor_ratio": null``) did not say which one the schedule decays to."""
        return ("floor_ratio",) if self.floor_ratio is None else ("floor",)

    def _check_floor(self, peak: float) -> None:
        owner = self.name
        check.non_negative(owner, "floor", self.floor)
        if self.floor_ratio is not None:
            check.in_range(owner, "floor_ratio", self.floor_ratio, 0.0, 1.0)
            if self.floor:
                raise ValueError(
                    f"{owner}: give the floor either as floor (absolute LR) or as floor_ratio "
                    f"(fraction of peak), not both; got floor={self.floor!r}, floor_ratio={self.floor_ratio!r}"
                )
        if self.floor > peak:
            raise ValueError(f"{owner}: floor must be in [0, peak={peak!r}], got {self.floor!r}")


@dataclass(frozen=True, repr=False)
class Constant(_Warmup, name="constant"):
    """`peak` for every step, after an optional warmup (HF ``constant[_with_warmup]``)."""

    peak: float

    def __post_init__(self) -> None:
        check.positive(self.name, "peak", self.peak)
        self._check_warmup(self.peak)

    def _body(self, t: Any, xp: Any) -> Any:
        return self.peak + 0.0 * t

    def _body_horizon(self) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True, repr=False)
class _Decay(_Floor):
    """Warmup, optional hold at peak, then an `Anneal` from peak to the floor that ends at
    `total_steps`; the floor for ever after."""

    if TYPE_CHECKING:
        total_steps: int

    _hold: int = field(init=False, repr=False, compare=False, default=0)
    _decay: Anneal | None = field(init=False, repr=False, compare=False, default=None)

    def _build(self, peak: float, total_steps: int, shape: str, power: float = 1.0, hold: int = 0) -> None:
        owner = self.name
        check.positive(owner, "peak", peak)
        check.step_count(owner, "total_steps", total_steps, 1)
        self._check_floor(peak)
        self._check_warmup(peak, total_steps)
        high = total_steps - self.warmup_steps
        _set(self, "_hold", check.step_count(owner, "hold_steps", hold, 0, high))
        decay_steps = total_steps - self.warmup_steps - self._hold
        if decay_steps > 0:
            _set(self, "_decay", Anneal(peak, self.min_lr, decay_steps, shape, power))

    def _body(self, t: Any, xp: Any) -> Any:
        peak: float = self.peak
        if self._decay is None:
            return peak + 0.0 * t
        if not self._hold:
            return self._decay._evaluate(t, xp)
        h = self._hold
        return xp.where(t < h, peak, self._decay._evaluate(xp.maximum(t - h, 0.0), xp))

    def _body_horizon(self) -> float:
        return float(self.total_steps - self.warmup_steps)


@dataclass(frozen=True, repr=False)
class Cosine(_Decay, name="cosine"):
    """Warmup, optional hold, then half-cosine decay from `peak` to the floor at `total_steps`
    (HF ``cosine``/``cosine_with_min_lr``, torch ``CosineAnnealingLR``, optax ``warmup_cosine_decay``)."""

    peak: float
    total_steps: int
    hold_steps: int = 0

    def __post_init__(self) -> None:
        self._build(self.peak, self.total_steps, "cosine", hold=self.hold_steps)


@dataclass(frozen=True, repr=False)
class Linear(_Decay, name="linear"):
    """Warmup, optional hold, then linear decay from `peak` to the floor at `total_steps`
    (HF ``linear``, torch ``LinearLR``, optax ``linear_schedule``)."""

    peak: float
    total_steps: int
    hold_steps: int = 0

    def __post_init__(self) -> None:
        self._build(self.peak, self.total_steps, "linear", hold=self.hold_steps)


@dataclass(frozen=True, repr=False)
class Polynomial(_Decay, name="polynomial"):
    """Warmup, optional hold, then ``floor + (peak - floor) * (1 - p) ** power``
    (HF ``polynomial``, torch ``PolynomialLR``, optax ``polynomial_schedule``)."""

    peak: float
    total_steps: int
    power: float = 1.0
    hold_steps: int = 0

    def __post_init__(self) -> None:
        check.positive(self.name, "power", self.power)
        self._build(self.peak, self.total_steps, "poly", self.power, hold=self.hold_steps)


_DECAY_FRACTION = 0.1
"""WSD's decay when neither length is given: MiniCPM's 10 % of the run."""


@dataclass(frozen=True, repr=False)
class WSD(_Decay, name="wsd"):
    """Warmup-stable-decay (MiniCPM, arXiv:2404.06395): warmup, a long stable phase at `peak`, and a
    short final decay to the floor over ``decay_steps`` or ``decay_fraction`` of `total_steps` (one
    or the other; 10 % of the run when neither is given).

    Decay shapes: ``1-sqrt`` (default; best in arXiv:2405.18392), ``linear``, ``cosine``, ``exp``
    (geometric, needs a floor > 0). MiniCPM found a decay over 10 % of training enough, 2.5 % not.
    """

    peak: float
    total_steps: int
    decay_steps: int | None = None
    decay_fraction: float = _DECAY_FRACTION
    decay_shape: str = "1-sqrt"

    def __post_init__(self) -> None:
        owner = self.name
        total = check.step_count(owner, "total_steps", self.total_steps, 1)
        check.in_range(owner, "decay_fraction", self.decay_fraction, 0.0, 1.0, low_open=True)
        check.choice(owner, "decay_shape", self.decay_shape, ("1-sqrt", "linear", "cosine", "exp"))
        # the decay needs one step at least, so the warmup ends one step before the run does
        warmup = check.step_count(owner, "warmup_steps", self.warmup_steps, 0, total - 1)
        decay = self._decay_length(total, warmup)
        check.positive(owner, "peak", self.peak)
        self._check_floor(self.peak)
        if self.decay_shape == "exp" and self.min_lr <= 0:
            raise ValueError(
                f"{owner}: decay_shape='exp' decays geometrically to the floor, so it needs floor > 0 "
                "or floor_ratio > 0"
            )
        self._build(self.peak, total, self.decay_shape, hold=total - warmup - decay)

    def _decay_length(self, total: int, warmup: int) -> int:
        """The decay's steps, from the one length given; both given was ambiguous (``decay_steps``
        won and ``decay_fraction`` was silently ignored), so it is refused."""
        owner, room = self.name, total - warmup
        if self.decay_steps is not None:
            if self.decay_fraction != _DECAY_FRACTION:
                raise ValueError(
                    f"{owner}: give the decay either as decay_steps (a count) or as decay_fraction (of "
                    f"total_steps), not both; got decay_steps={self.decay_steps!r}, "
                    f"decay_fraction={self.decay_fraction!r}"
                )
            return check.step_count(owner, "decay_steps", self.decay_steps, 1, room)
        decay = max(1, round(self.decay_fraction * total))
        if decay > room:
            raise ValueError(
                f"{owner}: decay_fraction={self.decay_fraction!r} of total_steps={total} is {decay} decay steps, "
                f"but warmup_steps={warmup} leaves {room}; give decay_fraction in (0, {room / total:.4g}] "
                f"or decay_steps in [1, {room}]"
            )
        return decay

    def _superseded(self) -> tuple[str, ...]:
        """The decay's length given one way leaves the other at its default: a spec with both
        (``"decay_steps": 200, "decay_fraction": 0.1``) did not say which one governs."""
        decay = "decay_fraction" if self.decay_steps is not None else "decay_steps"
        return (*super()._superseded(), decay)


@dataclass(frozen=True, repr=False)
class Exponential(_Floor, name="exponential"):
    """``peak * gamma ** (t / every)`` after warmup (``staircase``: integer powers only), clipped at
    the floor (torch ``ExponentialLR``, optax ``exponential_decay``, Keras ``ExponentialDecay``)."""

    peak: float
    gamma: float
    every: float = 1.0
    staircase: bool = False

    def __post_init__(self) -> None:
        check.positive(self.name, "peak", self.peak)
        check.in_range(self.name, "gamma", self.gamma, 0.0, 1.0, low_open=True)
        check.positive(self.name, "every", self.every)
        self._check_floor(self.peak)
        self._check_warmup(self.peak)

    def _body(self, t: Any, xp: Any) -> Any:
        e = floor_div(t, self.every, xp) if self.staircase else t / self.every
        return xp.maximum(self.min_lr, self.peak * self.gamma**e)


@dataclass(frozen=True, repr=False)
class StepDecay(_Floor, name="step"):
    """Multiply the LR by `factor` at each milestone (torch ``MultiStepLR``) or every `every` steps
    after warmup (torch ``StepLR``); clipped at the floor.

    Milestones are absolute steps of the run (warmup included), or, when all lie in (0, 1),
    fractions of `total_steps`: ``milestones=(0.3, 0.6, 0.9)`` is "÷10 at 30/60/90 % of training".
    """

    peak: float
    factor: float = 0.1
    milestones: tuple[float, ...] = ()
    every: int | None = None
    total_steps: int | None = None
    _at: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        owner = self.name
        check.positive(owner, "peak", self.peak)
        check.in_range(owner, "factor", self.factor, 0.0, 1.0, low_open=True)
        self._check_floor(self.peak)
        if self.total_steps is not None:
            check.step_count(owner, "total_steps", self.total_steps, 1)
        self._check_warmup(self.peak, self.total_steps)
        milestones = tuple(self.milestones)
        _set(self, "milestones", milestones)
        if self.every is not None:
            if milestones:
                raise ValueError(
                    f"{owner}: give milestones or every, not both; got milestones={milestones!r}, every={self.every!r}"
                )
            check.step_count(owner, "every", self.every, 1)
            return
        if milestones and all(0 < m < 1 for m in milestones):
            if self.total_steps is None:
                raise ValueError(f"{owner}: fractional milestones {milestones!r} need total_steps")
            absolute = tuple(float(round(m * self.total_steps)) for m in milestones)
        else:
            if any(0 < m < 1 for m in milestones if isinstance(m, int | float)):  # some fractions, not all
                raise ValueError(
                    f"{owner}: milestones must be all steps (integers ≥ 1) or all fractions of total_steps in "
                    f"(0, 1), got {milestones!r}"
                )
            absolute = tuple(float(check.step_count(owner, f"milestones[{i}]", m, 1)) for i, m in enumerate(milestones))
        if any(b <= a for a, b in itertools.pairwise(absolute)):
            raise ValueError(f"{owner}: milestones must be strictly increasing, got {milestones!r}")
        if absolute and absolute[0] < self.warmup_steps:
            raise ValueError(f"{owner}: milestones must be ≥ warmup_steps={self.warmup_steps}, got {milestones!r}")
        _set(self, "_at", tuple(m - self.warmup_steps for m in absolute))

    def _body(self, t: Any, xp: Any) -> Any:
        if self.every is not None:
            count = floor_div(t, self.every, xp)
        elif self._at:
            count = xp.searchsorted(xp.asarray(self._at), t, side="right")
        else:
            count = 0.0 * t
        return xp.maximum(self.min_lr, self.peak * self.factor**count)

    def _body_horizon(self) -> float | None:
        if self.every is not None:
            return None
        return self._at[-1] if self._at else 0.0


@dataclass(frozen=True, repr=False)
class InverseSqrt(_Floor, name="inverse_sqrt"):
    """``peak * sqrt(timescale / (t + timescale))`` after warmup (Transformer / HF ``inverse_sqrt``;
    `timescale` defaults to ``warmup_steps``, or 10 000 without warmup, as in HF)."""

    peak: float
    timescale: float | None = None

    def __post_init__(self) -> None:
        check.positive(self.name, "peak", self.peak)
        if self.timescale is not None:
            check.positive(self.name, "timescale", self.timescale)
        self._check_floor(self.peak)
        self._check_warmup(self.peak)

    @property
    def tau(self) -> float:
        return float(self.timescale or self.warmup_steps or 10_000)

    def _body(self, t: Any, xp: Any) -> Any:
        return xp.maximum(self.min_lr, self.peak / xp.sqrt((t + self.tau) / self.tau))


@dataclass(frozen=True, repr=False)
class InverseTime(_Floor, name="inverse_time"):
    """``peak / (1 + rate * t / every)`` after warmup, the classic 1/t decay (Keras ``InverseTimeDecay``)."""

    peak: float
    rate: float = 1.0
    every: float = 1.0
    staircase: bool = False

    def __post_init__(self) -> None:
        check.positive(self.name, "peak", self.peak)
        check.positive(self.name, "rate", self.rate)
        check.positive(self.name, "every", self.every)
        self._check_floor(self.peak)
        self._check_warmup(self.peak)

    def _body(self, t: Any, xp: Any) -> Any:
        e = floor_div(t, self.every, xp) if self.staircase else t / self.every
        return xp.maximum(self.min_lr, self.peak / (1.0 + self.rate * e))


@dataclass(frozen=True, repr=False)
class CosineRestarts(_Floor, name="cosine_restarts"):
    """SGDR (arXiv:1608.03983): cosine cycles from the cycle's peak to the floor; cycle ``i`` lasts
    ``period * period_mult ** i`` steps and peaks at ``peak * peak_decay ** i`` (torch
    ``CosineAnnealingWarmRestarts``, timm ``cycle_mul``/``cycle_decay``, Keras ``m_mul``). With
    `total_steps`, the LR is the floor from `total_steps` on (HF ``cosine_with_restarts``).
    """

    peak: float
    period: float
    period_mult: float = 1.0
    peak_decay: float = 1.0
    total_steps: int | None = None

    def __post_init__(self) -> None:
        owner = self.name
        check.positive(owner, "peak", self.peak)
        check.positive(owner, "period", self.period)
        check.in_range(owner, "period_mult", self.period_mult, 1.0, 1e6)
        check.in_range(owner, "peak_decay", self.peak_decay, 0.0, 1.0, low_open=True)
        self._check_floor(self.peak)
        if self.total_steps is not None:
            check.step_count(owner, "total_steps", self.total_steps, 1)
        self._check_warmup(self.peak, self.total_steps)

    def _cycle_start(self, n: Any) -> Any:
        m = self.period_mult
        if m == 1.0:
            return self.period * n
        return self.period * (m**n - 1.0) / (m - 1.0)

    def _body(self, t: Any, xp: Any) -> Any:
        m = self.period_mult
        if m == 1.0:
            n = floor_div(t, self.period, xp)
        else:
            # Closed form for the cycle index, then one exact correction either way so that cycle
            # boundaries land on the same integer steps as torch's incremental counter.
            n = xp.floor(xp.log(1.0 + t * (m - 1.0) / self.period) / math.log(m))
            n = xp.where(self._cycle_start(n + 1.0) <= t, n + 1.0, n)
            n = xp.where(self._cycle_start(n) > t, n - 1.0, n)
        t_cur = t - self._cycle_start(n)
        length = self.period * m**n
        top = xp.maximum(self.min_lr, self.peak * self.peak_decay**n)
        value = self.min_lr + (top - self.min_lr) * 0.5 * (1.0 + xp.cos(xp.pi * t_cur / length))
        if self.total_steps is None:
            return value
        return xp.where(t < self.total_steps - self.warmup_steps, value, self.min_lr)

    def _body_horizon(self) -> float | None:
        return None if self.total_steps is None else float(self.total_steps - self.warmup_steps)


@dataclass(frozen=True, repr=False)
class Cyclic(Schedule, name="cyclic"):
    """Leslie Smith's cyclical LR (arXiv:1506.01186), as torch ``CyclicLR``: a triangle between `low`
    and `high` rising over `up_steps` and falling over `down_steps` (default: `up_steps`).
    Modes: ``triangular``; ``triangular2`` (amplitude halves every cycle); ``exp_range`` (amplitude
    × ``gamma ** step``)."""

    low: float
    high: float
    up_steps: float
    down_steps: float | None = None
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        owner = self.name
        check.positive(owner, "low", self.low)
        check.positive(owner, "high", self.high)
        if self.high < self.low:
            raise ValueError(f"{owner}: high must be ≥ low={self.low!r}, got {self.high!r}")
        check.positive(owner, "up_steps", self.up_steps)
        if self.down_steps is not None:
            check.positive(owner, "down_steps", self.down_steps)
        check.choice(owner, "mode", self.mode, ("triangular", "triangular2", "exp_range"))
        check.in_range(owner, "gamma", self.gamma, 0.0, 1.0, low_open=True)

    def _evaluate(self, t: Any, xp: Any) -> Any:
        up = float(self.up_steps)
        total = up + float(self.down_steps if self.down_steps is not None else up)
        ratio = up / total
        cycle = 1.0 + floor_div(t, total, xp)
        # torch writes 1 + t/total - cycle, which cancels badly in float32 (jit); this form is exact
        x = (t - (cycle - 1.0) * total) / total
        scale = xp.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
        height = (self.high - self.low) * scale
        if self.mode == "triangular2":
            height = height * 0.5 ** (cycle - 1.0)
        elif self.mode == "exp_range":
            height = height * self.gamma**t
        return self.low + height


@dataclass(frozen=True, repr=False)
class OneCycle(Schedule, name="one_cycle"):
    """Smith's one-cycle policy (arXiv:1803.09820): from ``peak / div_factor`` up to `peak` over
    ``pct_start`` of the run, then down to ``peak / div_factor / final_div_factor``.

    ``convention="torch"`` matches torch ``OneCycleLR`` step for step (phases end at
    ``pct_start * total_steps - 1`` and ``total_steps - 1``); ``convention="optax"`` matches optax
    ``cosine_onecycle_schedule`` (and, with ``anneal="linear"``, the two-phase
    ``piecewise_interpolate_schedule`` it is built from; optax's ``linear_onecycle_schedule`` is
    three-phase). ``three_phase`` (torch) comes back down to the initial LR symmetrically before
    the final annealing.
    """

    peak: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cosine"
    three_phase: bool = False
    convention: str = "torch"
    _curve: Join = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = self.name
        check.positive(owner, "peak", self.peak)
        total = check.step_count(owner, "total_steps", self.total_steps, 2)
        check.in_range(owner, "pct_start", self.pct_start, 0.0, 1.0, low_open=True, high_open=True)
        check.in_range(owner, "div_factor", self.div_factor, 1.0, math.inf, high_open=True)
        check.in_range(owner, "final_div_factor", self.final_div_factor, 1.0, math.inf, high_open=True)
        check.choice(owner, "anneal", self.anneal, ("cosine", "linear"))
        check.choice(owner, "convention", self.convention, ("torch", "optax"))
        initial = self.peak / self.div_factor
        low = initial / self.final_div_factor
        if self.convention == "torch":
            ends = [self.pct_start * total - 1.0]
            if self.three_phase:
                ends.append(2.0 * self.pct_start * total - 2.0)
            ends.append(total - 1.0)
        else:
            if self.three_phase:
                raise ValueError(f"{owner}: three_phase exists only with convention='torch'")
            ends = [float(int(self.pct_start * total)), float(total)]
        levels = [initial, self.peak, initial, low] if self.three_phase else [initial, self.peak, low]
        starts = [0.0, *ends[:-1]]
        if any(end <= start for start, end in zip(starts, ends, strict=True)):
            raise ValueError(
                f"{owner}: pct_start={self.pct_start!r} with total_steps={total} leaves a phase "
                f"with no steps; use more steps or a pct_start further from 0 and 1"
            )
        segments = tuple(Anneal(levels[i], levels[i + 1], ends[i] - starts[i], self.anneal) for i in range(len(ends)))
        _set(self, "_curve", Join(segments, tuple(starts[1:])))

    def _evaluate(self, t: Any, xp: Any) -> Any:
        return self._curve._evaluate(t, xp)

    @property
    def horizon(self) -> float | None:
        return self._curve.horizon
