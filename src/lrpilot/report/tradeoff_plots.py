"""The forgetting trade-off `lrpilot fit` made, as a picture: each probe's validation loss against its
drift, the trained one starred, and the line of equal score through it.

Nothing here decides anything: the probes, their scores and the chosen peak come from the fit
(``RunRecord.tradeoff``, written by ``lrpilot fit --retention FILE --forgetting-weight W``) and are
only drawn here (matplotlib, the `plot` extra). The record went through JSON, so a diverged probe's
loss or score may be None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrpilot.report.guard_plots import _save
from lrpilot.report.plots import _pyplot

__all__ = ["is_chosen", "plot_tradeoff"]

_PROBE, _CHOSEN, _ISO, _OTHER_ISO = "#1f6feb", "#d73a49", "#d73a49", "#959da5"


def _float(x: Any) -> float:
    """A number from the record (None, as JSON writes NaN, is NaN)."""
    return math.nan if x is None else float(x)


def is_chosen(point: Mapping[str, Any], tradeoff: Mapping[str, Any]) -> bool:
    """Whether `point` is the probe the run trained at (its peak LR is the trade-off's ``chosen``)."""
    lr, chosen = _float(point.get("peak_lr")), _float(tradeoff.get("chosen"))
    return math.isfinite(lr) and math.isfinite(chosen) and math.isclose(lr, chosen, rel_tol=1e-9)


def _drawable(point: Mapping[str, Any]) -> bool:
    """A probe with a finite loss and drift (a diverged one has neither)."""
    return all(math.isfinite(_float(point.get(k))) for k in ("peak_lr", "val_loss", "drift"))


def _limits(values: list[float], floor: float | None = None) -> tuple[float, float]:
    """An axis range around `values` with a margin (room for the labels), starting at `floor` when
    the margin would cross it and no value sits on it."""
    low, high = min(values), max(values)
    span = max(high - low, 1e-3 * max(abs(high), 1.0))
    bottom = low - 0.15 * span
    if floor is not None and low - floor >= 0.05 * span:
        bottom = max(bottom, floor)
    return bottom, high + 0.2 * span


def plot_tradeoff(tradeoff: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Draw a fit's forgetting trade-off; write a PNG to `path` and return it.

    The validation loss against the drift (linear axes, so that a line of equal score
    ``val_loss + w × drift = const`` is straight): one point per probe with its peak LR written
    beside it, the trained one as a star, a dashed line of equal score through it (every other
    probe lies on or above it: a higher score) and fainter ones through the others. A probe
    without a finite loss or drift (it diverged) is left out, and the title (`title` or the
    default) says so.
    """
    points = [p for p in tradeoff.get("points", []) if _drawable(p)]
    if not points:
        raise ValueError("plot_tradeoff: no probe to draw (none has a finite validation loss and drift)")
    left_out = len(tradeoff.get("points", [])) - len(points)
    weight = _float(tradeoff.get("weight"))
    xs = [_float(p["drift"]) for p in points]
    ys = [_float(p["val_loss"]) for p in points]
    chosen = next((p for p in points if is_chosen(p, tradeoff)), None)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    try:
        left, right = _limits(xs, floor=0.0)
        bottom, top = _limits(ys)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        if math.isfinite(weight):
            faint = "equal score through the other probes"
            for p in points:
                here = p is chosen
                level = _float(p["val_loss"]) + weight * _float(p["drift"])
                ax.plot(
                    [left, right],
                    [level - weight * left, level - weight * right],
                    linestyle="--",
                    color=_ISO if here else _OTHER_ISO,
                    linewidth=1.3 if here else 0.8,
                    alpha=1.0 if here else 0.6,
                    zorder=2,
                    label=f"equal score {level:.4g} (trained)" if here else faint,
                )
                faint = faint if here else "_nolegend_"
        others = [p for p in points if p is not chosen]
        if others:
            ax.scatter(
                [_float(p["drift"]) for p in others],
                [_float(p["val_loss"]) for p in others],
                color=_PROBE,
                s=40,
                zorder=3,
                label="probe",
            )
        if chosen is not None:
            ax.scatter(
                [_float(chosen["drift"])],
                [_float(chosen["val_loss"])],
                marker="*",
                s=240,
                color=_CHOSEN,
                zorder=4,
                label=f"trained: LR {_float(chosen['peak_lr']):.3g}",
            )
        for p in points:
            ax.annotate(
                f"LR {_float(p['peak_lr']):.3g}",
                (_float(p["drift"]), _float(p["val_loss"])),
                textcoords="offset points",
                xytext=(9, 4),
                fontsize=8,
            )
        ax.set_xlabel("drift (mean cosine distance of the embeddings from the original's)")
        ax.set_ylabel("validation loss")
        share = _float(tradeoff.get("probe_share"))
        total = len(points) + left_out
        default = f"{total} probes of {share:.0%} of the run, score = val loss + {weight:g} × drift"
        note = f" ({left_out} diverged, not drawn)" if left_out else ""
        ax.set_title((title or default) + note, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
        return _save(fig, path)
    finally:
        plt.close(fig)
