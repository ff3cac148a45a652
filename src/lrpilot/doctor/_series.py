"""`Series`: one training log, whatever wrote it, as sorted arrays the detectors read.

Readers hand rows to a `SeriesBuilder`, which stores them compactly as they stream in (8 bytes a
value, so a log of millions of rows is not held twice as Python objects) and, at the end, sorts by
step, keeps the last row of a repeated step (a run resumed from an earlier checkpoint rewrites those
steps), and writes down everything it fixed as a note the diagnosis prints. A step that went back
is told apart by what follows it (`order_notes`): a stray row or two (a swapped pair, a duplicated
row) is not a resumed run, and a log that starts again from its first step holds two runs.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["STRAY_ROWS", "DoctorInputError", "Series", "SeriesBuilder", "order_notes"]

STRAY_ROWS = 2
"""A step that goes back and is left again within this many rows is a stray (a swapped pair, a
row written twice), not a resumed run: a resume rewrites the steps since its checkpoint."""


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
        resumes: steps at which the log goes back to an earlier step and carries on from there (a
            resumed run); not a stray row logged out of order, nor a second run appended from the
            log's first step (the notes say what those were).
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
        schedule: the schedule spec the run recorded (lrpilot's run.json), which the advice starts
            from instead of one read off the LR column; None if not.
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
    schedule: str | None = None

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
            "schedule_recorded": self.schedule,
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
        self._lr_only_steps = array("q")
        self._lr_only = array("d")
        self.skipped: dict[str, int] = {}
        self.notes: list[str] = []
        self.no_loss_hint = ""
        self.replays: str | None = None
        """Why the log's steps go back, where its reader knows (lrpilot's run.json: the guard's
        rollbacks replay steps): said instead of `order_notes`' reading, and no step is a resume."""

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
        """One log row. Values may be numbers or strings; blanks are "not logged". A row with an LR
        but no loss (Lightning's LearningRateMonitor writes its own rows) gives the LR of the loss
        rows at its step that have none."""
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
            self._add_lr_only(step_i, lr)
            return
        self._steps.append(step_i)
        self._loss.append(value)
        lr_v = _number(lr)
        self._lr.append(math.nan if lr_v is None or not math.isfinite(lr_v) or lr_v < 0 else lr_v)
        g = _number(grad_norm)
        self._gn.append(math.nan if g is None else g)
        self._gn_ok.append(0 if g is None else 1)

    def _add_lr_only(self, step: int, lr: Any) -> None:
        value = _number(lr)
        if value is not None and math.isfinite(value) and value >= 0:
            self._lr_only_steps.append(step)
            self._lr_only.append(value)

    def _lr_filled(self) -> array[float] | Floats:
        """The LR of each loss row, taken from the LR-only row at its step where it has none."""
        if not self._lr_only:
            return self._lr
        lr = np.frombuffer(self._lr, dtype=np.float64).copy()
        at = np.frombuffer(self._steps, dtype=np.int64)
        known = np.frombuffer(self._lr_only_steps, dtype=np.int64)
        order = np.argsort(known, kind="stable")
        known, values = known[order], np.frombuffer(self._lr_only, dtype=np.float64)[order]
        pos = np.minimum(np.searchsorted(known, at, side="right") - 1, known.size - 1)
        hit = (pos >= 0) & (known[np.maximum(pos, 0)] == at) & np.isnan(lr)
        lr[hit] = values[pos[hit]]
        return lr

    def _no_loss_error(self) -> DoctorInputError:
        if self._eval:
            ev = np.frombuffer(self._eval_steps, dtype=np.int64)
            return DoctorInputError(
                f"{self.source}: the log has evaluation losses only ({ev.size} at steps {ev.min()}–{ev.max()}), no "
                "training loss: the doctor judges the training loss logged every few steps, which the "
                f"evaluations are too sparse and too smooth to stand in for{self.no_loss_hint}"
            )
        found = f" ({self._skipped_text()})" if self.skipped else ""
        return DoctorInputError(f"{self.source}: no training loss values found{found}{self.no_loss_hint}")

    def build(self) -> Series:
        """Sort, de-duplicate (the last row of a step wins), check, and note what was fixed."""
        if not self._steps:
            raise self._no_loss_error()
        steps = np.frombuffer(self._steps, dtype=np.int64)
        keep: npt.NDArray[np.intp] | None = None
        if steps.size > 1 and not bool(np.all(steps[1:] > steps[:-1])):
            # The last row written for each step, in step order: unique() on the reversed rows
            # finds each step's first occurrence there, i.e. its last one in the file.
            _, first_in_reversed = np.unique(steps[::-1], return_index=True)
            keep = steps.size - 1 - first_in_reversed

        def take(values: array[Any] | npt.NDArray[Any], dtype: type) -> Any:
            # A view of the builder's buffer when nothing moves (the usual, sorted log): no copy.
            out: Any = values if isinstance(values, np.ndarray) else np.frombuffer(values, dtype=dtype)
            return out if keep is None else out[keep]

        notes = list(self.notes)
        resumes: tuple[int, ...] = ()
        if keep is not None and self.replays is not None:
            notes.append(self.replays)
        elif keep is not None:
            order, resumes = order_notes(steps, keep)
            notes.extend(order)
        if self.skipped:
            notes.append(f"skipped {self._skipped_text()}")
        loss = take(self._loss, np.float64)
        lr = take(self._lr_filled(), np.float64)
        gn = take(self._gn, np.float64)
        gn_ok = take(self._gn_ok, np.int8).astype(bool)
        bad = int(np.sum(~np.isfinite(loss)))
        if bad == loss.size:
            raise self._all_non_finite_error(take(self._steps, np.int64))
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
            resumes=resumes,
            source=self.source,
            format=self.format,
            notes=tuple(notes),
        )

    def _all_non_finite_error(self, steps: npt.NDArray[np.int64]) -> DoctorInputError:
        """A log without one finite loss has nothing to judge a run by: it was read as "diverged,
        the LR was too high" and advised halving an LR that a NaN from the first step rarely
        owes to (the model, the data, the loss or fp16 do)."""
        span = f"step {steps[0]}" if steps.size == 1 else f"steps {steps[0]}–{steps[-1]}"
        return DoctorInputError(
            f"{self.source}: every logged loss is NaN or Inf ({steps.size} at {span}): no finite loss to diagnose; "
            "a run NaN from its first logged step is broken before the LR matters (check one batch's loss: the "
            "model, the data, the loss function, an fp16 overflow)"
        )

    def _skipped_text(self) -> str:
        return ", ".join(f"{n} row(s) with {why}" for why, n in self.skipped.items())


def order_notes(steps: npt.NDArray[np.int64], keep: npt.NDArray[np.intp]) -> tuple[list[str], tuple[int, ...]]:
    """What a log whose steps do not only go up did, in words, and the steps of its real resumes.

    `steps`: the loss rows' steps as written; `keep`: the rows kept (the last of each step). Each
    step that goes back is judged by what follows it: left again within `STRAY_ROWS` rows, a stray
    (out of order, or a repeat of a step already written); carrying on from the log's first step
    or before it, a second run appended; carrying on from any other earlier step, a resumed run.
    """
    back = np.flatnonzero(steps[1:] < steps[:-1]) + 1  # may be none: repeats of the last step only
    ends = np.append(back[1:], steps.size)[: back.size]
    peak = np.maximum.accumulate(steps)
    _, first_seen, inverse = np.unique(steps, return_index=True, return_inverse=True)
    repeat = first_seen[inverse] != np.arange(steps.size)
    strays: list[int] = []
    resumes: list[int] = []
    restarts: list[int] = []
    for i, end in zip(back.tolist(), ends.tolist(), strict=True):
        covered = int(np.searchsorted(steps[i:end], peak[i - 1], side="right"))
        if covered <= STRAY_ROWS:
            strays.extend(range(i, i + covered))
        elif steps[i] <= steps[0]:
            restarts.append(i)
        else:
            resumes.append(i)
    notes = _stray_notes(steps, strays, repeat)
    if resumes:
        i = resumes[0]
        notes.append(
            f"the log goes back to an earlier step and carries on {len(resumes)} time(s) (first from step "
            f"{steps[i - 1]} to step {steps[i]}): a resumed run; sorted by step"
        )
    if restarts:
        notes.append(_restart_note(steps, restarts, keep))
    repeated = int(repeat.sum()) - int(repeat[strays].sum())
    if repeated and not restarts:  # the restart's note counts what it replaced
        notes.append(f"{repeated} repeated step(s): kept the last value written for each")
    return notes, tuple(int(steps[i]) for i in resumes)


def _stray_notes(steps: npt.NDArray[np.int64], strays: list[int], repeat: npt.NDArray[np.bool_]) -> list[str]:
    """Notes on the stray rows: those out of order, and those repeating a step written before."""
    notes = []
    moved = [i for i in strays if not repeat[i]]
    again = [i for i in strays if repeat[i]]
    if moved:
        i = moved[0]
        notes.append(
            f"{len(moved)} row(s) logged out of step order (first: step {steps[i]} after step {steps[i - 1]}); "
            "sorted by step"
        )
    if again:
        i = again[0]
        notes.append(
            f"{len(again)} row(s) repeat a step already logged (first: step {steps[i]} again, after step "
            f"{steps[i - 1]}): kept the last value written for each"
        )
    return notes


def _restart_note(steps: npt.NDArray[np.int64], restarts: list[int], keep: npt.NDArray[np.intp]) -> str:
    """Two (or more) runs appended into one file: which rows of the earlier ones the later replaced."""
    last = restarts[-1]
    dropped = np.ones(steps.size, dtype=bool)
    dropped[keep] = False
    replaced = int(dropped[:last].sum())
    later_end = int(steps[last:].max())
    earlier_end = int(steps[:last].max())
    tail = f"; steps {later_end + 1}–{earlier_end} are still the earlier run's" if earlier_end > later_end else ""
    return (
        f"the log starts again from its first step {len(restarts)} time(s) (first: step {steps[restarts[0]]} "
        f"after step {steps[restarts[0] - 1]}): runs appended into one file? Read as one run, the later rows win: "
        f"{replaced} row(s) of the earlier run(s) were dropped{tail}; split the file to diagnose each run"
    )
