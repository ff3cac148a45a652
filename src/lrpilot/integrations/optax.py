"""`to_optax`: an lrpilot schedule as an optax schedule (``count -> learning rate``, jit-able).

optax keeps the step count in the optimizer state and calls the schedule on it inside ``jit``, so
an lrpilot schedule (a pure function of the step) fits without an adapter object or state: its one
formula (`Schedule._evaluate`) is evaluated with ``jax.numpy`` instead of Python floats or numpy.
Values are float32 unless x64 is enabled (``jax.enable_x64(True)``), then float64. float32 holds
every integer only up to 2**24 (16,777,216): past it the step count itself is rounded, so a milestone
or restart there can land a step (or more) early; runs that long need x64.

>>> import optax
>>> from lrpilot.schedules import Cosine
>>> lr = to_optax(Cosine(peak=1e-3, total_steps=100, warmup_steps=10))
>>> optimizer = optax.adamw(learning_rate=lr)
>>> float(lr(10))
0.0010000000474974513
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrpilot._optional import require
from lrpilot.schedules import Schedule

__all__ = ["OptaxSchedule", "to_optax"]

jnp: Any = require("jax.numpy", "jax", "lrpilot.integrations.optax")


@dataclass(frozen=True)
class OptaxSchedule:
    """An lrpilot schedule as optax's ``Schedule`` protocol: call it with the step count (an int or
    an int array, traced or not) to get the learning rate as a jax array of the default float type.

    A frozen dataclass rather than a closure, so it pickles, prints its spec and compares by value.
    """

    schedule: Schedule

    def __call__(self, count: Any) -> Any:
        t = jnp.asarray(count, dtype=float)
        return jnp.asarray(self.schedule._evaluate(t, jnp), dtype=t.dtype)


def to_optax(schedule: Schedule) -> OptaxSchedule:
    """Wrap `schedule` for optax: ``optax.adamw(learning_rate=to_optax(schedule))``.

    Works under ``jax.jit`` and ``vmap`` (the formula uses ``jnp.where``, not Python branches, on the
    step) and takes optax's step convention, the count of updates already applied, which is lrpilot's.

    Raises:
        TypeError: `schedule` is not an lrpilot `Schedule` (parse specs with `lrpilot.parse`).
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"to_optax: schedule must be an lrpilot Schedule, got {type(schedule).__name__}")
    return OptaxSchedule(schedule)
