"""Readers: Hugging Face `trainer_state.json`, TensorBoard event files, CSV / JSONL logs (a W&B
chart export among them), Lightning's CSVLogger `metrics.csv` and lrpilot's own `run.json`, all
into one `Series`.

Columns are found by their words (`LOSS_FORMS`: ``train/loss``, ``Loss/train``, ``train_loss``, ...
in any case), since every logger spells the same loss its own way; the user names any other
(``loss_column``).

Every reader streams its input row by row into a `SeriesBuilder`; every way a file can be wrong
(missing, empty, truncated, not the format it claims, missing columns, garbage values) ends in a
`DoctorInputError` whose message says what was expected, never in a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from lrpilot._batch import CALIBRATED_BATCH
from lrpilot._csv import delimiter_of
from lrpilot._hf_labels import single_label_classes
from lrpilot._optional import require
from lrpilot.doctor._series import DoctorInputError, Series, SeriesBuilder
from lrpilot.doctor._text import TextRecords

__all__ = [
    "FORMATS",
    "LOSS_NAMES",
    "read",
    "read_csv",
    "read_jsonl",
    "read_run_json",
    "read_tensorboard",
    "read_text_log",
    "read_trainer_state",
]

FORMATS = ("trainer_state", "tensorboard", "csv", "jsonl", "lightning", "lrpilot", "text")
TEXT_SUFFIXES = (".log", ".txt", ".out", ".err")
"""A training script's printed output saved to a file (`read_text_log`)."""

# Column / key / tag names, compared by their words: lower-cased, split at '/', '_', '-', '.', ':'
# and spaces, so 'Loss/train', 'loss_train' and 'LOSS-train' are all 'loss/train'. The first form
# listed that a log has wins. No evaluation name is a training-loss form, nor is a W&B export's
# '__MIN' / '__MAX' companion or Lightning's '_epoch' average.
STEP_FORMS = ("step", "global/step", "trainer/global/step", "train/global/step", "iteration", "iter", "it", "steps")
LOSS_FORMS = (
    "loss",
    "train/loss",
    "loss/train",
    "training/loss",
    "loss/training",
    "train/loss/step",
    "loss/step",
    "loss/train/step",
    "training/loss/step",
)
LR_FORMS = ("learning/rate", "lr", "train/learning/rate", "train/lr", "lr/train", "learning/rate/train")
LR_PREFIX = "lr-"  # Lightning's LearningRateMonitor: lr-Adam, lr-AdamW/pg1, ...
LR_NOT = ("momentum", "weight_decay", "weight-decay", "beta")  # ... and its other columns, lr-Adam-momentum
GRAD_FORMS = ("grad/norm", "train/grad/norm", "gradient/norm", "grad/norm/total", "grad/2/0/norm/total", "gnorm")
EVAL_FORMS = (
    "eval/loss",
    "val/loss",
    "valid/loss",
    "validation/loss",
    "loss/val",
    "loss/eval",
    "loss/valid",
    "loss/validation",
    "val/loss/epoch",
)
LOSS_NAMES = "loss, train/loss, Loss/train, train_loss, training_loss, loss_step, train_loss_step"
"""The training-loss names, as an error shows them (any case; '/', '_', '-' and '.' alike)."""
WANDB_SEP = " - "  # W&B's chart export: '<run name> - train/loss', with '__MIN' / '__MAX' companions
WANDB_COMPANIONS = ("__min", "__max")

_WORD_SPLIT = re.compile(r"[\s/_\-.:]+")


def _form(name: str) -> str:
    """A column name's words, lower-cased, joined by '/' (see `LOSS_FORMS`)."""
    return "/".join(w for w in _WORD_SPLIT.split(name.strip().lower()) if w)


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Which column (key, tag) of a log holds what; None where the log has none."""

    step: str | None
    loss: str | None
    lr: str | None
    grad_norm: str | None
    eval_loss: str | None
    notes: tuple[str, ...] = ()


def _pick(metrics: Mapping[str, str], forms: tuple[str, ...]) -> str | None:
    """The column whose metric name (`metrics`: column -> name) has the earliest form in `forms`."""
    ranked = [(forms.index(f), i, col) for i, (col, name) in enumerate(metrics.items()) if (f := _form(name)) in forms]
    return min(ranked)[2] if ranked else None


def _pick_lr(metrics: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The LR column, and a note when it is the first of several of Lightning's ``lr-`` columns
    (one per optimizer or param group: ``lr-Adam/pg1``, ``lr-Adam/pg2``)."""
    named = _pick(metrics, LR_FORMS)
    if named is not None:
        return named, None
    monitor = sorted(
        (name.strip().lower(), col)
        for col, name in metrics.items()
        if name.strip().lower().startswith(LR_PREFIX) and not any(w in name.lower() for w in LR_NOT)
    )
    if not monitor:
        return None, None
    col = monitor[0][1]
    if len(monitor) == 1:
        return col, None
    return col, f"LR read from {col!r}, the first of {len(monitor)} LR columns ({', '.join(c for _, c in monitor)})"


def _wandb_run(name: str) -> tuple[str, str] | None:
    """(run, metric) of a W&B chart export's column ``<run> - <metric>``; None for other names."""
    run, sep, metric = name.rpartition(WANDB_SEP)
    return (run, metric) if sep and run.strip() and metric.strip() else None


def _is_companion(name: str) -> bool:
    return name.strip().lower().endswith(WANDB_COMPANIONS)


def _wandb_loss_runs(names: Iterable[str]) -> dict[str, str]:
    """run -> its training-loss column, for a W&B chart export's ``<run> - train/loss`` columns."""
    runs: dict[str, str] = {}
    for name in names:
        split = _wandb_run(name)
        if split and not _is_companion(name) and _form(split[1]) in LOSS_FORMS:
            runs.setdefault(split[0], name)
    return runs


def _metrics(names: Iterable[str], run: str | None) -> dict[str, str]:
    """column -> metric name: a W&B run's columns with their ``<run> - `` cut off (other runs'
    columns left out) when `run` is set; never a ``__MIN`` / ``__MAX`` companion."""
    out: dict[str, str] = {}
    for name in names:
        if _is_companion(name):
            continue
        split = _wandb_run(name) if run is not None else None
        if split is None:
            out[name] = name
        elif split[0] == run:
            out[name] = split[1]
    return out


def _named(names: Iterable[str], wanted: str) -> str | None:
    """The column the user named: exactly, else the one that differs only in case and spaces."""
    listed = list(names)
    if wanted in listed:
        return wanted
    folded = [n for n in listed if n.strip().casefold() == wanted.strip().casefold()]
    return folded[0] if folded else None


def _columns(names: Iterable[str], source: str, loss_column: str | None = None) -> _Columns:
    """The columns of a log with these column names (keys, tags). The training loss is the
    column `loss_column` names, else the first of `LOSS_FORMS`, else a W&B chart export's one
    run's ``<run> - train/loss``; several runs in one export are refused, naming them."""
    listed = list(names)
    run: str | None = None
    if loss_column is not None:
        loss = _named(listed, loss_column)
        split = _wandb_run(loss) if loss is not None else None
        run = split[0] if split else None
    else:
        loss = _pick(_metrics(listed, None), LOSS_FORMS)
        if loss is None:
            runs = _wandb_loss_runs(listed)
            if len(runs) > 1:
                raise _runs_error(source, runs)
            if runs:
                run, loss = next(iter(runs.items()))
    metrics = _metrics(listed, run)
    lr, lr_note = _pick_lr(metrics)
    notes = [] if run is None else [f"read run {run!r} of a W&B export (its column {loss!r})"]
    return _Columns(
        step=_pick(metrics, STEP_FORMS),
        loss=loss,
        lr=lr,
        grad_norm=_pick(metrics, GRAD_FORMS),
        eval_loss=_pick(metrics, EVAL_FORMS),
        notes=(*notes, *([] if lr_note is None else [lr_note])),
    )


def _runs_error(source: str, runs: Mapping[str, str]) -> DoctorInputError:
    shown = ", ".join(repr(r) for r in runs)
    first = next(iter(runs.values()))
    return DoctorInputError(
        f"{source}: a W&B export of {len(runs)} runs ({shown}); the doctor reads one run: pick it with "
        f"--loss-column (e.g. --loss-column {first!r}), or export one run"
    )


def _no_loss_error(source: str, found: Iterable[str], what: str, loss_column: str | None) -> DoctorInputError:
    """No training loss in the header (tags): the column the user named is missing, or none of
    the accepted names is there (and if only evaluation losses are, it says so)."""
    listed = list(found)
    shown = ", ".join(repr(f) for f in listed[:40]) or "none"
    more = f" and {len(listed) - 40} more" if len(listed) > 40 else ""
    if loss_column is not None:
        return DoctorInputError(f"{source}: no {what} {loss_column!r} (--loss-column); the log has {shown}{more}")
    evals = [n for n in listed if _form(n) in EVAL_FORMS]
    only = (
        f"evaluation losses only ({', '.join(repr(e) for e in evals)}), no training loss: the doctor judges the "
        "training loss logged every few steps; "
        if evals
        else ""
    )
    return DoctorInputError(
        f"{source}: no training loss {what}; {only}found {shown}{more}. Accepted names: {LOSS_NAMES} (any case; "
        "'/', '_', '-' and '.' alike); --loss-column NAME reads another"
    )


def _load_json(stream: TextIO, source: str) -> Any:
    try:
        return json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DoctorInputError(f"{source}: not valid JSON ({exc}); is the file truncated?") from None


def _read_json(stream: TextIO, source: str, loss_column: str | None = None) -> Series:
    """A JSON document: lrpilot's `run.json` (a ``history``) or else a trainer_state.json."""
    data = _load_json(stream, source)
    if isinstance(data, Mapping) and "history" in data and "log_history" not in data:
        return read_run_json(data, source, loss_column)
    return _trainer_state(data, source, loss_column)


def read_run_json(data: Mapping[str, Any], source: str = "run.json", loss_column: str | None = None) -> Series:
    """lrpilot's own `run.json` (what `lrpilot fit` and `lrpilot tune` write): every step the guard
    judged, with its loss and LR, the evaluations, and the task's classes (the chance level) and
    batch size where fit recorded them. A step the guard replayed after a rollback appears twice;
    the later one wins, as in any resumed log, and the notes say so (never "a resumed run") and
    where the first non-finite loss came in the run's own order.

    JSON has no NaN, so the report writer stores a non-finite loss as ``null`` (`json_safe`); a
    null loss here is that non-finite loss (NaN or ±Inf, no longer told apart), never a step
    without one: every step of the history was a trained step with a loss."""
    if loss_column is not None and _named(["loss"], loss_column) is None:
        raise DoctorInputError(
            f"{source}: no column {loss_column!r} (--loss-column); lrpilot's run.json holds its training loss as 'loss'"
        )
    history = data.get("history")
    keys = ("steps", "loss", "lr")
    if not isinstance(history, Mapping) or not all(isinstance(history.get(k), list) for k in keys):
        raise DoctorInputError(f"{source}: expected lrpilot's run.json with a 'history' of steps, loss and lr")
    steps, losses, lrs = (history[k] for k in keys)
    if not len(steps) == len(losses) == len(lrs):
        raise DoctorInputError(
            f"{source}: the history's steps, loss and lr differ in length ({len(steps)}, {len(losses)}, {len(lrs)})"
        )
    builder = SeriesBuilder(source, "lrpilot")
    for step, loss, lr in zip(steps, losses, lrs, strict=True):
        builder.add(step, loss=math.nan if loss is None else loss, lr=lr)
    for step, value in zip(history.get("eval_steps") or [], history.get("eval_loss") or [], strict=False):
        builder.add(step, eval_loss=math.nan if value is None else value)
    rollbacks = [a for a in data.get("guard_actions") or [] if isinstance(a, Mapping) and a.get("action") == "rollback"]
    if rollbacks:
        builder.replays = _replay_note(len(rollbacks), steps, losses)
    nulls = sum(loss is None for loss in losses)
    if nulls:
        builder.notes.append(
            f"{nulls} loss(es) recorded as null in run.json (JSON has no NaN): read as the run's non-finite losses"
        )
    given = [a for a in data.get("guard_actions") or [] if isinstance(a, Mapping) and a.get("action") == "give_up"]
    if data.get("status") == "gave_up" and given and isinstance(given[-1].get("reason"), str):
        # what the guard found out running it (the LR not the cause, say), which the log alone cannot show
        builder.notes.append(f"the run's guard {given[-1]['reason']}")
    classes, batch, chance = data.get("classes"), data.get("batch_size"), data.get("chance_loss")
    for name, value, low in (("classes", classes, 2), ("batch_size", batch, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise DoctorInputError(f"{source}: {name!r} must be an integer of at least {low}, got {value!r}")
    number = isinstance(chance, int | float) and not isinstance(chance, bool)
    if chance is not None and not (number and math.isfinite(chance) and chance > 0):
        raise DoctorInputError(f"{source}: 'chance_loss' must be a finite number > 0, got {chance!r}")
    return dataclasses.replace(
        builder.build(), classes=classes, batch_size=batch, chance_loss=chance, schedule=_recorded_schedule(data)
    )


def _recorded_schedule(data: Mapping[str, Any]) -> str | None:
    """The schedule spec a run.json records, if it parses: the advice starts from it. Read off the LR
    column instead, a fit run whose range test stood in for its first warmup steps read as
    ``cosine(total_steps=249)`` without its warmup of 25, and the advice's schedules lost it."""
    from lrpilot.schedules import parse

    spec = data.get("schedule")
    if not isinstance(spec, str):
        return None
    try:
        return parse(spec).to_string()
    except ValueError:
        return None


def _replay_note(rollbacks: int, steps: list[Any], losses: list[Any]) -> str:
    """What the steps a guard's rollbacks replayed mean for the reading: the last pass of each step
    is the run as it ended, and the first non-finite loss in the order the run met it (a replayed
    step's came later, at an earlier step: a run that gave up read as "first at step 48, right after
    the run resumed at step 48", its trouble having begun at step 80)."""
    first = next(
        (step for step, loss in zip(steps, losses, strict=True) if loss is None or not math.isfinite(loss)), None
    )
    when = "" if first is None else f"; the run's first non-finite loss, in its own order, came at step {first}"
    return (
        f"the guard rolled back {rollbacks} time(s), replaying the steps since its snapshot: the last pass of each "
        f"step is kept (the run as it ended){when}"
    )


def read_trainer_state(stream: TextIO, source: str = "trainer_state.json", loss_column: str | None = None) -> Series:
    """Hugging Face `trainer_state.json`: the ``log_history`` list of dicts.

    The final summary entry (``train_runtime``, ``train_loss`` = the run's *average*) is not a
    loss at that step and is left out. NaN steps hidden by ``logging_nan_inf_filter`` cannot be seen
    here: the Trainer logged the running average in their place (see `lrpilot.integrations.transformers_guard`).
    `loss_column`: the key of the loss to read instead of ``loss``.
    """
    return _trainer_state(_load_json(stream, source), source, loss_column)


def _trainer_state(data: Any, source: str, loss_column: str | None = None) -> Series:
    """The log history, and the examples behind each logged loss (`_examples_per_log`)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("log_history"), list):
        raise DoctorInputError(f"{source}: expected a Hugging Face trainer_state.json with a 'log_history' list")
    builder = SeriesBuilder(source, "trainer_state")
    builder.no_loss_hint = (
        "; a Trainer logs its training loss as 'loss' every logging_steps steps (logging_strategy 'steps')"
    )
    loss_key = _history_loss_key(data["log_history"], source, loss_column)
    for entry in data["log_history"]:
        if not isinstance(entry, Mapping):
            builder.skip("an entry that is not an object")
            continue
        if "train_runtime" in entry:
            continue
        builder.add(
            entry.get("step"),
            loss=entry.get(loss_key),
            lr=entry.get("learning_rate"),
            grad_norm=entry.get("grad_norm"),
            eval_loss=entry.get("eval_loss"),
        )
    series = builder.build()
    batch = _examples_per_log(data)
    if batch is None or batch >= CALIBRATED_BATCH:
        return dataclasses.replace(series, batch_size=batch)
    note = (
        f"each logged loss averages at least {batch} examples (train_batch_size {data['train_batch_size']} × "
        f"logging_steps {data['logging_steps']}; accumulated micro-batches and other ranks are not recorded), "
        "so the divergence and collapse tests read a median of more losses, as the guard's do at that batch "
        "(--batch-size sets it)"
    )
    return dataclasses.replace(series, batch_size=batch, notes=(*series.notes, note))


def _history_loss_key(history: list[Any], source: str, loss_column: str | None) -> str:
    """The key of the training loss in a log history: ``loss``, or the one the user named
    (`_named`), which must be in some entry."""
    if loss_column is None:
        return "loss"
    keys = sorted({str(k) for entry in history if isinstance(entry, Mapping) for k in entry})
    key = _named(keys, loss_column)
    if key is None:
        raise _no_loss_error(source, keys, "key", loss_column)
    return key


def _examples_per_log(data: Mapping[str, Any]) -> int | None:
    """``train_batch_size`` × ``logging_steps`` (a logged loss averages the steps since the last
    one): a lower bound, as gradient accumulation and the other ranks multiply it unrecorded;
    None when either is missing or not a positive count."""
    batch, every = data.get("train_batch_size"), data.get("logging_steps")
    counts = [v for v in (batch, every) if isinstance(v, int) and not isinstance(v, bool) and v >= 1]
    return counts[0] * counts[1] if len(counts) == 2 else None


DEFAULT_LABELS = 2
"""The labels of a Hugging Face config that names none (`PretrainedConfig`'s default, left out of the
config.json it saves): the doctor read a binary classifier's chance level as unknown."""


def _with_model_config(series: Series, folder: Path) -> Series:
    """The chance level of the classifier a Trainer saved beside its trainer_state.json (its
    ``config.json``: a sequence or token classifier's labels, `single_label_classes`)."""
    path = folder / "config.json"
    if series.classes is not None or not path.is_file():
        return series
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        note = f"{path} could not be read ({exc}), so the chance level is unknown (--num-classes sets it)"
        return dataclasses.replace(series, notes=(*series.notes, note))
    if not isinstance(config, Mapping):
        return series
    architectures = config.get("architectures") or []
    # transformers writes only what differs from its defaults: a 2-label classifier's config.json
    # has neither num_labels nor id2label (its default, `PretrainedConfig`'s 2 labels)
    labels = config.get("num_labels", len(config.get("id2label") or {}) or DEFAULT_LABELS)
    names = architectures if isinstance(architectures, list) else []
    classes = single_label_classes(names, labels, config.get("problem_type"))
    if classes is None:
        return series
    note = (
        f"chance level ln {classes} = {math.log(classes):.3g}: {path.name} beside the log is a {classes}-class "
        f"{architectures[0]} (--num-classes sets it)"
    )
    return dataclasses.replace(series, classes=classes, notes=(*series.notes, note))


def read_csv(stream: TextIO, source: str = "log.csv", fmt: str = "csv", loss_column: str | None = None) -> Series:
    """A CSV (or TSV) log with a header: a loss column and a step column at least (Lightning's
    `metrics.csv` is one: its rows hold either training or validation values, and its
    LearningRateMonitor's ``lr-<optimizer>`` rows their own). `loss_column`: the loss column's name."""
    head = stream.read(4096)
    if not head.strip():
        raise DoctorInputError(f"{source}: the file is empty")
    if "\x00" in head:
        raise DoctorInputError(f"{source}: binary data, not a CSV log")
    delimiter = delimiter_of(head)
    rows = csv.reader(_chain(head, stream), delimiter=delimiter)
    try:
        header = next(rows)
        cols = _columns(header, source, loss_column)
        if cols.loss is None:
            raise _no_loss_error(source, header, "column", loss_column)
        named = {k: getattr(cols, k) for k in ("step", "loss", "lr", "grad_norm", "eval_loss")}
        index = {k: (header.index(v) if v is not None else None) for k, v in named.items()}
        builder = SeriesBuilder(source, fmt)
        builder.notes.extend(cols.notes)
        if index["step"] is None:
            builder.notes.append("no step column: the row number is used as the step")
        for n, row in enumerate(rows):
            if not row:
                continue
            cells = {k: (row[i] if i is not None and i < len(row) else None) for k, i in index.items()}
            builder.add(
                n if index["step"] is None else cells["step"],
                loss=cells["loss"],
                lr=cells["lr"],
                grad_norm=cells["grad_norm"],
                eval_loss=cells["eval_loss"],
            )
    except csv.Error as exc:
        raise DoctorInputError(f"{source}: not a readable CSV ({exc})") from None
    return builder.build()


def _chain(head: str, rest: TextIO) -> Iterator[str]:
    yield from io.StringIO(head + rest.readline())
    yield from rest


def read_jsonl(stream: TextIO, source: str = "log.jsonl", loss_column: str | None = None) -> Series:
    """One JSON object per line with a loss and a step (and optionally lr, grad_norm, eval loss).
    A cut-off last line (a run that died mid-write) and garbage lines are skipped and counted.
    `loss_column`: the loss key's name."""
    return read_entries(_json_entries(stream), source, "jsonl", loss_column)


def _json_entries(stream: TextIO) -> Iterator[Mapping[str, Any] | str]:
    """Each non-blank line's JSON object, or why it is none."""
    for line in stream:
        text = line.strip()
        if not text:
            continue
        try:
            entry = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            yield "text that is not a JSON object"
            continue
        yield entry if isinstance(entry, Mapping) else "text that is not a JSON object"


def read_text_log(stream: TextIO, source: str = "train.log", loss_column: str | None = None) -> Series:
    """A training script's printed output (`lrpilot.doctor._text`): nanoGPT's and llm.c's lines,
    torchtune's DiskLogger, the Hugging Face Trainer's console dicts, or any lines of
    ``name value`` pairs with a loss among them; the rest of the output is left aside."""
    head = stream.read(4096)
    if "\x00" in head:
        raise DoctorInputError(f"{source}: binary data, not a text log")
    lines = TextRecords(_chain(head, stream))
    records = iter(lines)
    first = next(records, None)
    if first is None:
        raise DoctorInputError(
            f"{source}: no line of it logs a training loss; expected lines of names and values, such as "
            "'step 12 | loss 1.234 | lr 3e-4', 'iter 12: loss 1.2345', 'Step 12 | loss:1.234 lr:3e-05' or the "
            "Hugging Face Trainer's {'loss': 1.234, ...}"
        )
    series = read_entries(itertools.chain([first], records), source, "text", loss_column)
    if not lines.numbered:
        return series
    note = f"no step printed with the losses: the n-th of the {lines.numbered} logged losses is read as step n"
    return dataclasses.replace(series, notes=(*series.notes, note))


def read_entries(
    entries: Iterable[Mapping[str, Any] | str], source: str, fmt: str, loss_column: str | None = None
) -> Series:
    """A log of records (a mapping of metric names to values per line, or for a line that is none,
    why: it is skipped and counted), each record's columns found by their names as a CSV's are; a
    record without a step takes its place among the records as its step."""
    builder = SeriesBuilder(source, fmt)
    lines = 0
    auto_step = 0
    cache: dict[tuple[str, ...], _Columns] = {}  # rows of one log mostly share their keys
    named = False
    nulls: list[Any] = []  # the steps of lines whose loss key holds null
    for entry in entries:
        lines += 1
        if isinstance(entry, str):
            builder.skip(entry)
            continue
        cols = _row_columns(cache, tuple(str(k) for k in entry), source, loss_column)
        named = named or cols.loss is not None
        step = entry.get(cols.step) if cols.step else auto_step
        auto_step += 1
        evaluated = cols.eval_loss is not None and entry.get(cols.eval_loss) is not None  # an evaluation's row
        if cols.loss is not None and entry.get(cols.loss, 0) is None and not evaluated:
            nulls.append(step)
        builder.add(
            step,
            loss=entry.get(cols.loss) if cols.loss else None,
            lr=entry.get(cols.lr) if cols.lr else None,
            grad_norm=entry.get(cols.grad_norm) if cols.grad_norm else None,
            eval_loss=entry.get(cols.eval_loss) if cols.eval_loss else None,
        )
    if not lines:
        raise DoctorInputError(f"{source}: the file is empty")
    if loss_column is not None and not named:
        raise _no_loss_error(source, sorted({k for keys in cache for k in keys}), "key", loss_column)
    if nulls:
        builder.notes.append(_null_note(nulls))
    if not named and any(set(keys) >= AUDIT_KEYS for keys in cache):
        builder.no_loss_hint = (
            ": it is a guard's audit log (its decisions: action, detector, evidence), not the run's log; give the "
            "run's own log, or its run.json"
        )
    return builder.build()


def _null_note(steps: list[Any]) -> str:
    """What lines whose loss is null were read as: not logged. JSON has no NaN, and a logger that
    writes strict JSON (orjson; an encoder with ``allow_nan=False`` and a fallback) writes a NaN loss
    as null: such a log's NaN steps were dropped without a word, and a run that went NaN read as
    healthy."""
    shown = ", ".join(str(s) for s in steps[:5]) + (f" and {len(steps) - 5} more" if len(steps) > 5 else "")
    return (
        f"{len(steps)} line(s) with a null loss (steps {shown}): read as not logged; where the logger writes a "
        "NaN loss as null (JSON has no NaN: orjson and strict encoders do), those were NaN steps"
    )


AUDIT_KEYS = frozenset({"action", "detector", "evidence", "lr_before"})
"""The keys of a line of the guard's JSONL audit log (`lrpilot.guard.Action.record`)."""


def _row_columns(
    cache: dict[tuple[str, ...], _Columns], keys: tuple[str, ...], source: str, loss_column: str | None
) -> _Columns:
    """`_columns` of a JSON line's keys, looked up once per set of keys (a bounded cache)."""
    cols = cache.get(keys)
    if cols is None:
        if len(cache) >= 1024:
            cache.clear()
        cols = cache[keys] = _columns(keys, source, loss_column)
    return cols


def read_tensorboard(paths: list[Path], source: str, loss_column: str | None = None) -> Series:
    """TensorBoard event files (one run: all files of one directory, in name order), read with
    TensorBoard's own event reader: scalar tags named like the CSV columns (``train/loss``,
    ``Loss/train``, ``train/learning_rate``, ``lr-Adam``, ...). `loss_column`: the loss tag."""
    loader_mod = require("tensorboard.backend.event_processing.event_file_loader", "doctor", "reading TensorBoard logs")
    tensor_util = require("tensorboard.util.tensor_util", "doctor", "reading TensorBoard logs")
    per_tag: dict[str, tuple[array[int], array[float]]] = {}  # streamed, 16 bytes a scalar
    firsts: dict[Path, dict[str, int]] = {}  # each file's first step of each tag
    builder = SeriesBuilder(source, "tensorboard")
    for path in paths:
        first = firsts.setdefault(path, {})
        try:
            for event in loader_mod.EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    number = _tb_number(value, tensor_util)
                    if number is None:
                        continue
                    steps, values = per_tag.setdefault(value.tag, (array("q"), array("d")))
                    steps.append(int(event.step))
                    values.append(number)
                    first[value.tag] = min(first.get(value.tag, int(event.step)), int(event.step))
        except Exception as exc:  # a corrupt record surfaces as whatever protobuf raises
            builder.notes.append(f"{path.name}: stopped reading at a corrupt record ({type(exc).__name__})")
    cols = _columns(per_tag, source, loss_column)
    if cols.loss is None:
        raise _no_loss_error(source, sorted(per_tag), "scalar tag", loss_column)
    _one_run(source, {path: tags[cols.loss] for path, tags in firsts.items() if cols.loss in tags})
    builder.notes.extend(cols.notes)
    loss_steps, loss_values = per_tag[cols.loss]
    at = np.frombuffer(loss_steps, dtype=np.int64)
    lr, _ = _aligned(per_tag, cols.lr, at)
    grad, has_grad = _aligned(per_tag, cols.grad_norm, at)
    for i, (step, loss) in enumerate(zip(loss_steps, loss_values, strict=True)):
        builder.add(step, loss=loss, lr=float(lr[i]), grad_norm=float(grad[i]) if has_grad[i] else None)
    if cols.eval_loss is not None:
        for step, value in zip(*per_tag[cols.eval_loss], strict=True):
            builder.add(step, eval_loss=value)
    return builder.build()


def _one_run(source: str, firsts: dict[Path, int]) -> None:
    """Refuse event files of one directory that each log the loss from the start: several runs
    written to one folder (a script launched twice with the same log_dir), which were merged as
    "runs appended into one file", the later winning step by step. A file that carries on from a
    later step is the same run resumed (a new SummaryWriter on the same folder), read as one."""
    files = list(firsts.items())  # in name order: the writer's timestamp
    if len(files) < 2:
        return
    start = files[0][1]
    again = [path for path, first in files[1:] if first <= start]
    if again:
        names = ", ".join(path.name for path, _ in files)
        raise DoctorInputError(
            f"{source}: {len(again) + 1} of its {len(files)} TensorBoard event files log the training loss from step "
            f"{start} or before ({names}): several runs written to one directory; give the doctor one of the files "
            f"(the last written: {files[-1][0].name})"
        )


def _aligned(
    per_tag: dict[str, tuple[array[int], array[float]]], tag: str | None, at: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The values of `tag` at the steps `at` (the last one written for a step), NaN where absent."""
    if tag is None:
        return np.full(at.size, np.nan), np.zeros(at.size, dtype=bool)
    steps = np.frombuffer(per_tag[tag][0], dtype=np.int64)
    values = np.frombuffer(per_tag[tag][1], dtype=np.float64)
    _, first_in_reversed = np.unique(steps[::-1], return_index=True)
    last = steps.size - 1 - first_in_reversed
    known, known_values = steps[last], values[last]
    pos = np.minimum(np.searchsorted(known, at), max(known.size - 1, 0))
    hit = (known.size > 0) & (known[pos] == at) if known.size else np.zeros(at.size, dtype=bool)
    return np.where(hit, known_values[pos] if known.size else np.nan, np.nan), hit


def _tb_number(value: Any, tensor_util: Any) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception:  # not a numeric tensor (text, images)
            return None
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(()))
    return None


def read(path: str | Path, *, loss_column: str | None = None) -> Series:
    """Read any supported log: a file, or a directory holding one (an HF output dir or checkpoint,
    a TensorBoard run dir, a Lightning `version_N` dir). See `FORMATS`.

    `loss_column`: the name of the training-loss column (CSV), key (JSONL, trainer_state.json) or
    scalar tag (TensorBoard), for a log that names it otherwise than the names the readers know
    (`LOSS_NAMES`), or to pick one run of a W&B export; matched exactly, else ignoring case. A
    name the log lacks is an error that lists what it has."""
    if loss_column is not None and (not isinstance(loss_column, str) or not loss_column.strip()):
        raise DoctorInputError(f"loss_column must be a column name, got {loss_column!r}")
    try:
        return _read(Path(path), loss_column)
    except OSError as exc:  # permissions, a path that vanished, a device error
        raise DoctorInputError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _read(p: Path, loss_column: str | None) -> Series:
    if not p.exists():
        raise DoctorInputError(f"{p}: no such file or directory")
    if p.is_dir():
        return _read_dir(p, loss_column)
    name = p.name.lower()
    if "tfevents" in name:
        return read_tensorboard([p], str(p), loss_column)
    try:
        size = p.stat().st_size
        if size == 0:
            raise DoctorInputError(f"{p}: the file is empty")
        with p.open("r", encoding="utf-8", errors="strict", newline="") as fh:
            return _read_text(fh, p, loss_column)
    except UnicodeDecodeError:
        raise DoctorInputError(f"{p}: not a text log (it is not UTF-8); expected {', '.join(FORMATS)}") from None


def _read_text(fh: TextIO, p: Path, loss_column: str | None) -> Series:
    """A text log, by its name's extension, else by its first character."""
    name = p.name.lower()
    if name.endswith(".json"):
        series = _read_json(fh, str(p), loss_column)
        return _with_model_config(series, p.parent) if series.format == "trainer_state" else series
    if name.endswith((".jsonl", ".ndjson")):
        return read_jsonl(fh, str(p), loss_column)
    if name.endswith((".csv", ".tsv")):
        return read_csv(fh, str(p), "lightning" if name == "metrics.csv" else "csv", loss_column)
    if name.endswith(TEXT_SUFFIXES):
        return read_text_log(fh, str(p), loss_column)
    first = fh.read(1)
    while first and first.isspace():
        first = fh.read(1)
    fh.seek(0)
    if first == "{":
        return _json_or_jsonl(fh, str(p), loss_column)
    try:
        return read_csv(fh, str(p), loss_column=loss_column)
    except DoctorInputError:  # no loss column in its first line: a script's printed output, named otherwise?
        fh.seek(0)
        if next(iter(TextRecords(fh)), None) is None:
            raise
        fh.seek(0)
        return read_text_log(fh, str(p), loss_column)


def _json_or_jsonl(fh: TextIO, source: str, loss_column: str | None) -> Series:
    """A ``{``-file without a telling extension: a trainer_state (one document with a log_history)
    or JSON lines. Peeks at the start and rewinds, so nothing is read twice."""
    head = fh.read(1 << 16)
    fh.seek(0)
    if '"log_history"' in head or '"history"' in head:
        return _read_json(fh, source, loss_column)
    if head.startswith("{'"):  # Python's dicts, as the Trainer prints its logs: a console log
        return read_text_log(fh, source, loss_column)
    return read_jsonl(fh, source, loss_column)


def _read_dir(p: Path, loss_column: str | None) -> Series:
    if (p / "run.json").is_file():  # an lrpilot fit or tune run directory
        return _read(p / "run.json", loss_column)
    states = sorted(p.glob("trainer_state.json")) or sorted(
        p.glob("checkpoint-*/trainer_state.json"), key=lambda q: _checkpoint_number(q.parent.name)
    )
    if states:
        return _read(states[-1], loss_column)
    metrics = sorted(p.glob("metrics.csv")) or sorted(p.glob("**/metrics.csv"), key=lambda q: q.stat().st_mtime)
    if metrics:
        return _latest_of(_read(metrics[-1], loss_column), p, [q.parent for q in metrics])
    events = sorted(p.glob("events.out.tfevents.*")) or sorted(p.glob("**/events.out.tfevents.*"))
    if events:
        runs = sorted({q.parent for q in events}, key=lambda run: max(q.stat().st_mtime for q in _events(run)))
        series = read_tensorboard(_events(runs[-1]), str(runs[-1]), loss_column)
        return _latest_of(series, p, runs)
    logs = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.csv"))
    if len(logs) == 1:
        return _read(logs[0], loss_column)
    raise DoctorInputError(
        f"{p}: found no log here: expected lrpilot's run.json, trainer_state.json (or "
        "checkpoint-*/trainer_state.json), a Lightning metrics.csv, TensorBoard events.out.tfevents.* files, "
        "or a single .csv / .jsonl log"
    )


def _events(run: Path) -> list[Path]:
    """A TensorBoard run directory's event files, in name order."""
    return sorted(run.glob("events.out.tfevents.*"))


def _latest_of(series: Series, folder: Path, runs: list[Path]) -> Series:
    """`series`, read from the last of `runs` (the latest written) found under `folder`, with a note
    naming the others where there are several. A TensorBoard log directory of several runs was read
    as the one whose name sorted last, unsaid (Hugging Face names its runs ``Jan10_...``, ``Feb02_...``:
    not the latest), and a Lightning ``lightning_logs`` of several versions as its latest, unsaid."""
    if len(runs) < 2:
        return series
    names = [str(run.relative_to(folder)) for run in runs]
    others = ", ".join(names[:-1][-5:]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    note = (
        f"{folder} holds {len(runs)} runs: read the latest written, {names[-1]} (the others: {others}); give a "
        "run's own directory to read another"
    )
    return dataclasses.replace(series, notes=(*series.notes, note))


def _checkpoint_number(name: str) -> float:
    try:
        return float(name.rsplit("-", 1)[-1])
    except ValueError:
        return -math.inf
