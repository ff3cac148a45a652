"""The one signature every suggestion rule shares: ``rule(lrs, losses) -> Suggestion``.

`lrs` and `losses` are the raw points of a range test (a `RangeTestRecord`'s ``arrays()``, or
columns of any offline log): LRs strictly increasing and > 0, losses as measured (NaN and Inf
allowed; each rule decides what to do with them). Rules are pure: same curve, same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["SuggestFn", "Suggestion", "as_curve"]


@dataclass(frozen=True)
class Suggestion:
    """A rule's answer.

    Attributes:
        method: the rule's name (a key of `lrpilot.finder.SUGGESTERS`).
        lr: the suggested learning rate.
        index: the curve point the rule read its answer from (for a rule that scales or
            interpolates, the point it started from), for plots.
    """

    method: str
    lr: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


SuggestFn: TypeAlias = Callable[[Sequence[float] | npt.ArrayLike, Sequence[float] | npt.ArrayLike], Suggestion]
"""``(lrs, losses) -> Suggestion``: the signature of every rule in `lrpilot.finder.SUGGESTERS`."""


def as_curve(
    lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike, owner: str = "suggest"
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """`lrs` and `losses` as float64 arrays, checked: 1-D, same length, at least 2 points, LRs
    finite, > 0 and strictly increasing (a range test's ramp)."""
    x = np.asarray(lrs, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"{owner}: lrs and losses must be 1-D and of the same length, got shapes {x.shape} and {y.shape}"
        )
    if len(x) < 2:
        raise ValueError(f"{owner}: a curve needs at least 2 points, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError(f"{owner}: lrs must be finite numbers > 0")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"{owner}: lrs must be strictly increasing, as a range test's ramp is")
    return x, y
