"""What to try next: a few rules of practice, each with its source, applied to what the detectors found.

The rules are the practitioner's ones the project starts from (articles 000 and 003, docs/sources.md): halve
the LR on spikes or NaN before changing anything else; ×3–5 when the loss is flat early; adjust by
factors of 2–3; add or lengthen warmup on early instability; a fresh warmup when resuming without
the optimizer state. One rule is the guard's own: a loss stuck at chance after a blow-up is an LR
that was too high, so it must never be read as "flat → raise the LR".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrpilot._citation import Rule
from lrpilot.detect import Finding
from lrpilot.doctor._series import Series

__all__ = ["RULES", "Advice", "Rule", "advise", "infer_schedule"]


_SEEDS = "articles 000 and 003 on the learning rate (quoted in lrpilot's docs/sources.md)"
RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("halve", "Loss spikes or NaN: cut the LR, halving it first, before changing anything else.", _SEEDS),
        Rule("raise", "Loss flat for the first few hundred steps: the LR is too low; multiply it by 3–5.", _SEEDS),
        Rule("factors", "Adjust the LR by factors of 2–3, not by orders of magnitude.", _SEEDS),
        Rule("warmup", "Instability early in the run: add warmup, or lengthen it.", _SEEDS),
        Rule("resume", "Resuming from a checkpoint without the optimizer state needs a fresh warmup.", _SEEDS),
        Rule(
            "collapse",
            "A loss stuck at chance after a blow-up means the LR was too high and killed the model: restart "
            "from before it with the LR halved. It is flat, but raising the LR is the wrong fix.",
            "lrpilot guard; divergence shows as a loss that falls, then explodes",
        ),
        Rule("keep", "No instability and no flat start: keep the LR, and change one thing at a time.", _SEEDS),
    )
}


@dataclass(frozen=True)
class Advice:
    """One thing to try, with the reason and the rule (and its source) it comes from.

    `lr` is the peak LR to try (None if the log has no LR), `warmup_steps` the warmup to use, and
    `schedule` a complete lrpilot schedule spec (``lrpilot schedule SPEC`` previews it).
    """

    action: str
    reason: str
    rule: str
    lr: float | None = None
    warmup_steps: int | None = None
    schedule: str | None = None

    @property
    def rule_text(self) -> str:
        return RULES[self.rule].text

    @property
    def source(self) -> str:
        return RULES[self.rule].source

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule_text": self.rule_text, "source": self.source}


@dataclass(frozen=True)
class ScheduleGuess:
    """The schedule a log's LR column looks like: shape, peak, warmup, floor, length."""

    shape: str
    peak: float
    warmup_steps: int
    floor_ratio: float
    total_steps: int
    recorded: dict[str, Any] | None = None
    """The schedule the run recorded (its `to_dict`), which `spec` changes the peak and warmup of."""

    def spec(self, peak: float | None = None, warmup_steps: int | None = None) -> str | None:
        """An lrpilot schedule spec of this shape (with a new peak / warmup); None if it would not parse."""
        from lrpilot.schedules import parse

        p = self.peak if peak is None else peak
        w = self.warmup_steps if warmup_steps is None else warmup_steps
        if self.recorded is not None:
            changed = {"peak": float(f"{p:.3g}"), **({"warmup_steps": w} if "warmup_steps" in self.recorded else {})}
            try:
                return parse({**self.recorded, **changed}).to_string()
            except ValueError:
                return None
        if self.shape == "constant":
            text = f"constant(peak={p:.3g}, warmup_steps={w})"
        else:
            text = (
                f"{self.shape}(peak={p:.3g}, total_steps={self.total_steps}, warmup_steps={w}, "
                f"floor_ratio={round(self.floor_ratio, 3):g})"  # a decay to zero: 0, as lrpilot schedule echoes it
            )
        try:
            return parse(text).to_string()
        except ValueError:
            return None


def infer_schedule(series: Series) -> ScheduleGuess | None:
    """The schedule the run recorded, else a guess from the LR column (None if no LR was logged)."""
    if series.schedule is not None:
        from lrpilot.schedules import parse

        recorded = parse(series.schedule)
        fields = recorded.to_dict()
        total = fields.get("total_steps")
        return ScheduleGuess(
            recorded.name,
            float(fields.get("peak", 0.0)) or float(recorded(0)),
            int(fields.get("warmup_steps", 0)),
            float(fields.get("floor_ratio", 0.0)),
            int(total) if isinstance(total, int) else int(series.steps[-1]) + 1,
            recorded=fields,
        )
    if series.lr is None:
        return None
    ok = np.isfinite(series.lr)
    steps, lr = series.steps[ok], series.lr[ok]
    if lr.size == 0 or float(lr.max()) <= 0:
        return None
    peak = float(lr.max())
    peak_at = int(np.argmax(lr >= 0.99 * peak))
    interval = int(np.median(np.diff(steps))) if steps.size > 1 else 1
    origin = 0 if steps[0] <= 2 * interval else int(steps[0])  # a log from the start, or a resumed piece
    # HF logs count from 1: step N = N updates done, logged with the LR update N used, the schedule's
    # value at step N - 1 (a warmup of 20 peaks at logged step 21)
    counted = 0 if steps[0] == 0 else 1
    warmup = _warmup(int(steps[peak_at]) - counted - origin, float(lr[peak_at]), peak) if lr[0] < 0.5 * peak else 0
    total = int(steps[-1]) + 1 - counted
    final = float(lr[-1])
    if final >= 0.9 * peak or peak_at == lr.size - 1:
        return ScheduleGuess("constant", peak, warmup, 1.0, total)
    # Cosine keeps 85 % of the way from floor to peak a quarter into the decay, linear 75 %.
    quarter = steps[peak_at] + 0.25 * (steps[-1] - steps[peak_at])
    frac = (float(np.interp(quarter, steps, lr)) - final) / (peak - final)
    shape = "cosine" if frac > 0.8 else "linear"
    return ScheduleGuess(shape, peak, warmup, _floor_ratio(shape, peak, final, warmup, total), total)


def _warmup(index: int, lr: float, peak: float) -> int:
    """The length of a linear warmup from 0 whose LR at step `index` (the first within 1 % of the
    peak) is `lr`: that step itself where it is the peak, else the step the line through it reaches
    the peak at (a warmup of 300 logged every 10 steps is at 299/300 of its peak at step 299)."""
    return max(round(index * peak / lr), 0) if lr > 0 else max(index, 0)


def _floor_ratio(shape: str, peak: float, last: float, warmup: int, total: int) -> float:
    """The floor a decay from `peak` (after `warmup`) to step `total` has, given `last`, its LR at the
    last step, ``total - 1``: a decay ends at the floor one step after the run's last update (a
    linear decay to zero over 160 steps trains its last step at 1/160 of the peak, which read as a
    floor of 0.006)."""
    span = total - warmup
    if span <= 1:
        return last / peak
    left = 1.0 / span if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * (span - 1) / span))
    return min(max((last - peak * left) / (1.0 - left), 0.0), peak) / peak


_TROUBLE = ("non_finite", "spike", "divergence", "collapse")


def advise(series: Series, events: list[Finding]) -> tuple[Advice, ...]:
    """The advice for a log, most specific first."""
    guess = infer_schedule(series)
    peak = guess.peak if guess else None
    warmup = guess.warmup_steps if guess else 0
    total = guess.total_steps if guess else int(series.steps[-1]) + 1
    kinds = {e.kind for e in events}
    trouble = [e for e in events if e.kind in _TROUBLE]
    out: list[Advice] = []

    def spec(lr: float | None, w: int | None = None) -> str | None:
        return guess.spec(lr, w) if guess and lr else None

    if trouble:
        first = min(int(e.start or e.step) for e in trouble)
        # the last resume before the trouble, once (a log resumed many times had it once a resume)
        near = [r for r in series.resumes if r <= first <= r + max(100, total // 20)]
        if near:
            resume = near[-1]
            steps = max(warmup, 100, total // 100)
            base = spec(peak)
            sched = f"rewarmup(base={base}, at={resume}, steps={steps})" if base else None
            out.append(
                Advice(
                    "fresh_warmup",
                    f"the trouble begins at step {first}, right after the run resumed at step {resume}; "
                    f"without the optimizer state Adam starts from zero moments: warm up again over {steps} steps",
                    "resume",
                    peak,
                    steps,
                    sched,
                )
            )
        collapse = "collapse" in kinds
        lr = None if peak is None else peak / 2
        what = "collapsed to a flat loss after blowing up" if collapse else _trouble_words(trouble)
        out.append(
            Advice(
                "halve_lr",
                f"the run {what} (first at step {first}); {_lr_words(peak, lr, 'halve the peak LR')}",
                "collapse" if collapse else "halve",
                lr,
                warmup,
                spec(lr),
            )
        )
        new = (
            int(np.clip(2 * first, max(1, total // 100), max(1, total // 10)))
            if warmup == 0
            else min(2 * warmup, max(1, total // 4))
        )
        # a warmup already past a quarter of the run is not lengthened: it read "lengthen the warmup from 112 to 100"
        if first <= max(2 * warmup, total // 10) and new > warmup:
            verb = "add a warmup" if warmup == 0 else f"lengthen the warmup from {warmup}"
            out.append(
                Advice(
                    "add_warmup" if warmup == 0 else "lengthen_warmup",
                    f"the trouble starts early (step {first} of {total}): {verb} to {new} steps",
                    "warmup",
                    lr,
                    new,
                    spec(lr, new),
                )
            )
    elif "oscillation" in kinds:
        lr = None if peak is None else peak / 2
        out.append(
            Advice(
                "lower_lr",
                f"the loss bounces up and down from step to step: the LR is too high; "
                f"{_lr_words(peak, lr, 'lower the peak LR 2–3×')}",
                "factors",
                lr,
                warmup,
                spec(lr),
            )
        )
    elif "flat_start" in kinds:
        lr = None if peak is None else 3 * peak
        out.append(
            Advice(
                "raise_lr",
                f"the loss hardly moved early on: the LR is too low; {_lr_words(peak, lr, 'triple the peak LR')} "
                f"(the rule says ×3–5: start at ×3, then adjust by factors of 2–3)",
                "raise",
                lr,
                warmup,
                spec(lr),
            )
        )
    else:
        out.append(Advice("keep", "no instability and no flat start were found", "keep", peak, warmup, spec(peak)))
    return tuple(out)


def _trouble_words(trouble: list[Finding]) -> str:
    kinds = {e.kind for e in trouble}
    parts = []
    if "non_finite" in kinds:
        parts.append("produced NaN/Inf")
    if "divergence" in kinds:
        parts.append("diverged")
    if "spike" in kinds:
        n = sum(e.count for e in trouble if e.kind == "spike")
        parts.append(f"spiked ({n} spike{'s' if n != 1 else ''})")
    return " and ".join(parts)


def _lr_words(peak: float | None, lr: float | None, verb: str) -> str:
    if peak is None or lr is None or not math.isfinite(lr):
        return f"{verb} (the log has no learning rate to start from)"
    return f"{verb}: {peak:.3g} → {lr:.3g}"
