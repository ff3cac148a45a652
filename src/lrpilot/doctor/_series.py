"""`Series`: one training log, whatever wrote it, as sorted arrays the detectors read.

Readers hand rows to a `SeriesBuilder`, which stores them compactly as they stream in (8 bytes a
value, so a log of millions of rows is not held twice as Python objects) and, at the end, sorts by
step, keeps the last row of a repeated step (a run resumed from an earlier checkpoint rewrites those
steps), and writes down everything it fixed as a note the diagnosis prints.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DoctorInputError", "Series", "SeriesBuilder"]


class DoctorInputError(ValueError):
    """A log the doctor cannot read, with a message that says what is wrong and what it expected."""


Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """A training log as arrays, sorted by step, one row per step.

    Attributes:
        steps: optimizer steps (int64), strictly increasing.
        loss: the training loss per step; NaN and ±Inf are real (a non-finite loss was logged).
        lr: the learning rate per step, NaN where it was not logged (None: never logged).
        grad_norm: the gradient norm per step (None: never logged); `grad_logged` tells a logged
            NaN (a non-finite gradient) from a step without a grad norm.
        eval_steps, eval_loss: evaluation losses, if any.
        resumes: steps at which the log starts again from an earlier step (a resumed run).
        source, format: where it came from and which reader read it.
        notes: what the reader had to fix or skip, for the person reading the diagnosis.
        classes: the task's classes or vocabulary where the log records them (lrpilot's run.json,
            or the classifier's config.json a Trainer saved beside its trainer_state.json): the
            chance level ln(classes) the detectors then judge a collapse against; None if not.
        chance_loss: the chance level where the log records one that is not ln(classes) (lrpilot's
            run.json of a classifier with unbalanced labels: their entropy); None if not.
        batch_size: the examples behind each loss where the log records them (lrpilot's run.json;
            at least train_batch_size × logging_steps for a trainer_state.json): the detectors'
            short median is then fitted to it, as the guard's was; None if not.
    """

    steps: npt.NDArray[np.int64]
    loss: Floats
    lr: Floats | None = None
    grad_norm: Floats | None = None
    grad_logged: npt.NDArray[np.bool_] | None = None
    eval_steps: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_loss: Floats = field(default_factory=lambda: np.zeros(0))
    resumes: tuple[int, ...] = ()
    source: str = ""
    format: str = ""
    notes: tuple[str, ...] = ()
    classes: int | None = None
    batch_size: int | None = None
    chance_loss: float | None = None

    def __len__(self) -> int:
        return int(self.steps.size)

    def grad_norms(self) -> list[float | None] | None:
        """Per step: the grad norm, or None where none was logged (what `detect.scan` takes)."""
        if self.grad_norm is None or self.grad_logged is None:
            return None
        return [float(g) if ok else None for g, ok in zip(self.grad_norm, self.grad_logged, strict=True)]

    def summary(self) -> dict[str, Any]:
        lr = None if self.lr is None else self.lr[np.isfinite(self.lr)]
        return {
            "source": self.source,
            "format": self.format,
            "rows": len(self),
            "first_step": int(self.steps[0]),
            "last_step": int(self.steps[-1]),
            "non_finite_losses": int(np.sum(~np.isfinite(self.loss))),
            "lr_logged": lr is not None and lr.size > 0,
            "grad_norm_logged": self.grad_logged is not None and bool(self.grad_logged.any()),
            "eval_points": int(self.eval_steps.size),
            "resumes": list(self.resumes),
            "notes": list(self.notes),
        }


def _number(value: Any) -> float | None:
    """A float from a log cell: numbers and numeric strings ("nan", "inf" included); None if blank or
    not a number at all (booleans are not numbers here)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


class SeriesBuilder:
    """Collects rows as a reader streams them, then builds a `Series` (see the module docstring)."""

    def __init__(self, source: str, fmt: str) -> None:
        self.source, self.format = source, fmt
        self._steps = array("q")
        self._loss = array("d")
        self._lr = array("d")
        self._gn = array("d")
        self._gn_ok = array("b")
        self._eval_steps = array("q")
        self._eval = array("d")
        self._resumes: list[int] = []
        self._last = -math.inf
        self.skipped: dict[str, int] = {}
        self.notes: list[str] = []

    def skip(self, why: str) -> None:
        """Count a row that could not be used, by reason (reported once per reason)."""
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def add(
        self,
        step: Any,
        *,
        loss: Any = None,
        lr: Any = None,
        grad_norm: Any = None,
        eval_loss: Any = None,
    ) -> None:
        """One log row. Values may be numbers or strings; blanks are "not logged"."""
        s = _number(step)
        if s is None or not math.isfinite(s) or abs(s) > 2**62:
            self.skip("no usable step number")
            return
        if s != int(s):
            self.skip("a step number that is not a whole number")
            return
        step_i = int(s)
        ev = _number(eval_loss)
        if ev is not None:
            self._eval_steps.append(step_i)
            self._eval.append(ev)
        value = _number(loss)
        if value is None:
            if loss is not None and not (isinstance(loss, str) and not loss.strip()):
                self.skip("a loss that is not a number")
            return
        if step_i < self._last:
            self._resumes.append(step_i)
        self._last = step_i
        self._steps.append(step_i)
        self._loss.append(value)
        lr_v = _number(lr)
        self._lr.append(math.nan if lr_v is None or not math.isfinite(lr_v) or lr_v < 0 else lr_v)
        g = _number(grad_norm)
        self._gn.append(math.nan if g is None else g)
        self._gn_ok.append(0 if g is None else 1)

    def build(self) -> Series:
        """Sort, de-duplicate (the last row of a step wins), check, and note what was fixed."""
        if not self._steps:
            found = f" ({self._skipped_text()})" if self.skipped else ""
            raise DoctorInputError(f"{self.source}: no training loss values found{found}")
        steps = np.frombuffer(self._steps, dtype=np.int64)
        keep: npt.NDArray[np.intp] | None = None
        if steps.size > 1 and not bool(np.all(steps[1:] > steps[:-1])):
            # The last row written for each step, in step order: unique() on the reversed rows
            # finds each step's first occurrence there, i.e. its last one in the file.
            _, first_in_reversed = np.unique(steps[::-1], return_index=True)
            keep = steps.size - 1 - first_in_reversed

        def take(values: array[Any], dtype: type) -> Any:
            # A view of the builder's buffer when nothing moves (the usual, sorted log): no copy.
            out: Any = np.frombuffer(values, dtype=dtype)
            return out if keep is None else out[keep]

        notes = list(self.notes)
        duplicates = 0 if keep is None else steps.size - keep.size
        if self._resumes:
            notes.append(
                f"the log goes back to an earlier step {len(self._resumes)} time(s) (first at step "
                f"{self._resumes[0]}): a resumed run; sorted by step"
            )
        if duplicates:
            notes.append(f"{duplicates} repeated step(s): kept the last value written for each")
        if self.skipped:
            notes.append(f"skipped {self._skipped_text()}")
        loss = take(self._loss, np.float64)
        lr = take(self._lr, np.float64)
        gn = take(self._gn, np.float64)
        gn_ok = take(self._gn_ok, np.int8).astype(bool)
        bad = int(np.sum(~np.isfinite(loss)))
        if bad:
            notes.append(f"{bad} non-finite loss value(s) (NaN/Inf): reported as findings")
        ev_steps = np.frombuffer(self._eval_steps, dtype=np.int64).copy()
        ev_order = np.argsort(ev_steps, kind="stable")
        return Series(
            steps=take(self._steps, np.int64),
            loss=loss,
            lr=lr if np.isfinite(lr).any() else None,
            grad_norm=gn if gn_ok.any() else None,
            grad_logged=gn_ok if gn_ok.any() else None,
            eval_steps=ev_steps[ev_order],
            eval_loss=np.frombuffer(self._eval, dtype=np.float64)[ev_order].copy(),
            resumes=tuple(self._resumes),
            source=self.source,
            format=self.format,
            notes=tuple(notes),
        )

    def _skipped_text(self) -> str:
        return ", ".join(f"{n} row(s) with {why}" for why, n in self.skipped.items())
