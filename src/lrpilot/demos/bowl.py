"""Step-size regimes on a quadratic bowl: why one learning rate stalls, one converges, one diverges.

Gradient descent on ``f(x) = ½ xᵀ A x`` with ``A = diag(λ₁ … λₙ)`` moves each coordinate
independently: ``x_i ← (1 − η λ_i) x_i``. So after ``t`` steps ``x_i = (1 − η λ_i)ᵗ x_i(0)`` and
everything follows from the curvature (the eigenvalues of A):

* it is **stable** iff every factor has ``|1 − η λ_i| < 1``, i.e. ``η < 2 / λ_max``; above that
  the stiffest direction overshoots its wall by more each step and the loss **diverges**;
* the slowest direction shrinks by ``ρ(η) = max_i |1 − η λ_i|`` per step, which is smallest,
  ``(κ − 1) / (κ + 1)`` with ``κ = λ_max / λ_min``, at ``η* = 2 / (λ_min + λ_max)``;
* the loss falls at least as fast as ``ρ(η)^(2t)`` (each term ``½ λ_i x_i²`` shrinks by the
  square of its factor), so within a budget of ``T`` steps the loss is sure to fall below
  ``tol × L(x₀)`` iff ``ρ(η)^(2T) ≤ tol``: iff ``η_low ≤ η ≤ η_high`` with
  ``η_low = (1 − tol^(1/2T)) / λ_min`` and ``η_high = (1 + tol^(1/2T)) / λ_max``.

That gives four regimes (`REGIMES`): below ``η_low`` the steps are too small to cross the flat
direction in time (**stalls**); between ``η_low`` and ``η_high`` it **converges**; between
``η_high`` and ``2 / λ_max`` it bounces from wall to wall and settles too slowly (**oscillates**);
above ``2 / λ_max`` it **diverges**.

The default bowl, ``λ = (0.25, 1.6)`` from ``x₀ = (−3, 1.5)`` over 40 steps, is a long, narrow
valley (article 003's "mental picture", docs/sources.md) chosen so that its three step sizes, η = 0.02 / 0.50 /
1.35, land in its three named regimes: 2 / λ_max = 1.25 and the converging band is 0.224 – 1.22.
Article 003 does not give the bowl behind its figure, so its final losses (0.099 / 0.043 / 0.147)
are not reproduced; the regimes are.

>>> demo = run_bowl()
>>> [run.regime for run in demo.runs]
['stalls', 'converges', 'diverges']
>>> round(demo.thresholds.stable_below, 3), round(demo.thresholds.fastest, 3)
(1.25, 1.081)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check

__all__ = [
    "DEFAULT_ETAS",
    "REGIMES",
    "Bowl",
    "BowlDemo",
    "BowlRun",
    "Thresholds",
    "contraction",
    "descend",
    "regime",
    "run_bowl",
    "thresholds",
]

REGIMES = ("stalls", "converges", "oscillates", "diverges")
"""The step-size regimes, from the smallest η to the largest (see the module docstring)."""

DEFAULT_ETAS = (0.02, 0.50, 1.35)
"""Article 003's three step sizes (docs/sources.md): too low, just right, too high."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Bowl:
    """The quadratic ``f(x) = ½ Σ λ_i x_i²`` (A = diag(`eigenvalues`)), descended from `start`
    for `iterations` steps; "converged" means the loss fell below ``tol × f(start)``."""

    eigenvalues: tuple[float, ...] = (0.25, 1.6)
    start: tuple[float, ...] = (-3.0, 1.5)
    iterations: int = 40
    tol: float = 1e-2

    def __post_init__(self) -> None:
        owner = "Bowl"
        object.__setattr__(self, "eigenvalues", tuple(float(v) for v in self.eigenvalues))
        object.__setattr__(self, "start", tuple(float(v) for v in self.start))
        for lam in self.eigenvalues:
            check.positive(owner, "eigenvalues", lam)
        if not self.eigenvalues or len(self.start) != len(self.eigenvalues):
            raise ValueError(
                f"{owner}: start must have one coordinate per eigenvalue, got {len(self.start)} coordinates "
                f"for {len(self.eigenvalues)} eigenvalues"
            )
        if not all(math.isfinite(x) for x in self.start) or not any(self.start):
            raise ValueError(f"{owner}: start must be finite and not the minimum itself, got {self.start!r}")
        check.step_count(owner, "iterations", self.iterations, 1)
        check.in_range(owner, "tol", self.tol, 0.0, 1.0, low_open=True, high_open=True)

    @property
    def lam_min(self) -> float:
        return min(self.eigenvalues)

    @property
    def lam_max(self) -> float:
        return max(self.eigenvalues)

    def loss(self, points: npt.ArrayLike) -> Floats:
        """``f`` at each row of `points` (shape ``(..., n)``)."""
        x = np.asarray(points, dtype=np.float64)
        with np.errstate(over="ignore"):  # a diverged path's loss is inf, which is the point
            values: Floats = 0.5 * np.sum(np.asarray(self.eigenvalues) * x * x, axis=-1)
        return values


@dataclass(frozen=True)
class Thresholds:
    """The step sizes that separate the regimes, all from the curvature (see the module docstring).

    Attributes:
        stable_below: ``2 / λ_max``: gradient descent converges (eventually) iff η is below it.
        fastest: ``2 / (λ_min + λ_max)``: the η with the smallest contraction factor.
        best_rate: ``(κ − 1) / (κ + 1)``: that factor, per step.
        converge_low, converge_high: within the bowl's budget the loss surely falls below
            ``tol × f(x₀)`` iff ``converge_low ≤ η ≤ converge_high`` (empty when low > high).
    """

    stable_below: float
    fastest: float
    best_rate: float
    converge_low: float
    converge_high: float

    def to_dict(self) -> dict[str, float]:
        return {
            "stable_below": self.stable_below,
            "fastest": self.fastest,
            "best_rate": self.best_rate,
            "converge_low": self.converge_low,
            "converge_high": self.converge_high,
        }


def thresholds(bowl: Bowl) -> Thresholds:
    """The regime boundaries of `bowl` (see `Thresholds`)."""
    lo, hi = bowl.lam_min, bowl.lam_max
    per_step = bowl.tol ** (1.0 / (2 * bowl.iterations))  # the slowest factor that still makes it in time
    return Thresholds(
        stable_below=2.0 / hi,
        fastest=2.0 / (lo + hi),
        best_rate=(hi - lo) / (hi + lo),
        converge_low=(1.0 - per_step) / lo,
        converge_high=(1.0 + per_step) / hi,
    )


def contraction(bowl: Bowl, eta: float) -> float:
    """``ρ(η) = max_i |1 − η λ_i|``: how much the slowest direction shrinks per step (> 1: grows)."""
    return float(np.max(np.abs(1.0 - eta * np.asarray(bowl.eigenvalues))))


def regime(bowl: Bowl, eta: float) -> str:
    """Which of `REGIMES` step size `eta` is in on `bowl` (within its budget of iterations)."""
    eta = check.positive("regime", "eta", eta)
    t = thresholds(bowl)
    if eta > t.stable_below:
        return "diverges"
    if contraction(bowl, eta) ** (2 * bowl.iterations) <= bowl.tol:
        return "converges"
    return "stalls" if eta < t.fastest else "oscillates"


def descend(bowl: Bowl, eta: float, iterations: int | None = None) -> Floats:
    """The gradient-descent path ``x_{t+1} = x_t − η A x_t = (1 − η λ) ⊙ x_t``: shape
    ``(iterations + 1, n)``, row 0 is the start. Computed step by step (not from the closed form) so
    the demo shows the real iteration; overflow to ±inf is the divergence it demonstrates, not an
    error (the factored form keeps it ±inf rather than inf − inf = NaN)."""
    eta = check.positive("descend", "eta", eta)
    steps = bowl.iterations if iterations is None else check.step_count("descend", "iterations", iterations, 0)
    lam = np.asarray(bowl.eigenvalues, dtype=np.float64)
    path = np.empty((steps + 1, lam.size))
    path[0] = bowl.start
    factor = 1.0 - eta * lam
    with np.errstate(over="ignore"):
        for i in range(steps):
            path[i + 1] = factor * path[i]
    return path


@dataclass(frozen=True)
class BowlRun:
    """One step size on the bowl: its path, its loss at every iterate, its regime."""

    eta: float
    regime: str
    contraction: float
    path: Floats
    losses: Floats

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    def to_dict(self) -> dict[str, Any]:
        """The numbers, not the path: η, regime, contraction and the first and last loss."""
        final = self.final_loss
        return {
            "eta": self.eta,
            "regime": self.regime,
            "contraction": self.contraction,
            "start_loss": float(self.losses[0]),
            "final_loss": final if math.isfinite(final) else None,
            "loss_ratio": final / float(self.losses[0]) if math.isfinite(final) else None,
        }


@dataclass(frozen=True)
class BowlDemo:
    """The bowl, its thresholds, and one `BowlRun` per step size."""

    bowl: Bowl
    thresholds: Thresholds
    runs: tuple[BowlRun, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bowl": {
                "eigenvalues": list(self.bowl.eigenvalues),
                "start": list(self.bowl.start),
                "iterations": self.bowl.iterations,
                "tol": self.bowl.tol,
            },
            "thresholds": self.thresholds.to_dict(),
            "runs": [run.to_dict() for run in self.runs],
        }


def run_bowl(etas: Sequence[float] = DEFAULT_ETAS, bowl: Bowl | None = None) -> BowlDemo:
    """Descend `bowl` (default: the documented valley) with each of `etas`."""
    bowl = bowl or Bowl()
    if not etas:
        raise ValueError("run_bowl: etas must name at least one step size, got none")
    runs = []
    for value in etas:
        eta = check.positive("run_bowl", "eta", value)
        path = descend(bowl, eta)
        runs.append(BowlRun(eta, regime(bowl, eta), contraction(bowl, eta), path, bowl.loss(path)))
    return BowlDemo(bowl, thresholds(bowl), tuple(runs))
