"""Fuzzing: whatever bytes the doctor is given, it answers with a Series/Diagnosis or a DoctorInputError."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrpilot.doctor import DoctorInputError, Series, diagnose, read, read_csv, read_jsonl, read_trainer_state
from lrpilot.doctor._diagnose import VERDICTS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "NaN", "x", "1e400", "1_000", " 3 ", '"', "\t"]),
    st.text(max_size=6),
)
headers = st.lists(
    st.sampled_from(["step", "loss", "lr", "grad_norm", "val_loss", "epoch", "Step", "train_loss", "x", ""]),
    min_size=1,
    max_size=5,
)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(headers)
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 1), max_size=30))
    sep = draw(st.sampled_from([",", "\t"]))
    return "\n".join(sep.join(r) for r in [header, *rows])


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-(10**30), 10**30) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
log_entries = st.dictionaries(
    st.sampled_from(["step", "loss", "learning_rate", "lr", "grad_norm", "eval_loss", "train_runtime", "epoch"]),
    json_values,
    max_size=6,
)


def _ok(fn: object, *args: object) -> None:
    try:
        series = fn(*args)  # type: ignore[operator]
    except DoctorInputError as exc:
        message = str(exc)
        series = None
    if series is None:
        assert message
        return
    assert isinstance(series, Series)
    assert len(series) > 0
    assert bool(np.all(np.diff(series.steps) > 0))
    d = diagnose(series)
    assert d.verdict in VERDICTS
    json.dumps(d.to_dict(), allow_nan=False)


@FUZZ
@given(csv_texts())
def test_csv_never_crashes(text: str) -> None:
    _ok(read_csv, io.StringIO(text), "fuzz.csv")


@FUZZ
@given(st.lists(st.one_of(log_entries.map(json.dumps), st.text(max_size=30)), max_size=30))
def test_jsonl_never_crashes(lines: list[str]) -> None:
    _ok(read_jsonl, io.StringIO("\n".join(lines)), "fuzz.jsonl")


@FUZZ
@given(
    st.one_of(
        st.fixed_dictionaries({"log_history": st.lists(st.one_of(log_entries, json_values), max_size=30)}), json_values
    )
)
def test_trainer_state_never_crashes(document: object) -> None:
    _ok(read_trainer_state, io.StringIO(json.dumps(document)), "trainer_state.json")


@FUZZ
@given(
    st.binary(max_size=400),
    st.sampled_from(["a.csv", "a.jsonl", "trainer_state.json", "a.log", "events.out.tfevents.1.h", "metrics.csv"]),
)
def test_any_bytes_in_any_file_name(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        _ok(read, path)


@FUZZ
@given(
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6)), min_size=1, max_size=400),
    st.booleans(),
)
def test_diagnose_any_loss_curve(losses: list[float], with_grads: bool) -> None:
    n = len(losses)
    grads = np.abs(np.asarray(losses)) if with_grads else None
    series = Series(
        steps=np.arange(n, dtype=np.int64) * 7,
        loss=np.asarray(losses, dtype=np.float64),
        lr=np.full(n, 1e-3),
        grad_norm=grads,
        grad_logged=None if grads is None else np.ones(n, dtype=bool),
    )
    d = diagnose(series)
    assert d.verdict in VERDICTS
    payload = json.dumps(d.to_dict(), allow_nan=False)
    assert math.isfinite(len(payload))
