"""The `Schedule` base class, the schedule registry, and the math namespaces.

A schedule is a frozen dataclass whose `__call__(step)` returns the absolute learning rate for the
optimizer step `step` (0 for the first step, i.e. the number of optimizer steps already taken). It
holds no state: resuming a run means calling it with the saved step.

Every shape writes its formula once, in `_evaluate(t, xp)`, against an array namespace `xp`:
`SCALAR` (plain Python floats, used by `__call__`), `numpy` (used by `values()` for plots and lint)
or `jax.numpy` (used by the optax adapter, inside `jit`). That keeps the three paths identical by
construction instead of by testing three copies of each formula.
"""

from __future__ import annotations

import bisect
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lrpilot._validate import suggest_name

__all__ = ["SCALAR", "Schedule", "floor_div", "registry"]

_REGISTRY: dict[str, type[Schedule]] = {}


class _ScalarMath:
    """The subset of the numpy API that schedule formulas use, on Python floats.

    `where` evaluates both branches (as `numpy.where` does), so formulas keep every branch
    well-defined for every step (no division by zero, no log of 0, no negative base to a power).
    """

    cos = staticmethod(math.cos)
    sqrt = staticmethod(math.sqrt)
    log = staticmethod(math.log)
    exp = staticmethod(math.exp)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    pi = math.pi

    @staticmethod
    def asarray(values: Any) -> Any:
        return values

    @staticmethod
    def where(condition: Any, if_true: Any, if_false: Any) -> Any:
        return if_true if condition else if_false

    @staticmethod
    def searchsorted(sorted_values: Sequence[float], value: float, side: str = "left") -> int:
        if side == "right":
            return bisect.bisect_right(sorted_values, value)
        return bisect.bisect_left(sorted_values, value)


SCALAR = _ScalarMath()
"""The namespace `Schedule.__call__` evaluates formulas with."""


def floor_div(t: Any, d: float, xp: Any) -> Any:
    """``floor(t / d)``, exact at multiples of `d` in every namespace.

    Under ``jax.jit`` XLA rewrites ``t / 49`` as ``t * (1/49)``, which is 0.99999… at t = 49, so a
    plain floor puts a decay step or a restart one step late. One correction either way makes the
    count agree with the integer counter torch and optax keep.
    """
    n = xp.floor(t / d)
    n = xp.where((n + 1.0) * d <= t, n + 1.0, n)
    return xp.where(n * d > t, n - 1.0, n)


def _plain_numbers(schedule: Schedule) -> None:
    """Numpy scalars and arrays in `schedule`'s fields (``np.ceil(n / batch).astype(int)``, a
    float32 peak from a scaling rule, milestones as an array) become the Python numbers they hold.
    Kept as given, they made the spec unusable: ``to_dict`` not JSON-serialisable, ``to_string``
    unparseable (``np.float32(0.0004)``), and `LRPilotScheduler.state_dict` refused by
    ``torch.load(weights_only=True)``, which the Hugging Face Trainer uses to resume."""
    for f in fields(schedule):
        value = getattr(schedule, f.name, None)
        if isinstance(value, np.generic | np.ndarray):  # an array of milestones: a list of numbers
            object.__setattr__(schedule, f.name, value.tolist())
        elif isinstance(value, list | tuple) and any(isinstance(v, np.generic) for v in value):
            plain = [v.item() if isinstance(v, np.generic) else v for v in value]
            object.__setattr__(schedule, f.name, type(value)(plain))


@dataclass(frozen=True, repr=False)
class Schedule(ABC):
    """A learning-rate schedule: a pure, picklable function of the optimizer step.

    Subclasses are frozen dataclasses registered under a short name (``name=`` in the class
    statement); the name and the dataclass fields are the schedule's serialised spec (see
    `lrpilot.schedules.to_dict`).
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check = cls.__dict__.get("__post_init__")
        if check is not None:  # each class's own checks run on plain Python numbers

            @functools.wraps(check)
            def post_init(self: Schedule) -> None:
                _plain_numbers(self)
                check(self)

            cls.__post_init__ = post_init  # type: ignore[attr-defined]
        if name:
            if name in _REGISTRY:
                raise TypeError(f"schedule name {name!r} is already registered")
            cls.name = name
            _REGISTRY[name] = cls

    def __call__(self, step: float) -> float:
        """The absolute learning rate at optimizer step `step` (0-based, ≥ 0, finite)."""
        if not 0 <= step < math.inf:
            raise ValueError(f"step must be a finite number ≥ 0, got {step!r}")
        return float(self._evaluate(step, SCALAR))

    def values(self, steps: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Learning rates at many steps at once (vectorised numpy, float64); for plots and lint."""
        t = np.asarray(steps, dtype=np.float64)
        if t.size and not (np.all(np.isfinite(t)) and t.min() >= 0):
            raise ValueError("steps must be finite numbers ≥ 0")
        with np.errstate(all="ignore"):
            out = self._evaluate(t, np)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), t.shape).copy()

    @abstractmethod
    def _evaluate(self, t: Any, xp: Any) -> Any:
        """The formula, on a step (or array of steps) `t` with math namespace `xp`."""

    @property
    def horizon(self) -> float | None:
        """The step from which the LR stays at its final value, or None if it never settles."""
        return None

    def _superseded(self) -> tuple[str, ...]:
        """Fields that another field overrides here, each at its default: the spec leaves them out,
        so that it names only the setting in effect (`from_dict` fills them back in)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """The spec: ``{"name": ..., <every field in effect>: ...}``, nested schedules as nested dicts."""
        from lrpilot.schedules._spec import to_dict

        return to_dict(self)

    def to_string(self) -> str:
        """The short form, e.g. ``cosine(peak=0.0003, total_steps=1000, warmup_steps=100)``."""
        from lrpilot.schedules._spec import to_string

        return to_string(self)

    def __repr__(self) -> str:
        """Valid Python: the class name and every field that differs from its default, nested
        schedules by their class names too (``eval`` with the classes in scope rebuilds it)."""
        from lrpilot.schedules._spec import to_python

        return to_python(self)


def registry() -> dict[str, type[Schedule]]:
    """A copy of the name → class registry of every schedule shape."""
    return dict(_REGISTRY)


def lookup(name: str) -> type[Schedule]:
    """The schedule class registered as `name`; a "did you mean" `ValueError` otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown schedule {name!r}{suggest_name(name, _REGISTRY)}; known schedules: {', '.join(sorted(_REGISTRY))}"
        ) from None
