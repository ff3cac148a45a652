"""A training script's printed log (its stdout saved to a file) as records for the doctor.

Most runs leave no structured log, only what their script printed: nanoGPT's
``iter 250: loss 1.9512, time 35.12ms, mfu 12.01%``, llm.c's
``step   12/74 | loss 7.577 (+1.2z)| norm 6.2 (+0.5z)| lr 1.00e-06 | 120.00 ms`` and its ``main.log``
(``s:12 trl:7.5770 lr:0.000001 norm:6.20``), torchtune's ``DiskLogger``
(``Step 12 | loss:1.2 lr:2e-05 tokens_per_second_per_gpu:1234.5``), a hand-written
``step 12, loss: 1.2``, and the Hugging Face ``Trainer``'s console dicts
(``{'loss': '0.6908', 'grad_norm': '1.2', 'learning_rate': '4e-05', 'epoch': '0.5'}``, written
between its progress bars' carriage returns). Each line becomes a record of its ``name value``
pairs (``name value``, ``name: value``, ``name=value``; a name may be several words, ``train
loss``), or of its printed dict; the doctor then finds the loss, step, LR, gradient norm and
evaluation loss among the names as it does a CSV's columns. Lines without a pair (configuration
dumps, warnings, progress bars) are other output and are not counted.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["TextRecords"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DICT = re.compile(r"\{[^{}]*\}")
_PAIR = re.compile(
    r"(?<![\w.])([A-Za-z][A-Za-z_]*(?:[ /.\-][A-Za-z_]+)*)\s*[:=]?\s*"
    r"([-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf))(?![\w.%])",
    re.IGNORECASE,
)
ALIASES = {"s": "step", "iter": "step", "trl": "train_loss", "tel": "val_loss", "norm": "grad_norm"}
"""Printed names that mean a column the doctor knows by another name: llm.c's ``main.log``
(``s``, ``trl``, ``tel``), nanoGPT's ``iter``, and llm.c's gradient ``norm``."""
_LOSS = frozenset({"loss", "train/loss", "training/loss", "train/loss/step"})
_EVAL = frozenset({"val/loss", "eval/loss", "valid/loss", "validation/loss", "test/loss"})
_ESTIMATES = frozenset({"train/loss", "training/loss"})
"""A training loss named so beside an evaluation's: nanoGPT's estimate on held-out batches, not a
step's loss (Keras' epoch line, ``loss: 0.31 - val_loss: 0.35``, names the epoch's own ``loss``)."""
HF_SUMMARY = "train_runtime"
"""The key of the Hugging Face ``Trainer``'s last console dict, whose ``train_loss`` is the run's
average, not a step's."""


def _words(name: str) -> str:
    return "/".join(re.split(r"[\s/_\-.:]+", name.strip().lower()))


class TextRecords:
    """Each line's record of a loss or an evaluation loss (other lines are other output): its
    printed dict, else its ``name value`` pairs.

    A line with an evaluation loss drops a ``train loss`` beside it (nanoGPT's ``step 250: train
    loss 1.9, val loss 2.0`` estimates the training loss on held-out batches: not step 250's). A
    line is at the step it prints; where none is printed (the Trainer's console, Keras), the n-th
    loss is step n (`numbered` counts them), and an evaluation alone on its line is at the last
    step before it (llm.c prints ``val loss 3.28`` so)."""

    def __init__(self, stream: Iterable[str]) -> None:
        self._stream = stream
        self.numbered = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        last_step: Any = None
        for line in self._stream:
            for piece in _ANSI.sub("", line).split("\r"):
                record = _printed_dict(piece) or _pairs(piece)
                if record is None:
                    continue
                names = {_words(k): k for k in record}
                evaluation = bool(_EVAL & names.keys())
                if not evaluation and not _LOSS & names.keys():
                    continue
                if evaluation:
                    record = {k: v for k, v in record.items() if _words(k) not in _ESTIMATES}
                if "step" in names:
                    last_step = record[names["step"]]
                elif _LOSS & {_words(k) for k in record}:
                    self.numbered += 1
                    last_step = record["step"] = self.numbered
                else:
                    record["step"] = last_step if last_step is not None else 0
                yield record


def _printed_dict(piece: str) -> dict[str, Any] | None:
    """A dict printed on the line (the Trainer's console logs: Python's repr, values as numbers or
    as strings of them), but not the Trainer's closing summary."""
    for found in _DICT.findall(piece):
        try:
            value = ast.literal_eval(found)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict) and value and HF_SUMMARY not in value:
            return {str(k): v for k, v in value.items()}
    return None


def _pairs(piece: str) -> dict[str, Any] | None:
    """The line's ``name value`` pairs (the first of a name wins), named as `ALIASES` says."""
    out: dict[str, Any] = {}
    for name, value in _PAIR.findall(piece):
        key = ALIASES.get(name.lower(), name)
        out.setdefault(key, value)
    return out or None
