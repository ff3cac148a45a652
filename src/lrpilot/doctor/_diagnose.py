"""`diagnose(series) -> Diagnosis`: the detectors the guard runs, folded over a log, plus advice."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lrpilot import _validate as check
from lrpilot.detect import DetectConfig, Finding, merge, scan
from lrpilot.doctor._advice import Advice, advise, infer_schedule
from lrpilot.doctor._readers import read
from lrpilot.doctor._series import Series

__all__ = ["MIN_FLAT_SPAN", "UNJUDGED_SHARE", "VERDICTS", "Diagnosis", "diagnose", "examine"]

VERDICTS = ("collapsed", "diverged", "unstable", "oscillating", "lr_too_low", "healthy")

MIN_FLAT_SPAN = 150
"""A log shorter than `DetectConfig.flat_steps` (300) has its start judged at its last step. One
that spans at least this many steps is called flat when its loss fell less than
`DetectConfig.flat_rel` over it; over fewer, a healthy run's slow start looks the same (a 3-class
BERT at a good LR took 4.6 % off its loss in its first 60 steps and 86 % in 250), so only the
other outcomes of that judgement stand (a loss risen above its start: a blow-up)."""

UNJUDGED_SHARE = 0.25
"""A log whose first `DetectConfig.min_history` losses (which build the baseline and are not
judged) are more than this share of it gets a note saying so."""

_HEADLINES = {
    "collapsed": "the run blew up and collapsed: the LR was too high",
    "diverged": "the run diverged: the LR was too high",
    "unstable": "the run was unstable (spikes or NaN steps) but carried on",
    "oscillating": "the loss oscillates: the LR is too high",
    "lr_too_low": "the loss was flat at the start: the LR is too low",
    "healthy": "no problem found",
}


@dataclass(frozen=True)
class Diagnosis:
    """What happened in a run, where, the evidence, and what to try next.

    Attributes:
        verdict: one of `VERDICTS`; `headline` says it in words.
        findings: the detectors' findings merged into events (a NaN tail is one event).
        advice: what to try next, most specific first, each with its rule and source.
        series: a summary of the log (rows, steps, what it had, what the reader fixed).
        schedule: the schedule the LR column looks like (an lrpilot spec), if an LR was logged.
    """

    verdict: str
    headline: str
    findings: tuple[Finding, ...]
    advice: tuple[Advice, ...]
    series: dict[str, Any]
    schedule: str | None = None
    lr_peak: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; what ``lrpilot doctor --json`` prints."""
        return {
            "verdict": self.verdict,
            "headline": self.headline,
            "findings": [f.to_dict() for f in self.findings],
            "advice": [a.to_dict() for a in self.advice],
            "log": self.series,
            "schedule": self.schedule,
            "lr_peak": self.lr_peak,
        }


def _verdict(series: Series, events: list[Finding]) -> str:
    kinds = {e.kind for e in events}
    rises = [e for e in events if e.kind in ("collapse", "divergence")]
    if rises:  # the state the run ended in: a rise that passed chance on its way up diverged
        return "collapsed" if max(rises, key=lambda e: int(e.end or e.step)).kind == "collapse" else "diverged"
    if not np.isfinite(series.loss[-1]):
        return "diverged"
    if kinds & {"spike", "non_finite"}:
        return "unstable"
    if "oscillation" in kinds:
        return "oscillating"
    if "flat_start" in kinds:
        return "lr_too_low"
    return "healthy"


def _hidden_non_finite(series: Series) -> int:
    if series.grad_norm is None or series.grad_logged is None:
        return 0
    hidden = series.grad_logged & ~np.isfinite(series.grad_norm) & np.isfinite(series.loss)
    return int(hidden.sum())


def diagnose(series: Series, config: DetectConfig | None = None, *, max_grad_norm: float | None = None) -> Diagnosis:
    """Run the detectors over `series` and turn what they find into a verdict and advice. Without
    a `config`, the defaults, with the chance level of the series' classes and the short median
    fitted to its batch (`DetectConfig.scaled_to_batch`) where its log has them.

    `max_grad_norm`: the norm the run clipped its gradients to. Logs record the norm before
    clipping (the Trainer's ``grad_norm`` does); with this the spike test reads the clipped one, the
    gradient the update applied, as the guard does (`lrpilot.guard.update`), so a classifier's
    grad norm growing as it grows confident is not called a spike the clip had already bounded.
    """
    clip = None if max_grad_norm is None else check.positive("diagnose", "max_grad_norm", max_grad_norm)
    config = config or fitted_config(series)
    found = _without_the_rise(
        scan(series.steps, series.loss, _clipped(series.grad_norms(), clip), config=config), config
    )
    span = _span(series)
    if span < MIN_FLAT_SPAN:  # too short to call flat; a loss that rose above its start is still judged
        found = [f for f in found if f.kind != "flat_start"]
    interval = int(np.median(np.diff(series.steps))) if len(series) > 1 else 1
    events = merge(found, gap=max(1, interval))
    verdict = _verdict(series, events)
    guess = infer_schedule(series)
    summary = series.summary()
    baseline = config.min_history
    if len(series) and baseline > UNJUDGED_SHARE * len(series):
        summary["notes"].append(
            f"only {len(series)} logged losses: the detectors judge a loss against the {baseline} before it, so "
            f"the first {min(baseline, len(series))} ({min(baseline / len(series), 1.0):.0%}) were not judged and "
            "a quiet verdict says little (log more often, or read the evaluations)"
        )
    if span < MIN_FLAT_SPAN and len(series):
        summary["notes"].append(
            f"the log spans {span} steps: too few to tell a flat start (a too-low LR) from a slow one, which needs "
            f"{MIN_FLAT_SPAN}; a loss that ended above where it started is still judged"
        )
    if clip is None and any(f.kind == "spike" and f.metric == "grad_norm" for f in events):
        summary["notes"].append(
            "the grad-norm spikes are judged on the norm as logged, before any clipping: if the run clipped "
            "gradients (the Trainer does, at max_grad_norm 1.0 by default), pass that norm (--max-grad-norm) to "
            "judge what its updates applied, as the guard does"
        )
    hidden = _hidden_non_finite(series)
    if hidden:
        summary["notes"].append(
            f"{hidden} logged step(s) have a non-finite grad norm but a finite loss: the NaN loss was hidden "
            f"(Hugging Face's logging_nan_inf_filter logs a running average in its place) and the update was "
            f"still applied"
        )
    return Diagnosis(
        verdict=verdict,
        headline=_HEADLINES[verdict],
        findings=tuple(events),
        advice=advise(series, events),
        series=summary,
        schedule=guess.spec() if guess else None,
        lr_peak=guess.peak if guess else None,
    )


def _without_the_rise(found: list[Finding], config: DetectConfig) -> list[Finding]:
    """`found` less the loss spikes that are a divergence's or collapse's rise itself: from its
    onset to where its test, which fires every `div_patience` steps while the rise lasts, next
    would. The spike test's baseline keeps no spiking loss, so every loss of a rise that stays up
    is a spike against the losses before it: a run that diverged over its last 200 steps was said to
    have "diverged and spiked (190 spikes)", of which one was a spike."""
    rises = [
        (int(f.start if f.start is not None else f.step), f.step + config.div_patience)
        for f in found
        if f.kind in ("divergence", "collapse")
    ]
    if not rises:
        return found
    return [
        f
        for f in found
        if not (f.kind == "spike" and f.metric == "loss" and any(low <= f.step < high for low, high in rises))
    ]


def fitted_config(series: Series, classes: int | None = None, batch_size: int | None = None) -> DetectConfig:
    """The detectors' defaults for `series`: the chance level of `classes` (else the series' own:
    its recorded chance level, else its classes'), the short median fitted to `batch_size` (else
    the series'), as the guard of that run had them."""
    if classes is None and series.chance_loss is not None:
        config = DetectConfig(chance_loss=series.chance_loss)
    else:
        config = DetectConfig.for_classes(classes if classes is not None else series.classes)
    span = _span(series)
    if 0 < span < config.flat_steps:  # a short log's start is judged at its end (see `MIN_FLAT_SPAN`)
        config = replace(config, flat_steps=span)
    batch = batch_size if batch_size is not None else series.batch_size
    return config if batch is None else config.scaled_to_batch(batch)


def _span(series: Series) -> int:
    """The steps the log covers, first to last."""
    return int(series.steps[-1] - series.steps[0]) if len(series) else 0


def _clipped(norms: list[float | None] | None, clip: float | None) -> list[float | None] | None:
    """`norms` as clipping to `clip` left them (a non-finite one stays what it was)."""
    if norms is None or clip is None:
        return norms
    return [g if g is None or not math.isfinite(g) else min(g, clip) for g in norms]


def examine(
    path: str | Path,
    config: DetectConfig | None = None,
    *,
    max_grad_norm: float | None = None,
    loss_column: str | None = None,
) -> tuple[Series, Diagnosis]:
    """`read` then `diagnose`: the doctor in one call (`loss_column`: the training loss's column or
    tag where the log names it otherwise, as `read` takes it)."""
    series = read(path, loss_column=loss_column)
    return series, diagnose(series, config, max_grad_norm=max_grad_norm)
