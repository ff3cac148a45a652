"""Figures for the doctor and the guard: the loss and the LR, with what was found and done marked.

Nothing here decides anything: the diagnosis and the audit records are computed elsewhere and only
drawn here (matplotlib, the `plot` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrpilot.report.plots import _pyplot

if TYPE_CHECKING:
    from lrpilot.doctor import Diagnosis, Series

__all__ = ["FINDING_COLORS", "plot_diagnosis", "plot_guard_run"]

FINDING_COLORS = {
    "non_finite": "#d73a49",
    "spike": "#f66a0a",
    "divergence": "#b31d28",
    "collapse": "#6f42c1",
    "flat_start": "#2188ff",
    "oscillation": "#e36209",
}
ACTION_STYLE = {  # marker, colour
    "skip": ("x", "#f66a0a"),
    "rollback": ("v", "#d73a49"),
    "cut": ("v", "#6f42c1"),
    "raise": ("^", "#28a745"),
    "warn": ("o", "#959da5"),
    "give_up": ("X", "#000000"),
}


_FEW_POINTS = 30  # a curve of this many points or fewer gets a dot on each: a line through one draws nothing


def _points_style(n: int) -> dict[str, Any]:
    """The marker of a curve of `n` points: a dot each where they are few, none otherwise."""
    return {"marker": "o", "markersize": 3} if n <= _FEW_POINTS else {}


def _loss_axis(ax: Any, steps: np.ndarray, loss: np.ndarray) -> None:
    finite = np.isfinite(loss)
    style = _points_style(int(finite.sum()))
    ax.plot(steps[finite], loss[finite], color="#1f6feb", linewidth=0.8, label="training loss", **style)
    bad = ~finite
    if bad.any():
        top = float(np.max(loss[finite])) if finite.any() else 1.0
        ax.scatter(steps[bad], np.full(int(bad.sum()), top), marker="|", color="#d73a49", s=40, label="NaN / Inf")
    if (
        finite.any()
        and float(np.min(loss[finite])) > 0
        and float(np.max(loss[finite])) > 20 * float(np.min(loss[finite]))
    ):
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    return out


def plot_diagnosis(series: Series, diagnosis: Diagnosis, path: str | Path, *, title: str | None = None) -> Path:
    """Loss (top) and LR (bottom) of a log, each finding shaded over its steps; a PNG at `path`."""
    plt = _pyplot()
    has_lr = series.lr is not None
    fig, axes = plt.subplots(
        2 if has_lr else 1, 1, figsize=(9, 5.5 if has_lr else 4), dpi=120, sharex=True, squeeze=False
    )
    try:
        ax = axes[0][0]
        _loss_axis(ax, series.steps, series.loss)
        if series.eval_steps.size:
            ax.scatter(series.eval_steps, series.eval_loss, s=12, color="#28a745", zorder=3, label="eval loss")
        seen: set[str] = set()
        for f in diagnosis.findings:
            color = FINDING_COLORS[f.kind]
            label = None if f.kind in seen else f.kind.replace("_", " ")
            seen.add(f.kind)
            start, end = int(f.start or f.step), int(f.end or f.step)
            if end > start:
                ax.axvspan(start, end, color=color, alpha=0.18, label=label)
            else:
                ax.axvline(start, color=color, alpha=0.7, linewidth=1.2, label=label)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(title or f"{Path(series.source).name}: {diagnosis.headline}", fontsize=9)
        if has_lr and series.lr is not None:
            lr_ax = axes[1][0]
            ok = np.isfinite(series.lr)
            lr_ax.plot(series.steps[ok], series.lr[ok], color="#e36209", linewidth=1.2, label="learning rate")
            for advice in diagnosis.advice[:1]:
                if advice.lr is not None:
                    lr_ax.axhline(advice.lr, color="#28a745", linestyle="--", linewidth=1, label="advised peak")
            lr_ax.set_ylabel("learning rate")
            lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            lr_ax.grid(alpha=0.3)
            lr_ax.legend(loc="upper right", fontsize=7)
        axes[-1][0].set_xlabel("optimizer step")
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_guard_run(
    steps: Sequence[int],
    losses: Sequence[float],
    lrs: Sequence[float],
    records: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    baseline: tuple[Sequence[int], Sequence[float]] | None = None,
    title: str | None = None,
) -> Path:
    """A guarded run against the batches it consumed: loss and effective LR, each guard action marked.

    The x axis counts batches, not optimizer steps, because a rollback sends the step back while
    training goes on; `records` are the guard's audit records, which carry the step they judged and
    are drawn at the batch where that step last ran. `baseline` (batches, losses) draws an
    unguarded run of the same task for comparison.
    """
    plt = _pyplot()
    step_arr = np.asarray(steps, dtype=np.int64)
    loss_arr = np.asarray(losses, dtype=np.float64)
    batches = np.arange(step_arr.size)
    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(9, 5.5), dpi=120, sharex=True)
    try:
        if baseline is not None:
            b_x, b_y = np.asarray(baseline[0]), np.asarray(baseline[1], dtype=np.float64)
            ok = np.isfinite(b_y)
            ax.plot(b_x[ok], b_y[ok], color="#959da5", linewidth=0.8, label="no guard")
        _loss_axis(ax, batches, loss_arr)
        last_batch = {int(s): i for i, s in enumerate(step_arr)}
        finite = loss_arr[np.isfinite(loss_arr)]
        top = float(finite.max()) if finite.size else 1.0
        seen: set[str] = set()
        for r in records:
            i = r.get("batch", last_batch.get(int(r["step"])))  # TorchGuard records carry the batch
            if i is None or not 0 <= i < loss_arr.size or r["action"] not in ACTION_STYLE:
                continue
            marker, color = ACTION_STYLE[r["action"]]
            y = loss_arr[i] if np.isfinite(loss_arr[i]) else top
            label = None if r["action"] in seen else r["action"].replace("_", " ")
            seen.add(r["action"])
            ax.scatter([i], [y], marker=marker, color=color, s=45, zorder=4, label=label)
            if r["action"] in ("rollback", "give_up"):
                ax.axvline(i, color=color, alpha=0.4, linewidth=1)
                lr_ax.axvline(i, color=color, alpha=0.4, linewidth=1)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(title or "guarded run", fontsize=9)
        lr_arr = np.asarray(lrs, dtype=np.float64)
        lr_ax.plot(batches, lr_arr, color="#e36209", linewidth=1.2, label="effective LR")
        positive = lr_arr[lr_arr > 0]
        if positive.size and float(positive.max()) > 50 * float(positive.min()):
            lr_ax.set_yscale("log")
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_xlabel("batches consumed (a rollback sends the step back, not the data)")
        if lr_ax.get_yscale() == "linear":
            lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        lr_ax.grid(alpha=0.3)
        lr_ax.legend(loc="upper right", fontsize=7)
        return _save(fig, path)
    finally:
        plt.close(fig)
