"""The horizon law: within one task, a shorter run's best peak LR is higher, ``LR*(T) ∝ T^-β``.

The form is Bjorck et al., "Scaling Optimal LR Across Token Horizons" (ICLR 2025); β is measured
on lrpilot's four built-in tasks with their warmup + decay recipes compressed to a third
(`benchmarks/rung_horizon.py`: the third-length run's best LR is 2× the full run's on shakespeare,
sst2-lora and sst2-full, 2–2.8× on digits, so β = 0.63). The literature's 0.3 was fitted to whole
pretraining runs, not to one recipe compressed or stretched; on these tasks it under-corrects.

Across *different* tasks the run's length is not what sets the answer: the range-test rule
(`lrpilot.finder.lrpilot`) is calibrated on recipes of 150 to 1000 steps with no horizon term (a
char-level transformer's 1000-step recipe peaks at 0.22–0.32 of its curve's minimum, 150-step
fine-tuning runs at 0.21–0.86). So the law scales an answer from a length it was calibrated at to
the run's: from the recipe's own length for a built-in task, and from the nearest end of
`CALIBRATED_STEPS` for a user's run outside that range. Stretching a run was measured only on
runs that see their data several times (sst2-lora at 4 epochs, digits), so ``lrpilot fit`` moves
the upper end to one epoch of the user's data: a longer single pass keeps the test's peak. A run
shorter than a third of the length it is scaled from keeps the third-length factor
(`SHORTEST_MEASURED`): the law was measured no further.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from lrpilot import _validate as check

__all__ = [
    "CALIBRATED_STEPS",
    "HORIZON_EXPONENT",
    "SHORTEST_MEASURED",
    "Horizon",
    "at_horizon",
    "horizon_factor",
    "stretched_to_epoch",
]

HORIZON_EXPONENT = 0.63
"""β of ``LR*(T) ∝ T^-β`` within a task (×2 for a third-length run; see the module docstring)."""

SHORTEST_MEASURED = 3
"""The law was measured on runs compressed to a third of a recipe's length, no shorter; a run
shorter still keeps the third-length factor, ``3 ** HORIZON_EXPONENT`` ≈ 2.0, rather than the law
extrapolated (×2.76 for a fifth). Extrapolated, it overshot: 30-step LoRA fine-tunes of MiniLM on
SST-2 (`benchmarks/fit_user_path.py --steps 30`, 4 seeds) trained best at 0.64–1.98× the range
test's peak and 40-step LoRA runs of SmolLM2 (`benchmarks/fit_llm.py`) at 1.4–1.5×, never at the
2.3–2.8× the law said. The hold still overshoots those; it is where the measurements end."""

CALIBRATED_STEPS = (150, 1000)
"""The run lengths the range-test rule was calibrated on: the built-in tasks' recipes (sst2 150,
digits 250, shakespeare 1000 steps)."""


def horizon_factor(steps: int, calibrated: tuple[int, int] = CALIBRATED_STEPS) -> float:
    """What an LR found for a run of a `calibrated` length (a range of lengths, ``(low, high)``, or
    one length twice) is multiplied by for a run of `steps`: ``(reference / steps) ** β`` with the
    reference `steps` clamped into `calibrated` (1 inside it), and a run shorter than a third of
    the reference scaled as a third-length one (`SHORTEST_MEASURED`).

    >>> round(horizon_factor(50), 2), horizon_factor(500), round(horizon_factor(4000), 2)
    (2.0, 1.0, 0.42)
    >>> horizon_factor(30) == horizon_factor(50)
    True
    >>> horizon_factor(1000, calibrated=(250, 250)) == horizon_factor(4000)
    True
    """
    n = check.step_count("horizon_factor", "steps", steps, 1)
    low, high = calibrated_range("horizon_factor", calibrated)
    return float(min(min(max(n, low), high) / n, SHORTEST_MEASURED) ** HORIZON_EXPONENT)


def stretched_to_epoch(epoch_steps: int) -> tuple[int, int]:
    """`CALIBRATED_STEPS` with the upper end stretched to one epoch of `epoch_steps` optimizer steps:
    stretching a run was measured only on runs that see their data several times, so a run longer
    than the calibrated lengths that sees its data once keeps the test's peak.

    >>> stretched_to_epoch(64), stretched_to_epoch(2500)
    ((150, 1000), (150, 2500))
    """
    low, high = CALIBRATED_STEPS
    return low, max(high, check.step_count("stretched_to_epoch", "epoch_steps", epoch_steps, 1))


def calibrated_range(owner: str, calibrated: object, name: str = "calibrated") -> tuple[int, int]:
    """`calibrated` checked: ``(low, high)`` step counts, 1 ≤ low ≤ high."""
    if not isinstance(calibrated, tuple | list) or len(calibrated) != 2:
        raise ValueError(f"{owner}: {name} must be (low, high) run lengths in steps, got {calibrated!r}")
    low = check.step_count(owner, f"{name}[0]", calibrated[0], 1)
    return low, check.step_count(owner, f"{name}[1]", calibrated[1], low)


@dataclass(frozen=True)
class Horizon:
    """A peak moved to a run's length (`at_horizon`).

    Attributes:
        found: the peak as found, for a run of `reference_steps` (a calibrated length).
        lr: the peak for the run of `steps`.
        factor: `horizon_factor` (``lr / found`` unless the ceiling held it: `capped`).
    """

    found: float
    lr: float
    factor: float
    reference_steps: int
    steps: int
    capped: bool

    def to_dict(self) -> dict[str, Any]:
        """What a run record keeps (``lrpilot.report.RunRecord.horizon``): all but `lr`."""
        out = asdict(self)
        del out["lr"]
        return out

    def note(self, what: str = "the range test's peak") -> str:
        """One line for a person."""
        held = ", capped at the test's max stable LR" if self.capped else ""
        law = f"best LR ∝ steps^-{HORIZON_EXPONENT}"
        if self.reference_steps > SHORTEST_MEASURED * self.steps:
            law += ", as for a third of its length, the shortest run the law was measured on"
        return (
            f"horizon: {what} {self.found:.3g} is for a run of {self.reference_steps} steps; this one has "
            f"{self.steps}, so × {self.factor:.2f} ({law}){held} → {self.lr:.3g}"
        )


def at_horizon(
    peak: float, steps: int, calibrated: tuple[int, int] = CALIBRATED_STEPS, *, ceiling: float = math.inf
) -> Horizon:
    """A `peak` found for a run of a `calibrated` length, moved to a run of `steps` (×
    `horizon_factor`), but not raised past `ceiling` (a range test's max stable LR: a short run's
    best LR is higher, not past the point where a few steps at it stopped helping).

    >>> at_horizon(1e-3, 10_000).lr == 1e-3 * horizon_factor(10_000)
    True
    >>> short = at_horizon(1e-3, 50, ceiling=1.5e-3)
    >>> short.lr, short.capped, short.reference_steps
    (0.0015, True, 150)
    """
    found = check.positive("at_horizon", "peak", peak)
    low, high = calibrated_range("at_horizon", calibrated)
    factor = horizon_factor(steps, (low, high))
    capped = found * factor > ceiling >= found
    lr = float(ceiling) if capped else found * factor
    return Horizon(found, lr, factor, min(max(steps, low), high), steps, capped)
