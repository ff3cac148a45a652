"""Hand-written loss curves with known answers, shared by the detector, guard and doctor tests."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Curve = npt.NDArray[np.float64]


def clean(n: int = 2000, seed: int = 0, *, start: float = 4.0, end: float = 1.5, noise: float = 0.03) -> Curve:
    """A healthy run: exponential decay towards `end` with multiplicative Student-t noise (df=10)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    level = end + (start - end) * np.exp(-t / (n / 8))
    return level * (1.0 + noise * rng.standard_t(df=10, size=n) / math.sqrt(10 / 8))


def clean_grads(n: int = 2000, seed: int = 1) -> Curve:
    """Grad norms of a healthy run: rising over a short warmup, then slowly falling, log-normal noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    level = 2.0 * np.minimum(1.0, (t + 1) / 50) * np.exp(-t / (2 * n)) + 0.2
    return level * np.exp(0.15 * rng.standard_normal(n))


def with_spike(curve: Curve, at: int, factor: float = 3.0) -> Curve:
    out = curve.copy()
    out[at] *= factor
    return out


def rising_from(curve: Curve, at: int, per_step: float) -> Curve:
    """The curve until `at`, then a rise of `per_step` (relative) per step: a slow divergence."""
    out = curve.copy()
    k = np.arange(out.size - at, dtype=np.float64)
    out[at:] = out[at:] * (1.0 + per_step * k)
    return out
