"""Matplotlib figures (the `plot` extra), drawn off-screen and written to PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrpilot._optional import require
from lrpilot.schedules import Schedule, key_points
from lrpilot.schedules._lint import sample_steps

__all__ = ["draw_schedule", "plot_schedule"]


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "plot", "plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plot", "plotting")


def plot_schedule(schedule: Schedule, total_steps: int, path: str | Path, *, title: str | None = None) -> Path:
    """Draw the LR over the run with its key points marked; write a PNG to `path` and return it."""
    plt = _pyplot()
    fig = draw_schedule(schedule, total_steps, title=title)
    try:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def draw_schedule(schedule: Schedule, total_steps: int, *, title: str | None = None) -> Any:
    """The figure `plot_schedule` writes (the caller closes it).

    The legend sits below the axes: inside, at the upper right, it covered the labels of the key
    points at the peak there (a WSD's "75% of run" and "decay starts"); see `_place_labels` for theirs.
    """
    plt = _pyplot()
    steps = sample_steps(total_steps)
    lrs = schedule.values(steps)
    points = key_points(schedule, total_steps)
    fig, ax = plt.subplots(figsize=(8, 4.4), dpi=120)
    try:
        ax.plot(steps, lrs, color="#1f6feb", linewidth=2, label="learning rate")
        warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
        if warmup:
            ax.axvspan(0, min(warmup, total_steps), color="#f0ad4e", alpha=0.15, label=f"warmup ({warmup} steps)")
        labels = []
        for point in points:  # steps as floats: matplotlib cannot place an int past int64 (10**20 steps)
            ax.scatter([float(point.step)], [point.lr], color="#d73a49", zorder=3, s=18)
            labels.append(
                ax.annotate(
                    f"{point.label}\n{point.lr:.3g}",
                    (float(point.step), point.lr),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=7,
                )
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_xlim(0, float(total_steps))
        ax.set_ylim(bottom=0, top=float(lrs.max()) * 1.15 or 1.0)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(title or schedule.to_string(), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
        fig.tight_layout()
        _place_labels(fig, ax, labels)
    except BaseException:
        plt.close(fig)
        raise
    return fig


_SPOTS = (
    ((4, 6), "left", "bottom"),
    ((-4, 6), "right", "bottom"),
    ((4, -6), "left", "top"),
    ((-4, -6), "right", "top"),
)
"""Where a key point's label may go: above right of the point, above left, below right, below left."""


def _place_labels(fig: Any, ax: Any, labels: list[Any]) -> None:
    """Put each label at the first spot where it stays within the axes' width and clear of the labels
    placed before it: always above right, a label near the end of the run ran past the figure's edge,
    and one beside it (a WSD's "decay starts" at 90 % of the run, "75% of run") was drawn over it."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for label in labels:
        for spot in (*_SPOTS, _SPOTS[0]):  # nowhere free: above right, as before
            label.xyann = spot[0]
            label.set_horizontalalignment(spot[1])
            label.set_verticalalignment(spot[2])
            box = label.get_window_extent(renderer)
            if box.x0 >= frame.x0 and box.x1 <= frame.x1 and not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))
