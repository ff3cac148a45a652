"""The range test as a picture: the loss against the LR, with the finder's answer drawn on it.

Nothing here decides anything: the suggestion, its band and the max stable LR come from
`lrpilot.finder.analyze` and are only drawn here (matplotlib, the `plot` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrpilot.report.guard_plots import _save
from lrpilot.report.plots import _pyplot

if TYPE_CHECKING:
    from lrpilot.finder import FinderResult, RangeTestRecord

__all__ = ["plot_range_test"]

_RAW, _SMOOTH, _PEAK, _BAND, _STABLE = "#8fb8f0", "#1f6feb", "#d73a49", "#28a745", "#6f42c1"


def _smoothed(record: RangeTestRecord) -> npt.NDArray[np.float64]:
    """The curve lrpilot's rule reads: the zero-phase smoothing (`lrpilot.finder.smooth_curve`) of the
    points before the first non-finite loss, NaN after them. Not the record's EMA, which the stop
    rule watched: it lags by its window, and its minimum sits well to the right of the one the peak
    was read from (a 1.7× shift on the digits MLP)."""
    from lrpilot.finder import smooth_curve

    lrs, raw = np.asarray(record.lrs, dtype=float), np.asarray(record.losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(raw))
    usable = int(bad[0]) if bad.size else raw.size
    out = np.full(raw.size, np.nan)
    if usable < 5:  # too short to smooth: the EMA is all there is
        out[:usable] = np.asarray(record.smoothed, dtype=float)[:usable]
    else:
        out[:usable] = smooth_curve(lrs[:usable], raw[:usable])
    return out


def _visible(result: FinderResult) -> npt.NDArray[np.bool_]:
    """The first record's points up to the max stable LR: the part of the curve the y-axis is fitted to."""
    lrs = np.asarray(result.record.lrs)
    return lrs <= max(result.max_stable_lr, float(lrs[0]))


def _ylim(result: FinderResult, smoothed: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Fit the y-axis to the fall, not to the blow-up: the divergence at the top of the ramp is
    often 100× the starting loss and would flatten everything the answer was read from."""
    keep = _visible(result)
    raw = np.asarray(result.record.losses)[keep]
    smooth = smoothed[keep]
    values = np.concatenate([raw, smooth])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    top = float(np.nanmax(smooth))  # the first point is always finite (else the test raises)
    bottom = float(values.min())
    span = max(top - bottom, 1e-12)
    return bottom - 0.05 * span, top + 0.25 * span


def _curve(ax: Any, record: RangeTestRecord, smoothed: npt.NDArray[np.float64], *, label: bool, top: float) -> None:
    """One record: raw points, the smoothed curve the rule read; losses above the axis (the blow-up
    the y-axis leaves out, often the step that stopped the test) as triangles at the top, non-finite
    ones as crosses there."""
    lrs = np.asarray(record.lrs)
    raw = np.asarray(record.losses)
    finite = np.isfinite(raw)
    ax.plot(
        lrs[finite], raw[finite], color=_RAW, linewidth=0.8, marker=".", markersize=3, label="loss" if label else None
    )
    ax.plot(lrs, smoothed, color=_SMOOTH, linewidth=2, label="smoothed" if label else None)
    above = finite & (raw > top)
    if above.any():
        ax.scatter(
            lrs[above],
            np.full(int(above.sum()), top),
            marker="^",
            color=_RAW,
            edgecolors=_SMOOTH,
            zorder=3,
            clip_on=False,
            label="loss above the axis" if label else None,
        )
    if not finite.all():
        ax.scatter(lrs[~finite], np.full(int((~finite).sum()), top), marker="x", color=_PEAK, label="NaN / Inf")


def _answer(ax: Any, result: FinderResult, smooth: npt.NDArray[np.float64]) -> None:
    """The band shaded, the max stable LR as a dashed line, the suggestion as a star on the smoothed curve."""
    low, high = result.band
    ax.axvspan(low, high, color=_BAND, alpha=0.15, label=f"band {low:.3g} – {high:.3g}")
    stable = result.max_stable_lr
    ax.axvline(stable, color=_STABLE, linestyle="--", linewidth=1.2, label=f"max stable LR {stable:.3g}")
    lrs = np.asarray(result.record.lrs)
    finite = np.isfinite(smooth)
    horizon = result.details.get("horizon")  # the peak moved to the run's length: the curve's own is starred
    read = float(horizon["found"]) if horizon else result.peak_lr
    y = float(np.interp(np.log(read), np.log(lrs[finite]), smooth[finite]))
    ax.axvline(read, color=_PEAK, linewidth=1, alpha=0.6)
    label = f"suggested peak {read:.3g}"
    if horizon:
        label = f"the test's peak {read:.3g} (for {horizon['reference_steps']} steps)"
    ax.scatter([read], [y], marker="*", s=180, color=_PEAK, zorder=4, label=label)
    if horizon:
        _trained_at(ax, result.peak_lr, f"the horizon law: {horizon['steps']} steps", "suggested peak")


def _trained_at(ax: Any, lr: float, why: str, what: str = "trained at") -> None:
    """The peak the run trained at (or is suggested for), where it is not the curve's answer (a
    dotted line, `why` in the legend)."""
    ax.axvline(lr, color=_PEAK, linestyle=":", linewidth=1.6, label=f"{what} {lr:.3g} ({why})")


def _title(result: FinderResult) -> str:
    """What was run: each range test's steps and how it ended (thorough mode draws 2-4 of them, and
    a title naming the first alone read as if one test had been run)."""
    records = result.records
    if len(records) == 1:
        r = records[0]
        return f"range test: {r.steps} of {r.num_steps} steps ({r.stop_reason}), {result.method}"
    runs = ", ".join(f"{r.steps} ({r.stop_reason})" for r in records)
    return f"{len(records)} range tests: {runs} of {records[0].num_steps} steps, {result.method}"


def plot_range_test(
    result: FinderResult,
    path: str | Path,
    *,
    title: str | None = None,
    trained: tuple[float, str] | None = None,
) -> Path:
    """Draw a range test and the answer read from it; write a PNG to `path` and return it.

    The loss (raw points and the smoothed curve) against the LR on a log axis, the suggested peak
    marked on the curve, the band shaded and the max stable LR as a dashed line. Every record of
    `result` is drawn (several with ``repeats``); the y-axis fits the first one's fall. `trained`:
    ``(lr, why)`` of a run that trained at another peak than the suggestion (fit scaling it to the
    run's length), drawn as a dotted line; so is a suggestion `find_lr` moved to the run's length
    (``details["horizon"]``), the curve's own answer starred.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    try:
        smoothed = [_smoothed(record) for record in result.records]  # once each: every part draws on them
        bottom, top = _ylim(result, smoothed[0])
        for i, (record, line) in enumerate(zip(result.records, smoothed, strict=True)):
            _curve(ax, record, line, label=i == 0, top=top)
        _answer(ax, result, smoothed[0])
        if trained is not None:
            _trained_at(ax, *trained)
        ax.set_xscale("log")
        ax.set_ylim(bottom, top)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss" if result.record.metric == "train" else "validation loss")
        ax.set_title(title or _title(result), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower left", fontsize=8)
        return _save(fig, path)
    finally:
        plt.close(fig)
