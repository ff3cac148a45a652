"""``fit --model``'s data: the user's ``.csv`` / ``.jsonl`` files read and checked, their columns
mapped to the roles fit reads (``text``, ``text_pair``, ``label``; a causal LM's ``prompt`` and
``completion`` or ``messages``), labels turned into class ids, texts into token ids, and token ids
into padded batches (a causal LM's chat and completions: `lrpilot.autopilot._chat`).

Every check runs before a weight is loaded, and every error names the file, the row and the column.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrpilot import _validate as check
from lrpilot._csv import delimiter_of

__all__ = [
    "COLUMN_ROLES",
    "DATA_SUFFIXES",
    "EVAL_FRACTION",
    "LM_FORMATS",
    "LM_MAX_LENGTH",
    "MAX_LENGTH",
    "SHAREGPT_COLUMN",
    "Encoded",
    "check_file",
    "check_labels",
    "column_map",
    "encode",
    "fit_as_ids",
    "label_ids",
    "label_names",
    "label_spellings",
    "name_key",
    "numeric_names",
    "pad",
    "read_lm",
    "read_roles",
    "read_rows",
    "split_rows",
    "wanted_columns",
]

DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".txt")
"""The data files fit reads (`_read`): a ``.json`` holds an array of rows or JSON lines, and a
``.txt`` one text per line, as the ``datasets`` library reads them."""
MAX_LENGTH = 128
"""A classifier's tokens per example by default (``fit --max-length``): longer ones are truncated
at the end."""
LM_MAX_LENGTH = 1024
"""A causal LM's tokens per example by default (TRL's ``SFTConfig.max_length``), or the model's
context where that is shorter; batches are padded to their longest example, so short data costs
no more for it."""
EVAL_FRACTION = 0.1
"""Without --eval, this fraction of the training rows (fixed by a seed of 0) is held out to evaluate on."""
COLUMN_ROLES = ("text", "text_pair", "label", "prompt", "completion", "messages", "tools", "chat_template_kwargs")
"""What fit reads from a row: the text, a second text for a classifier of pairs (premise and
hypothesis, question and passage), and a classifier's label; a causal LM's text, or a prompt and
its completion, or a chat's messages (`LM_FORMATS`), and with a chat, where the file has them, the
tools its assistant may call (function schemas) and the template's own variables
(``chat_template_kwargs``, such as ``enable_thinking``), as TRL reads them. Each is the column of its own
name unless `column_map` says otherwise."""
SHAREGPT_COLUMN = "conversations"
"""Where ShareGPT-style data keeps its chats (``{"from", "value"}`` messages): read as the messages
when the file has no column of that role's name."""
LM_FORMATS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "prompt-completion": ("prompt", "completion"),
    "text": ("text",),
}
"""A causal LM's data formats (those of TRL's ``SFTTrainer``), each with the roles it reads, in the
order `read_lm` looks for them: a chat (a list of ``{"role", "content"}`` messages; the loss counts
the assistant's turns), a prompt and its completion (the loss counts the completion), plain text
(every token)."""


# --- files and columns ------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV's columns and rows; UTF-8 with or without the byte-order mark Excel writes, separated by
    commas, tabs or semicolons (`lrpilot._csv.delimiter_of`), and cells of any size (the csv module's
    default limit is 128 KiB, less than a long document)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            delimiter = delimiter_of(handle.readline())
            handle.seek(0)
            reader = csv.DictReader(handle, delimiter=delimiter)
            rows = []
            for row in reader:
                _check_cells(path, row, list(reader.fieldnames or []), reader.line_num, delimiter)
                rows.append(row)
            return list(reader.fieldnames or []), rows
    except csv.Error as exc:
        raise ValueError(f"{path.name}: not a readable CSV file ({exc})") from None
    finally:
        csv.field_size_limit(limit)


def _check_cells(path: Path, row: dict[Any, Any], names: list[str], line: int, delimiter: str) -> None:
    """An error where a CSV row has more cells than its header: a text holding the separator unquoted
    (``great film, loved it,1``), whose cells had shifted, silently: the text cut at the separator, the
    rest read as its label or dropped (a causal LM's one-column ``Hello, world`` trained ``Hello``).
    Extra cells left empty (a trailing separator) are harmless."""
    extra = row.get(None) or []
    if any(str(cell).strip() for cell in extra):
        shown = "a tab" if delimiter == "\t" else repr(delimiter)
        raise ValueError(
            f"{path.name}, line {line}: {len(names) + len(extra)} cells where the header has {len(names)} "
            f"({', '.join(names)}); a cell that holds the separator ({shown}) must be in double quotes"
        )
    row.pop(None, None)


def _read_jsonl(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8-sig") as handle:  # a byte-order mark, where an editor wrote one, is not JSON
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}, line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path.name}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return _columns(rows), rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _read_json(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A ``.json`` file: an array of row objects (Alpaca's ``alpaca_data.json``), or JSON lines
    under that name, as ``datasets`` reads both; fit had refused the name."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path.name}, row {number}: expected a JSON object, got {type(row).__name__}")
    return _columns(rows), rows


def _read_txt(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A ``.txt`` file: a ``text`` column of one text per line, as ``datasets``' text loader reads
    it, its blank lines (a paragraph's break) left out rather than refused as empty texts."""
    with path.open(encoding="utf-8-sig") as handle:
        rows: list[dict[str, Any]] = [{"text": line.rstrip("\r\n")} for line in handle if line.strip()]
    return ["text"], rows


_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_json, ".txt": _read_txt}


def check_file(path: Path, columns: str, what: str) -> None:
    """A data file that exists and is one fit reads (`DATA_SUFFIXES`), else an error (`columns`: the
    columns it should have, for the message); fit checks its paths so before it prints or loads
    anything, and again as it reads them."""
    if path.is_dir():  # had been "no such file", of a folder that exists (a dataset saved as a folder)
        raise ValueError(
            f"{what}: {path} is a folder; give a file of rows, .csv, .jsonl, .json or .txt (columns {columns})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {str(path)!r}")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise ValueError(f"{what}: {path.name} must be a .csv, .jsonl, .json or .txt file (columns {columns})")


def wanted_columns(kind: str, columns: Mapping[str, str]) -> str:
    """The columns a ``--data`` file of `kind` needs, as the messages name them (`columns`:
    `column_map`'s): a classifier's text and label, or one of a causal LM's `LM_FORMATS`."""
    if kind == "causal-lm":
        return " or ".join(" + ".join(columns[role] for role in roles) for roles in LM_FORMATS.values())
    return ", ".join(columns[role] for role in ("text", "label"))


def _read(path: Path, columns: str, what: str) -> tuple[list[str], list[dict[str, Any]]]:
    """A file's column names and rows, or an error: missing, of another kind, or empty (`columns`:
    the columns it should have, for the message)."""
    check_file(path, columns, what)
    try:
        names, rows = _READERS[path.suffix.lower()](path)
    except UnicodeDecodeError:
        raise ValueError(f"{what}: {_undecodable(path)}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not rows:
        raise ValueError(f"{what}: {path.name} has no rows (expected columns {columns})")
    return names, rows


def _undecodable(path: Path) -> str:
    """Where a file that is not UTF-8 first parts from it, and how to convert it. Python's own
    message (``'utf-8' codec can't decode byte 0xef in position 37``) named neither the file nor
    the line, and its position counts from the decoder's chunk, not the file's start."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{path.name}, line {number}: not UTF-8 text (byte 0x{line[exc.start]:02x}, the line's byte "
                    f"{exc.start + 1}; a Windows or Latin-1 file, as Excel's plain CSV is); save it as UTF-8 (Excel: "
                    "CSV UTF-8; iconv -f cp1252 -t utf-8)"
                )
    return f"{path.name}: not UTF-8 text; save it as UTF-8"


def _check_columns(
    path: Path, names: list[str], rows: list[dict[str, Any]], columns: Sequence[str], what: str, *, hint: str = ""
) -> None:
    """Every one of `columns` present (else an error, `hint` after it), and in no row empty (rows
    counted from 1)."""
    for column in columns:
        if column not in names:
            found = ", ".join(names) or "none"
            raise ValueError(
                f"{what}: {path.name} has no column {column!r}{check.suggest_name(column, names)} (columns: {found})"
                + hint
            )
    for column in columns:
        empty = [number for number, row in enumerate(rows, start=1) if _empty(row.get(column))]
        if len(empty) == 1:
            raise ValueError(f"{what}: {path.name}, row {empty[0]}: {column!r} is empty")
        if empty:  # every row named at once (the first few), not one per attempt
            shown = ", ".join(map(str, empty[:5])) + (", …" if len(empty) > 5 else "")
            raise ValueError(
                f"{what}: {path.name}, rows {shown}: {column!r} is empty ({len(empty)} of {len(rows)} rows); fill "
                "them in or leave those rows out"
            )


def _empty(value: Any) -> bool:
    """A cell with nothing in it: missing, None (JSON null) or only spaces."""
    return value is None or (isinstance(value, str) and not value.strip())


def read_rows(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, Any]]:
    """The rows of a ``.csv`` or ``.jsonl`` file, checked: it exists, has rows, has `columns`, and no
    row leaves one of them empty (row numbers count data rows from 1)."""
    names, rows = _read(path, ", ".join(columns), what)
    _check_columns(path, names, rows, columns, what)
    return rows


def column_map(columns: Mapping[str, str] | None, owner: str = "fit") -> dict[str, str]:
    """Each of `COLUMN_ROLES`' column in the user's files: its own name unless `columns` maps it to
    another (``{"text": "sentence"}``); a role that is not one, or an empty column name, is an error."""
    given = dict(columns or {})
    for role, column in given.items():
        if role not in COLUMN_ROLES:
            raise ValueError(f"{owner}: --columns: {role!r} is not a role; the roles are {', '.join(COLUMN_ROLES)}")
        if not isinstance(column, str) or not column.strip():
            raise ValueError(f"{owner}: --columns: {role}'s column must be a name, got {column!r}")
    return {role: given.get(role, role) for role in COLUMN_ROLES}


def read_roles(
    path: Path, roles: tuple[str, ...], columns: Mapping[str, str], what: str, *, pairs: bool | None = None
) -> list[dict[str, Any]]:
    """The rows of `path` as `roles` (their columns: `columns`, from `column_map`), checked as
    `read_rows` does. ``text_pair`` is read where `pairs` says so; None: where the file has its
    column (a classifier's data with one is a classifier of pairs)."""
    wanted = [columns[role] for role in roles]
    names, rows = _read(path, ", ".join(wanted), what)
    if pairs is None:
        pairs = columns["text_pair"] in names
    if pairs:
        roles, wanted = (*roles, "text_pair"), [*wanted, columns["text_pair"]]
    _check_columns(path, names, rows, wanted, what, hint=_unlabelled_hint(names, roles, columns))
    return [{role: row[column] for role, column in zip(roles, wanted, strict=True)} for row in rows]


def _unlabelled_hint(names: list[str], roles: tuple[str, ...], columns: Mapping[str, str]) -> str:
    """Where a classifier's file lacks its label but holds a causal LM's data (text alone, a chat, a
    prompt and completion): that --task-type causal-lm trains on it. fit reads --model's data as a
    classifier's unless told, and a text file for a GPT had been refused for its missing label alone."""
    if "label" not in roles or columns["label"] in names:
        return ""
    lm = {columns["messages"], SHAREGPT_COLUMN, columns["prompt"]} & set(names) or names == [columns["text"]]
    return "; data without labels trains a causal LM: give --task-type causal-lm" if lm else ""


def read_lm(
    path: Path, columns: Mapping[str, str], what: str, form: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """A causal LM's rows as the roles of their format (`LM_FORMATS`), and the format: `form` where
    given (the training data's, for the evaluation data), else the first whose columns the file has
    (its columns: `columns`, from `column_map`; ShareGPT's `SHAREGPT_COLUMN` for the messages where
    they are not mapped and the file has no ``messages``); checked as `read_rows` does. A row of a
    prompt-completion or chat file carries its ``tools`` and ``chat_template_kwargs`` too where the
    file has those columns (None in a row without them)."""
    options = wanted_columns("causal-lm", columns)
    names, rows = _read(path, options, what)
    if columns["messages"] not in names and columns["messages"] == "messages" and SHAREGPT_COLUMN in names:
        columns = {**columns, "messages": SHAREGPT_COLUMN}
    if form is None:
        form = next(f for f, roles in LM_FORMATS.items() if f == "text" or all(columns[r] in names for r in roles))
    roles = LM_FORMATS[form]
    wanted = [columns[role] for role in roles]
    if form != "text" and any(column not in names for column in wanted):
        raise ValueError(
            f"{what}: {path.name} has no column {next(c for c in wanted if c not in names)!r}; the training data "
            f"is {form} data, which needs the columns {', '.join(wanted)} (columns: {', '.join(names) or 'none'})"
        )
    if form == "text" and columns["text"] not in names:
        raise ValueError(
            f"{what}: {path.name} has none of a causal LM's columns: {options} "
            f"(columns: {', '.join(names) or 'none'}); --columns maps them to others"
        )
    _check_columns(path, names, rows, wanted, what)
    for extra in ("tools", "chat_template_kwargs"):
        if form != "text" and columns[extra] in names:
            roles, wanted = (*roles, extra), [*wanted, columns[extra]]
    return form, [{role: row.get(column) for role, column in zip(roles, wanted, strict=True)} for row in rows]


# --- labels -----------------------------------------------------------------------------------


def _label(value: Any, where: str) -> int:
    """An integer label (``1``, ``"1"``, ``1.0``); anything else is an error naming the row."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: label must be an integer, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: label must be an integer class id, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{where}: label must be an integer class id, got {value!r}")
    return int(number)


def _is_name(value: Any) -> bool:
    """Whether a label is a class name (``"positive"``, ``"spam"``) rather than a number. A JSON
    boolean is a name, ``True`` or ``False``: pandas writes a bool column so to a CSV, where it is
    read as those names, and as ``true`` / ``false`` to a ``.jsonl``, which was refused."""
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return True
    return False


def name_key(value: Any) -> str:
    """A label name as classes are told apart: without its case and surrounding or repeated spaces.

    Hand-labelled and merged data spell one class several ways (``"Positive"``, ``"positive "``,
    ``"POSITIVE"``); read verbatim, each spelling would be a class of its own, a head with outputs
    that split one class's examples between them."""
    return " ".join(str(value).split()).casefold()


def label_spellings(rows: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Each class name's spellings in `rows` (spaces trimmed), most frequent first, keyed by
    `name_key`; the name a class goes by is its most frequent spelling (the first in sorted order
    on a tie)."""
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        spelling = " ".join(str(row["label"]).split())
        counts.setdefault(name_key(spelling), Counter())[spelling] += 1
    return {key: tuple(sorted(c, key=lambda s: (-c[s], s))) for key, c in counts.items()}


def label_names(
    rows: list[dict[str, Any]], path: Path, what: str, own: Mapping[str, int] | None = None
) -> tuple[str, ...]:
    """The class names of labels given as names, in id order; ``()`` for integer class ids.

    A fresh head numbers the names in sorted order (of `name_key`: spellings that differ only in
    case or spaces are one class, named by its most frequent spelling); a checkpoint that already
    is a classifier keeps its own numbering (`own`: its ``label2id``), so the names must be its own,
    in any case. Labels that mix numbers and names are an error naming the rows (a single class is
    `single_class`'s)."""
    kinds = [_is_name(row["label"]) for row in rows]
    if not any(kinds):
        return ()
    if not all(kinds):
        number, name = kinds.index(False), kinds.index(True)
        raise ValueError(
            f"{what}: {path.name}, row {number + 1}: label {rows[number]['label']!r} is a number and row {name + 1}'s "
            f"{rows[name]['label']!r} a name; give every label as an integer class id, or every one as a name"
        )
    spellings = label_spellings(rows)
    if own is not None:
        theirs = sorted(own, key=own.__getitem__)
        known = {name_key(name) for name in theirs}
        if not set(spellings) <= known:
            unknown = [spellings[key][0] for key in sorted(spellings) if key not in known]
            raise ValueError(
                f"{what}: {path.name}: the model is already a classifier of the labels {', '.join(theirs)}; "
                f"{', '.join(repr(n) for n in unknown)} is not one of them: give its label names or "
                f"integer class ids 0 to {len(theirs) - 1}"
            )
        return tuple(theirs)
    return tuple(spellings[key][0] for key in sorted(spellings))


def single_class(ids: list[int], names: tuple[str, ...], path: Path, what: str) -> None:
    """An error where every training label is one class: its head learns nothing, whether the labels
    are names or integer ids (a file of ``1`` alone had trained a two-output head, one never seen)."""
    if len(set(ids)) < 2:
        only = names[ids[0]] if names else ids[0]
        raise ValueError(f"{what}: {path.name}: every label is {only!r}; a classifier needs at least two classes")


def _number(value: Any) -> float | None:
    """A label's (or a label name's) value where it is a finite number, else None."""
    if _is_name(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _key(value: Any) -> float | str:
    """A label as it is matched to a class name: a number by its value (``1``, ``"1"`` and ``1.0``
    are the name ``"1"``), a name by `name_key`."""
    number = _number(value)
    return name_key(value) if number is None else number


def numeric_names(rows: list[dict[str, Any]], own: Mapping[str, int] | None) -> tuple[str, ...]:
    """A classifier checkpoint's own label names in id order (`own`: its ``label2id``) where they are
    all numbers (a star rating's ``"1"`` … ``"5"``) and every one of `rows`' labels is one of them,
    by value; else ``()``, and ``()`` too where each name is its own id (``"0"``, ``"1"``: reading
    the labels as names or as ids is then the same).

    A head whose output 0 is named ``"1"`` had taken the data's ``1`` for class id 1, the output
    named ``"2"``, and refused its ``5`` as out of range."""
    if not own:
        return ()
    theirs = sorted(own, key=own.__getitem__)
    values = [_number(name) for name in theirs]
    if None in values or len(set(values)) < len(values) or values == list(range(len(values))):
        return ()
    if any(_number(row["label"]) not in values for row in rows):
        return ()
    return tuple(theirs)


def fit_as_ids(rows: list[dict[str, Any]], num_labels: int) -> bool:
    """Whether every one of `rows`' labels is an integer class id in ``[0, num_labels)``."""
    numbers = [_number(row["label"]) for row in rows]
    return all(n is not None and n == int(n) and 0 <= n < num_labels for n in numbers)


def label_ids(rows: list[dict[str, Any]], path: Path, what: str, names: tuple[str, ...] = ()) -> list[int]:
    """Each row's class id: its integer label, or its name's place in `names` (a name by `name_key`,
    a number, where the names are numbers (`numeric_names`), by its value)."""
    if not names:
        return [_label(row["label"], f"{what}: {path.name}, row {i}") for i, row in enumerate(rows, start=1)]
    ids = {_key(name): i for i, name in enumerate(names)}
    out = []
    for i, row in enumerate(rows, start=1):
        label = row["label"]
        if _key(label) not in ids:
            raise ValueError(
                f"{what}: {path.name}, row {i}: label {label!r} is not one of the training labels ({', '.join(names)})"
            )
        out.append(ids[_key(label)])
    return out


def check_labels(labels: list[int], num_labels: int, path: Path, what: str) -> None:
    """Every class id in ``[0, num_labels)``, or an error naming the first row that is not."""
    for i, label in enumerate(labels, start=1):
        if not 0 <= label < num_labels:
            raise ValueError(
                f"{what}: {path.name}, row {i}: label {label} is out of range: labels must be integers in "
                f"[0, {num_labels}) for this model"
            )


def split_rows(count: int, what: str, labels: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Which of `count` rows train and which are held out (`EVAL_FRACTION` of them, at least one)
    when no --eval file is given: two sorted lists of row indices. Indices rather than rows, so that
    an error in a row found later still names its row in the file (a causal LM's rows are checked
    as they are encoded, after the split: a malformed chat on the file's row 25 had been reported
    as "row 23", its place among the training rows).

    With a classifier's `labels` (one class id per row), every class keeps a training example: a
    class whose every row the draw held out goes back to training by one of them (a rare class of
    one example had been held out whole, a head output never trained and an evaluation example
    no run could get right)."""
    if count < 10:
        few = f"{count} row is" if count == 1 else f"{count} rows are"
        raise ValueError(f"{what}: {few} too few to hold some out for evaluation (10 or more); give --eval FILE")
    order = np.random.default_rng(0).permutation(count)
    n_val = max(1, round(EVAL_FRACTION * count))
    train, held = [int(i) for i in order[n_val:]], [int(i) for i in order[:n_val]]
    if labels is not None:
        trained = {labels[i] for i in train}
        for i in list(held):
            if labels[i] not in trained and len(held) > 1:
                held.remove(i)
                train.append(i)
                trained.add(labels[i])
    return sorted(train), sorted(held)


# --- tokens and batches -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Encoded:
    """Token ids per example, the label of each (classification) or None (causal LM), for pairs of
    texts each token's segment where the tokenizer marks them (``token_type_ids``: 0 for the first
    text, 1 for the second; None otherwise), and for a causal LM's completions and chats which
    tokens the loss counts (`targets`: 1 for a completion's or an assistant turn's token; None:
    every token)."""

    ids: list[list[int]]
    labels: torch.Tensor | None
    segments: list[list[int]] | None = None
    targets: list[list[int]] | None = None

    def batch(self, index: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """The examples at `index`, padded (`pad`)."""
        labels = None if self.labels is None else self.labels[list(index)]
        segments = None if self.segments is None else [self.segments[i] for i in index]
        targets = None if self.targets is None else [self.targets[i] for i in index]
        return pad([self.ids[i] for i in index], pad_id, labels, segments, targets)


def encode(
    tokenizer: Any, rows: list[dict[str, Any]], labels: list[int] | None, max_length: int = MAX_LENGTH
) -> Encoded:
    """The rows' texts as token ids (a row with a ``text_pair``: the two texts as one sequence, as the
    tokenizer joins them), truncated to `max_length` tokens."""
    texts = [str(row["text"]) for row in rows]
    pairs = [str(row["text_pair"]) for row in rows] if rows and "text_pair" in rows[0] else None
    out = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    segments = out.get("token_type_ids") if pairs is not None else None
    return Encoded(
        [list(seq) for seq in out["input_ids"]],
        None if labels is None else torch.tensor(labels),
        None if segments is None else [list(seq) for seq in segments],
    )


def pad(
    ids: list[list[int]],
    pad_id: int,
    labels: torch.Tensor | None,
    segments: list[list[int]] | None = None,
    targets: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """A dict batch padded to its longest example; for a causal LM the labels are the ids with padding
    and the tokens that are not `targets` masked out (-100), the model shifts them itself;
    ``token_type_ids`` where there are `segments`."""
    width = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if segments is not None:
        types = torch.zeros(len(ids), width, dtype=torch.long)
        for row, seq in enumerate(segments):
            types[row, : len(seq)] = torch.tensor(seq)
        batch["token_type_ids"] = types
    if labels is not None:
        batch["labels"] = labels
        return batch
    counted = mask
    if targets is not None:
        counted = torch.zeros(len(ids), width, dtype=torch.long)
        for row, seq in enumerate(targets):
            counted[row, : len(seq)] = torch.tensor(seq)
    batch["labels"] = input_ids.masked_fill(counted == 0, -100)
    return batch
