"""How fit and tune report their phases as they go, and time them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Clock", "Progress", "StepCallback", "quiet"]


Progress = Callable[[str, int, "int | None", float, float], None]
"""``progress(phase, done, total, lr, loss)`` as a phase advances (``load``, ``range test``,
``train``, ``evaluate``, ``save``, ``report``); ``total`` None for phases without a count, lr and loss NaN where
they do not apply."""
StepCallback = Callable[[int, float, float], None]
"""``callback(step, lr, loss)`` after every training step; raising KeyboardInterrupt stops the run
as Ctrl-C does."""


class Clock:
    """Seconds per phase, and since the start."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def quiet(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
    """The default progress: none."""
