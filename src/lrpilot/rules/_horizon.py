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
the upper end to one epoch of the user's data: a longer single pass keeps the test's peak.
"""

from __future__ import annotations

from lrpilot import _validate as check

__all__ = ["CALIBRATED_STEPS", "HORIZON_EXPONENT", "horizon_factor"]

HORIZON_EXPONENT = 0.63
"""β of ``LR*(T) ∝ T^-β`` within a task (×2 for a third-length run; see the module docstring)."""

CALIBRATED_STEPS = (150, 1000)
"""The run lengths the range-test rule was calibrated on: the built-in tasks' recipes (sst2 150,
digits 250, shakespeare 1000 steps)."""


def horizon_factor(steps: int, calibrated: tuple[int, int] = CALIBRATED_STEPS) -> float:
    """What an LR found for a run of a `calibrated` length (a range of lengths, ``(low, high)``, or
    one length twice) is multiplied by for a run of `steps`: ``(reference / steps) ** β`` with the
    reference `steps` clamped into `calibrated` (1 inside it).

    >>> round(horizon_factor(50), 2), horizon_factor(500), round(horizon_factor(4000), 2)
    (2.0, 1.0, 0.42)
    >>> horizon_factor(1000, calibrated=(250, 250)) == horizon_factor(4000)
    True
    """
    n = check.step_count("horizon_factor", "steps", steps, 1)
    low = check.step_count("horizon_factor", "calibrated[0]", calibrated[0], 1)
    high = check.step_count("horizon_factor", "calibrated[1]", calibrated[1], low)
    return float((min(max(n, low), high) / n) ** HORIZON_EXPONENT)
