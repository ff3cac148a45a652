"""lrpilot's own rule: the peak LR of a warmup + decay recipe, read off a range-test curve.

**What the curve can tell.** A range test shows, per LR, whether a few steps at that LR still
lower the loss. Its *minimum* is where the LR starts to cost more (noise, instability) than it
gains over the handful of steps the test spends there; past the *edge of stability* the loss
rises. A full recipe warms up to its peak and decays afterwards, which lets its peak sit close
to, but below, that minimum: the steepest-descent point that torch-lr-finder and Lightning return
lies far below it on most curves (a decade on a char-level transformer), and the minimum itself is
about where training starts to go wrong (fastai divides it by 10 for a constant LR).

**The rule.** ``peak = factor(p) × lr_min × (s / S_REF) ** STEPS_EXPONENT``, where `lr_min` is
the minimum of a zero-phase, spike-robust smoothing of the curve (`smooth_curve`; no lag, so it
does not drift with the smoothing window) and ``s`` the optimizer steps per decade of LR there.
A slower ramp spends more steps at each LR, so its minimum sits lower (about as ``s ** -0.6`` on
the calibration curves); the correction makes a 300-step test give the 100-step answer, where
existing rules swing by 36× (torch-lr-finder #68).

**What the test learnt.** A range test trains as it ramps, and the loss it records is the sum of
two effects: the LR of the moment, and everything learnt at the LRs before it. A model that learns
most of its loss within the test (a small MLP on digits took 71–75 % of its loss off in ~65 steps)
keeps lowering its loss past the point where the LR alone would have started to cost, so its
minimum sits further above the recipe's best peak: 0.12–0.21× the minimum on digits (its best LRs
are flat between 2.2e-3 and 3.2e-3), against 0.22–0.32× for a char-level transformer that learnt
30 % and 0.21–0.86× for fine-tuning runs that learnt 16–38 %. ``factor(p) = PEAK_FACTOR × ((1 - p)
/ (1 - PROGRESS_REF)) ** PROGRESS_EXPONENT`` with ``p`` the share of the loss the test took off
(`learnt_share`). Digits is the task that sets the exponent: left out of the fit (fast mode), its
excess loss is 0.3 % with the exponent fitted on the other three tasks, 15 % with a constant factor
(``benchmarks/README.md``, which also shows where this rests on too few tasks).

The constants were fitted on lrpilot's calibration suite (the built-in tasks' oracle sweeps and
variants of them: see ``benchmarks/README.md``), not per task; they are the same for every model.

**Scale-invariant.** Multiplying the losses by a positive number leaves the answer unchanged (the
smoothing is linear, the landmarks are arg-mins, the learnt share a ratio). The learnt share
reads the loss against its zero, which a cross-entropy or squared error has; a loss that is not
positive throughout (a shifted or negative log-likelihood) has no such reference, gets the
factor at `PROGRESS_REF`, and there adding a constant changes nothing either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check
from lrpilot.finder._features import CurveFeatures, _smooth, curve_features, smooth_curve
from lrpilot.finder._suggestion import Suggestion, as_curve

__all__ = [
    "MAX_PROGRESS",
    "PEAK_FACTOR",
    "PROGRESS_EXPONENT",
    "PROGRESS_REF",
    "STEPS_EXPONENT",
    "S_REF",
    "curve_learnt_share",
    "learnt_share",
    "lrpilot",
    "lrpilot_band",
    "peak_factor",
    "steps_per_decade",
]

PEAK_FACTOR = 0.35
"""The recipe's peak as a fraction of the smoothed curve's minimum (at `S_REF` steps per decade,
for a test that learnt `PROGRESS_REF` of its loss)."""

PROGRESS_REF = 0.3
"""The learnt share at which the factor is `PEAK_FACTOR`: the middle of the calibration suite
(fine-tuning 0.16–0.38, the char-level transformer 0.30–0.33, digits 0.71–0.75)."""

PROGRESS_EXPONENT = 0.7
"""How the factor falls as the test learns more: ``((1 - p) / (1 - PROGRESS_REF)) ** 0.7``, fitted
jointly with `PEAK_FACTOR` (0.356 and 0.68 minimise the suite's mean excess loss; 0.356 and 0.75
its mean regret)."""

MAX_PROGRESS = 0.8
"""The learnt share is capped here: the suite's largest is 0.75, and the correction is not
extrapolated towards a test that learnt everything (where it would go to zero)."""

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


def learnt_share(loss_start: float, loss_min: float, positive: bool = True) -> float:
    """The share of its loss a range test took off, ``(loss_start - loss_min) / loss_start`` in
    [0, `MAX_PROGRESS`], for a `positive` loss (every raw value > 0); `PROGRESS_REF` otherwise.

    >>> round(learnt_share(2.3, 0.6), 3), round(learnt_share(0.69, 0.55), 3), learnt_share(-1.0, -3.0, positive=False)
    (0.739, 0.203, 0.3)
    """
    if not positive:
        return PROGRESS_REF
    if loss_start <= 0:
        return MAX_PROGRESS
    return float(min(max((loss_start - loss_min) / loss_start, 0.0), MAX_PROGRESS))


def peak_factor(share: float) -> float:
    """The recipe's peak as a fraction of the (ramp-corrected) minimum, for a test that learnt
    `share` of its loss (see the module docstring).

    >>> round(peak_factor(PROGRESS_REF), 3), round(peak_factor(0.74), 3)
    (0.35, 0.175)
    """
    return float(PEAK_FACTOR * ((1.0 - share) / (1.0 - PROGRESS_REF)) ** PROGRESS_EXPONENT)


def _peak_at(lrs: npt.NDArray[np.float64], i_min: int, steps_per_point: float, share: float) -> float:
    s = steps_per_decade(lrs, i_min, steps_per_point)
    return float(peak_factor(share) * lrs[i_min] * (s / S_REF) ** STEPS_EXPONENT)


def _peak(f: CurveFeatures, steps_per_point: float, positive: bool) -> float:
    share = learnt_share(f.loss_start, f.loss_min, positive)
    return _peak_at(np.asarray(f.lrs), f.i_min, steps_per_point, share)


def _positive(losses: npt.NDArray[np.float64]) -> bool:
    """Whether every finite loss is above zero (the learnt share's reference)."""
    finite = losses[np.isfinite(losses)]
    return bool(finite.size) and bool(np.all(finite > 0))


def curve_learnt_share(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> float:
    """`learnt_share` of a raw range-test curve, as `lrpilot` reads it (the smoothed curve's start
    and minimum, over the points before the first NaN/Inf)."""
    x, y = as_curve(lrs, losses, "curve_learnt_share")
    f = curve_features(x, y)
    return learnt_share(f.loss_start, f.loss_min, _positive(y[: f.usable]))


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
    x, y = as_curve(lrs, losses, "lrpilot")
    f = curve_features(x, y)
    if f.i_min == 0:
        raise ValueError(
            f"lrpilot: the smoothed loss is lowest at the first LR ({f.lrs[0]:.3g}) and never falls below it: "
            "either the range starts above every usable LR (lower start_lr) or the model learnt nothing "
            "within the test (more steps; check the loss and which parameters train)"
        )
    return Suggestion("lrpilot", _peak(f, steps_per_point, _positive(y[: f.usable])), f.i_min)


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
    positive = _positive(y)
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
    start = np.maximum.accumulate(smoothed, axis=1)[rows, i_min]
    drop = start - smoothed[rows, i_min]
    second = np.diff(curves, n=2, axis=1)
    mad = np.median(np.abs(second - np.median(second, axis=1, keepdims=True)), axis=1)
    level = 1.4826 * mad / math.sqrt(6.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop_sigma = np.where(level > 0, drop / level, math.inf)
    keep = (i_min > 0) & (drop_sigma >= 2.5)  # resamples without a clear fall carry no answer
    out = [
        math.log(_peak_at(x, int(i), steps_per_point, learnt_share(float(a), float(a - d), positive)))
        for i, a, d in zip(i_min[keep], start[keep], drop[keep], strict=True)
    ]
    if not out:  # pragma: no cover
        p = _peak(f, steps_per_point, positive)
        return p, p, p
    logs = np.asarray(out)
    mid = float(np.median(logs))
    spread = 1.2816 * 1.4826 * float(np.median(np.abs(logs - mid)))  # 10-90 % of a normal, robustly
    return math.exp(mid - spread), math.exp(mid), math.exp(mid + spread)
