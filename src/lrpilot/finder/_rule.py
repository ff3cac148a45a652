"""lrpilot's own rule: the peak LR of a warmup + decay recipe, read off a range-test curve.

**What the curve can tell.** A range test shows, per LR, whether a few steps at that LR still
lower the loss. Its *minimum* is where the LR starts to cost more (noise, instability) than it
gains over the handful of steps the test spends there; past the *edge of stability* the loss
rises. A full recipe warms up to its peak and decays afterwards, which lets its peak sit close
to, but below, that minimum: the steepest-descent point that torch-lr-finder and Lightning return
lies far below it on most curves (a decade on a char-level transformer), and the minimum itself is
about where training starts to go wrong (fastai divides it by 10 for a constant LR).

**The rule.** ``peak = PEAK_FACTOR × lr_min × (s / S_REF) ** STEPS_EXPONENT``, where `lr_min` is
the minimum of a zero-phase, spike-robust smoothing of the curve (`smooth_curve`; no lag, so it
does not drift with the smoothing window) and ``s`` the optimizer steps per decade of LR there.
A slower ramp spends more steps at each LR, so its minimum sits lower (about as ``s ** -0.6`` on
the calibration curves); the correction makes a 300-step test give the 100-step answer, where
existing rules swing by 36× (torch-lr-finder #68).

The constants were fitted on lrpilot's calibration suite (the built-in tasks' oracle sweeps and
variants of them: see ``benchmarks/README.md``), not per task; they are the same for every model.

**Shift- and scale-invariant.** Adding a constant to the losses or multiplying them by a positive
number leaves the answer unchanged (the smoothing is linear; the landmarks are arg-mins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check
from lrpilot.finder._features import CurveFeatures, _smooth, curve_features, smooth_curve
from lrpilot.finder._suggestion import Suggestion, as_curve

__all__ = ["PEAK_FACTOR", "STEPS_EXPONENT", "S_REF", "lrpilot", "lrpilot_band", "steps_per_decade"]

PEAK_FACTOR = 0.35
"""The recipe's peak as a fraction of the smoothed curve's minimum (at `S_REF` steps per decade)."""

S_REF = 99 / 8
"""Steps per decade of the default test (100 steps from 1e-7 to 10)."""

STEPS_EXPONENT = 0.6
"""How the minimum moves with the ramp's speed: ``lr_min ∝ s ** -STEPS_EXPONENT``."""


def steps_per_decade(lrs: npt.NDArray[np.float64], index: int, steps_per_point: float = 1.0) -> float:
    """Optimizer steps per decade of LR around point `index` (constant for an exponential ramp,
    growing with the LR for a linear one)."""
    u = np.log10(lrs)
    du = float(np.gradient(u)[index]) if len(u) > 1 else 1.0
    return steps_per_point / du if du > 0 else math.inf


def _peak_at(lrs: npt.NDArray[np.float64], i_min: int, steps_per_point: float) -> float:
    s = steps_per_decade(lrs, i_min, steps_per_point)
    return float(PEAK_FACTOR * lrs[i_min] * (s / S_REF) ** STEPS_EXPONENT)


def _peak(f: CurveFeatures, steps_per_point: float) -> float:
    return _peak_at(np.asarray(f.lrs), f.i_min, steps_per_point)


def lrpilot(
    lrs: Sequence[float] | npt.ArrayLike,
    losses: Sequence[float] | npt.ArrayLike,
    *,
    steps_per_point: float = 1.0,
) -> Suggestion:
    """lrpilot's suggestion: the peak LR of a warmup + decay recipe (see the module docstring).

    Args:
        lrs, losses: the raw curve (NaN/Inf allowed: the curve is cut at the first one).
        steps_per_point: optimizer steps between points (`val_every` of a validation-mode test).

    Raises:
        ValueError: fewer than 5 finite points before the first NaN/Inf, or a curve that is
            lowest at its first point (the range starts above every usable LR).
    """
    check.positive("lrpilot", "steps_per_point", steps_per_point)
    f = curve_features(lrs, losses)
    if f.i_min == 0:
        raise ValueError(
            f"lrpilot: the smoothed loss is lowest at the first LR ({f.lrs[0]:.3g}) and never falls below it: "
            "either the range starts above every usable LR (lower start_lr) or the model learnt nothing "
            "within the test (more steps; check the loss and which parameters train)"
        )
    return Suggestion("lrpilot", _peak(f, steps_per_point), f.i_min)


def lrpilot_band(
    lrs: Sequence[float] | npt.ArrayLike,
    losses: Sequence[float] | npt.ArrayLike,
    *,
    steps_per_point: float = 1.0,
    resamples: int = 64,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(low, median, high)``: the median of `lrpilot`'s suggestion over curves resampled from this
    one (a block bootstrap of the residuals around the smoothed curve) and its 10th and 90th
    percentiles, estimated robustly (median ± 1.28 σ, σ from the median absolute deviation in
    log-LR, so a few resamples whose minimum lands elsewhere do not stretch it).

    It says how much the answer depends on the batches the test happened to draw; deterministic
    for a given `seed`. Resamples without a clear fall (``drop_sigma < 2.5``) are left out: they
    carry no answer, and their arbitrary minima would stretch the band to the start of the range.
    """
    x, y = as_curve(lrs, losses, "lrpilot_band")
    f = curve_features(x, y)
    x, y = x[: f.usable], y[: f.usable]
    base = smooth_curve(x, y)
    residuals = y - base
    rng = np.random.default_rng(seed)
    block = 5
    n = len(y)
    starts_max = max(1, n - block + 1)
    noise = np.empty((resamples, n))
    for r in range(resamples):
        starts = rng.integers(0, starts_max, size=math.ceil(n / block))
        noise[r] = np.concatenate([residuals[s : s + block] for s in starts])[:n]
    # every resample's `curve_features` at once: the smoothing is one matrix product
    curves = base + noise
    smoothed = _smooth(x, curves, 0.2)
    rows = np.arange(resamples)
    i_min = np.argmin(smoothed, axis=1)
    drop = np.maximum.accumulate(smoothed, axis=1)[rows, i_min] - smoothed[rows, i_min]
    second = np.diff(curves, n=2, axis=1)
    mad = np.median(np.abs(second - np.median(second, axis=1, keepdims=True)), axis=1)
    level = 1.4826 * mad / math.sqrt(6.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop_sigma = np.where(level > 0, drop / level, math.inf)
    keep = (i_min > 0) & (drop_sigma >= 2.5)  # resamples without a clear fall carry no answer
    out = [math.log(_peak_at(x, int(i), steps_per_point)) for i in i_min[keep]]
    if not out:  # pragma: no cover
        p = _peak(f, steps_per_point)
        return p, p, p
    logs = np.asarray(out)
    mid = float(np.median(logs))
    spread = 1.2816 * 1.4826 * float(np.median(np.abs(logs - mid)))  # 10-90 % of a normal, robustly
    return math.exp(mid - spread), math.exp(mid), math.exp(mid + spread)
