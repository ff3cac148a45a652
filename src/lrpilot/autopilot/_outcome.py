"""What the evaluations say about the run as a whole: a classifier that was clearly better part-way
through than at the end (it went unstable late, or over-fitted) gets a note that says so.

The guard judges the training loss step by step; a fine-tuning run on a small batch can bounce
without any one step looking like a spike, and still end at chance after being well above it. Only
the evaluations show that, so fit reads them after the run. Accuracy is compared, not the loss: its
noise is known without storing per-example losses (a binomial proportion), so "clearly" can be
measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["DROP_SIGMAS", "MIN_DROP", "ONE_ANSWER", "accuracy_drop", "one_answer"]

DROP_SIGMAS = 3.0
"""How many standard errors of the difference between two evaluations the final accuracy must
fall below the best earlier one."""

MIN_DROP = 0.1
"""...and by at least this much accuracy: a small drop is not worth a note, however significant."""

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


def accuracy_drop(steps: Sequence[int], accuracies: Sequence[float], examples: int) -> str | None:
    """A note when the last evaluation's accuracy is clearly below the best earlier one, else None.

    `examples` is how many examples each evaluation scored (fit's evaluations all score the same
    `QUICK_EVAL` ones, the last one read off its pass over the whole set): the standard error of
    the difference is taken as for two independent samples of that size, which overstates that of
    a difference on the same examples and so errs towards silence.

    >>> accuracy_drop([13, 26, 39, 50], [0.55, 0.71, 0.49, 0.50], examples=128)[:59]
    'the model got worse after step 26: validation accuracy 0.71'
    >>> accuracy_drop([13, 26, 39, 50], [0.80, 0.84, 0.85, 0.83], examples=128) is None
    True
    """
    values = [a for a in accuracies if math.isfinite(a)]
    if len(values) != len(accuracies) or len(values) < 2 or len(steps) != len(values):
        return None
    *earlier, final = values
    best = max(earlier)
    at = steps[earlier.index(best)]
    middle = (best + final) / 2
    sigma = math.sqrt(2 * middle * (1 - middle) / examples)
    if best - final < max(MIN_DROP, DROP_SIGMAS * sigma):
        return None
    return (
        f"the model got worse after step {at}: validation accuracy {best:.2f} there (on {examples} examples), "
        f"{final:.2f} at the end; the run went unstable late or over-fitted: `lrpilot tune` searches the "
        "peak on the same inputs, and a larger batch steadies both the range test and the run"
    )
