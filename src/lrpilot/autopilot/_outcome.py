"""What the evaluations say about the run as a whole: a model that was clearly better part-way
through than at the end (it went unstable late, or over-fitted) gets a note that says so, whatever
the task; a causal LM whose final loss is above a uniform guess's gets one too.

The guard judges the training loss step by step; a fine-tuning run on a small batch can bounce
without any one step looking like a spike, and still end at chance after being well above it, and
a run that goes over a small data set dozens of times over-fits with a training loss that keeps
falling. Only the evaluations show that, so fit reads them after the run (`worse_at_end`). Every
task has a validation loss; a classifier's accuracy is read too, since its noise is known without
per-example losses (a binomial proportion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "DROP_SIGMAS",
    "MIN_DROP",
    "MIN_LOSS_GAP",
    "MIN_LOSS_RISE",
    "ONE_ANSWER",
    "above_uniform",
    "one_answer",
    "worse_at_end",
]

DROP_SIGMAS = 3.0
"""How many standard errors of the difference between two evaluations the final accuracy must
fall below the best earlier one."""

MIN_DROP = 0.1
"""...and by at least this much accuracy: a small drop is not worth a note, however significant."""

MIN_LOSS_RISE = 0.1
"""The final evaluation's loss must be at least this share above the best earlier one to count as
clearly worse. fit's evaluations score the same examples each time, so two of them differ by what
the model learnt or lost, not by which examples were drawn; a tenth is well past the wobble of a
run still improving (digits' and the SST-2 fits' evaluations fall or stay within a few percent)."""

MIN_LOSS_GAP = 0.05
"""...and by at least this many nats: a loss near zero can rise by a tenth without a prediction
changing (digits at 0.08)."""

ONE_ANSWER = 0.99
"""`one_answer`: a classifier that gives one answer for at least this share of the validation set."""


def one_answer(top_share: float | None, accuracy: float | None) -> str | None:
    """A note when a classifier gives one answer whatever the input (at least `ONE_ANSWER` of the
    validation set) while the labels are not all that one (its accuracy is below that share), else
    None. Its accuracy is then the share of that class's labels, which on unbalanced labels looks
    good (0.90 on 90 % / 10 %). Its loss does not tell the two causes apart at a glance: collapsed,
    it sits at the labels' entropy; a short run's model can rank the examples (a loss below the
    entropy) and still answer the majority class for every one of them
    (`benchmarks/guard_unbalanced.py`'s data at a 40-step budget: loss 0.259 against 0.325).

    >>> one_answer(1.0, 0.9)[:67]
    'the model gives the same answer for 100% of the validation examples'
    >>> one_answer(0.93, 0.94) is None
    True
    """
    if top_share is None or accuracy is None or top_share < ONE_ANSWER or accuracy >= top_share:
        return None
    return (
        f"the model gives the same answer for {top_share:.0%} of the validation examples, so its accuracy "
        f"({accuracy:.2f}) is that class's share of the labels, not something it learned to tell apart: a model "
        "collapsed onto the majority class does this (an LR too high; `lrpilot tune` searches it), and so does one "
        "whose scores have not yet crossed the decision line for the rarer classes (a longer run, balanced "
        "classes or class weights)"
    )


def _loss_rise(losses: Sequence[float]) -> int | None:
    """The index of the best earlier evaluation when the final loss is clearly above it
    (`MIN_LOSS_RISE`, `MIN_LOSS_GAP`), else None."""
    *earlier, final = losses
    best = min(earlier)
    if final - best < max(MIN_LOSS_GAP, MIN_LOSS_RISE * best):
        return None
    return earlier.index(best)


def _accuracy_drop(accuracies: Sequence[float], examples: int) -> int | None:
    """The index of the best earlier evaluation when the final accuracy is clearly below it: by
    `DROP_SIGMAS` standard errors of the difference and at least `MIN_DROP`, else None. The
    standard error is taken as for two independent samples of `examples`, which overstates that of
    a difference on the same examples and so errs towards silence."""
    *earlier, final = accuracies
    best = max(earlier)
    middle = (best + final) / 2
    sigma = math.sqrt(2 * middle * (1 - middle) / examples)
    if best - final < max(MIN_DROP, DROP_SIGMAS * sigma):
        return None
    return earlier.index(best)


def _usable(steps: Sequence[int], values: Sequence[float] | None) -> bool:
    """Whether `values` can be judged: one per evaluation, at least two, all finite (a failed
    evaluation leaves nothing to compare on)."""
    return values is not None and len(values) == len(steps) >= 2 and all(math.isfinite(v) for v in values)


def worse_at_end(
    steps: Sequence[int],
    losses: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    examples: int,
    epochs: float | None = None,
) -> str | None:
    """A note when the last evaluation is clearly worse than the best earlier one, else None: its
    loss clearly above (`_loss_rise`), or a classifier's accuracy clearly below (`_accuracy_drop`).
    The one rule every task's run is judged by, by fit and anyone reading the evaluations.

    `steps`, `losses` and `accuracies` are the evaluations in order (fit's all score the same
    `examples`, the last one read off its pass over the whole set); `epochs`, how many times the
    run went over its training data, where known, says whether over-fitting is the likely cause.

    >>> worse_at_end([161, 322, 483, 643], [4.68, 6.35, 7.47, 7.95], examples=128, epochs=76)[:91]
    'the model got worse after step 161: validation loss 4.68 there, 7.95 at the end, 70% higher'
    >>> worse_at_end([13, 26, 39, 50], [0.7, 0.6, 0.55, 0.56], [0.80, 0.84, 0.85, 0.83], examples=128) is None
    True
    """
    rise = _loss_rise(losses) if _usable(steps, losses) else None
    drop = _accuracy_drop(accuracies, examples) if accuracies is not None and _usable(steps, accuracies) else None
    if rise is None and drop is None:
        return None
    lead = steps[rise if rise is not None else drop]  # type: ignore[index]
    parts = []
    if rise is not None:
        change = (losses[-1] - losses[rise]) / losses[rise]
        parts.append(f"validation loss {losses[rise]:.3g} there, {losses[-1]:.3g} at the end, {change:.0%} higher")
    if drop is not None and accuracies is not None:
        where = "there" if steps[drop] == lead else f"at step {steps[drop]}"
        parts.append(f"validation accuracy {accuracies[drop]:.2f} {where}, {accuracies[-1]:.2f} at the end")
    return (
        f"the model got worse after step {lead}: {'; '.join(parts)} (the same {examples} examples scored each time); "
        + _why_worse(lead, epochs)
    )


def _why_worse(best: int, epochs: float | None) -> str:
    """What to do about a run that got worse: over-fitting where it went over its data many times
    (a shorter run or more data), else either that or a late instability (the peak, the batch)."""
    shorter = f"a budget near {best} steps (where it was best) or more data"
    if epochs is not None and epochs > 2:
        return f"the run went over its training data {epochs:.0f} times and over-fitted: {shorter}"
    return (
        f"the run over-fitted or went unstable late: {shorter}; `lrpilot tune` searches the peak on the same "
        "inputs, and a larger batch steadies both the range test and the run"
    )


def above_uniform(loss: float | None, outputs: int | None, what: str = "tokens") -> str | None:
    """A note when a final loss is above ln(`outputs`), that of a uniform guess over them (a causal
    LM's vocabulary), else None: the model predicts worse than one that knows nothing, which a
    pretrained model never does unless training broke it (an LR too high, or dozens of epochs of
    over-fitting: 7.95 on a vocabulary whose uniform guess scores less).

    >>> above_uniform(7.95, 2000)[:55]
    'the final validation loss 7.95 is above ln(2000) = 7.6,'
    >>> above_uniform(2.1, 49152) is None
    True
    """
    if loss is None or outputs is None or outputs < 2 or not math.isfinite(loss) or loss <= math.log(outputs):
        return None
    return (
        f"the final validation loss {loss:.3g} is above ln({outputs}) = {math.log(outputs):.3g}, the loss of a uniform "
        f"guess over the {outputs} {what}: the model predicts worse than one that knows nothing (an LR too high, or "
        "far more epochs than the data holds)"
    )
