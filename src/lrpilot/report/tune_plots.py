"""The search `lrpilot.tune` made, as a picture: each trial's loss against its peak LR, the winner
starred, the searched interval shaded.

Nothing here decides anything: the trials, their losses and the winner come from the study
(``RunRecord.tune``, written by `lrpilot.tuning`) and are only drawn here (matplotlib, the `plot`
extra). The record went through JSON, so a missing or non-finite number may be None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lrpilot.report.guard_plots import _save
from lrpilot.report.plots import _pyplot

__all__ = ["STOPPED_LABEL", "plot_tune", "rung_losses", "trial_kind"]

STOPPED_LABEL = "rung (loss of its short run)"
"""The legend's words for a rung trial: its loss is the compressed run's, not a final one."""

_DONE, _STOPPED, _BEST, _SPACE, _BAD, _FAILED = "#1f6feb", "#e36209", "#d73a49", "#28a745", "#b31d28", "#959da5"


def _float(x: Any) -> float:
    """A number from the record (None, as JSON writes NaN, is NaN)."""
    return math.nan if x is None else float(x)


def rung_losses(trial: Mapping[str, Any]) -> list[tuple[int, float]]:
    """The trial's validation loss at each rung it reached (of the short run), ``(rung step, loss)`` by step."""
    values = trial.get("intermediate") or {}
    return sorted((int(k), _float(v)) for k, v in values.items())


def trial_kind(trial: Mapping[str, Any]) -> str:
    """How the trial is drawn: ``complete`` (a final loss), ``diverged``, ``stopped`` (a rung trial:
    pruned, promoted or stopped by the budget, with its rung loss), ``failed``, or ``none``
    (skipped, still running, or nothing to draw)."""
    state, stopped = trial.get("state"), trial.get("stopped")
    if not math.isfinite(_float(trial.get("peak_lr"))) or stopped == "skipped":
        return "none"
    if state == "COMPLETE" and math.isfinite(_float(trial.get("value"))):
        return "complete"
    if stopped == "diverged":
        return "diverged"
    if state == "FAIL":
        return "failed"
    if state == "PRUNED" and any(math.isfinite(v) for _, v in rung_losses(trial)):
        return "stopped"
    return "none"


def _last_rung(trial: Mapping[str, Any]) -> float:
    finite = [v for _, v in rung_losses(trial) if math.isfinite(v)]
    return finite[-1] if finite else math.nan


def _ylim(points: list[float]) -> tuple[float, float, float]:
    """The y-axis (bottom, top) fitted to the drawn losses, and the height of the row of crosses
    above them where the diverged and failed trials go."""
    if not points:
        return 0.0, 1.0, 0.9
    low, high = min(points), max(points)
    span = max(high - low, 1e-3 * max(abs(high), 1.0))
    return low - 0.08 * span, high + 0.22 * span, high + 0.13 * span


def _shade(ax: Any, tune: Mapping[str, Any]) -> None:
    """The searched interval (shaded), the range test's band (hatched) and its peak (dashed)."""
    space = tune.get("space") or {}
    low, high = _float(space.get("low")), _float(space.get("high"))
    if math.isfinite(low) and math.isfinite(high) and 0 < low < high:
        ax.axvspan(low, high, color=_SPACE, alpha=0.1, label=f"searched {low:.3g} – {high:.3g}")
    band = [_float(x) for x in tune.get("band") or ()]
    if len(band) == 2 and all(math.isfinite(x) and x > 0 for x in band) and band[0] < band[1]:
        ax.axvspan(*band, color=_SPACE, alpha=0.18, hatch="//", fill=False, label="range test's band")
    finder_peak = _float(tune.get("finder_peak"))
    if math.isfinite(finder_peak) and finder_peak > 0:
        ax.axvline(finder_peak, color=_SPACE, linestyle="--", linewidth=1, label=f"range test {finder_peak:.3g}")


def plot_tune(tune: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Draw a tune's trials; write a PNG to `path` and return it.

    The loss against the peak LR on a log axis: the final validation loss of each full run
    (filled), the loss of each rung trial's short run (hollow: a different run, comparable with
    the other rungs, not with a final loss), diverged trials as crosses along the top, the
    winner as a star with its LR written beside it, the searched interval shaded, and the range
    test's band (hatched) and peak (dashed) where the record has them.
    """
    trials = [t for t in tune.get("trials", []) if trial_kind(t) != "none"]
    if not trials:
        raise ValueError("plot_tune: no trial to draw (none has a peak LR and a loss, or diverged)")
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for t in trials:
        by_kind.setdefault(trial_kind(t), []).append(t)
    done = by_kind.get("complete", [])
    stopped = by_kind.get("stopped", [])
    losses = [_float(t["value"]) for t in done] + [_last_rung(t) for t in stopped]
    bottom, top, crosses = _ylim(losses)
    best = next((t for t in done if t.get("number") == tune.get("best")), None)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    try:
        _shade(ax, tune)
        if done:
            lrs = [_float(t["peak_lr"]) for t in done]
            ax.scatter(lrs, [_float(t["value"]) for t in done], color=_DONE, s=40, zorder=3, label="final val loss")
        if stopped:
            lrs = [_float(t["peak_lr"]) for t in stopped]
            ys = [_last_rung(t) for t in stopped]
            ax.scatter(lrs, ys, facecolors="none", edgecolors=_STOPPED, s=40, zorder=3, label=STOPPED_LABEL)
        for kind, color, label in (("diverged", _BAD, "diverged"), ("failed", _FAILED, "failed")):
            if by_kind.get(kind):
                lrs = [_float(t["peak_lr"]) for t in by_kind[kind]]
                ax.scatter(lrs, np.full(len(lrs), crosses), marker="x", color=color, s=40, zorder=3, label=label)
        if best is not None:
            lr, value = _float(best["peak_lr"]), _float(best["value"])
            ax.scatter([lr], [value], marker="*", s=220, color=_BEST, zorder=4, label=f"best: trial {best['number']}")
            ax.annotate(f"LR {lr:.3g}", (lr, value), textcoords="offset points", xytext=(9, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_ylim(bottom, top)
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("validation loss")
        ran = [t for t in tune.get("trials", []) if t.get("stopped") != "skipped"]
        equivalents = _float(tune.get("run_equivalents"))
        default = f"{len(ran)} trials, {len(done)} completed, {equivalents:.2f} run-equivalents"
        ax.set_title(title or default, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="best", fontsize=7)
        return _save(fig, path)
    finally:
        plt.close(fig)
