"""`Finding`: what a detector saw, where, and the numbers that made it say so."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["KINDS", "Finding", "merge"]

KINDS = ("non_finite", "spike", "divergence", "collapse", "flat_start", "oscillation")
"""Every kind of finding, roughly from the most to the least urgent."""


def _json_number(value: Any) -> Any:
    """NaN and ±Inf as strings, so a finding's dict is strict JSON (the evidence of a NaN step is a NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclass(frozen=True)
class Finding:
    """One detection.

    `step` is where the detector fired, `start` where the trouble began (the first step of a
    sustained rise, or `step` for a one-step event) and `end` the last step of a merged event.
    `evidence` holds the numbers behind the call (the value, the baseline median and sigma, the z
    score and its threshold, ...), so a report can show *why*, not just *what*.
    """

    kind: str
    step: int
    metric: str = "loss"
    evidence: Mapping[str, float | int | bool | None] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Finding: kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.start is None:
            object.__setattr__(self, "start", self.step)
        if self.end is None:
            object.__setattr__(self, "end", self.step)
        object.__setattr__(self, "evidence", dict(self.evidence))

    @property
    def message(self) -> str:
        """One sentence a person reads: what happened and the number that shows it."""
        e = self.evidence
        if self.kind == "non_finite":
            if self.count > 1:
                return f"{self.metric} is NaN/Inf at {self.count} steps from step {self.start} to {self.end}"
            return f"{self.metric} is {e.get('value')} at step {self.step}"
        if self.kind == "spike":
            worst = (
                f"{self.metric} {e['value']:.4g} is {e['z']:.1f} robust sigmas above "
                f"the median {e['median']:.4g} of the previous {e['window']:.0f} healthy values"
            )
            if self.count > 1:
                return f"{self.count} spikes from step {self.start} to {self.end}; the worst: {worst}"
            return worst.replace(f"{e['value']:.4g} is", f"{e['value']:.4g} at step {self.step} is", 1)
        if self.kind == "divergence":
            return (
                f"loss rose from {e['best']:.4g} (step {e['best_step']:.0f}) to {e['short_median']:.4g} "
                f"and stayed up from step {self.start} to {self.end}"
            )
        if self.kind == "collapse":
            chance = e.get("chance_loss")
            at = f" (chance level {chance:.4g}: the model predicts nothing)" if e.get("at_chance", chance) else ""
            if "rise" in e:  # the rise test's: back up from its lowest point
                back = e.get("relapsed") or e.get("at_chance")
                at = f" (chance level {chance:.4g}: the model predicts nothing)" if back and chance is not None else ""
                return (
                    f"loss rose from {e['best']:.4g} (step {e['best_step']:.0f}) back to {e['short_median']:.4g}{at} "
                    f"from step {self.start} to {self.end}"
                )
            if e.get("rose"):
                if not at and chance is not None and float(e["short_median"] or 0.0) > chance:
                    at = f" (worse than chance, {chance:.4g}: the model predicts confidently wrong)"
                blow_up = f", after a blow-up to {e['highest']:.4g}" if e.get("blew_up") else ""
                return (
                    f"loss stands at {e['short_median']:.4g} at step {self.step}, above the {e['start']:.4g} it "
                    f"started from{at}{blow_up}"
                )
            if e.get("blew_up"):
                why = "after a blow-up"
            elif e.get("grads_died"):
                why = "with gradients that died"
            else:
                why = f"after having been as low as {e['best']:.4g} at step {e['best_step']:.0f}"
            return f"loss is stuck at {e['short_median']:.4g}{at} from step {self.start} to {self.end}, {why}"
        if self.kind == "flat_start":
            span = f"the first {self.step} steps" if not self.start else f"steps {self.start} to {self.step}"
            return (
                f"loss fell only {100 * float(e['drop'] or 0.0):.1f}% (from {e['initial']:.4g} to "
                f"{e['current']:.4g}) in {span}"
            )
        if self.kind == "oscillation":
            return (
                f"loss bounces step to step (lag-1 autocorrelation {e['autocorr']:.2f}, amplitude "
                f"{100 * float(e['amplitude'] or 0.0):.1f}% of the loss) from step {self.start} to {self.end}"
            )
        return f"{self.kind} at step {self.step}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: kind, metric, steps, count, evidence (non-finite numbers as strings) and message."""
        return {
            "kind": self.kind,
            "metric": self.metric,
            "step": self.step,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "evidence": {k: _json_number(v) for k, v in self.evidence.items()},
            "message": self.message,
        }


def merge(findings: Iterable[Finding], gap: int = 1) -> list[Finding]:
    """Fold findings of the same kind and metric that lie within `gap` steps of each other (1:
    adjacent steps; the doctor passes its log's step interval) into one
    event (`start` of the first, `end` and `step` of the last, `count` summed, the evidence of the
    worst one), so a NaN tail of 900 steps reads as one event, not 900 lines."""
    events: list[Finding] = []
    open_: dict[tuple[str, str], int] = {}
    for f in sorted(findings, key=lambda f: (int(f.start or 0), f.step)):
        key = (f.kind, f.metric)
        i = open_.get(key)
        prev = events[i] if i is not None else None
        if prev is not None and i is not None and int(f.start or 0) - int(prev.end or 0) <= gap:
            worst = f if _severity(f) > _severity(prev) else prev
            events[i] = replace(
                prev,
                step=max(prev.step, f.step),
                end=max(int(prev.end or prev.step), int(f.end or f.step)),
                count=prev.count + f.count,
                evidence=worst.evidence,
            )
        else:
            open_[key] = len(events)
            events.append(f)
    return sorted(events, key=lambda f: (int(f.start or 0), KINDS.index(f.kind)))


def _severity(f: Finding) -> float:
    for key in ("z", "rise"):
        value = f.evidence.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return 0.0
