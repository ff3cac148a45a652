"""Every reader gives the same `Series` for the same run, and bad input gives a message, not a traceback."""

from __future__ import annotations

import io
import json
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lrpilot.doctor import DoctorInputError, Series, diagnose, read, read_csv, read_jsonl, read_trainer_state
from tests.doctor import logs


def assert_same(series: Series, run: dict[str, np.ndarray], *, rel: float = 1e-12, lr: bool = True) -> None:
    assert series.steps.tolist() == run["step"].tolist()
    assert series.loss == pytest.approx(run["loss"], rel=rel, nan_ok=True)
    if lr:
        assert series.lr is not None
        assert series.lr == pytest.approx(run["lr"], rel=rel)


def test_trainer_state_reads_losses_lr_grad_norms_and_eval_and_skips_the_summary(tmp_path: Path) -> None:
    run = logs.run_arrays(n=200, every=10, nan_from=180)
    series = read(logs.write_trainer_state(tmp_path / "trainer_state.json", run, eval_every=50))
    assert series.format == "trainer_state"
    assert_same(series, run)
    assert series.grad_norm == pytest.approx(run["grad_norm"])
    assert series.eval_steps.tolist() == [500, 1000, 1500, 2000]
    assert series.steps[-1] == 2000  # the summary row (train_loss = the run's average) is not a step
    assert any("20 non-finite" in n for n in series.notes)


def test_an_hf_output_dir_is_read_from_its_latest_checkpoint(tmp_path: Path) -> None:
    run = logs.run_arrays(n=120, every=5)
    logs.write_trainer_state(tmp_path / "out" / "checkpoint-100" / "trainer_state.json", logs.run_arrays(n=20, every=5))
    logs.write_trainer_state(tmp_path / "out" / "checkpoint-600" / "trainer_state.json", run)
    logs.write_trainer_state(tmp_path / "out" / "checkpoint-20" / "trainer_state.json", logs.run_arrays(n=4, every=5))
    assert_same(read(tmp_path / "out"), run)


@pytest.mark.parametrize(
    ("fields", "batch", "noted"),
    [
        ({"train_batch_size": 8, "logging_steps": 1}, 8, True),
        ({"train_batch_size": 8, "logging_steps": 2}, 16, True),
        ({"train_batch_size": 16, "logging_steps": 5}, 80, False),  # as calibrated: nothing changes, no note
        ({"train_batch_size": 8}, None, False),
        ({"train_batch_size": True, "logging_steps": 1}, None, False),
        ({"train_batch_size": 0, "logging_steps": 1}, None, False),
        ({"train_batch_size": "8", "logging_steps": 1}, None, False),
    ],
)
def test_trainer_state_gives_the_examples_behind_each_logged_loss(
    tmp_path: Path, fields: dict[str, object], batch: int | None, noted: bool
) -> None:
    """train_batch_size × logging_steps: a lower bound (accumulation and ranks are not recorded)."""
    series = read(logs.write_trainer_state(tmp_path / "trainer_state.json", logs.run_arrays(n=40), extra=fields))
    assert series.batch_size == batch
    assert any("logged loss averages at least" in n for n in series.notes) == noted


def write_config(folder: Path, **fields: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields))


THREE = {"0": "a", "1": "b", "2": "c"}
BERT = ["BertForSequenceClassification"]


@pytest.mark.parametrize(
    ("config", "classes"),
    [
        ({"architectures": BERT, "id2label": THREE}, 3),
        ({"architectures": ["BertForTokenClassification"], "num_labels": 5}, 5),
        ({"architectures": BERT, "id2label": THREE, "problem_type": "regression"}, None),
        ({"architectures": BERT, "id2label": THREE, "problem_type": "multi_label_classification"}, None),
        ({"architectures": BERT, "id2label": {"0": "score"}}, None),
        ({"architectures": ["GPT2LMHeadModel"], "vocab_size": 50257}, None),
        ({"id2label": THREE}, None),
    ],
)
def test_a_trainer_checkpoint_config_gives_a_classifier_chance_level(
    tmp_path: Path, config: dict[str, object], classes: int | None
) -> None:
    """The config.json a Trainer saves beside its trainer_state.json: a single-label classifier's
    labels are its chance level; a regression, multi-label or language-model head has none."""
    folder = tmp_path / "out" / "checkpoint-40"
    logs.write_trainer_state(folder / "trainer_state.json", logs.run_arrays(n=40))
    write_config(folder, **config)
    for path in (folder / "trainer_state.json", folder, tmp_path / "out"):
        series = read(path)
        assert series.classes == classes
        assert any(n.startswith("chance level ln") for n in series.notes) == (classes is not None)


def test_an_unreadable_checkpoint_config_is_a_note_not_an_error(tmp_path: Path) -> None:
    path = logs.write_trainer_state(tmp_path / "trainer_state.json", logs.run_arrays(n=40))
    (tmp_path / "config.json").write_text('{"architectures": ["BertFor')
    series = read(path)
    assert series.classes is None
    assert any("config.json could not be read" in n for n in series.notes)


def test_csv_and_jsonl_give_the_same_series(tmp_path: Path) -> None:
    run = logs.run_arrays(n=150)
    a = read(logs.write_csv(tmp_path / "log.csv", run))
    b = read(logs.write_jsonl(tmp_path / "log.jsonl", run))
    assert (a.format, b.format) == ("csv", "jsonl")
    assert_same(a, run)
    assert_same(b, run)


def test_csv_column_names_are_matched_loosely_and_grad_norm_is_optional(tmp_path: Path) -> None:
    run = logs.run_arrays(n=50)
    path = logs.write_csv(tmp_path / "x.csv", run, columns=("Step", "train_loss", "learning_rate", "grad_norm"))
    series = read(path)
    assert_same(series, run)
    assert series.grad_norms() == pytest.approx(run["grad_norm"].tolist())


def test_lightning_metrics_csv_interleaves_train_and_val_rows(tmp_path: Path) -> None:
    run = logs.run_arrays(n=200)
    series = read(logs.write_lightning_metrics(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", run))
    assert series.format == "lightning"
    assert series.steps.tolist() == (run["step"] - 1).tolist()
    assert series.loss == pytest.approx(run["loss"])
    assert series.lr == pytest.approx(run["lr"])
    assert series.eval_steps.size == 4
    assert read(tmp_path).format == "lightning"  # found from the parent directory


def test_tensorboard_event_files_are_read_with_tensorboards_reader(tmp_path: Path) -> None:
    run = logs.run_arrays(n=100, every=10)
    logdir = logs.write_tensorboard(tmp_path / "runs" / "exp1", run)
    series = read(tmp_path / "runs")
    assert series.format == "tensorboard"
    assert_same(series, run, rel=1e-6)  # TensorBoard stores float32
    assert series.grad_norm == pytest.approx(run["grad_norm"], rel=1e-6)
    event_file = next(logdir.glob("events.out.tfevents.*"))
    assert_same(read(event_file), run, rel=1e-6)


def test_a_log_directory_of_several_runs_reads_the_latest_written_and_says_so(tmp_path: Path) -> None:
    """Hugging Face names each launch's TensorBoard run by its date (``Jan10_...``, ``Feb02_...``): a
    ``runs`` directory of two was read as the one whose name sorted last, January's, with no word of
    the other; likewise Lightning's versions, unsaid. The latest written is read, and the note names
    the others."""
    import os

    old, new = logs.run_arrays(n=100), logs.run_arrays(n=120, seed=1)
    january = logs.write_tensorboard(tmp_path / "runs" / "Jan10_09-00-00_host", old)
    february = logs.write_tensorboard(tmp_path / "runs" / "Feb02_09-00-00_host", new)
    for event, when in ((next(january.glob("*tfevents*")), 1e9), (next(february.glob("*tfevents*")), 2e9)):
        os.utime(event, (when, when))
    series = read(tmp_path / "runs")
    assert series.source == str(february)
    assert len(series) == 120
    assert series.notes[-1] == (
        f"{tmp_path / 'runs'} holds 2 runs: read the latest written, Feb02_09-00-00_host (the others: "
        "Jan10_09-00-00_host); give a run's own directory to read another"
    )
    assert not any("holds" in note for note in read(february).notes)  # a run's own directory: no note
    versions = [
        logs.write_lightning_metrics(tmp_path / "lightning_logs" / f"version_{v}" / "metrics.csv", old) for v in (0, 1)
    ]
    os.utime(versions[0], (2e9, 2e9))
    os.utime(versions[1], (1e9, 1e9))
    assert (
        read(tmp_path / "lightning_logs")
        .notes[-1]
        .endswith(
            "holds 2 runs: read the latest written, version_0 (the others: version_1); give a run's own directory to "
            "read another"
        )
    )


def test_json_lines_whose_loss_is_null_are_named_in_the_notes() -> None:
    """JSON has no NaN, and a logger writing strict JSON (orjson) writes a NaN loss as null: those
    lines were dropped without a word, and a run with NaN steps read as healthy. An evaluation's line
    (its loss null, its eval loss given) is no such line."""
    lines = [
        json.dumps({"step": s, "loss": None if s in (150, 151) else 2.0 - s / 1000, "eval_loss": None})
        for s in range(300)
    ]
    lines.append(json.dumps({"step": 299, "loss": None, "eval_loss": 1.8}))
    series = read_jsonl(io.StringIO("\n".join(lines)))
    assert len(series) == 298
    assert series.notes == (
        "2 line(s) with a null loss (steps 150, 151): read as not logged; where the logger writes a NaN loss as "
        "null (JSON has no NaN: orjson and strict encoders do), those were NaN steps",
    )


def test_unsorted_and_repeated_steps_are_sorted_the_last_value_wins_and_a_resume_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "resumed.csv"
    rows = ["step,loss"] + [f"{s},{2.0 - s / 1000}" for s in range(300)]
    rows += [f"{s},{1.0 - s / 10000}" for s in range(200, 400)]  # resumed from step 200, rewrote 200..299
    path.write_text("\n".join(rows) + "\n")
    series = read(path)
    assert series.steps.tolist() == list(range(400))
    assert series.loss[250] == pytest.approx(1.0 - 250 / 10000)
    assert series.resumes == (200,)
    assert any("resumed run" in n for n in series.notes)
    assert any("100 repeated step(s)" in n for n in series.notes)


def test_a_truncated_last_jsonl_line_and_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    run = logs.run_arrays(n=60)
    path = logs.write_jsonl(tmp_path / "log.jsonl", run)
    text = path.read_text()
    path.write_text(text[:20] + "not json at all\n" + text[20:] + '{"step": 61, "loss": 1.2')
    series = read(path)
    assert len(series) == 59  # the first line was split by the garbage, the last one cut by the "crash"
    assert any("3 row(s) with text that is not a JSON object" in n for n in series.notes)


def test_nan_and_inf_strings_are_values_blanks_are_not(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,lr\n0,1.0,0.1\n1,nan,0.1\n2,inf,\n3,,0.1\n4,abc,0.1\n5,1.0,0.1\n")
    series = read(path)
    assert series.steps.tolist() == [0, 1, 2, 5]
    assert np.isnan(series.loss[1])
    assert np.isinf(series.loss[2])
    assert series.lr is not None
    assert np.isnan(series.lr[2])
    assert any("1 row(s) with a loss that is not a number" in n for n in series.notes)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("empty.jsonl", "\n\n", "the file is empty"),
        ("trainer_state.json", '{"log_history": [{"loss": 1.0, "st', "not valid JSON"),
        ("trainer_state.json", '{"global_step": 3}', "expected a Hugging Face trainer_state.json with a 'log_history'"),
        ("nolss.csv", "step,acc\n1,0.5\n", "no training loss column; found 'step', 'acc'. Accepted names: loss,"),
        ("noloss.jsonl", '{"step": 1, "acc": 0.5}\n', "no training loss values found"),
        ("onlyeval.json", '{"log_history": [{"eval_loss": 1.0, "step": 5}]}', "the log has evaluation losses only"),
        (
            "badsteps.csv",
            "step,loss\nx,1.0\n1.5,2.0\n",
            "1 row(s) with no usable step number, 1 row(s) with a step number that is not a whole number",
        ),
        ("binary.csv", "step,loss\n\x00\x01\x02", "binary data"),
        ("weird.log", "\x00garbage", "binary data"),
    ],
)
def test_bad_files_get_a_clear_message(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DoctorInputError) as info:
        read(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_paths_non_utf8_and_empty_dirs_get_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DoctorInputError, match="no such file or directory"):
        read(tmp_path / "nope.csv")
    (tmp_path / "latin1.csv").write_bytes("step,loss\n1,1.0 é\n".encode("latin-1"))
    with pytest.raises(DoctorInputError, match="not UTF-8"):
        read(tmp_path / "latin1.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DoctorInputError, match="found no log here"):
        read(tmp_path / "empty")
    (tmp_path / "events.out.tfevents.1.host").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DoctorInputError, match="no training loss scalar tag"):
        read(tmp_path / "events.out.tfevents.1.host")


def test_a_truncated_tensorboard_file_keeps_what_was_written(tmp_path: Path) -> None:
    run = logs.run_arrays(n=50)
    logdir = logs.write_tensorboard(tmp_path / "tb", run)
    event_file = next(logdir.glob("events.out.tfevents.*"))
    data = event_file.read_bytes()
    event_file.write_bytes(data[: len(data) - 400])  # a few records and a half
    series = read(event_file)
    assert 40 <= len(series) < 50
    assert series.loss == pytest.approx(run["loss"][: len(series)], rel=1e-6)


def test_a_big_csv_is_streamed_not_loaded_twice(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    n = 100_000
    with path.open("w") as fh:
        fh.write("step,loss,lr,grad_norm\n")
        for i in range(n):
            fh.write(f"{i},{2.0 + (i % 7) * 0.01},0.001,1.5\n")
    size = path.stat().st_size
    tracemalloc.start()
    t0 = time.perf_counter()
    series = read(path)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(series) == n
    assert peak < 64 * n  # 33 bytes a row in arrays; never the file's text, nor a Python object per value
    assert size > 20 * n
    assert elapsed < 30


def test_stream_readers_accept_any_text_stream() -> None:
    series = read_csv(io.StringIO("step\tloss\n1\t2.0\n2\t1.5\n"), "tsv")
    assert series.loss.tolist() == [2.0, 1.5]
    series = read_jsonl(io.StringIO('{"iteration": 3, "train/loss": 1.0}\n'))
    assert series.steps.tolist() == [3]
    state = {"log_history": [{"loss": math.inf, "step": 1}, {"loss": 1.0, "step": 2}]}
    assert np.isinf(read_trainer_state(io.StringIO(json.dumps(state))).loss[0])


def test_an_lrpilot_fit_run_directory_is_read_from_its_run_json(tmp_path: Path) -> None:
    """`lrpilot doctor runs/fit-…` read the guard's empty audit log as the run's log and stopped on
    "the file is empty"; the run's own record is the log: every step the guard judged, and the
    evaluations."""
    import lrpilot

    result = lrpilot.fit("digits", budget=100, out=tmp_path / "run", report=False)
    assert (tmp_path / "run" / "guard_audit.jsonl").stat().st_size == 0  # a quiet run: the trap is there
    history = result.record.history
    for path in (tmp_path / "run", tmp_path / "run" / "run.json"):
        series = read(path)
        assert series.format == "lrpilot"
        assert series.steps.tolist() == history.steps
        assert series.loss.tolist() == pytest.approx(history.loss)
        assert series.lr is not None
        assert series.lr.tolist() == pytest.approx(history.lr)
        assert series.eval_steps.tolist() == history.eval_steps
        assert series.classes == 10  # digits: the chance level the doctor judges a collapse against
        assert series.chance_loss is None  # ... ln 10: nothing more to record
        assert series.batch_size == 64  # the batch its guard fitted its short median to
    # the schedule the run recorded, not one read off an LR column that the range test's steps replaced
    # the start of (read as "cosine(total_steps=99, ...)" without its warmup)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["schedule"]
    assert history.steps[0] > 0, "fit's range test no longer stands in for the first warmup steps"
    diagnosis = diagnose(read(tmp_path / "run"))
    assert diagnosis.schedule == recorded
    assert diagnosis.advice[0].schedule == recorded  # healthy: keep it


def test_a_run_json_whose_history_does_not_line_up_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"history": {"steps": [0, 1, 2], "loss": [1.0, 0.9], "lr": [0.1] * 3}}))
    with pytest.raises(DoctorInputError, match=r"steps, loss and lr differ in length \(3, 2, 3\)"):
        read(path)
    path.write_text(json.dumps({"history": {"steps": [0, 1]}}))
    with pytest.raises(DoctorInputError, match=r"expected lrpilot's run\.json with a 'history' of steps, loss and lr"):
        read(path)
    path.write_text(json.dumps({"history": {"steps": [0], "loss": [1.0], "lr": [0.1]}, "classes": 1}))
    with pytest.raises(DoctorInputError, match=r"'classes' must be an integer of at least 2, got 1"):
        read(path)
    path.write_text(json.dumps({"history": {"steps": [0], "loss": [1.0], "lr": [0.1]}, "batch_size": 0}))
    with pytest.raises(DoctorInputError, match=r"'batch_size' must be an integer of at least 1, got 0"):
        read(path)
    for bad in (0, -0.3, "0.3", True):
        path.write_text(json.dumps({"history": {"steps": [0], "loss": [1.0], "lr": [0.1]}, "chance_loss": bad}))
        with pytest.raises(DoctorInputError, match=r"'chance_loss' must be a finite number > 0, got"):
            read(path)


def test_a_semicolon_separated_log_is_read(tmp_path: Path) -> None:
    """A log saved by Excel where the decimal separator is a comma."""
    path = tmp_path / "run.csv"
    path.write_text("step;loss\n" + "".join(f"{i};{2.0 - i / 100}\n" for i in range(40)), encoding="utf-8")
    series = read(path)
    assert len(series) == 40
    assert series.loss[-1] == pytest.approx(1.61)


def test_a_guard_audit_log_is_named_as_such(tmp_path: Path) -> None:
    """The guard's own JSONL (its decisions) is not a training log: the error says which it is."""
    from lrpilot import guard

    state = guard.init()
    path = tmp_path / "audit.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for step in range(3):
            action, state = guard.update(state, loss=1.0, lr=1e-3, step=step)
            handle.write(json.dumps(action.record()) + "\n")
    with pytest.raises(DoctorInputError, match=r"it is a guard's audit log .* give the run's own log, or its run.json"):
        read(path)


@pytest.mark.parametrize("labels", [2, 3])
def test_the_config_json_transformers_saves_gives_a_binary_classifier_its_chance_level(
    tmp_path: Path, labels: int
) -> None:
    """transformers leaves out of config.json what equals its default: a 2-label classifier's has no
    num_labels nor id2label, and the doctor read every binary classifier's (SST-2's) chance level as
    unknown, so a collapse to chance went unjudged unless --num-classes was given."""
    from transformers import AutoConfig

    folder = tmp_path / "checkpoint-40"
    logs.write_trainer_state(folder / "trainer_state.json", logs.run_arrays(n=40))
    config = AutoConfig.for_model(
        "bert", num_labels=labels, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    config.architectures = ["BertForSequenceClassification"]
    config.save_pretrained(folder)
    assert read(folder).classes == labels


def test_a_directory_where_two_runs_wrote_event_files_is_refused_naming_them(tmp_path: Path) -> None:
    """Two launches with the same log_dir leave two event files that each start at step 1: they were
    merged into one run, the later's steps winning, and diagnosed as one; now refused, naming them.
    A SummaryWriter reopened on the folder to resume (its file starting later) is still one run."""
    logs.write_tensorboard(tmp_path / "twice", logs.run_arrays(n=60))
    logs.write_tensorboard(tmp_path / "twice", logs.run_arrays(n=80, seed=1))
    files = sorted(p.name for p in (tmp_path / "twice").glob("events.out.tfevents.*"))
    assert len(files) == 2
    with pytest.raises(DoctorInputError, match="several runs written to one directory") as info:
        read(tmp_path / "twice")
    assert all(name in str(info.value) for name in files)

    run = logs.run_arrays(n=100)
    first = {k: v[:60] for k, v in run.items()}
    resumed = {k: v[40:] for k, v in run.items()}  # back to the checkpoint at step 40, then on to 100
    logs.write_tensorboard(tmp_path / "resumed", first)
    logs.write_tensorboard(tmp_path / "resumed", resumed)
    series = read(tmp_path / "resumed")
    assert_same(series, run, rel=1e-6)
    assert series.resumes == (41,)


@pytest.mark.parametrize(
    ("name", "content"), [("nan.csv", "step,loss\n1,nan\n2,nan\n3,inf\n"), ("nan.jsonl", '{"step": 1, "loss": NaN}\n')]
)
def test_a_log_of_non_finite_losses_only_is_refused(tmp_path: Path, name: str, content: str) -> None:
    """Read as 'diverged: the LR was too high', with advice to halve it: a log without one finite
    loss has nothing to judge, and a NaN from the first step is rarely the LR's doing."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DoctorInputError, match="every logged loss is NaN or Inf"):
        read(path)
