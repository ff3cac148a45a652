"""What `tune` searches, and where it looks first.

The peak LR is searched on a log scale inside an interval around the range test's answer (at least
16× wide, and never narrower than the finder's bootstrap band): the finder is rarely off by more
than 3× (`benchmarks/finder_regret.py`), so a full-range search would spend most trials where no
good LR is. Optionally the warmup share and the decay shape are searched too, from short lists.

The first trials are a fixed *design*: the finder's peak, then ×½ and ×2 (those inside the
interval), the same on every machine and in every re-run; a line search (`lrpilot.tuning._halving`)
goes on from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lrpilot import _validate as check
from lrpilot.tasks import DECAYS, Recipe

if TYPE_CHECKING:
    import optuna

__all__ = ["SEARCHABLE", "WARMUPS", "Candidate", "Space"]

SEARCHABLE = ("lr", "warmup", "decay")
"""What ``search`` may name: the peak LR (always searched), the warmup share, the decay shape."""
WARMUPS = (0.02, 0.05, 0.1, 0.2)
"""Warmup shares of the run to choose from when the warmup is searched (and the recipe's own)."""
SPAN = 4.0
"""The LR interval reaches at least this factor either side of the range test's peak."""
DESIGN = (1.0, 0.5, 2.0)
"""The first trials, as multiples of the range test's peak, in the order they run: the finder is
rarely off by more than 2× (`benchmarks/finder_regret.py`), and where it is, the line search goes on."""


@dataclass(frozen=True)
class Candidate:
    """One trial's choice: a peak LR, and the warmup share and decay (None: the recipe's)."""

    peak_lr: float
    warmup: float | None = None
    decay: str | None = None

    def recipe(self, base: Recipe) -> Recipe:
        """`base` with this candidate's warmup share (at least one step) and decay."""
        out = base
        if self.warmup is not None:
            out = replace(out, warmup_steps=min(out.total_steps, max(1, round(self.warmup * out.total_steps))))
        if self.decay is not None:
            out = replace(out, decay=self.decay)
        return out

    def describe(self) -> str:
        parts = [f"lr {self.peak_lr:.3g}"]
        if self.warmup is not None:
            parts.append(f"warmup {self.warmup:.0%}")
        if self.decay is not None:
            parts.append(self.decay)
        return ", ".join(parts)


@dataclass(frozen=True)
class Space:
    """The search space: LRs in ``[low, high]`` (log scale), and the warmup shares and decays to
    choose from (empty: not searched, the recipe's)."""

    low: float
    high: float
    warmups: tuple[float, ...] = ()
    decays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check.positive("tune", "the LR interval's low end", self.low)
        if not self.high > self.low:
            raise ValueError(f"tune: the LR interval must have high > low, got {self.low:g} … {self.high:g}")

    @classmethod
    def around(cls, peak: float, band: tuple[float, float], recipe: Recipe, search: tuple[str, ...]) -> Space:
        """The interval around the range test's `peak` (covering its `band`), and the lists for
        what `search` names beyond ``lr`` (each including the recipe's own choice)."""
        low = float(f"{min(band[0], peak / SPAN):.3g}")
        high = float(f"{max(band[1], peak * SPAN):.3g}")
        share = round(recipe.warmup_steps / recipe.total_steps, 4)
        warmups = tuple(sorted({*WARMUPS, share})) if "warmup" in search else ()
        decays = DECAYS if "decay" in search else ()
        return cls(low, high, warmups, decays)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna's distributions, by parameter name."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out: dict[str, optuna.distributions.BaseDistribution] = {"lr": FloatDistribution(self.low, self.high, log=True)}
        if self.warmups:
            out["warmup"] = CategoricalDistribution(self.warmups)
        if self.decays:
            out["decay"] = CategoricalDistribution(self.decays)
        return out

    def suggest(self, trial: optuna.Trial) -> Candidate:
        """The trial's candidate (the enqueued values for a design trial)."""
        lr = trial.suggest_float("lr", self.low, self.high, log=True)
        warmup = trial.suggest_categorical("warmup", self.warmups) if self.warmups else None
        decay = trial.suggest_categorical("decay", self.decays) if self.decays else None
        return Candidate(lr, None if warmup is None else float(warmup), None if decay is None else str(decay))

    def design(self, peak: float, recipe: Recipe) -> list[dict[str, Any]]:
        """The design points (params for `optuna.Study.enqueue_trial`): multiples of the range
        test's `peak` inside the interval, at the recipe's warmup and decay."""
        points: list[dict[str, Any]] = []
        for factor in DESIGN:
            lr = float(f"{peak * factor:.3g}")
            if self.low <= lr <= self.high:
                point: dict[str, Any] = {"lr": lr}
                if self.warmups:
                    point["warmup"] = round(recipe.warmup_steps / recipe.total_steps, 4)
                if self.decays:
                    point["decay"] = recipe.decay
                points.append(point)
        return points

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "warmups": list(self.warmups), "decays": list(self.decays)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        return cls(float(data["low"]), float(data["high"]), tuple(data["warmups"]), tuple(data["decays"]))

    @property
    def decades(self) -> float:
        return math.log10(self.high / self.low)


def parse_search(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"lr"``, ``"lr,warmup,decay"`` (or a sequence of those names) as a tuple; ``lr`` is always included."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    for name in names:
        check.choice("tune", "--search", name, SEARCHABLE)
    return tuple(n for n in SEARCHABLE if n in {"lr", *names})
