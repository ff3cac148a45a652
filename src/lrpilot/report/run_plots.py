"""A run's figures for its report: loss and LR over training with the guard's actions marked, and
Adam's per-layer effective step (update / weight ratio) against the ≈ 1e-3 rule of thumb.

Nothing here decides anything: the history, the audit records and the ratios come from the run
(`lrpilot.report.RunRecord`) and are only drawn here (matplotlib, the `plot` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrpilot.report.guard_plots import ACTION_STYLE, _loss_axis, _points_style, _save
from lrpilot.report.plots import _pyplot

if TYPE_CHECKING:
    from lrpilot.report._run import LayerStats, TrainingHistory

__all__ = [
    "RATIO_BAND",
    "RATIO_TARGET",
    "RESUME_COLOR",
    "action_labels",
    "draw_training",
    "eval_positions",
    "layer_verdicts",
    "plot_layer_ratios",
    "plot_training",
    "positions",
]

RATIO_TARGET = 1e-3
"""The rule of thumb for ‖Δw‖ / ‖w‖ per update: about 1e-3 (Karpathy, CS231n notes "Neural
Networks Part 3", ratio of updates to weights). Much lower: the layer barely learns; much higher:
it is being overwritten each step."""

RATIO_BAND = (1e-4, 1e-2)
"""A layer whose typical ratio lies outside this decade either side of `RATIO_TARGET` is flagged."""

_MAX_LABELS = 12  # more guard actions than this get markers but no text, to stay legible
_LABEL_GAP = 0.02  # actions nearer than this share of the x axis share one text (7-pt text is ~1.5 % wide)
_MAX_LAYER_LINES = 10  # more layers than this: the flagged ones in colour, the rest in grey


def positions(logged: Sequence[int], wanted: Sequence[int]) -> npt.NDArray[np.int64]:
    """For each step in `wanted` (in time order), the index of the logged entry it belongs to, or −1.

    A guard rollback sends the step back, so a step can be logged twice; the scan moves forward
    through `logged` only, which pins each audit record (or evaluation) to the pass it happened in.
    """
    steps = np.asarray(logged, dtype=np.int64)
    out = np.full(len(wanted), -1, dtype=np.int64)
    cursor = 0
    for k, step in enumerate(wanted):
        rest = steps[cursor:]
        ahead = np.nonzero(rest == step)[0]
        if not ahead.size:  # evaluations may fall between logged steps: the next logged one
            ahead = np.nonzero(rest >= step)[0]
        if ahead.size:
            cursor += int(ahead[0])
            out[k] = cursor
    return out


def eval_positions(logged: Sequence[int], evals: Sequence[int]) -> npt.NDArray[np.int64]:
    """For each evaluation in `evals` (the steps done when it ran, in time order), the index of the
    logged step it followed, or −1.

    An evaluation after ``n`` steps follows the update logged as step ``n − 1``. fit keeps only the
    evaluations of the weights the run went on with (a rollback drops those of the steps it undid),
    so each one follows the last pass through its step before the next evaluation's: the scan runs
    backward from the end (forward, the one evaluation of step 10 kept after a rollback from 15 to 0
    landed on the pass the rollback undid). The last one, of the weights the run ended with, lands
    at the end: after a guard gave up, an earlier step's state scored after the run. A record that
    kept an evaluation per pass (written before) has each land on its pass, the later on the later.
    """
    steps = np.asarray(logged, dtype=np.int64)
    out = np.full(len(evals), -1, dtype=np.int64)
    if not steps.size or not len(evals):
        return out
    out[-1] = cursor = steps.size - 1
    for k in range(len(evals) - 2, -1, -1):
        done = evals[k]
        exact = np.nonzero(steps[:cursor] == done - 1)[0]
        if exact.size:
            out[k] = cursor = int(exact[-1])
            continue
        # logged more sparsely than evaluated: the first logged step past it, before the next evaluation's
        below = np.nonzero(steps[: cursor + 1] < done - 1)[0]
        out[k] = cursor = min(int(below[-1]) + 1 if below.size else 0, cursor)
    return out


def _x_axis(history: TrainingHistory) -> tuple[npt.NDArray[np.float64], str]:
    """Optimizer steps when they only go forward; log entries when a rollback sent them back."""
    steps = np.asarray(history.steps, dtype=np.float64)
    if steps.size < 2 or bool(np.all(np.diff(steps) >= 0)):
        return steps, "optimizer step"
    return np.arange(steps.size, dtype=np.float64), "logged points (a rollback sends the step back, not the data)"


def action_labels(x: Sequence[float], kinds: Sequence[str], span: float) -> list[tuple[float, str, str]]:
    """The texts written over the guard's action lines, ``(x, text, kind)`` each: actions closer
    than `_LABEL_GAP` of the axis' `span` to the first of a group share one text (``skip ×3,
    rollback``), which is drawn in the colour of that first one's kind; one text per action would
    be written over the others."""
    groups: list[tuple[float, dict[str, int]]] = []
    for at, kind in zip(x, kinds, strict=True):
        if groups and at - groups[-1][0] < _LABEL_GAP * span:
            counts = groups[-1][1]
            counts[kind] = counts.get(kind, 0) + 1
        else:
            groups.append((at, {kind: 1}))
    return [
        (
            at,
            ", ".join(kind.replace("_", " ") + (f" ×{n}" if n > 1 else "") for kind, n in counts.items()),
            next(iter(counts)),
        )
        for at, counts in groups
    ]


def _mark_actions(
    axes: Sequence[Any], x: npt.NDArray[np.float64], history: TrainingHistory, actions: Sequence[dict[str, Any]]
) -> None:
    """A vertical line on every panel per guard action, its kind written at the top of the loss panel."""
    where = positions(history.steps, [int(a["step"]) for a in actions])
    seen: set[str] = set()
    drawn: list[tuple[float, str]] = []
    for action, i in zip(actions, where, strict=True):
        kind = str(action.get("action", "?"))
        if i < 0:
            continue
        color = ACTION_STYLE.get(kind, ("o", "#959da5"))[1]
        label = None if kind in seen else f"guard: {kind.replace('_', ' ')}"
        seen.add(kind)
        drawn.append((float(x[i]), kind))
        for n, ax in enumerate(axes):
            ax.axvline(x[i], color=color, alpha=0.6, linewidth=1, linestyle="--", label=label if n == 0 else None)
    if not drawn or len(actions) > _MAX_LABELS:
        return
    span = float(x[-1] - x[0]) if x.size > 1 else 1.0
    for at, text, kind in action_labels([at for at, _ in drawn], [kind for _, kind in drawn], span):
        axes[0].annotate(
            text,
            (at, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10),
            textcoords="offset points",
            fontsize=7,
            color=ACTION_STYLE.get(kind, ("o", "#959da5"))[1],
            rotation=90,
            va="top",
        )


RESUME_COLOR = "#bf3989"
"""The colour of the line where an interrupted fit went on (`lrpilot fit --resume`)."""


def _mark_resumes(axes: Sequence[Any], x: npt.NDArray[np.float64], resumes: Sequence[Mapping[str, int]]) -> None:
    """A vertical line on every panel where the run was stopped and went on, as the guard's actions
    are marked, with ``resumed at step N`` written at the foot of the loss panel (the legend and the
    actions' texts take its top). The line is at the first entry logged after it
    (`RunRecord.resumes`' ``logged``: its step may have been logged before, by a pass a rollback
    undid), or at the end where none was."""
    for k, at in enumerate(resumes):
        where = float(x[min(int(at["logged"]), x.size - 1)])
        for n, ax in enumerate(axes):
            label = "stopped and resumed (lrpilot fit --resume)" if n == 0 and k == 0 else None
            ax.axvline(where, color=RESUME_COLOR, alpha=0.8, linewidth=1, linestyle=":", label=label)
        axes[0].annotate(
            f"resumed at step {int(at['step'])}",
            (where, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(-2, 4),
            textcoords="offset points",
            fontsize=7,
            color=RESUME_COLOR,
            rotation=90,
            va="bottom",
            ha="right",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )


def _mark_ramp_start(axes: Sequence[Any], steps: int | None) -> bool:
    """Shade the first `steps` steps, which a range test's ramp stood for (fit went on from it:
    `lrpilot.autopilot._resume`). True if it shaded."""
    if not steps:
        return False
    for n, ax in enumerate(axes):
        label = "warmup done by the range test's ramp" if n == 0 else None
        ax.axvspan(0, steps, color="#6f42c1", alpha=0.08, linewidth=0, label=label)
    return True


def _eval_points(ax: Any, x: npt.NDArray[np.float64], history: TrainingHistory, *, by_step: bool) -> None:
    if len(history.eval_steps) == 0:
        return
    if by_step:
        ex = np.asarray(history.eval_steps, dtype=np.float64)
    else:
        where = eval_positions(history.steps, history.eval_steps)
        ex = np.where(where >= 0, x[np.maximum(where, 0)], np.nan)
    n = history.eval_examples
    label = "eval loss" if n is None else f"eval loss ({n} examples, the same each time)"
    ax.plot(ex, history.eval_loss, color="#28a745", marker="o", markersize=4, linewidth=1.2, label=label)
    final = history.final_eval
    if final and "val_loss" in final:  # the whole set's figure: another sample, off the curve
        whole = f"all {int(final['examples'])}" if "examples" in final else "the whole set"
        label = f"final eval ({whole})"
        ax.scatter(ex[-1:], [final["val_loss"]], marker="D", s=28, color="#1b5e20", zorder=4, label=label)


def _lr_axis(ax: Any, x: npt.NDArray[np.float64], history: TrainingHistory, xlabel: str) -> None:
    lr = np.asarray(history.lr, dtype=np.float64)
    ok = np.isfinite(lr)
    ax.plot(x[ok], lr[ok], color="#e36209", linewidth=1.4, label="learning rate", **_points_style(int(ok.sum())))
    positive = lr[ok & (lr > 0)]
    if positive.size and float(positive.max()) > 50 * float(positive.min()):
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_ylabel("learning rate")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)


def draw_training(
    history: TrainingHistory,
    *,
    guard_actions: Sequence[dict[str, Any]] = (),
    title: str | None = None,
    ramp_stood_for: int | None = None,
    resumes: Sequence[Mapping[str, int]] = (),
) -> Any:
    """`plot_training`'s figure, not saved: the caller closes it (``matplotlib.pyplot.close``)."""
    if len(history.steps) == 0:
        raise ValueError("plot_training: the history is empty (no logged steps)")
    plt = _pyplot()
    x, xlabel = _x_axis(history)
    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(9, 6), dpi=120, sharex=True, height_ratios=(3, 2))
    try:
        _loss_axis(ax, x, np.asarray(history.loss, dtype=np.float64))
        _eval_points(ax, x, history, by_step=xlabel == "optimizer step")
        _mark_actions((ax, lr_ax), x, history, guard_actions)
        _mark_resumes((ax, lr_ax), x, resumes)
        _mark_ramp_start((ax, lr_ax), ramp_stood_for if xlabel == "optimizer step" else None)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(title or "loss and learning rate over training", fontsize=9)
        _lr_axis(lr_ax, x, history, xlabel)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def plot_training(
    history: TrainingHistory,
    path: str | Path,
    *,
    guard_actions: Sequence[dict[str, Any]] = (),
    title: str | None = None,
    ramp_stood_for: int | None = None,
    resumes: Sequence[Mapping[str, int]] = (),
) -> Path:
    """Train loss (NaN steps as ticks) and eval loss on top, the LR below, every guard action as a
    dashed line across both with its kind written on it, every point where an interrupted fit went
    on (`RunRecord.resumes`) as a dotted one, and the first `ramp_stood_for` steps shaded (a fit
    that went on from its range test's ramp); write a PNG to `path` and return it."""
    fig = draw_training(
        history, guard_actions=guard_actions, title=title, ramp_stood_for=ramp_stood_for, resumes=resumes
    )
    try:
        return _save(fig, path)
    finally:
        _pyplot().close(fig)


def _typical(stats: LayerStats) -> npt.NDArray[np.float64]:
    """Each layer's median ratio over the measurements (NaN where none was finite and positive)."""
    ratios = np.asarray(stats.ratios, dtype=np.float64).reshape(len(stats.steps), len(stats.names))
    usable = np.where(np.isfinite(ratios) & (ratios > 0), ratios, np.nan)
    out = np.full(len(stats.names), np.nan)
    for j in range(len(stats.names)):
        column = usable[:, j][np.isfinite(usable[:, j])]
        if column.size:
            out[j] = float(np.median(column))
    return out


def layer_verdicts(stats: LayerStats) -> list[tuple[str, float, str]]:
    """``(name, typical ratio, verdict)`` per layer: verdict ``ok``, ``low`` (below `RATIO_BAND`:
    barely learning), ``high`` (above it: overwritten each step), ``not updated`` (a ratio of 0 at
    every measurement: a layer the loss never reaches, such as the BERT pooler fit's mean-pooled
    classifier of a sentence-transformers model does not read, which the report had listed as
    "NaN n/a") or ``n/a`` (no finite ratio)."""
    out = []
    low, high = RATIO_BAND
    ratios = np.asarray(stats.ratios, dtype=np.float64).reshape(len(stats.steps), len(stats.names))
    for j, (name, ratio) in enumerate(zip(stats.names, _typical(stats), strict=True)):
        if not np.isfinite(ratio):
            still = len(stats.steps) > 0 and bool(np.all(ratios[:, j] == 0.0))
            out.append((name, 0.0 if still else float(ratio), "not updated" if still else "n/a"))
            continue
        out.append((name, float(ratio), "low" if ratio < low else "high" if ratio > high else "ok"))
    return out


def plot_layer_ratios(stats: LayerStats, path: str | Path, *, title: str | None = None) -> Path:
    """Every layer's ‖Δw‖ / ‖w‖ per measured step on a log axis, the 1e-3 target as a line and
    `RATIO_BAND` shaded; flagged layers drawn bold. Writes a PNG to `path` and returns it."""
    if len(stats.steps) == 0 or len(stats.names) == 0:
        raise ValueError("plot_layer_ratios: no measurements (no steps or no layers)")
    plt = _pyplot()
    ratios = np.asarray(stats.ratios, dtype=np.float64).reshape(len(stats.steps), len(stats.names))
    steps = np.asarray(stats.steps)
    verdicts = layer_verdicts(stats)
    many = len(stats.names) > _MAX_LAYER_LINES
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    try:
        ax.axhspan(*RATIO_BAND, color="#28a745", alpha=0.08, label="within 10× of 1e-3")
        ax.axhline(RATIO_TARGET, color="#28a745", linestyle="--", linewidth=1.2, label="≈ 1e-3 rule of thumb")
        for j, (name, _, verdict) in enumerate(verdicts):
            ok = np.isfinite(ratios[:, j]) & (ratios[:, j] > 0)
            flagged = verdict in ("low", "high")
            style: dict[str, Any] = {"linewidth": 2.0 if flagged else 1.0, **_points_style(int(ok.sum()))}
            if many and not flagged:
                style.update(color="#c8ced6", label=None)
            else:
                style["label"] = f"{name} ({verdict})" if flagged else name
            ax.plot(steps[ok], ratios[ok, j], **style)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("‖Δw‖ / ‖w‖ per update")
        shown = "" if not many else f" ({len(stats.names)} layers; grey: within the band)"
        ax.set_title(title or f"per-layer effective step{shown}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
        return _save(fig, path)
    finally:
        plt.close(fig)
