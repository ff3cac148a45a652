"""`lint(schedule, total_steps)`: the mistakes that waste or wreck a run, found before it starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lrpilot import _validate as check
from lrpilot.schedules._base import Schedule

__all__ = ["LintWarning", "lint", "sample_steps"]

_EVERY_STEP_UP_TO = 200_000


@dataclass(frozen=True)
class LintWarning:
    """One finding: a stable `code`, a sentence for people, and the step it concerns (if any)."""

    code: str
    message: str
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_steps(total_steps: int, extra: tuple[float, ...] = ()) -> npt.NDArray[np.float64]:
    """Every step of a run up to 200 000 steps; beyond, 200 000 evenly spaced ones plus `extra`."""
    if total_steps <= _EVERY_STEP_UP_TO:
        steps = np.arange(total_steps, dtype=np.float64)
    else:
        # float() first: a Python int past int64 (10**20 steps) is an object numpy cannot subtract
        steps = np.unique(np.round(np.linspace(0.0, float(total_steps - 1), _EVERY_STEP_UP_TO)))
    inside = [s for s in extra if 0 <= s < total_steps]
    return np.unique(np.concatenate([steps, np.asarray(inside, dtype=np.float64)]))


def _ends_on_last_step(schedule: Schedule, horizon: float, total: int) -> bool:
    """Whether the schedule was built for a run of `total` steps and ends on its last step index,
    ``total - 1``, by construction (torch ``OneCycleLR``'s convention, which `OneCycle` follows): the
    last update gets the final LR, so nothing is left over. A schedule built for another length
    (``total_steps=999`` in a 1000-step run) still warns."""
    return horizon == total - 1 and getattr(schedule, "total_steps", None) == total


def lint(schedule: Schedule, total_steps: int) -> list[LintWarning]:
    """Check `schedule` for a run of `total_steps` optimizer steps.

    Codes: ``non-finite`` (NaN/Inf LRs), ``zero-first-step`` (the first update is wasted at LR 0,
    as with HF's ``linear``/``cosine`` warmups), ``warmup-too-long`` (warmup ≥ the run),
    ``horizon-mismatch`` (the decay ends before or after the run does; ending on the run's last
    step, ``total_steps - 1``, as torch's ``OneCycleLR`` does by construction, is not a mismatch),
    ``floor-above-peak`` (the schedule decays and then ends above the peak it reached earlier),
    ``no-decay`` (the LR is still at its peak on the last step: warmup and hold fill the run, or the
    decay begins on its last step),
    ``ends-mid-cycle`` (a cyclic schedule or one with restarts ends high in a cycle, nearer its
    peak than its low: the weights a run keeps are those of its last, annealed steps).
    """
    total = check.step_count("lint", "total_steps", total_steps, 1)
    horizon = schedule.horizon
    extra = (float(horizon),) if horizon is not None else ()
    steps = sample_steps(total, extra)
    lrs = schedule.values(steps)
    found: list[LintWarning] = []

    bad = np.flatnonzero(~np.isfinite(lrs))
    if bad.size:
        found.append(
            LintWarning(
                "non-finite", f"the LR is not finite ({lrs[bad[0]]}) from step {int(steps[bad[0]])}", int(steps[bad[0]])
            )
        )
        return found

    if lrs[0] == 0.0:
        found.append(
            LintWarning(
                "zero-first-step",
                "the first optimizer step gets LR 0 and is wasted (the HF/torch warmup convention); "
                "lrpilot's default warmup_offset=1 starts at peak/(warmup_steps+1)",
                0,
            )
        )

    warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
    if warmup >= total:
        found.append(
            LintWarning(
                "warmup-too-long",
                f"warmup_steps={warmup} ≥ total_steps={total}: the run ends before the LR reaches its peak",
                total - 1,
            )
        )

    peak = float(lrs.max())
    if horizon is not None and horizon != total and not _ends_on_last_step(schedule, horizon, total):
        settled = float(schedule(horizon))
        # A step decay is flat before its last milestone: ending early is its design, not a mistake.
        annealing = horizon < 1 or float(schedule(horizon - 1)) != float(schedule(horizon - 0.5))
        if settled < peak and (horizon > total or annealing):
            if horizon < total:
                message = (
                    f"the decay ends at step {_step(horizon)} but the run has {total} steps: "
                    f"the last {_step(total - horizon)} steps stay at the final LR {settled:.3g}"
                )
            else:
                end = float(schedule(total - 1))
                message = (
                    f"the run ends at step {total} before the decay does (step {_step(horizon)}): "
                    f"the last LR is {end:.3g}, {100 * end / peak:.0f}% of the peak, not the planned {settled:.3g}"
                )
            found.append(LintWarning("horizon-mismatch", message, int(min(horizon, total - 1))))
    floor = getattr(schedule, "min_lr", None)
    mismatched = any(w.code == "horizon-mismatch" for w in found)  # it says as much where the decay ends later
    if isinstance(floor, float) and floor < peak and warmup < total and lrs[-1] >= peak and not mismatched:
        why, fix = _why_no_decay(schedule, total)
        found.append(
            LintWarning(
                "no-decay",
                f"the LR is still at its peak {peak:.3g} on the run's last step: {why}, so the decay to "
                f"{floor:.3g} never happens{fix}",
                total - 1,
            )
        )
    found += _ends_mid_cycle(schedule, steps, lrs)

    final = lrs[-1]
    not_final = np.flatnonzero(lrs != final)
    tail_start = int(not_final[-1]) + 1 if not_final.size else 0
    head = lrs[:tail_start]
    if head.size > 1 and np.any(np.diff(head) < 0) and final > head.max():
        found.append(
            LintWarning(
                "floor-above-peak",
                f"the schedule decays and then ends at {final:.3g}, above its earlier peak {head.max():.3g}: "
                "check the floor and the last segment",
                int(steps[tail_start]),
            )
        )
    return found


def _step(x: float) -> str:
    """A step for a message: all its digits (``:g`` wrote step 12,345,678 as 1.23457e+07)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.12g}"


def _why_no_decay(schedule: Schedule, total: int) -> tuple[str, str]:
    """Why the last step is still at the peak, and the fix, in the schedule's own parameters. "The
    warmup and hold fill the run (shorten the hold)" was said of every schedule, also of those with
    no hold: a WSD whose decay is one step (its first is at the peak) or a one-step run."""
    warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
    hold = int(getattr(schedule, "hold_steps", 0) or 0)
    begin = warmup + int(getattr(schedule, "_hold", hold))  # the decay's first step, still at the peak
    if begin >= total:
        return f"the warmup and hold fill the {total} steps", " (shorten the hold)"
    if total == 1:
        return "the decay begins at the peak on step 0, the run's only one", ""
    if hold:
        fix = "shorten hold_steps"
    elif schedule.name == "wsd" and begin > warmup:
        fix = "give a longer decay: decay_steps ≥ 2"
    else:
        fix = "shorten the warmup"
    return f"the decay begins at the peak on step {begin}, the run's last", f" ({fix})"


def _ends_mid_cycle(
    schedule: Schedule, steps: npt.NDArray[np.float64], lrs: npt.NDArray[np.float64]
) -> list[LintWarning]:
    """``ends-mid-cycle``: after its first peak the LR fell and rose again (restarts, cycles), and the
    run ends nearer the peak than the lowest LR since. SGDR and cyclical LRs keep the weights of a
    cycle's end, where the LR is low; one cut off in the middle of a cycle (``period=300`` in a
    1000-step run ends at 75 % of the peak) ends on steps taken at a high LR."""
    top = int(np.argmax(lrs))
    after = lrs[top:]
    rises = np.flatnonzero(np.diff(after) > 0)
    falls = np.flatnonzero(np.diff(after) < 0)
    if not rises.size or not falls.size or rises[-1] < falls[0]:
        return []
    low, peak, final = float(after.min()), float(lrs[top]), float(lrs[-1])
    if final - low <= 0.5 * (peak - low):
        return []
    last_low = top + int(rises[-1])  # the rises are of after[i] → after[i + 1]: the last cycle started here
    while last_low > top and lrs[last_low - 1] <= lrs[last_low]:
        last_low -= 1
    began, low = _exact_low(schedule, steps, last_low, low)
    return [
        LintWarning(
            "ends-mid-cycle",
            f"the run ends in the middle of a cycle, its last LR {final:.3g} at {100 * final / peak:.0f}% of the "
            f"peak (the LR was {low:.3g} before): end it where a cycle ends (its last one began at step "
            f"{began}), or choose cycles that end with the run",
            int(steps[-1]),
        )
    ]


_REFINE_UP_TO = 100_000


def _exact_low(schedule: Schedule, steps: npt.NDArray[np.float64], i: int, low: float) -> tuple[int, float]:
    """The step and LR of the lowest point between the samples either side of sample `i`, every step
    evaluated, and the lower of that LR and `low`. A run past 200,000 steps is sampled, so the
    sample nearest a cycle's low was up to total/200,000 steps off: "its last one began at step
    8999994" for a restart at 9,000,000. Left as sampled where the gap is too wide to evaluate."""
    lo, hi = steps[max(i - 1, 0)], steps[min(i + 1, len(steps) - 1)]
    if hi - lo > _REFINE_UP_TO:
        return int(steps[i]), low
    window = np.arange(lo, hi + 1.0)
    values = schedule.values(window)
    j = int(np.argmin(values))
    return int(window[j]), min(low, float(values[j]))
