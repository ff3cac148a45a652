"""From range-test records (and, optionally, probe runs) to a `FinderResult`.

**Fast mode** (one range test, ≤ 100 optimizer steps): the peak is `lrpilot`'s suggestion
(several records: the geometric mean of theirs). The band is the bootstrap spread of that
suggestion (`lrpilot_band`: how much the answer depends on the batches drawn), widened by
`MODEL_ERROR`, the factor by which the calibration suite's best peaks scatter around the rule's
answer, and capped at the max stable LR.

**Thorough mode** repeats the range test (`thorough_tests`: 2 to 4 tests, each on fresh batches,
from the same starting state) and takes the geometric mean of their suggestions: the range test's
minimum moves with the batches it happened to draw (two tests of the same model disagreed by up to
2.1×, median 1.2×, on the built-in tasks), and averaging independent tests shrinks that part of the
error. It needs no constant of its own.

**Probes** (opt-in: ``find_lr(mode="thorough", probe_budget=...)``): short complete runs of the
recipe (warmup, then decay to the floor) from the user's starting state, on the same batches and
random state (so they differ only in their peak LR), scored by their final loss (the validation
loss when validation batches are given). The best peak moves with the run's length in a way that
depends on the problem, so probes of two lengths ``k1 < k2`` measure the exponent ``α`` of
``peak(N) = peak(k2) × (k2 / N) ** α`` (clipped to [0, 1] and averaged with a prior of 0.25), and
the run's peak is extrapolated from the longer probes; each stage refines its best candidate with a
parabola in log-LR. On the built-in tasks (``benchmarks/finder_regret.py``), probes of 8 to 23
steps could not pin down ``α`` for runs of 150 to 1,000 steps (the measured value hit both clips on
the same task): with them, thorough mode had 6× the mean regret of a single range test, so they are
no longer part of the default thorough mode.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrpilot import _validate as check
from lrpilot.finder._errors import RangeTestWarning
from lrpilot.finder._features import CLEAR_FALL, CurveFeatures, curve_features
from lrpilot.finder._record import RangeTestRecord
from lrpilot.finder._result import FinderResult, Probe, _check_records, recipe_schedule
from lrpilot.finder._rule import lrpilot, lrpilot_band
from lrpilot.rules._horizon import CALIBRATED_STEPS, at_horizon, calibrated_range

__all__ = [
    "ALPHA_SHRINK",
    "CLEAR_FALL",
    "HORIZON_PRIOR",
    "MODEL_ERROR",
    "MODES",
    "PROBES",
    "SHORT_RATIO",
    "ProbeChoice",
    "ProbePlan",
    "analyze",
    "choose_probe",
    "plan_probes",
    "probe_budget",
    "short_candidates",
    "thorough_tests",
]

MODES = ("fast", "thorough")
"""``fast``: one range test. ``thorough``: `thorough_tests` range tests (see the module docstring)."""

THOROUGH_TESTS = (2, 4)
"""The fewest and most range tests of thorough mode. Beyond 4, the rule's own calibration error
(`MODEL_ERROR`) dwarfs the batch-to-batch scatter that more tests would average away."""

MODEL_ERROR = 2.0
"""The band's widening factor beyond the bootstrap spread: the calibration suite's best peaks
scatter about ×/÷ 2 around the fast rule's answer on the built-in tasks. With it, the LRs at the
band's ends have a median regret of 0.03 on the suite: the band is the near-best region."""

HORIZON_PRIOR = 0.25
"""The horizon exponent assumed where it is not measured (placing the probes; one probe length)."""

PROBES = 3
"""Candidate peaks per probe stage."""

SHORT_RATIO = 2.5
"""The long probes are this many times longer than the short ones."""

MIN_LONG, MIN_SHORT = 20, 8
"""Shortest probes worth running: a few steps of warmup and decay say little about a run."""

ALPHA_SHRINK = 0.5
"""The measured horizon exponent is averaged with `HORIZON_PRIOR` with this weight: extrapolating
from ``k2`` to ``N`` multiplies its error by ``log(N / k2) / log(k2 / k1)`` (4× for 25 → 1,000)."""


@dataclass(frozen=True)
class _Fast:
    peak: float
    band: tuple[float, float]
    max_stable: float
    details: dict[str, Any]


def _steps_per_point(record: RangeTestRecord) -> float:
    return max(1.0, len(record.train_losses) / max(1, len(record))) if record.metric == "val" else 1.0


def _max_stable(f: CurveFeatures, record: RangeTestRecord) -> float:
    """The curve's edge of stability (`CurveFeatures.lr_stable`), but never an LR the test saw blow
    up: when one sharp step ended it (``diverged``) and the smoothing does not rise (its running
    median hides a last-point jump), the edge is the LR before that step."""
    if record.stop_reason == "diverged" and not f.rises:
        return f.lrs[f.usable - 2]
    return f.lr_stable


def _still_falling(records: dict[str, float]) -> None:
    """Warn about tests whose smoothed loss was lowest at their last point, by why each ended
    (`records`: stop reason → the LR it ended at): only a test that ran its whole range can be
    mended by a wider one."""
    if "completed" in records:
        warnings.warn(
            "the range test's loss was still falling at end_lr: the suggestion is a lower bound; raise end_lr",
            RangeTestWarning,
            stacklevel=4,
        )
    if "interrupted" in records:
        warnings.warn(
            f"the range test was interrupted at LR {records['interrupted']:.3g} while its loss was still falling: "
            "the suggestion is a lower bound; let the test run on",
            RangeTestWarning,
            stacklevel=4,
        )
    broke = [lr for reason, lr in records.items() if reason in ("diverged", "non-finite")]
    if broke:
        warnings.warn(
            f"the range test's loss fell until the step that ended it (a sudden rise or NaN at LR {min(broke):.3g}): "
            "its minimum is where that one batch stopped it, so the suggestion is less certain than its band; "
            "another seed or a slower ramp (more steps) tells a bad batch from the edge of stability",
            RangeTestWarning,
            stacklevel=4,
        )


def _fast(records: tuple[RangeTestRecord, ...]) -> _Fast:
    peaks, lows, highs, stables, clarity = [], [], [], [], []
    at_end: dict[str, float] = {}
    for r in records:
        x, y = r.arrays()
        spp = _steps_per_point(r)
        peaks.append(lrpilot(x, y, steps_per_point=spp).lr)
        lo, _, hi = lrpilot_band(x, y, steps_per_point=spp)
        lows.append(lo)
        highs.append(hi)
        f = curve_features(x, y)
        stables.append(_max_stable(f, r))
        clarity.append(f.drop_sigma)
        if f.i_min == f.usable - 1:
            at_end[r.stop_reason] = min(at_end.get(r.stop_reason, math.inf), float(x[-1]))  # where it ended
    peak = math.exp(float(np.mean(np.log(peaks))))
    stable = math.exp(float(np.mean(np.log(stables))))
    low = min(*lows, *peaks) / MODEL_ERROR
    high = max(*highs, *peaks) * MODEL_ERROR
    high = max(min(high, stable), peak)
    details = {
        "peaks": peaks,
        "bootstrap": [list(p) for p in zip(lows, highs, strict=True)],
        "lr_stable": stables,
        "drop_sigma": clarity,
    }
    if min(clarity) < CLEAR_FALL:
        warnings.warn(
            f"the range test's loss fell by only {min(clarity):.1f}× its noise (a clear fall is ≥ {CLEAR_FALL}): "
            "the suggestion is uncertain; run more steps, larger batches or repeats",
            RangeTestWarning,
            stacklevel=3,
        )
    _still_falling(at_end)
    return _Fast(peak, (low, high), stable, details)


def _to_horizon(
    fast: _Fast, total_steps: int, calibrated: tuple[int, int]
) -> tuple[float, tuple[float, float], dict[str, Any] | None]:
    """The fast answer's peak and band for a run of `total_steps` (`lrpilot.rules.at_horizon`),
    and what was done (None: the run is of a calibrated length, nothing moved)."""
    moved = at_horizon(fast.peak, total_steps, calibrated, ceiling=fast.max_stable)
    if moved.factor == 1.0:
        return fast.peak, fast.band, None
    ratio = moved.lr / fast.peak
    low, high = fast.band
    band = (low * ratio, max(min(high * ratio, fast.max_stable), moved.lr))
    return moved.lr, band, moved.to_dict()


def thorough_tests(total_steps: int, num_steps: int = 100) -> int:
    """Range tests of `num_steps` each that thorough mode runs for a run of `total_steps`: as many
    as 10 % of the run pays for, within `THOROUGH_TESTS` (so at least 2, even where 10 % of a short
    run buys fewer: thorough mode then costs more than 10 %; use the fast mode there).

    >>> thorough_tests(1_000), thorough_tests(3_000), thorough_tests(100_000)
    (2, 3, 4)
    """
    total = check.step_count("thorough_tests", "total_steps", total_steps, 1)
    steps = check.step_count("thorough_tests", "num_steps", num_steps, 1)
    low, high = THOROUGH_TESTS
    return max(low, min(high, int(0.1 * total) // steps))


def probe_budget(total_steps: int) -> int:
    """Default optimizer steps for all probes together: 10 % of the run, and at least the 84 that
    two stages of three probes of `MIN_LONG` and `MIN_SHORT` steps need."""
    minimum = PROBES * (MIN_LONG + MIN_SHORT)
    return max(minimum, round(0.1 * check.step_count("probe_budget", "total_steps", total_steps, 1)))


@dataclass(frozen=True)
class ProbePlan:
    """What thorough mode runs: `long_steps` and `short_steps` per probe, and the first stage's
    `candidates` (peak LRs of the long probes)."""

    long_steps: int
    short_steps: int
    candidates: tuple[float, ...]


def plan_probes(
    records: Sequence[RangeTestRecord],
    total_steps: int,
    *,
    budget_steps: int | None = None,
) -> ProbePlan:
    """The first probe stage: `PROBES` long probes spread over the fast band (scaled from the run's
    length to theirs with `HORIZON_PRIOR`); the budget (default `probe_budget`) is shared by the
    long and the short stage."""
    recs = _check_records(records)
    total = check.step_count("plan_probes", "total_steps", total_steps, 1)
    if budget_steps is None:
        budget = probe_budget(total)
    else:
        budget = check.step_count("plan_probes", "budget_steps", budget_steps, PROBES * (MIN_LONG + MIN_SHORT))
    long_steps = max(MIN_LONG, int(budget / (PROBES * (1 + 1 / SHORT_RATIO))))
    short_steps = max(MIN_SHORT, round(long_steps / SHORT_RATIO))
    fast = _fast(recs)
    low, high = fast.band
    scale = (total / long_steps) ** HORIZON_PRIOR
    grid = np.geomspace(low, high, PROBES) if high > low else np.full(PROBES, fast.peak)
    return ProbePlan(long_steps, short_steps, tuple(float(c * scale) for c in grid))


def _best(probes: Sequence[Probe]) -> tuple[float, tuple[float, float]] | None:
    """The best peak among probes of one length (a parabola through the best and its neighbours
    in log-LR) and its bracket (the neighbours); None when none finished."""
    done = sorted((p for p in probes if math.isfinite(p.score)), key=lambda p: p.peak_lr)
    if not done:
        return None
    scores = [p.score for p in done]
    u = [math.log10(p.peak_lr) for p in done]
    j = int(np.argmin(scores))
    best = u[j]
    if 0 < j < len(done) - 1:
        a, b, _ = np.polyfit(u[j - 1 : j + 2], scores[j - 1 : j + 2], 2)
        if a > 0:
            best = float(np.clip(-b / (2 * a), u[j - 1], u[j + 1]))
    step = (u[-1] - u[0]) / (len(u) - 1) if len(u) > 1 else 0.3
    lo = u[j - 1] if j > 0 else u[j] - step
    hi = u[j + 1] if j < len(u) - 1 else u[j] + step
    return 10**best, (10**lo, 10**hi)


def short_candidates(plan: ProbePlan, long_probes: Sequence[Probe]) -> tuple[float, ...]:
    """The second stage: `PROBES` short probes a factor 2 apart around the long stage's best,
    scaled to their length with `HORIZON_PRIOR` (empty when no long probe finished)."""
    best = _best(long_probes)
    if best is None:
        return ()
    centre = best[0] * (plan.long_steps / plan.short_steps) ** HORIZON_PRIOR
    return tuple(centre * 2.0**k for k in range(-(PROBES // 2), PROBES - PROBES // 2))


@dataclass(frozen=True)
class ProbeChoice:
    """Thorough mode's answer: the run's `peak` and `band`, the measured horizon exponent `alpha`,
    and the best peak of each probe length (`long_best`; `short_best`, None where not run)."""

    peak: float
    band: tuple[float, float]
    alpha: float
    long_best: float
    short_best: float | None


def choose_probe(probes: Sequence[Probe], total_steps: int) -> ProbeChoice | None:
    """The run's peak from probes of one or two lengths (see the module docstring); None when no
    probe of the longest length finished."""
    total = check.step_count("choose_probe", "total_steps", total_steps, 1)
    lengths = sorted({p.steps for p in probes})
    if not lengths:
        return None
    k2 = lengths[-1]
    long_best = _best([p for p in probes if p.steps == k2])
    if long_best is None:
        return None
    alpha, short_best = HORIZON_PRIOR, None
    if len(lengths) > 1:
        k1 = lengths[0]
        short = _best([p for p in probes if p.steps == k1])
        if short is not None:
            short_best = short[0]
            measured = float(np.clip(math.log(short_best / long_best[0]) / math.log(k2 / k1), 0.0, 1.0))
            alpha = ALPHA_SHRINK * measured + (1.0 - ALPHA_SHRINK) * HORIZON_PRIOR
    scale = (k2 / total) ** alpha
    lo, hi = long_best[1]
    return ProbeChoice(long_best[0] * scale, (lo * scale, hi * scale), alpha, long_best[0], short_best)


def analyze(
    records: Sequence[RangeTestRecord],
    *,
    probes: Sequence[Probe] = (),
    total_steps: int | None = None,
    warmup_ratio: float = 0.05,
    floor_ratio: float = 0.1,
    decay: str = "cosine",
    calibrated_steps: tuple[int, int] | None = CALIBRATED_STEPS,
) -> FinderResult:
    """The answer from what was collected (pure: offline logs give the same result).

    Args:
        records: one or more range tests of the same setup.
        probes: thorough mode's probe runs (see `plan_probes`); needs `total_steps`.
        total_steps, warmup_ratio, floor_ratio, decay: the user's run, for the ready schedule.
        calibrated_steps: the run lengths the range-test rule's peak is calibrated at; with
            `total_steps` outside them the peak and band are moved to the run's length by the
            horizon law (`lrpilot.rules.at_horizon`, not past the max stable LR; recorded in
            ``details["horizon"]``). None: the peak for a run of a calibrated length (``lrpilot
            fit`` scales it itself, once a time budget is in steps). Probes measure their own.
    """
    recs = _check_records(records)
    if probes and total_steps is None:
        raise ValueError("analyze: probes need total_steps (the run they are scaled to)")
    if calibrated_steps is not None:
        calibrated_steps = calibrated_range("analyze", calibrated_steps, "calibrated_steps")
    fast = _fast(recs)
    peak, band, method = fast.peak, fast.band, "lrpilot"
    details: dict[str, Any] = {"fast_peak": fast.peak, "fast_band": list(fast.band), **fast.details}
    chosen = choose_probe(probes, total_steps) if probes and total_steps is not None else None
    if chosen is not None:
        peak, band, method = chosen.peak, chosen.band, "lrpilot+probes"
        details.update(
            horizon_exponent=chosen.alpha, long_probe_best=chosen.long_best, short_probe_best=chosen.short_best
        )
    elif total_steps is not None and calibrated_steps is not None:
        peak, band, horizon = _to_horizon(fast, total_steps, calibrated_steps)
        if horizon is not None:
            details["horizon"] = horizon
    schedule = None
    if total_steps is not None:
        schedule = recipe_schedule(peak, total_steps, warmup_ratio=warmup_ratio, floor_ratio=floor_ratio, decay=decay)
    return FinderResult(
        peak_lr=peak,
        band=band,
        max_stable_lr=fast.max_stable,
        schedule=schedule,
        method=method,
        records=recs,
        probes=tuple(probes),
        details=details,
    )
