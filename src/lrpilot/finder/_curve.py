"""The range test's moving parts, framework-free: the LR ramp, the smoothing and the stop rule.

A runner (``lrpilot.integrations.torch_finder``) asks `ramp_schedule` for the LR of each optimizer
step and feeds every loss to a `RangeTestMonitor`, which smooths it and says when to stop. The same
`ema` and `DivergenceRule` run offline over a stored curve and give the same answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check
from lrpilot.finder._features import (
    CLEAR_FALL,
    noise_level,
    running_median,
    second_difference_noise,
    smoothed_minimum,
)
from lrpilot.finder._record import RAMPS
from lrpilot.finder._suggestion import as_curve
from lrpilot.schedules import Anneal

__all__ = ["SETTLE", "DivergenceRule", "RangeTestMonitor", "default_beta", "ema", "ramp_schedule"]


SETTLE = 0.65
"""Decades of LR past the minimum at which `DivergenceRule.settle` stops a test that asks for it
(fit's does). The zero-phase smoothing's bandwidth is 0.2 decades, so points 0.65 decades on weigh
under 1 % at the minimum. Replayed on the 139 stored curves (``python benchmarks/range_test_budget.py
--settle``), 0.65 moved no answer by more than 0.001 decades and cut fit's SST-2 tests from 51–55
to 44 steps; 0.5 moved one by 0.08 decades; without the rise condition a plateau between two falls
(small-batch curves) ended five tests early, one answer 2.5 decades off."""


def ramp_schedule(
    start_lr: float, end_lr: float, num_steps: int, ramp: str = "exp", *, owner: str = "ramp_schedule"
) -> Anneal:
    """The range test's LR as an lrpilot schedule: step 0 uses `start_lr`, step ``num_steps - 1``
    uses `end_lr` exactly, geometric (``"exp"``) or linear in between.

    Both ends are hit exactly (torch-lr-finder's convention ``r = i / (num_steps - 1)``); Lightning's
    ladder skips its second rung (PR #21931) and fastai's never reaches `end_lr`.

    >>> ramp = ramp_schedule(1e-5, 1e-1, 5)
    >>> [f"{ramp(i):.0e}" for i in range(5)]
    ['1e-05', '1e-04', '1e-03', '1e-02', '1e-01']

    `owner`: the function a bad argument's error names (``find_lr``, whose arguments these are).
    """
    start = check.positive(owner, "start_lr", start_lr)
    end = check.positive(owner, "end_lr", end_lr)
    n = check.step_count(owner, "num_steps", num_steps, 2)
    check.choice(owner, "ramp", ramp, RAMPS)
    if start >= end:
        raise ValueError(f"{owner}: start_lr must be < end_lr, got start_lr={start!r}, end_lr={end!r}")
    return Anneal(start, end, n - 1, shape="exp" if ramp == "exp" else "linear")


def default_beta(num_points: int) -> float:
    """The EMA coefficient for a curve of `num_points` points: a window of ~10 % of the curve
    (0.9 for 100 points, 0.99 for 1,000), never below 0.5.

    fastai and Lightning use β = 0.98, a 50-step window, on a 100-step test: half the curve, which
    drags the smoothed minimum several ramp steps (about half a decade) to the right. A window that
    is a fixed fraction of the curve covers the same span of log-LR whatever the step count, so the
    answer does not swing with `num_steps` (torch-lr-finder #68: 100 vs 1,000 steps gave 36×).
    """
    n = check.step_count("default_beta", "num_points", num_points, 1)
    return min(0.99, max(0.5, 1.0 - 10.0 / n))


def ema(losses: Sequence[float] | npt.ArrayLike, beta: float = 0.9) -> npt.NDArray[np.float64]:
    """Bias-corrected exponential moving average (Adam's correction, fastai's ``AvgSmoothLoss``):
    ``m_t = β m_{t-1} + (1 - β) x_t``, reported as ``m_t / (1 - β^(t+1))``.

    Without the correction (torch-lr-finder) the first points are pulled towards 0, or towards the
    first loss when the average is seeded with it, which fakes a fall at the start of the curve.
    Once a loss is non-finite every later smoothed value is NaN: a curve does not recover from it.

    >>> [round(float(v), 6) for v in ema([2.0, 2.0, 2.0], beta=0.9)]
    [2.0, 2.0, 2.0]
    """
    beta = check.in_range("ema", "beta", beta, 0.0, 1.0, high_open=True)
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    out = np.empty_like(x)
    m = 0.0
    broken = False
    for t, value in enumerate(x):
        broken = broken or not math.isfinite(value)
        if broken:
            out[t] = math.nan
            continue
        m = beta * m + (1.0 - beta) * value
        out[t] = m / (1.0 - beta ** (t + 1))
    return out


@dataclass(frozen=True)
class DivergenceRule:
    """When a range test has gone past the usable LRs.

    Non-finite losses stop the test at once (checked first: ``loss > 4 * best`` is False for NaN,
    so torch-lr-finder's rule never stops on it). Otherwise the test stops when the smoothed loss
    has risen above the best smoothed loss by `rise` times the *drop* so far (first smoothed value
    minus best), i.e. it has given back that fraction of what it learnt. A curve that has not
    fallen much uses `noise_mult` times the raw loss's noise as its drop, so only a clear rise
    stops it. The noise (`noise_level`) is the larger of the whole curve's and that of the
    `noise_window` points up to the best smoothed point: it changes along the test (a pretrained
    classifier's loss is nearly constant at tiny LRs and varies from batch to batch once it
    learns), and a level taken from the quiet start would let one hard batch stop the test. The
    points after the best are left out: a blow-up there is the divergence itself, not noise (read
    over the last points, it raised the threshold as fast as the loss, and a fully fine-tuned
    MiniLM's smoothed loss climbed from 0.55 to over 100 without stopping the test).

    A test also stops once it has *given back everything it learnt*: after a clear fall (at
    least `clear_fall` noise levels of the smoothed loss below the start, the median of the first
    `min_points` losses, to a lowest point at least ``2 * min_points`` in), the smoothed loss is
    back `give_back` noise levels above the start. A fine-tuned classifier under gradient clipping
    drifts back to chance, its starting loss, rather than blowing up; its raw loss is noisy, so
    the rise rule's threshold sat far above chance and the test ran on for 2–3 decades past the
    minimum (28–41 steps of SST-2's 71–100). The smoothed loss's noise is the raw loss's times
    ``sqrt((1 - beta) / (1 + beta))``, the EMA's.

    With `settle` (opt-in), a test also stops once the minimum lrpilot's rule reads is *settled*:
    on the zero-phase smoothing (`lrpilot.finder.smooth_curve`, which has no lag) the fall is clear
    (`CLEAR_FALL` noise levels), the minimum lies `settle` decades of LR behind the current point,
    and the loss has given back `rise` of the drop since. Later points no longer move that minimum
    (the smoothing's Gaussian weights at `SETTLE` are below 1 %), so the rest of the curve only
    costs steps: the lagging average's rules fire later (fit's SST-2 tests took 51–55 steps on
    average without it, 44 with it). Needs the LRs (``RangeTestMonitor.update(loss, lr)``).

    A rise of `rel_floor` of the loss's magnitude is always tolerated: validation losses on fixed
    batches have almost no noise, and a flat start that wobbles by 0.1 % is not a divergence.

    The rule compares differences, not ratios: adding a constant to the loss changes nothing as
    long as the drop exceeds that floor, so it works for negative losses (log-likelihoods, ELBOs),
    where ``loss > 4 * best`` stops at once (fastai #962), and for losses near zero, where
    ``4 * best`` is no margin at all.

    Attributes:
        rise: fraction of the drop the loss must give back (default 0.5).
        noise_mult: the smallest drop, in units of the raw loss's noise (default 20: with
            ``rise = 0.5`` a flat curve must climb 10 noise levels above its lowest smoothed point,
            which noise does not do, even early on, when the average is still a mean of a few
            points and the noise estimate is rough).
        min_points: no stop before this many points: the noise estimate needs a few (10 points
            of a 100-step test from 1e-7 end below 1e-6).
        noise_window: the points, up to the best smoothed one, the recent noise is measured on.
        rel_floor: the smallest drop, relative to ``max(|first|, |best|)`` (default 1 %).
        clear_fall: the fall, in noise levels of the smoothed loss, after which giving it all back
            stops the test (default 8; ``math.inf`` turns the give-back stop off).
        give_back: how far above the start, in the same units, the smoothed loss must come back
            (default 3).
        settle: decades of LR past the settled minimum after which the test stops (default
            ``math.inf``: never; `SETTLE` is the smallest that moved no suggestion).
    """

    rise: float = 0.5
    noise_mult: float = 20.0
    min_points: int = 10
    noise_window: int = 20
    rel_floor: float = 0.01
    clear_fall: float = 8.0
    give_back: float = 3.0
    settle: float = math.inf

    def __post_init__(self) -> None:
        check.positive("DivergenceRule", "rise", self.rise)
        check.non_negative("DivergenceRule", "noise_mult", self.noise_mult)
        check.step_count("DivergenceRule", "min_points", self.min_points, 1)
        check.step_count("DivergenceRule", "noise_window", self.noise_window, 3)
        check.non_negative("DivergenceRule", "rel_floor", self.rel_floor)
        clear_fall: object = self.clear_fall  # may be math.inf, which `check` refuses
        if isinstance(clear_fall, bool) or not isinstance(clear_fall, Real) or not float(clear_fall) >= 0:
            valid = "a number ≥ 0 (math.inf: no give-back stop)"
            raise ValueError(f"DivergenceRule: clear_fall must be {valid}, got {clear_fall!r}")
        check.non_negative("DivergenceRule", "give_back", self.give_back)
        settle: object = self.settle
        if isinstance(settle, bool) or not isinstance(settle, Real) or not float(settle) > 0:
            raise ValueError(f"DivergenceRule: settle must be > 0 decades (math.inf: no settled stop), got {settle!r}")

    def threshold(self, first: float, best: float, noise: float = 0.0) -> float:
        """The smoothed loss above which the test stops, given the first and the best smoothed
        loss and the raw loss's noise."""
        magnitude = max(abs(first), abs(best))
        drop = max(first - best, self.noise_mult * noise, self.rel_floor * magnitude, 1e-12 * max(1.0, magnitude))
        return best + self.rise * drop

    def gave_back(self, start: float, best: float, value: float, noise: float) -> bool:
        """Whether the smoothed loss `value` is back above the `start` level after a clear fall to
        `best` (`noise`: the smoothed loss's noise; both margins at least `rel_floor` of the loss)."""
        floor = self.rel_floor * max(abs(start), abs(best))
        fell = start - best >= max(self.clear_fall * noise, floor)
        return fell and value > start + max(self.give_back * noise, floor)

    def settled(self, lrs: Sequence[float], losses: Sequence[float]) -> bool:
        """Whether the minimum of the finite curve ``(lrs, losses)`` is settled (see the class
        docstring); False without `settle`."""
        if not math.isfinite(self.settle) or len(losses) < max(self.min_points, 5):
            return False
        x, y = as_curve(lrs, losses, "DivergenceRule.settled")
        bad = np.flatnonzero(~np.isfinite(y))
        usable = int(bad[0]) if bad.size else len(y)
        if usable < 5:
            return False
        return self._settled(x, y[:usable], running_median(y[:usable]), noise_level(y[:usable]))

    def _settled(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], medians: npt.NDArray[np.float64], noise: float
    ) -> bool:
        """`settled` of a checked curve at the LRs `x`, given the losses `y` of its finite start (at
        least 5 points), their `running_median` and `noise_level` (which `RangeTestMonitor` keeps
        from point to point). How far the test went past the minimum counts every LR in `x`."""
        smoothed, i_min, _, drop = smoothed_minimum(x[: y.size], y, medians=medians)  # `curve_features`' minimum
        clear = i_min > 0 and (drop / noise if noise > 0 else math.inf) >= CLEAR_FALL
        behind = math.log10(float(x[-1]) / float(x[i_min])) >= self.settle
        return clear and behind and float(smoothed[-1]) >= float(smoothed[i_min]) + self.rise * drop

    def first_stop(
        self, losses: Sequence[float] | npt.ArrayLike, beta: float = 0.9, lrs: Sequence[float] | None = None
    ) -> int | None:
        """The index at which a test seeing the raw `losses` (smoothed with `beta`; at `lrs`, which
        `settle` needs) stops, or None if it runs to the end."""
        monitor = RangeTestMonitor(beta=beta, rule=self)
        for i, value in enumerate(np.asarray(losses, dtype=np.float64).reshape(-1)):
            if monitor.update(float(value), None if lrs is None else float(lrs[i])) is not None:
                return i
        return None


@dataclass
class RangeTestMonitor:
    """Online smoothing and stop decision for a runner: ``update(loss, lr)`` per point, in order.

    Returns None to go on, or the stop reason (``"non-finite"``, ``"diverged"`` or, with the
    rule's `settle`, ``"settled"``). `smoothed` holds the bias-corrected EMA so far, identical to
    ``ema(losses, beta)`` offline.
    """

    beta: float = 0.9
    rule: DivergenceRule = field(default_factory=DivergenceRule)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    _m: float = field(default=0.0, init=False, repr=False)
    _best: float = field(default=math.inf, init=False, repr=False)
    _i_best: int = field(default=0, init=False, repr=False)
    _start: float = field(default=math.nan, init=False, repr=False)
    _medians: npt.NDArray[np.float64] | None = field(default=None, init=False, repr=False)  # at the last check
    _checked: int = field(default=0, init=False, repr=False)  # LRs known to be positive and increasing
    _recent: tuple[int, float] = field(default=(-1, 0.0), init=False, repr=False)  # (end, noise) of `recent`
    _second: list[float] = field(default_factory=list, init=False, repr=False)  # the losses' second differences

    def __post_init__(self) -> None:
        check.in_range("RangeTestMonitor", "beta", self.beta, 0.0, 1.0, high_open=True)

    def update(self, loss: float, lr: float | None = None) -> str | None:
        """Record one raw loss (at `lr`, which the rule's `settle` needs); the stop reason, or None."""
        loss = float(loss)
        if math.isfinite(self.rule.settle):
            if lr is None:
                raise ValueError("RangeTestMonitor.update: the rule's settle needs the LR of every point (lr=...)")
            self.lrs.append(float(lr))
        self.losses.append(loss)
        if len(self.losses) >= 3:  # `numpy.diff(losses, n=2)`'s arithmetic, one point at a time
            y = self.losses
            self._second.append((y[-1] - y[-2]) - (y[-2] - y[-3]))
        previous = self.smoothed[-1] if self.smoothed else 0.0
        if not math.isfinite(loss) or not math.isfinite(previous):
            self.smoothed.append(math.nan)
            return "non-finite"
        self._m = self.beta * self._m + (1.0 - self.beta) * loss
        value = self._m / (1.0 - self.beta ** len(self.losses))
        self.smoothed.append(value)
        if value < self._best:
            self._best, self._i_best = value, len(self.smoothed) - 1
        if len(self.smoothed) < self.rule.min_points:
            return None
        end = self._i_best + 1  # the recent noise is read up to the best point: a blow-up is no noise
        if self._recent[0] != end:  # the same points, until the best moves
            start = max(0, end - self.rule.noise_window)  # `noise_level(self.losses[start:end])`:
            self._recent = end, second_difference_noise(np.array(self._second[start : max(start, end - 2)]))
        whole = second_difference_noise(np.array(self._second))  # `noise_level(self.losses)`
        noise = max(whole, self._recent[1])
        if value > self.rule.threshold(self.smoothed[0], self._best, noise):
            return "diverged"
        # a fall is judged once the average has settled (early on it is a mean of a few points)
        if len(self.losses) == self.rule.min_points:  # the start level: fixed once its points are in
            self._start = float(np.median(self.losses))
        fallen = self._i_best >= 2 * self.rule.min_points
        smoothed_noise = noise * math.sqrt((1.0 - self.beta) / (1.0 + self.beta))
        if fallen and self.rule.gave_back(self._start, self._best, value, smoothed_noise):
            return "diverged"
        return "settled" if self._settled(whole) else None

    def _settled(self, noise: float) -> bool:
        """`DivergenceRule.settled` of the curve so far (`noise`: its `noise_level`), its running
        median carried from the last point's (every loss is finite here: a non-finite one stops)."""
        rule = self.rule
        if not math.isfinite(rule.settle) or len(self.losses) < max(rule.min_points, 5):
            return False
        lrs = self.lrs
        for i in range(self._checked, len(lrs)):  # `as_curve`'s checks, on the LRs not checked yet
            if not (math.isfinite(lrs[i]) and lrs[i] > 0 and (i == 0 or lrs[i] > lrs[i - 1])):
                return rule.settled(lrs, self.losses)  # raises its error
        self._checked = len(lrs)
        y = np.array(self.losses)
        self._medians = running_median(y, self._medians)
        return rule._settled(np.array(lrs), y, self._medians, noise)
