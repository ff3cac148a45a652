"""Reading a range-test curve: a zero-phase, spike-robust smoothing in log-LR and the landmarks on
it (minimum, steepest fall, the edge of stability) that lrpilot's rule and band are built from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lrpilot._stats import median, row_medians
from lrpilot.finder._suggestion import as_curve

__all__ = ["CLEAR_FALL", "CurveFeatures", "curve_features", "noise_level", "smooth_curve"]

CLEAR_FALL = 2.5
"""A fall of fewer noise levels than this (`CurveFeatures.drop_sigma`) gets a `RangeTestWarning`:
pure noise reaches 2.7 in 1 % of 100-point curves; real curves of the calibration suite 3.9+."""

Array = npt.NDArray[np.float64]


def noise_level(losses: Sequence[float] | npt.ArrayLike) -> float:
    """A robust standard deviation of a curve's point-to-point noise: ``1.4826 · MAD / √6`` of the
    second differences (which cancel a locally linear trend, so a steadily falling curve does not
    read as noisy; the median ignores the kinks and the blow-up while they are under half)."""
    return second_difference_noise(np.diff(np.asarray(losses, dtype=np.float64), n=2))


def second_difference_noise(d: Array) -> float:
    """`noise_level` from a curve's second differences `d` (``numpy.diff(losses, n=2)``), which a
    runner extends point by point rather than taking them over the whole curve at every point."""
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return 1.4826 * median(np.abs(d - median(d))) / math.sqrt(6.0)


def _running_median(y: Array, k: int, known: Array | None = None) -> Array:
    """Median over a centred window of `k` points (shrunk at the ends), along the last axis (one
    curve, or one per row): removes single-step spikes without moving the curve's shape, which an
    average would smear over the window.

    `known`: this running median of `y`'s first points (a curve that has grown since, as the range
    test's settled stop reads it at every point). Its values whose windows lie whole within those
    points stand (a median of the same values); only the last `k` // 2 and the new points' are taken."""
    h = k // 2
    n = y.shape[-1]
    out = np.empty_like(y)
    edges: Sequence[int] = range(n)
    if known is not None:
        kept = max(0, known.shape[-1] - h)
        out[..., :kept] = known[..., :kept]
        edges = range(kept, n)
    elif n > k:
        windows = np.lib.stride_tricks.sliding_window_view(y, k, axis=-1)
        out[..., h : n - h] = row_medians(windows)
        edges = (*range(h), *range(n - h, n))
    for i in edges:
        out[..., i] = row_medians(y[..., max(0, i - h) : i + h + 1])
    return out


def _local_linear(u: Array, bandwidth: float) -> Array:
    """The Gaussian-weighted local-linear fit in `u` as a matrix: ``smoothed = M @ values``
    (the weighted mean where a point's neighbourhood is too narrow for a slope)."""
    d = u[None, :] - u[:, None]  # row i: distances from point i
    w = np.exp(-0.5 * (d / bandwidth) ** 2)
    sw, swd, swdd = w.sum(1), (w * d).sum(1), (w * d * d).sum(1)
    det = sw * swdd - swd * swd
    linear = (swdd[:, None] * w - swd[:, None] * (w * d)) / np.where(det > 0, det, 1.0)[:, None]
    out: Array = np.where((det > 1e-12 * sw * sw)[:, None], linear, w / sw[:, None])
    return out


def _smooth(x: Array, y: Array, bandwidth: float, medians: Array | None = None) -> Array:
    """`smooth_curve` of one curve ``y`` or of each row of ``y`` (all on the LRs `x`); `medians`:
    ``y``'s running median (`running_median`) where the caller keeps it."""
    if medians is None:
        medians = running_median(y) if y.shape[-1] >= 5 else y
    out: Array = medians @ _local_linear(np.log10(x), bandwidth).T
    return out


def running_median(y: Array, known: Array | None = None) -> Array:
    """The smoothing's running median of 5 points (`_running_median`; `known`: that of `y`'s first
    points, whose values mostly stand)."""
    return _running_median(y, 5, known)


def smooth_curve(
    lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike, bandwidth: float = 0.2
) -> Array:
    """A zero-phase smoothing of a (finite) range-test curve: a running median of 5 points, then a
    Gaussian-weighted local-linear fit in log10(LR) with `bandwidth` decades.

    The causal EMA a runner watches lags by its window (β = 0.98 lags ~50 steps, half a 100-step
    test), which moves every landmark to higher LRs; a centred smoother does not. Working in log-LR
    makes the smoothing the same for exponential and linear ramps.
    """
    x, y = as_curve(lrs, losses, "smooth_curve")
    if not np.all(np.isfinite(y)):
        raise ValueError("smooth_curve: losses must be finite (cut the curve at its first non-finite point)")
    return _smooth(x, y, bandwidth)


def smoothed_minimum(
    x: Array, y: Array, bandwidth: float = 0.2, *, medians: Array | None = None
) -> tuple[Array, int, float, float]:
    """``(smoothed, i_min, loss_start, drop)`` of a checked, finite curve: the landmarks of
    `CurveFeatures` that the range test's settled stop reads at every point, without the rest
    (`medians`: ``y``'s `running_median`, where the caller keeps it from point to point)."""
    s = _smooth(x, y, bandwidth, medians)
    i_min = int(np.argmin(s))
    loss_start = float(np.max(s[: i_min + 1]))
    return s, i_min, loss_start, loss_start - float(s[i_min])


@dataclass(frozen=True)
class CurveFeatures:
    """Landmarks of a range-test curve (indices into the input curve).

    Attributes:
        lrs, smoothed: the finite prefix of the curve and its zero-phase smoothing.
        usable: points before the first non-finite loss.
        i_min, lr_min, loss_min: the smoothed minimum.
        loss_start: the highest smoothed loss before the minimum (the reference for "drop").
        drop: ``loss_start - loss_min`` (≥ 0): how much the test learnt.
        i_steep, lr_steep: the steepest fall of the smoothed loss per decade of LR before the minimum.
        i_stable, lr_stable: the edge of stability: the last LR, after the minimum, whose smoothed
            loss is within ``stable_rise × drop`` of the minimum (the whole curve if it never rises).
        rises: whether the curve rises past that edge within the test (else the range ended first).
        noise: the raw losses' point-to-point noise (`lrpilot.finder.noise_level`).
        drop_sigma: ``drop / noise``: how clearly the loss fell (pure noise gives about 1, rarely
            above 3; the real curves lrpilot was calibrated on give 4 to 180).
    """

    lrs: tuple[float, ...]
    smoothed: tuple[float, ...]
    usable: int
    i_min: int
    lr_min: float
    loss_min: float
    loss_start: float
    drop: float
    i_steep: int
    lr_steep: float
    i_stable: int
    lr_stable: float
    rises: bool
    noise: float
    drop_sigma: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def curve_features(
    lrs: Sequence[float] | npt.ArrayLike,
    losses: Sequence[float] | npt.ArrayLike,
    *,
    bandwidth: float = 0.2,
    stable_rise: float = 0.1,
) -> CurveFeatures:
    """The landmarks of the curve ``(lrs, losses)``; see `CurveFeatures`.

    Raises ValueError when fewer than 5 points precede the first non-finite loss.
    """
    x, y = as_curve(lrs, losses, "curve_features")
    bad = np.flatnonzero(~np.isfinite(y))
    usable = int(bad[0]) if bad.size else len(y)
    if usable < 5:
        raise ValueError(f"curve_features: needs at least 5 finite points before the first NaN/Inf, got {usable}")
    x, y = x[:usable], y[:usable]
    s, i_min, loss_start, drop = smoothed_minimum(x, y, bandwidth)
    u = np.log10(x)
    if i_min >= 2:
        slope = np.gradient(s[: i_min + 1], u[: i_min + 1])
        i_steep = int(np.argmin(slope))
    else:
        i_steep = i_min
    limit = float(s[i_min]) + stable_rise * max(drop, 1e-12 * max(1.0, abs(float(s[i_min]))))
    above = np.flatnonzero(s[i_min:] > limit)
    rises = bool(above.size)
    i_stable = i_min + int(above[0]) - 1 if rises else usable - 1
    noise = noise_level(y)
    return CurveFeatures(
        lrs=tuple(float(v) for v in x),
        smoothed=tuple(float(v) for v in s),
        usable=usable,
        i_min=i_min,
        lr_min=float(x[i_min]),
        loss_min=float(s[i_min]),
        loss_start=loss_start,
        drop=drop,
        i_steep=i_steep,
        lr_steep=float(x[i_steep]),
        i_stable=i_stable,
        lr_stable=float(x[i_stable]),
        rises=rises,
        noise=noise,
        drop_sigma=drop / noise if noise > 0 else math.inf,
    )
