"""Scoring an LR suggestion against an oracle sweep (``benchmarks/data/oracle_<task>.json``).

Small pure functions, shared by ``benchmarks/finder_regret.py`` and its tests:

* `OracleCurve.from_doc` reads a sweep: the seed-mean final validation loss per peak LR (only
  LRs every seed of the sweep has reached, unless there are none yet), ``L*`` (its minimum, at
  ``lr*``) and ``L_init`` (the untrained model's loss, mean over seeds). A diverged oracle run
  already scores ``L_init`` in the sweep file.
* `OracleCurve.loss` interpolates that curve linearly in log10(LR), clamped to the grid (an LR
  outside the swept range scores as the nearest end).
* `score` turns a suggestion into the three numbers of the issue: normalised regret
  ``(L(lr) - L*) / (L_init - L*)``, excess loss ``L(lr) / L* - 1`` and ``|log10(lr / lr*)|``; a
  rule that gave no answer (``lr`` None or not a positive finite number) scores ``L_init``, as if
  nothing had been trained, with no log-ratio.
* `summarise` aggregates scores: mean and worst of each.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OracleCurve", "Score", "score", "summarise"]


@dataclass(frozen=True)
class OracleCurve:
    """The oracle of one task: grid LRs (increasing), seed-mean losses, ``L_init``.

    Attributes:
        lrs, losses: the seed-mean curve.
        l_init: the untrained model's validation loss (mean over the sweep's seeds).
        complete: whether every grid point holds every seed of the sweep.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    l_init: float
    complete: bool = True

    def __post_init__(self) -> None:
        if len(self.lrs) != len(self.losses) or len(self.lrs) < 2:
            raise ValueError(f"OracleCurve: needs ≥ 2 (lr, loss) pairs of equal length, got {len(self.lrs)}")
        if any(b <= a for a, b in zip(self.lrs, self.lrs[1:], strict=False)) or self.lrs[0] <= 0:
            raise ValueError("OracleCurve: lrs must be positive and strictly increasing")
        if not all(math.isfinite(v) for v in (*self.losses, self.l_init)):
            raise ValueError("OracleCurve: losses and l_init must be finite")
        if self.l_init <= min(self.losses):
            raise ValueError(f"OracleCurve: l_init ({self.l_init}) must exceed the best loss ({min(self.losses)})")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> OracleCurve:
        """The curve of an oracle sweep document (see ``benchmarks/oracle_sweep.py``): the rows of
        its ``summary`` that hold every seed of ``seeds`` (all rows, flagged incomplete, if none do)."""
        rows = sorted(doc["summary"], key=lambda row: row["peak_lr"])
        seeds = set(doc["seeds"])
        full = [row for row in rows if set(row["seeds"]) >= seeds]
        complete = len(full) == len(rows)
        use = full if len(full) >= 2 else rows
        return cls(
            lrs=tuple(float(row["peak_lr"]) for row in use),
            losses=tuple(float(row["mean_val_loss"]) for row in use),
            l_init=float(doc["l_init_mean"]),
            complete=complete and len(full) >= 2,
        )

    @property
    def l_star(self) -> float:
        """The best seed-mean loss of the grid."""
        return min(self.losses)

    @property
    def lr_star(self) -> float:
        """The grid LR with the best seed-mean loss."""
        return self.lrs[int(np.argmin(self.losses))]

    @property
    def coverage(self) -> tuple[float, float]:
        """The smallest and largest LR of the curve."""
        return self.lrs[0], self.lrs[-1]

    def loss(self, lr: float) -> float:
        """The seed-mean loss at `lr`: linear in log10(LR) between grid points, clamped to the grid."""
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"OracleCurve.loss: lr must be a positive finite number, got {lr!r}")
        return float(np.interp(math.log10(lr), np.log10(self.lrs), self.losses))


@dataclass(frozen=True)
class Score:
    """One suggestion's score: `regret`, `excess`, `log_ratio` (None when there was no answer)."""

    lr: float | None
    loss: float
    regret: float
    excess: float
    log_ratio: float | None

    @property
    def failed(self) -> bool:
        """Whether the rule gave no usable answer."""
        return self.log_ratio is None


def _usable(lr: float | None) -> bool:
    return lr is not None and math.isfinite(lr) and lr > 0


def score(curve: OracleCurve, lr: float | None) -> Score:
    """Regret, excess loss and |log10(lr / lr*)| of the suggestion `lr` (None: no answer → ``L_init``)."""
    l_star = curve.l_star
    if not _usable(lr):
        loss = curve.l_init
        return Score(None, loss, (loss - l_star) / (curve.l_init - l_star), loss / l_star - 1.0, None)
    assert lr is not None
    loss = curve.loss(lr)
    return Score(
        lr,
        loss,
        (loss - l_star) / (curve.l_init - l_star),
        loss / l_star - 1.0,
        abs(math.log10(lr / curve.lr_star)),
    )


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def summarise(scores: Iterable[Score]) -> dict[str, float]:
    """Mean and worst regret and excess loss, mean |log10 ratio| (over the answers given), failures."""
    items = list(scores)
    if not items:
        raise ValueError("summarise: no scores")
    ratios = [s.log_ratio for s in items if s.log_ratio is not None]
    return {
        "n": float(len(items)),
        "mean_regret": _mean([s.regret for s in items]),
        "worst_regret": max(s.regret for s in items),
        "mean_excess": _mean([s.excess for s in items]),
        "worst_excess": max(s.excess for s in items),
        "mean_log_ratio": _mean(ratios),
        "worst_log_ratio": max(ratios) if ratios else math.nan,
        "failures": float(sum(s.failed for s in items)),
    }
