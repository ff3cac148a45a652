"""Faithful re-implementations of the suggestion rules of fastai, PyTorch Lightning and
torch-lr-finder, from their published source, as baselines for lrpilot's own rule.

Each takes the *raw* curve ``(lrs, losses)`` of a range test and runs the tool's whole pipeline on
it: the tool's smoothing, the tool's divergence stop (the curve is cut where the tool would have
stopped recording), the tool's trims, then the tool's rule. Feeding one raw record to every rule
is therefore a like-for-like comparison of what each tool would have suggested from the same
training steps. Differences from the tools that remain: the LR ladder is the runner's (each tool's
ladder differs slightly, see the anchors), and fastai's trim uses the number of points given
(fastai uses the planned ``num_it``; the two agree unless the curve stopped early).

Sources (read from the tools' repositories):

* fastai ``fastai/callback/schedule.py`` (``lr_find``, ``valley``, ``slide``, ``minimum``, ``steep``;
  NaN truncation from PR #3477) and ``fastai/learner.py`` (``AvgSmoothLoss``, β = 0.98 debiased);
  stop: ``smooth_loss > 4 * best_loss`` (``LRFinder.after_batch``).
* PyTorch Lightning ``src/lightning/pytorch/tuner/lr_finder.py`` (``_LRCallback``: β = 0.98, debiased
  one step late, stop ``> 4 * best`` from the second point; ``_LRFinder.suggestion``: skip 10 / 1,
  drop non-finite, argmin of ``torch.gradient(loss, spacing=[lrs])``, i.e. d loss / d lr, after
  PR #21055). Checked against lightning 2.6: the smoothed curve matches to the last bit.
* torch-lr-finder ``torch_lr_finder/lr_finder.py`` (``range_test``: EMA with weight 0.05 on the new
  loss, seeded with the first loss, no bias correction; stop ``loss > 5 * best_loss``; ``plot(
  suggest_lr=True)``: skip 10 / 5, argmin of ``np.gradient(losses)`` in index spacing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lrpilot.finder._curve import ema
from lrpilot.finder._suggestion import Suggestion, as_curve

__all__ = [
    "fastai_minimum",
    "fastai_slide",
    "fastai_steep",
    "fastai_valley",
    "lightning",
    "torch_lr_finder",
]

Array = npt.NDArray[np.float64]


def _cut_at_ratio_stop(smoothed: Array, factor: float, first_check: int, *, best_first: bool) -> int:
    """Points a tool records before its ``smoothed > factor * best`` stop fires (the firing point
    is recorded too). `best_first`: the best is updated with the current point before the check
    (fastai) or after it (Lightning). NaN never fires it, as in the tools."""
    best = math.inf
    for i, value in enumerate(smoothed):
        if best_first:
            best = min(best, value)
        if i >= first_check and value > factor * best:
            return i + 1
        if not best_first:
            best = min(best, value)
    return len(smoothed)


def _fastai_curve(
    lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike
) -> tuple[Array, Array, int]:
    """fastai's recorder (β = 0.98 debiased, 4× stop) and ``lr_find``'s trim ``[num_it//10:-5]`` and
    NaN cut; returns the trimmed curve and the offset of its first point in the input."""
    x, y = as_curve(lrs, losses)
    num_it = len(x)
    smoothed = ema(y, 0.98)
    n = _cut_at_ratio_stop(smoothed, 4.0, 0, best_first=True)
    start = num_it // 10
    x, s = x[:n][start:-5], smoothed[:n][start:-5]  # the recorder holds n points; lr_find slices them
    nan = np.flatnonzero(np.isnan(s))
    if nan.size:
        x, s = x[: nan[0]], s[: nan[0]]
    if len(x) < 2:
        raise ValueError(f"fastai: too few points after the trims ({len(x)}); run a longer range test")
    return x, s, start


def fastai_valley(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> Suggestion:
    """fastai's default ``valley``: the longest strictly decreasing subsequence of the smoothed
    curve (an O(n²) scan), then the point ``start + ⌊L/3⌋ + ⌊L/6⌋`` of it (about its middle)."""
    x, s, offset = _fastai_curve(lrs, losses)
    n = len(s)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return Suggestion("fastai_valley", float(x[idx]), offset + idx)


def fastai_slide(
    lrs: Sequence[float] | npt.ArrayLike,
    losses: Sequence[float] | npt.ArrayLike,
) -> Suggestion:
    """fastai's ``slide`` (``lr_diff=15, thresh=0.005, adjust_value=1``): from the right end, slide a
    15-point window left while the gradients (index spacing) at its ends differ by more than 0.005;
    the LR at the window's left end."""
    x, s, offset = _fastai_curve(lrs, losses)
    lr_diff, thresh = 15, 0.005
    grad = np.gradient(s)
    r_idx = -1
    l_idx = r_idx - lr_diff
    if -l_idx > len(s):
        raise ValueError(f"fastai_slide: needs more than {lr_diff} points after the trims, got {len(s)}")
    local = l_idx
    while l_idx >= -len(s) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        local = l_idx
        r_idx -= 1
        l_idx -= 1
    idx = len(s) + local
    return Suggestion("fastai_slide", float(x[idx]), offset + idx)


def fastai_minimum(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> Suggestion:
    """fastai's ``minimum``: the LR of the smoothed minimum, divided by 10."""
    x, s, offset = _fastai_curve(lrs, losses)
    idx = int(np.argmin(s))
    return Suggestion("fastai_minimum", float(x[idx]) / 10.0, offset + idx)


def fastai_steep(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> Suggestion:
    """fastai's ``steep``: the point where ``Δloss / Δlog(lr)`` between neighbours is most negative."""
    x, s, offset = _fastai_curve(lrs, losses)
    grads = (s[1:] - s[:-1]) / (np.log(x[1:]) - np.log(x[:-1]))
    idx = int(np.argmin(grads))
    return Suggestion("fastai_steep", float(x[idx]), offset + idx)


def lightning(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> Suggestion:
    """Lightning's ``Tuner.lr_find`` suggestion: β = 0.98 EMA debiased with ``β^(global_step + 1)``
    where ``global_step`` is already 1 at the first point (``_LRCallback.on_train_batch_end`` runs
    after the optimizer step), so point ``i`` is divided by ``1 - β^(i + 2)``; the 4× stop from the
    second point on; skip 10 first and 1 last; drop non-finite; argmin of d loss / d lr."""
    x, y = as_curve(lrs, losses)
    beta = 0.98
    smoothed = np.empty_like(y)
    avg = 0.0
    for i, value in enumerate(y):
        avg = beta * avg + (1 - beta) * value
        smoothed[i] = avg / (1 - beta ** (i + 2))
    n = _cut_at_ratio_stop(smoothed, 4.0, 1, best_first=False)
    x, s = x[:n], smoothed[:n]
    keep = np.arange(len(s))[10:-1]
    keep = keep[np.isfinite(s[keep])]
    if len(keep) < 2:
        raise ValueError(f"lightning: needs at least 2 finite points after skipping 10 + 1, got {len(keep)}")
    grads = np.gradient(s[keep], x[keep])
    idx = int(keep[int(np.argmin(grads))])
    return Suggestion("lightning", float(x[idx]), idx)


def torch_lr_finder(lrs: Sequence[float] | npt.ArrayLike, losses: Sequence[float] | npt.ArrayLike) -> Suggestion:
    """torch-lr-finder's ``plot(suggest_lr=True)``: EMA weight 0.05 on the new loss seeded with the
    first loss (no bias correction), the 5× stop, skip 10 first and 5 last, argmin of
    ``np.gradient`` in index spacing. NaNs are not filtered, as in the tool (argmin then picks the
    first NaN)."""
    x, y = as_curve(lrs, losses)
    smoothed = np.empty_like(y)
    best = math.inf
    n = len(y)
    for i, value in enumerate(y):
        smoothed[i] = value if i == 0 else 0.05 * value + 0.95 * smoothed[i - 1]
        if i == 0 or smoothed[i] < best:
            best = smoothed[i]
        if smoothed[i] > 5.0 * best:
            n = i + 1
            break
    x, s = x[:n][10:-5], smoothed[:n][10:-5]
    if len(s) < 2:
        raise ValueError(f"torch_lr_finder: needs at least 2 points after skipping 10 + 5, got {len(s)}")
    idx = int(np.argmin(np.gradient(s)))
    return Suggestion("torch_lr_finder", float(x[idx]), 10 + idx)
