"""A Hugging Face classifier's number of classes, from its class name and config (stdlib only).

The guard callback reads it off the model, the doctor off a checkpoint's ``config.json``; both use
it as the chance level ln(classes) against which a loss back at chance after learning is a collapse.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["single_label_classes"]

CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification")
"""Heads whose loss is a cross-entropy over ``num_labels`` classes (a PEFT wrapper's name ends so too)."""


def single_label_classes(architectures: Iterable[str], num_labels: object, problem_type: object) -> int | None:
    """`num_labels` for a single-label classifier (one of `architectures` ends in a
    `CLASSIFIER_SUFFIXES`), else None: a regression or multi-label head has no chance level of
    ln(classes), and neither has a language model."""
    if not any(str(name).endswith(CLASSIFIER_SUFFIXES) for name in architectures):
        return None
    if problem_type not in (None, "single_label_classification"):
        return None
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        return None
    return num_labels
