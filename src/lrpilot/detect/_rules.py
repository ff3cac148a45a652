"""The statistics behind every detector: pure functions of a window of values.

Robust statistics (median and MAD) rather than mean and standard deviation, because the window is
the thing being protected: one spike of 1e4 moves a mean and a standard deviation enough to hide the
next one (OLMo-core's 6σ rule needs non-finite values kept out for the same reason), while the
median and MAD of 128 values do not move at all.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lrpilot._stats import median

__all__ = ["MAD_TO_SIGMA", "detrended_lag1", "evolve", "median", "robust_baseline", "step_noise"]

MAD_TO_SIGMA = 1.4826
"""1 / Φ⁻¹(3/4): the MAD of normal noise times this is its standard deviation."""

Array = npt.NDArray[np.float64]

T = TypeVar("T")


def evolve(obj: T, **changes: Any) -> T:
    """`dataclasses.replace` for the detectors' and the guard's frozen states, without its per-call
    walk over every field and `__init__` (the guard makes several per training step; this is ~10×
    cheaper). Only for frozen dataclasses with no `__post_init__` and no slots."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


def robust_baseline(values: Array, rel_floor: float, abs_floor: float) -> tuple[float, float]:
    """(median, robust sigma) of `values`, sigma = max(1.4826·MAD, rel_floor·|median|, abs_floor).

    The floors keep a nearly constant window (a plateau, a loss near 0) from making every wiggle
    look like many sigmas.
    """
    med = median(values)
    mad = median(np.abs(values - med))
    return med, max(MAD_TO_SIGMA * mad, rel_floor * abs(med), abs_floor)


def step_noise(values: Array, level: float, rel_floor: float, abs_floor: float) -> float:
    """Robust sigma of the step-to-step noise, from the MAD of first differences (a difference of
    two independent values has √2 times their sigma), floored like `robust_baseline`.

    Unlike the spread of the window, this does not grow with a trend: a steady rise of 0.2 % per
    step would otherwise inflate the sigma it is measured in and hide itself for hundreds of steps.
    """
    diffs = np.abs(values[1:] - values[:-1])  # `np.diff`'s arithmetic, without its wrapper
    sigma = MAD_TO_SIGMA * median(diffs) / math.sqrt(2.0) if diffs.size else 0.0
    return max(sigma, rel_floor * abs(level), abs_floor)


@cache
def _centred(n: int) -> tuple[Array, float]:
    """The step positions 0 … n−1 centred on their mean, and their sum of squares (the same for
    every window of `n` values: the oscillation test reads one per observation)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    x.flags.writeable = False
    return x, float(np.dot(x, x))


def detrended_lag1(values: Array, abs_floor: float) -> tuple[float, float]:
    """(lag-1 autocorrelation, relative amplitude) of `values` after removing a least-squares line.

    I.i.d. noise gives an autocorrelation near 0 (±1/√n), a loss that bounces up and down on
    alternate steps gives −1, a slow wave gives > 0. The amplitude is the standard deviation of the
    detrended values over |mean|.
    """
    n = values.size
    x, xx = _centred(n)
    mean = float(values.sum()) / n  # what `values.mean()` computes, without its dispatch
    centred = values - mean
    slope = float(np.dot(x, centred) / xx)
    resid = centred - slope * x
    power = float(np.dot(resid, resid))
    if power <= 0.0 or not math.isfinite(power):
        return 0.0, 0.0
    corr = float(np.dot(resid[:-1], resid[1:]) / power)
    return corr, math.sqrt(power / n) / max(abs(mean), abs_floor)
