"""Matplotlib figures (the `plot` extra), drawn off-screen and written to PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrpilot._optional import require
from lrpilot.schedules import Schedule, key_points
from lrpilot.schedules._lint import sample_steps

__all__ = ["plot_schedule"]


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "plot", "plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plot", "plotting")


def plot_schedule(schedule: Schedule, total_steps: int, path: str | Path, *, title: str | None = None) -> Path:
    """Draw the LR over the run with its key points marked; write a PNG to `path` and return it."""
    plt = _pyplot()
    steps = sample_steps(total_steps)
    lrs = schedule.values(steps)
    points = key_points(schedule, total_steps)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    try:
        ax.plot(steps, lrs, color="#1f6feb", linewidth=2, label="learning rate")
        warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
        if warmup:
            ax.axvspan(0, min(warmup, total_steps), color="#f0ad4e", alpha=0.15, label=f"warmup ({warmup} steps)")
        for point in points:  # steps as floats: matplotlib cannot place an int past int64 (10**20 steps)
            ax.scatter([float(point.step)], [point.lr], color="#d73a49", zorder=3, s=18)
            ax.annotate(
                f"{point.label}\n{point.lr:.3g}",
                (float(point.step), point.lr),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=7,
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_xlim(0, float(total_steps))
        ax.set_ylim(bottom=0, top=float(lrs.max()) * 1.15 or 1.0)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(title or schedule.to_string(), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
