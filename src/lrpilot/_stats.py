"""Medians of small arrays without `numpy.median`'s generic machinery.

The detectors take several medians of short windows at every training step, and the range test's
settled stop smooths its whole curve (a running median) at every point: `numpy.median` spends
most of its time there on axis handling, not on the partition. These give the same values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["median", "row_medians"]

Array = npt.NDArray[np.float64]


SORT_BELOW = 256
"""Below this many values a full sort is cheaper than `numpy.partition`'s setup for the two middle
values (3.5 µs against 5.3 µs on the detectors' 128-value windows); above it the partition's
linear time wins. Both give the exact order statistics."""


def median(values: Array) -> float:
    """`numpy.median` of a non-empty 1-D array (~15× faster on the windows the detectors read)."""
    n = values.size
    k = n // 2
    if n < SORT_BELOW:
        ordered = values.copy()  # `np.sort` is this copy and sort behind a wrapper that costs as much
        ordered.sort()
        return float(ordered[k]) if n % 2 else float((ordered[k - 1] + ordered[k]) / 2.0)
    if n % 2:
        return float(np.partition(values, k)[k])
    part = np.partition(values, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2.0)


def row_medians(values: Array) -> Array:
    """``numpy.median(values, axis=-1)`` of an array whose last axis is non-empty."""
    n = values.shape[-1]
    k = n // 2
    if n % 2:
        odd: Array = np.partition(values, k, axis=-1)[..., k]
        return odd
    part = np.partition(values, (k - 1, k), axis=-1)
    even: Array = (part[..., k - 1] + part[..., k]) / 2.0
    return even
