"""Readers: Hugging Face `trainer_state.json`, TensorBoard event files, CSV / JSONL logs,
Lightning's CSVLogger `metrics.csv` and lrpilot's own `run.json`, all into one `Series`.

Every reader streams its input row by row into a `SeriesBuilder`; every way a file can be wrong
(missing, empty, truncated, not the format it claims, missing columns, garbage values) ends in a
`DoctorInputError` whose message says what was expected, never in a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from lrpilot._batch import CALIBRATED_BATCH
from lrpilot._hf_labels import single_label_classes
from lrpilot._optional import require
from lrpilot.doctor._series import DoctorInputError, Series, SeriesBuilder

__all__ = ["FORMATS", "read", "read_csv", "read_jsonl", "read_run_json", "read_tensorboard", "read_trainer_state"]

FORMATS = ("trainer_state", "tensorboard", "csv", "jsonl", "lightning", "lrpilot")

# Column / key / tag names, compared lower-cased; the first present wins.
STEP_KEYS = ("step", "global_step", "trainer/global_step", "iteration", "iter", "it", "steps")
LOSS_KEYS = ("loss", "train_loss", "train/loss", "training_loss", "train_loss_step", "loss_step", "train/loss_step")
LR_KEYS = ("learning_rate", "lr", "train/learning_rate", "train/lr", "learning-rate")
LR_PREFIX = "lr-"  # Lightning's LearningRateMonitor: lr-Adam, lr-AdamW/pg1, ...
GRAD_KEYS = ("grad_norm", "train/grad_norm", "gradient_norm", "grad_norm_total", "grad_2.0_norm_total", "gnorm")
EVAL_KEYS = ("eval_loss", "eval/loss", "val_loss", "val/loss", "valid_loss", "validation_loss", "val_loss_epoch")


def _pick(names: Iterable[str], wanted: tuple[str, ...], prefix: str | None = None) -> str | None:
    lowered = {n.strip().lower(): n for n in names}
    for key in wanted:
        if key in lowered:
            return lowered[key]
    if prefix:
        for low, name in sorted(lowered.items()):
            if low.startswith(prefix):
                return name
    return None


def _columns_error(source: str, found: Iterable[str], what: str, accepted: tuple[str, ...]) -> DoctorInputError:
    shown = ", ".join(repr(f) for f in list(found)[:20]) or "none"
    return DoctorInputError(
        f"{source}: no {what} column; found {shown}. Accepted names: {', '.join(accepted)} (case does not matter)"
    )


def _load_json(stream: TextIO, source: str) -> Any:
    try:
        return json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DoctorInputError(f"{source}: not valid JSON ({exc}); is the file truncated?") from None


def _read_json(stream: TextIO, source: str) -> Series:
    """A JSON document: lrpilot's `run.json` (a ``history``) or else a trainer_state.json."""
    data = _load_json(stream, source)
    if isinstance(data, Mapping) and "history" in data and "log_history" not in data:
        return read_run_json(data, source)
    return _trainer_state(data, source)


def read_run_json(data: Mapping[str, Any], source: str = "run.json") -> Series:
    """lrpilot's own `run.json` (what `lrpilot fit` and `lrpilot tune` write): every step the guard
    judged, with its loss and LR, the evaluations, and the task's classes (the chance level) and
    batch size where fit recorded them. A step the guard replayed after a rollback appears twice;
    the later one wins, as in any resumed log."""
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
        builder.add(step, loss=loss, lr=lr)
    for step, value in zip(history.get("eval_steps") or [], history.get("eval_loss") or [], strict=False):
        builder.add(step, eval_loss=value)
    classes, batch, chance = data.get("classes"), data.get("batch_size"), data.get("chance_loss")
    for name, value, low in (("classes", classes, 2), ("batch_size", batch, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise DoctorInputError(f"{source}: {name!r} must be an integer of at least {low}, got {value!r}")
    number = isinstance(chance, int | float) and not isinstance(chance, bool)
    if chance is not None and not (number and math.isfinite(chance) and chance > 0):
        raise DoctorInputError(f"{source}: 'chance_loss' must be a finite number > 0, got {chance!r}")
    return dataclasses.replace(builder.build(), classes=classes, batch_size=batch, chance_loss=chance)


def read_trainer_state(stream: TextIO, source: str = "trainer_state.json") -> Series:
    """Hugging Face `trainer_state.json`: the ``log_history`` list of dicts.

    The final summary entry (``train_runtime``, ``train_loss`` = the run's *average*) is not a
    loss at that step and is left out. NaN steps hidden by ``logging_nan_inf_filter`` cannot be seen
    here: the Trainer logged the running average in their place (see `lrpilot.integrations.transformers_guard`).
    """
    return _trainer_state(_load_json(stream, source), source)


def _trainer_state(data: Any, source: str) -> Series:
    """The log history, and the examples behind each logged loss (`_examples_per_log`)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("log_history"), list):
        raise DoctorInputError(f"{source}: expected a Hugging Face trainer_state.json with a 'log_history' list")
    builder = SeriesBuilder(source, "trainer_state")
    for entry in data["log_history"]:
        if not isinstance(entry, Mapping):
            builder.skip("an entry that is not an object")
            continue
        if "train_runtime" in entry:
            continue
        builder.add(
            entry.get("step"),
            loss=entry.get("loss"),
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


def _examples_per_log(data: Mapping[str, Any]) -> int | None:
    """``train_batch_size`` × ``logging_steps`` (a logged loss averages the steps since the last
    one): a lower bound, as gradient accumulation and the other ranks multiply it unrecorded;
    None when either is missing or not a positive count."""
    batch, every = data.get("train_batch_size"), data.get("logging_steps")
    counts = [v for v in (batch, every) if isinstance(v, int) and not isinstance(v, bool) and v >= 1]
    return counts[0] * counts[1] if len(counts) == 2 else None


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
    labels = config.get("num_labels", len(config.get("id2label") or {}))
    names = architectures if isinstance(architectures, list) else []
    classes = single_label_classes(names, labels, config.get("problem_type"))
    if classes is None:
        return series
    note = (
        f"chance level ln {classes} = {math.log(classes):.3g}: {path.name} beside the log is a {classes}-class "
        f"{architectures[0]} (--num-classes sets it)"
    )
    return dataclasses.replace(series, classes=classes, notes=(*series.notes, note))


def _row_keys(keys: Iterable[str]) -> dict[str, str | None]:
    names = list(keys)
    return {
        "step": _pick(names, STEP_KEYS),
        "loss": _pick(names, LOSS_KEYS),
        "lr": _pick(names, LR_KEYS, LR_PREFIX),
        "grad_norm": _pick(names, GRAD_KEYS),
        "eval_loss": _pick(names, EVAL_KEYS),
    }


def read_csv(stream: TextIO, source: str = "log.csv", fmt: str = "csv") -> Series:
    """A CSV (or TSV) log with a header: a loss column and a step column at least (Lightning's
    `metrics.csv` is one: its rows hold either training or validation values)."""
    head = stream.read(4096)
    if not head.strip():
        raise DoctorInputError(f"{source}: the file is empty")
    if "\x00" in head:
        raise DoctorInputError(f"{source}: binary data, not a CSV log")
    delimiter = "\t" if head.count("\t") > head.count(",") else ","
    rows = csv.reader(_chain(head, stream), delimiter=delimiter)
    try:
        header = next(rows)
        keys = _row_keys(header)
        if keys["loss"] is None:
            raise _columns_error(source, header, "training loss", LOSS_KEYS)
        index = {k: (header.index(v) if v is not None else None) for k, v in keys.items()}
        builder = SeriesBuilder(source, fmt)
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


def read_jsonl(stream: TextIO, source: str = "log.jsonl") -> Series:
    """One JSON object per line with a loss and a step (and optionally lr, grad_norm, eval loss).
    A cut-off last line (a run that died mid-write) and garbage lines are skipped and counted."""
    builder = SeriesBuilder(source, "jsonl")
    lines = 0
    auto_step = 0
    for line in stream:
        text = line.strip()
        if not text:
            continue
        lines += 1
        try:
            entry = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            builder.skip("text that is not a JSON object")
            continue
        if not isinstance(entry, Mapping):
            builder.skip("text that is not a JSON object")
            continue
        keys = _row_keys(str(k) for k in entry)
        step = entry.get(keys["step"]) if keys["step"] else auto_step
        auto_step += 1
        builder.add(
            step,
            loss=entry.get(keys["loss"]) if keys["loss"] else None,
            lr=entry.get(keys["lr"]) if keys["lr"] else None,
            grad_norm=entry.get(keys["grad_norm"]) if keys["grad_norm"] else None,
            eval_loss=entry.get(keys["eval_loss"]) if keys["eval_loss"] else None,
        )
    if not lines:
        raise DoctorInputError(f"{source}: the file is empty")
    return builder.build()


def read_tensorboard(paths: list[Path], source: str) -> Series:
    """TensorBoard event files (one run: all files of one directory, in name order), read with
    TensorBoard's own event reader: scalar tags named like the CSV columns (``train/loss``,
    ``train/learning_rate``, ``lr-Adam``, ...)."""
    loader_mod = require("tensorboard.backend.event_processing.event_file_loader", "doctor", "reading TensorBoard logs")
    tensor_util = require("tensorboard.util.tensor_util", "doctor", "reading TensorBoard logs")
    per_tag: dict[str, tuple[array[int], array[float]]] = {}  # streamed, 16 bytes a scalar
    builder = SeriesBuilder(source, "tensorboard")
    for path in paths:
        try:
            for event in loader_mod.EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    number = _tb_number(value, tensor_util)
                    if number is None:
                        continue
                    steps, values = per_tag.setdefault(value.tag, (array("q"), array("d")))
                    steps.append(int(event.step))
                    values.append(number)
        except Exception as exc:  # a corrupt record surfaces as whatever protobuf raises
            builder.notes.append(f"{path.name}: stopped reading at a corrupt record ({type(exc).__name__})")
    keys = _row_keys(per_tag)
    if keys["loss"] is None:
        raise _columns_error(source, sorted(per_tag), "training-loss scalar", LOSS_KEYS)
    loss_steps, loss_values = per_tag[keys["loss"]]
    at = np.frombuffer(loss_steps, dtype=np.int64)
    lr, _ = _aligned(per_tag, keys["lr"], at)
    grad, has_grad = _aligned(per_tag, keys["grad_norm"], at)
    for i, (step, loss) in enumerate(zip(loss_steps, loss_values, strict=True)):
        builder.add(step, loss=loss, lr=float(lr[i]), grad_norm=float(grad[i]) if has_grad[i] else None)
    if keys["eval_loss"] is not None:
        for step, value in zip(*per_tag[keys["eval_loss"]], strict=True):
            builder.add(step, eval_loss=value)
    return builder.build()


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


def read(path: str | Path) -> Series:
    """Read any supported log: a file, or a directory holding one (an HF output dir or checkpoint,
    a TensorBoard run dir, a Lightning `version_N` dir). See `FORMATS`."""
    try:
        return _read(Path(path))
    except OSError as exc:  # permissions, a path that vanished, a device error
        raise DoctorInputError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _read(p: Path) -> Series:
    if not p.exists():
        raise DoctorInputError(f"{p}: no such file or directory")
    if p.is_dir():
        return _read_dir(p)
    name = p.name.lower()
    if "tfevents" in name:
        return read_tensorboard([p], str(p))
    try:
        size = p.stat().st_size
        if size == 0:
            raise DoctorInputError(f"{p}: the file is empty")
        with p.open("r", encoding="utf-8", errors="strict", newline="") as fh:
            if name.endswith(".json"):
                series = _read_json(fh, str(p))
                return _with_model_config(series, p.parent) if series.format == "trainer_state" else series
            if name.endswith((".jsonl", ".ndjson")):
                return read_jsonl(fh, str(p))
            if name.endswith((".csv", ".tsv")):
                return read_csv(fh, str(p), "lightning" if name == "metrics.csv" else "csv")
            first = fh.read(1)
            while first and first.isspace():
                first = fh.read(1)
            fh.seek(0)
            if first == "{":
                return _json_or_jsonl(fh, str(p))
            return read_csv(fh, str(p))
    except UnicodeDecodeError:
        raise DoctorInputError(f"{p}: not a text log (it is not UTF-8); expected {', '.join(FORMATS)}") from None


def _json_or_jsonl(fh: TextIO, source: str) -> Series:
    """A ``{``-file without a telling extension: a trainer_state (one document with a log_history)
    or JSON lines. Peeks at the start and rewinds, so nothing is read twice."""
    head = fh.read(1 << 16)
    fh.seek(0)
    if '"log_history"' in head or '"history"' in head:
        return _read_json(fh, source)
    return read_jsonl(fh, source)


def _read_dir(p: Path) -> Series:
    if (p / "run.json").is_file():  # an lrpilot fit or tune run directory
        return _read(p / "run.json")
    states = sorted(p.glob("trainer_state.json")) or sorted(
        p.glob("checkpoint-*/trainer_state.json"), key=lambda q: _checkpoint_number(q.parent.name)
    )
    if states:
        return _read(states[-1])
    metrics = sorted(p.glob("metrics.csv")) or sorted(p.glob("**/metrics.csv"), key=lambda q: q.stat().st_mtime)
    if metrics:
        return _read(metrics[-1])
    events = sorted(p.glob("events.out.tfevents.*")) or sorted(p.glob("**/events.out.tfevents.*"))
    if events:
        parent = events[-1].parent
        return read_tensorboard(sorted(parent.glob("events.out.tfevents.*")), str(parent))
    logs = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.csv"))
    if len(logs) == 1:
        return _read(logs[0])
    raise DoctorInputError(
        f"{p}: found no log here: expected lrpilot's run.json, trainer_state.json (or "
        "checkpoint-*/trainer_state.json), a Lightning metrics.csv, TensorBoard events.out.tfevents.* files, "
        "or a single .csv / .jsonl log"
    )


def _checkpoint_number(name: str) -> float:
    try:
        return float(name.rsplit("-", 1)[-1])
    except ValueError:
        return -math.inf
