"""fit's reading of a user's data (`lrpilot.autopilot._data`): columns mapped to roles, pairs of
texts, and their batches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lrpilot.autopilot._data import column_map, encode, pad, read_lm, read_roles, read_rows, split_rows
from lrpilot.autopilot._hf import load_hf_task
from tests.autopilot.conftest import minilm_dir, write_rows

PAIRS = [
    {"premise": f"a man plays a guitar number {i}", "hypothesis": "someone makes music", "gold": ["yes", "no"][i % 2]}
    for i in range(30)
]


def test_roles_are_their_own_columns_unless_mapped_and_a_wrong_role_is_named() -> None:
    roles = "text, text_pair, label, prompt, completion, messages, tools, chat_template_kwargs"
    assert column_map(None) == {role: role for role in roles.split(", ")}
    assert column_map({"text": "sentence"})["text"] == "sentence"
    with pytest.raises(ValueError, match=rf"tune: --columns: 'txt' is not a role; the roles are {roles}"):
        column_map({"txt": "sentence"}, "tune")
    with pytest.raises(ValueError, match=r"--columns: label's column must be a name, got ''"):
        column_map({"label": ""})


def test_mapped_columns_are_read_as_their_roles_and_checked_by_their_own_names(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "pairs.csv", PAIRS, columns=("premise", "hypothesis", "gold"))
    roles = column_map({"text": "premise", "text_pair": "hypothesis", "label": "gold"})
    rows = read_roles(path, ("text", "label"), roles, "--data")
    assert rows[1] == {"text": "a man plays a guitar number 1", "label": "no", "text_pair": "someone makes music"}
    assert "text_pair" not in read_roles(path, ("text", "label"), roles, "--data", pairs=False)[0]
    with pytest.raises(ValueError, match=r"pairs.csv has no column 'sentence' \(columns: premise, hypothesis, gold\)"):
        read_roles(path, ("text",), column_map({"text": "sentence"}), "--data")
    missing = column_map({"text": "premise", "text_pair": "second", "label": "gold"})
    with pytest.raises(ValueError, match=r"has no column 'second'"):
        read_roles(path, ("text", "label"), missing, "--data", pairs=True)


def test_a_pair_is_one_sequence_with_its_segments_and_batches_carry_them(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    encoded = encode(tokenizer, [{"text": "a cat", "text_pair": "an animal sits"}], [1])
    assert encoded.ids[0] == tokenizer("a cat", "an animal sits")["input_ids"]
    assert encoded.ids[0].count(tokenizer.sep_token_id) == 2
    assert encoded.segments == [[0, 0, 0, 0, 1, 1, 1, 1]]
    single = encode(tokenizer, [{"text": "a cat"}], [1])
    assert single.segments is None
    batch = pad([[5, 6, 7], [5]], 0, torch.tensor([1, 0]), [[0, 1, 1], [0]])
    assert batch["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_a_classifier_of_pairs_with_its_own_column_names(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "nli.csv", PAIRS, columns=("premise", "hypothesis", "gold"))
    columns = {"text": "premise", "text_pair": "hypothesis", "label": "gold"}
    task = load_hf_task(minilm_dir(), train, columns=columns)
    assert task.label_names == ("no", "yes")
    assert task.train_data.segments is not None
    assert task.val_data.segments is not None  # the held-out tenth, pairs too
    assert "of text pairs" in task.description
    batch = next(task.batches(0))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    model = task.build_model(0)
    assert torch.isfinite(task.loss(model, batch))
    assert 0 <= task.metrics(model).loss < 5


def test_the_length_limit_truncates_a_classifiers_texts_and_is_checked(tmp_path: Path) -> None:
    rows = [{"text": "a long review of a film " * 30, "label": i % 2} for i in range(20)]
    data = write_rows(tmp_path / "train.csv", rows)
    assert max(map(len, load_hf_task(minilm_dir(), data).train_data.ids)) == 128  # the default
    short = load_hf_task(minilm_dir(), data, max_length=16)
    assert {len(ids) for ids in short.train_data.ids + short.val_data.ids} == {16}
    with pytest.raises(ValueError, match=r"--max-length must be"):
        load_hf_task(minilm_dir(), data, max_length=4)


def test_excels_byte_order_mark_and_long_cells_are_read(tmp_path: Path) -> None:
    long = "word " * 50_000  # past the csv module's 128 KiB cell limit
    bom = write_rows(tmp_path / "plain.csv", [{"text": "fine", "label": 1}, {"text": long, "label": 0}])
    bom.write_text(bom.read_text(encoding="utf-8"), encoding="utf-8-sig")  # as Excel's "CSV UTF-8" saves it
    rows = read_rows(bom, ("text", "label"), "--data")
    assert [row["label"] for row in rows] == ["1", "0"]
    assert rows[1]["text"] == long
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text('{"text": "fine", "label": 1}\n', encoding="utf-8-sig")
    assert read_rows(jsonl, ("text", "label"), "--data") == [{"text": "fine", "label": 1}]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^--data: broken.jsonl, line 1: not valid JSON"):
        read_rows(broken, ("text", "label"), "--data")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_csv_separated_by_semicolons_or_tabs_is_read(delimiter: str, tmp_path: Path) -> None:
    """Excel saves CSV with semicolons where the decimal separator is a comma (most of Europe)."""
    path = tmp_path / "train.csv"
    path.write_text(f"text{delimiter}label\nwell, fine{delimiter}1\nbad{delimiter}0\n", encoding="utf-8-sig")
    assert read_rows(path, ("text", "label"), "--data") == [
        {"text": "well, fine", "label": "1"},
        {"text": "bad", "label": "0"},
    ]


def test_a_csv_row_with_more_cells_than_its_header_is_refused_by_its_line(tmp_path: Path) -> None:
    """A text holding an unquoted comma had shifted its row's cells in silence: a causal LM's
    one-column "Hello, world" trained "Hello", and a classifier's "well, fine,1" was refused for its
    label ' fine' mixing a name with numbers. A trailing separator's empty cell is harmless."""
    text = tmp_path / "notes.csv"
    text.write_text('text\n"quoted, fine"\nHello, world\n', encoding="utf-8")
    message = (
        "--data: notes.csv, line 3: 2 cells where the header has 1 (text); a cell that holds the separator (',') "
        "must be in double quotes"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_rows(text, ("text",), "--data")
    tabs = tmp_path / "train.csv"
    tabs.write_text("text\tlabel\ngood\t1\nwell\tfine\t1\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"train.csv, line 3: 3 cells where the header has 2 \(text, label\); .*\(a tab\)"
    ):
        read_rows(tabs, ("text", "label"), "--data")
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("text,label\ngood,1,\nbad,0, \n", encoding="utf-8")
    assert read_rows(trailing, ("text", "label"), "--data") == [
        {"text": "good", "label": "1"},
        {"text": "bad", "label": "0"},
    ]


@pytest.mark.parametrize(
    ("name", "content", "hinted"),
    [
        ("verse.jsonl", '{"text": "To be, or not to be"}\n', True),
        ("verse.txt", "To be, or not to be\n", True),
        ("chat.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n', True),
        ("pc.jsonl", '{"prompt": "2+2=", "completion": "4"}\n', True),
        ("train.csv", "text,lbl\nfine,1\n", False),
    ],
)
def test_a_classifiers_file_without_labels_that_holds_lm_data_says_to_give_the_task_type(
    tmp_path: Path, name: str, content: str, hinted: bool
) -> None:
    """fit reads --model's data as a classifier's unless told: a text file for a GPT was refused for
    its missing label alone ("verse.jsonl has no column 'label' (columns: text)")."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"has no column") as caught:
        read_roles(path, ("text", "label"), column_map(None), "--data")
    assert str(caught.value).endswith("; data without labels trains a causal LM: give --task-type causal-lm") == hinted


def test_every_empty_cell_of_a_column_is_named_at_once(tmp_path: Path) -> None:
    """A label column with a few empty cells (pandas writes NaN as nothing) had been refused one row
    at a time: the user fixed row 4 and ran again only to hear of row 51."""
    rows = [{"text": f"text {i}", "label": "" if i in (3, 50, 77) else i % 2} for i in range(100)]
    path = write_rows(tmp_path / "train.csv", rows)
    message = (
        "--data: train.csv, rows 4, 51, 78: 'label' is empty (3 of 100 rows); fill them in or leave those rows out"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_rows(path, ("text", "label"), "--data")
    many = write_rows(tmp_path / "many.csv", [{"text": "" if i % 10 == 0 else "t", "label": 1} for i in range(100)])
    with pytest.raises(ValueError, match=r"rows 1, 11, 21, 31, 41, …: 'text' is empty \(10 of 100 rows\)"):
        read_rows(many, ("text", "label"), "--data")


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("latin1.csv", b"text\nplain words\ncaf\xc3\xa9 in UTF-8\nna\xefve in Latin-1\n", 4),
        ("latin1.jsonl", b'{"text": "plain words"}\n{"text": "caf\xc3\xa9"}\n{"text": "na\xefve"}\n', 3),
    ],
    ids=["csv", "jsonl"],
)
def test_a_file_that_is_not_utf8_is_refused_by_its_line_with_how_to_convert_it(
    name: str, content: bytes, line: int, tmp_path: Path
) -> None:
    """A Latin-1 or Windows file (Excel's plain CSV) is named by the file and line of its first
    byte that is not UTF-8, with how to save it as UTF-8: Python's message named neither."""
    path = tmp_path / name
    path.write_bytes(content)
    expected = rf"--data: {name}, line {line}: not UTF-8 text \(byte 0xef, the line's byte \d+;.*iconv"
    with pytest.raises(ValueError, match=expected):
        read_rows(path, ("text",), "--data")


def test_a_txt_file_is_one_text_per_line_its_blank_lines_left_out(tmp_path: Path) -> None:
    """As ``datasets``' text loader reads a ``.txt`` (a corpus, tiny shakespeare): fit had refused it."""
    path = tmp_path / "verse.txt"
    path.write_text("\ufeffFirst Citizen:\r\nBefore we proceed any further.\n\n  \nAll:\n", encoding="utf-8")
    assert read_rows(path, ("text",), "--data") == [
        {"text": "First Citizen:"},
        {"text": "Before we proceed any further."},
        {"text": "All:"},
    ]
    with pytest.raises(ValueError, match=r"verse.txt has no column 'label' \(columns: text\)"):
        read_rows(path, ("text", "label"), "--data")


def test_a_json_file_is_an_array_of_rows_or_json_lines(tmp_path: Path) -> None:
    """Alpaca's ``alpaca_data.json`` is an array of objects, and a ``.json`` may hold JSON lines
    too (``datasets`` reads both): fit had refused the name."""
    rows = [
        {"instruction": "Add 2 and 2.", "input": "", "output": "4"},
        {"instruction": "Name a colour.", "output": "red"},
    ]
    array = tmp_path / "alpaca.json"
    array.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    lines = tmp_path / "lines.json"
    lines.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    roles = column_map({"prompt": "instruction", "completion": "output"})
    for path in (array, lines):
        assert read_lm(path, roles, "--data") == (
            "prompt-completion",
            [{"prompt": "Add 2 and 2.", "completion": "4"}, {"prompt": "Name a colour.", "completion": "red"}],
        )
    bad = tmp_path / "bad.json"
    bad.write_text('[{"text": "a"}, "b"]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"--data: bad.json, row 2: expected a JSON object, got str"):
        read_rows(bad, ("text",), "--data")


@pytest.mark.parametrize(("count", "said"), [(1, "1 row is"), (9, "9 rows are")])
def test_too_few_rows_to_hold_some_out_says_how_many_are_needed(count: int, said: str) -> None:
    with pytest.raises(ValueError, match=rf"--data: {said} too few to hold some out for evaluation \(10 or more\)"):
        split_rows(count, "--data")
    train, held = split_rows(10, "--data")
    assert (len(train), len(held)) == (9, 1)
    assert sorted(train + held) == list(range(10))
