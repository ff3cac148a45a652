"""The quadratic-bowl demo as a picture: paths on the contours, the loss per iteration, and the
regimes against η with the thresholds the curvature sets.

Nothing here decides anything: the paths, regimes and thresholds come from `lrpilot.demos.bowl`
and are only drawn here (matplotlib, the `plot` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrpilot.report.guard_plots import _save
from lrpilot.report.plots import _pyplot

if TYPE_CHECKING:
    from lrpilot.demos.bowl import BowlDemo, BowlRun

__all__ = ["REGIME_COLORS", "plot_bowl"]

REGIME_COLORS = {"stalls": "#2188ff", "converges": "#28a745", "oscillates": "#f66a0a", "diverges": "#d73a49"}


def _label(run: BowlRun) -> str:
    return f"η = {run.eta:g}: {run.regime}"


def _window(demo: BowlDemo) -> tuple[float, float]:
    """Half-widths of the contour panel: the start with a margin, so an escaping path leaves the frame."""
    x0, y0 = (abs(v) for v in demo.bowl.start[:2])
    return 1.25 * max(x0, 0.5), 1.6 * max(y0, 0.5)


def _in_frame(path: np.ndarray, wx: float, wy: float) -> np.ndarray:
    """The path up to and including its first point outside the frame: a diverging path's later
    iterates are off the chart by orders of magnitude and would only draw a thicket of lines."""
    outside = ~(np.isfinite(path).all(axis=1) & (np.abs(path[:, 0]) <= wx) & (np.abs(path[:, 1]) <= wy))
    if not outside.any():
        return path
    return path[: int(np.argmax(outside)) + 1]


def _contours(ax: Any, demo: BowlDemo) -> None:
    """The bowl's level sets, the minimum, and every path (cut where it leaves the frame)."""
    wx, wy = _window(demo)
    gx, gy = np.meshgrid(np.linspace(-wx, wx, 200), np.linspace(-wy, wy, 200))
    z = demo.bowl.loss(np.stack([gx, gy], axis=-1))
    ax.contour(gx, gy, z, levels=np.geomspace(max(z.min(), 1e-3), z.max(), 12), colors="#c8ced6", linewidths=0.8)
    ax.scatter([0], [0], marker="*", s=160, color="#24292e", zorder=5, label="minimum")
    for run in demo.runs:
        path = _in_frame(run.path, wx, wy)
        ax.plot(path[:, 0], path[:, 1], marker="o", markersize=3, linewidth=1.2, color=REGIME_COLORS[run.regime])
    ax.set_xlim(-wx, wx)
    ax.set_ylim(-wy, wy)
    ax.set_aspect("equal")
    lam = ", ".join(f"{v:g}" for v in demo.bowl.eigenvalues)
    ax.set_title(f"f(x) = ½ xᵀAx, eigenvalues of A: {lam}", fontsize=9)
    ax.set_xlabel("x₁ (flat direction)" if demo.bowl.eigenvalues[0] < demo.bowl.eigenvalues[1] else "x₁")
    ax.set_ylabel("x₂ (steep direction)" if demo.bowl.eigenvalues[0] < demo.bowl.eigenvalues[1] else "x₂")


def _losses(ax: Any, demo: BowlDemo) -> None:
    """Loss per iteration on a log axis, with the "converged" line ``tol × f(x₀)``."""
    start = float(demo.runs[0].losses[0])
    for run in demo.runs:
        ok = np.isfinite(run.losses) & (run.losses > 0)
        its = np.arange(run.losses.size)[ok]
        ax.plot(its, run.losses[ok], color=REGIME_COLORS[run.regime], linewidth=1.8, label=_label(run))
    ax.axhline(demo.bowl.tol * start, color="#586069", linestyle=":", linewidth=1, label=f"{demo.bowl.tol:g} × f(x₀)")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss f(xₜ)")
    ax.set_title(f"loss over {demo.bowl.iterations} iterations", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")


def _regimes(ax: Any, demo: BowlDemo) -> None:
    """The contraction factor ρ(η) against η, the four regimes shaded between their thresholds."""
    t = demo.thresholds
    top = max(1.2 * t.stable_below, 1.1 * max(run.eta for run in demo.runs))
    etas = np.linspace(top / 1000, top, 600)
    rho = np.max(np.abs(1.0 - etas[:, None] * np.asarray(demo.bowl.eigenvalues)), axis=1)
    low, high = min(t.converge_low, t.stable_below), min(max(t.converge_high, t.converge_low), t.stable_below)
    for start, end, name in ((0, low, "stalls"), (low, high, "converges"), (high, t.stable_below, "oscillates")):
        if end > start:
            ax.axvspan(start, end, color=REGIME_COLORS[name], alpha=0.12, label=name)
    ax.axvspan(t.stable_below, top, color=REGIME_COLORS["diverges"], alpha=0.12, label="diverges")
    ax.plot(etas, rho, color="#24292e", linewidth=1.5)
    ax.axhline(1.0, color="#586069", linewidth=0.8)
    ax.axvline(t.stable_below, color=REGIME_COLORS["diverges"], linestyle="--", label=f"2/λmax = {t.stable_below:.3g}")
    ax.axvline(t.fastest, color="#6f42c1", linestyle="--", label=f"2/(λmin+λmax) = {t.fastest:.3g}")
    for run in demo.runs:
        ax.scatter([run.eta], [min(run.contraction, 1.6)], color=REGIME_COLORS[run.regime], s=50, zorder=4)
        ax.annotate(f"η={run.eta:g}", (run.eta, min(run.contraction, 1.6)), xytext=(4, 6), textcoords="offset points")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.7)
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("ρ(η) = max |1 − ηλᵢ| per step")
    ax.set_title("regimes from the curvature: stable iff η < 2/λmax", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def plot_bowl(demo: BowlDemo, path: str | Path, *, title: str | None = None) -> Path:
    """Draw the bowl demo (a 2-D bowl) in three panels; write a PNG to `path` and return it."""
    if len(demo.bowl.eigenvalues) != 2:
        raise ValueError(f"plot_bowl: the picture needs a 2-D bowl, got {len(demo.bowl.eigenvalues)} eigenvalues")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), dpi=110)
    try:
        _contours(axes[0], demo)
        _losses(axes[1], demo)
        _regimes(axes[2], demo)
        fig.suptitle(
            title or "step-size regimes on a quadratic bowl: too low stalls, right converges, too high diverges"
        )
        return _save(fig, path)
    finally:
        plt.close(fig)
