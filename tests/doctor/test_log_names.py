"""The doctor reads what the common loggers write, under the names they write it: lrpilot's own
run.json with its NaN losses, PyTorch's `Loss/train`, W&B's chart export, Lightning's
LearningRateMonitor, a loss column named by the user, and says so when a log has evaluation
losses only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lrpilot.doctor import DoctorInputError, diagnose, read
from lrpilot.report import RunRecord, TrainingHistory
from tests.doctor import logs


def write_tags(logdir: Path, run: dict[str, np.ndarray], tags: dict[str, str]) -> Path:
    """A real TensorBoard run: each of `run`'s arrays under the tag `tags` maps it to, as
    torch.utils.tensorboard's SummaryWriter writes it."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as writer:
        for i in range(run["step"].size):
            for tag, key in tags.items():
                writer.add_scalar(tag, float(run[key][i]), int(run["step"][i]))
    return logdir


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# 1. lrpilot's own run.json: JSON has no NaN, so its writer stores a non-finite loss as null.


def test_a_run_json_with_nan_losses_round_trips_them_as_non_finite(tmp_path: Path) -> None:
    """A run that went NaN at step 200 was read as 200 healthy rows: its nulls were 'no loss'."""
    run = logs.run_arrays(n=300, nan_from=200)
    loss = run["loss"].tolist()
    loss[250] = math.inf
    history = TrainingHistory(
        steps=run["step"].tolist(), loss=loss, lr=run["lr"].tolist(), eval_steps=[100, 300], eval_loss=[1.0, math.nan]
    )
    path = RunRecord(title="nan", task="t", total_steps=300, history=history).write_json(tmp_path / "run" / "run.json")
    assert json.loads(path.read_text())["history"]["loss"][200] is None  # what the writer does
    series = read(tmp_path / "run")
    assert series.format == "lrpilot"
    assert len(series) == 300
    assert series.steps.tolist() == run["step"].tolist()
    assert np.isfinite(series.loss[:200]).all()
    assert np.isnan(series.loss[200:]).all()  # +Inf was written as null too: NaN and Inf are not told apart
    assert series.summary()["non_finite_losses"] == 100
    assert np.isnan(series.eval_loss[1])
    assert any("100 loss(es) recorded as null in run.json" in n for n in series.notes)
    diagnosis = diagnose(series)
    assert diagnosis.verdict == "diverged"
    assert any(f.kind == "non_finite" for f in diagnosis.findings)


def test_a_run_json_whose_guard_rolled_back_is_read_as_replayed_not_resumed(tmp_path: Path) -> None:
    """A fit the guard rolled back logs the replayed steps again. Read as a resumed run, a gave-up
    fit had "the trouble begins at step 48, right after the run resumed at step 48" once a
    rollback (8 times), its trouble having begun at step 80."""
    run = logs.run_arrays(n=120)
    first = run["loss"][:100].tolist()
    first[80:83] = [math.nan] * 3  # NaN at steps 81-83 (the run's steps start at 1), rolled back to step 60
    steps = run["step"][:100].tolist() + run["step"][59:].tolist()
    loss = first + run["loss"][59:].tolist()
    lr = run["lr"][:100].tolist() + run["lr"][59:].tolist()
    rollback = {"step": 83, "action": "rollback", "reason": "nan"}
    RunRecord(
        title="rolled back",
        task="t",
        total_steps=120,
        history=TrainingHistory(steps=steps, loss=loss, lr=lr),
        guard_actions=[{"step": 81, "action": "skip"}, rollback],
    ).write_json(tmp_path / "run.json")
    series = read(tmp_path / "run.json")
    assert series.resumes == ()
    assert series.steps.tolist() == run["step"].tolist()
    assert np.isfinite(series.loss).all()  # the replayed pass is the run as it ended
    notes = " ".join(series.notes)
    assert "resumed run" not in notes
    assert "the guard rolled back 1 time(s)" in notes
    assert "the run's first non-finite loss, in its own order, came at step 81" in notes
    assert all(a.action != "fresh_warmup" for a in diagnose(series).advice)


def test_a_run_json_the_guard_gave_up_on_gives_the_guards_reason(tmp_path: Path) -> None:
    """The doctor read a fit its guard had given up on as any diverged log ("halve the peak LR"),
    saying nothing of what the guard had found out running it: here, that the LR was not the cause."""
    run = logs.run_arrays(n=60)
    loss = run["loss"].tolist()
    loss[40:] = [math.nan] * 20
    reason = "gave up at step 59: steps 40–59 bad in a row, ...; The LR is not what is wrong, so look elsewhere"
    RunRecord(
        title="gave up",
        task="t",
        total_steps=200,
        history=TrainingHistory(steps=run["step"].tolist(), loss=loss, lr=run["lr"].tolist()),
        guard_actions=[{"step": 59, "action": "give_up", "rollback_to": 30, "reason": reason}],
        status="gave_up",
    ).write_json(tmp_path / "run.json")
    assert f"the run's guard {reason}" in read(tmp_path / "run.json").notes


def test_a_finite_run_json_reads_as_before(tmp_path: Path) -> None:
    run = logs.run_arrays(n=80)
    history = TrainingHistory(steps=run["step"].tolist(), loss=run["loss"].tolist(), lr=run["lr"].tolist())
    RunRecord(title="ok", task="t", total_steps=80, history=history).write_json(tmp_path / "run.json")
    series = read(tmp_path / "run.json")
    assert series.loss.tolist() == pytest.approx(run["loss"].tolist())
    assert series.summary()["non_finite_losses"] == 0
    assert not any("null" in n for n in series.notes)


# 2. Loss names: any case, '/', '_', '-', '.' alike; never an evaluation loss.

TRAIN_NAMES = ["train/loss", "Loss/train", "loss/train", "train_loss", "training_loss", "Train/Loss", "loss", "LOSS"]


@pytest.mark.parametrize("name", TRAIN_NAMES)
def test_tensorboard_reads_the_training_loss_under_its_common_tags(tmp_path: Path, name: str) -> None:
    """PyTorch's SummaryWriter tutorial logs `Loss/train` (and `Loss/val`): it was refused."""
    run = logs.run_arrays(n=40, every=5)
    run["eval"] = run["loss"] + 5.0
    write_tags(tmp_path / "tb", run, {"Loss/val": "eval", "test/loss": "eval", name: "loss", "lr-AdamW": "lr"})
    series = read(tmp_path / "tb")
    assert series.loss == pytest.approx(run["loss"], rel=1e-6)  # not the evaluation loss, 5 higher
    assert series.lr == pytest.approx(run["lr"], rel=1e-6)  # Lightning's LearningRateMonitor tag
    assert series.eval_loss == pytest.approx(run["eval"], rel=1e-6)


@pytest.mark.parametrize("name", [*TRAIN_NAMES, "Train Loss", "train-loss", "train_loss_step", "train/loss_step"])
def test_csv_reads_the_training_loss_under_its_common_names_and_never_an_eval_one(tmp_path: Path, name: str) -> None:
    header = ["step", "val_loss", "eval/loss", "test_loss", "train_loss_epoch", name]
    rows: list[list[object]] = [[s, 9.0, 9.0, 9.0, 8.0, 1.0 / (s + 1)] for s in range(10)]
    series = read(write_rows(tmp_path / "log.csv", header, rows))
    assert series.loss.tolist() == pytest.approx([1.0 / (s + 1) for s in range(10)])
    assert series.eval_loss.tolist() == [9.0] * 10


def test_a_log_with_evaluation_losses_only_says_so(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "log.csv", ["step", "val_loss", "Loss/val"], [[s, 1.0, 1.0] for s in range(5)])
    with pytest.raises(DoctorInputError) as info:
        read(path)
    message = str(info.value)
    assert "evaluation losses only ('val_loss', 'Loss/val'), no training loss" in message
    assert "Accepted names: loss, train/loss, Loss/train, train_loss" in message
    assert "--loss-column NAME" in message


def test_a_wandb_chart_export_of_one_run_reads_its_loss_and_not_the_min_max_companions(tmp_path: Path) -> None:
    header = ["Step", "my-run - train/loss", "my-run - train/loss__MIN", "my-run - train/loss__MAX"]
    rows: list[list[object]] = [[s, 2.0 - s / 100, 0.0, 9.0] for s in range(50)]
    series = read(write_rows(tmp_path / "wandb_export.csv", header, rows))
    assert series.steps.tolist() == list(range(50))
    assert series.loss.tolist() == pytest.approx([2.0 - s / 100 for s in range(50)])
    assert any("read run 'my-run' of a W&B export" in n for n in series.notes)


def test_a_wandb_export_of_several_runs_names_them_and_one_is_picked_by_its_column(tmp_path: Path) -> None:
    header = ["Step", "run-a - train/loss", "run-a - train/loss__MIN", "run-b - train/loss", "run-b - train/loss__MAX"]
    rows: list[list[object]] = [[s, 1.0, 0.0, 2.0 + s, 9.0] for s in range(20)]
    path = write_rows(tmp_path / "wandb_export.csv", header, rows)
    with pytest.raises(DoctorInputError, match=r"a W&B export of 2 runs \('run-a', 'run-b'\).*--loss-column"):
        read(path)
    series = read(path, loss_column="run-b - train/loss")
    assert series.loss.tolist() == [2.0 + s for s in range(20)]


# 3. The user names the loss column.


def test_loss_column_reads_any_name_in_every_format(tmp_path: Path) -> None:
    run = logs.run_arrays(n=30)
    rows: list[list[object]] = [[int(s), float(v), 0.1] for s, v in zip(run["step"], run["loss"], strict=True)]
    csv_path = write_rows(tmp_path / "log.csv", ["step", "my_weird_objective", "lr"], rows)
    jsonl_path = tmp_path / "log.jsonl"
    jsonl_path.write_text("".join(json.dumps({"step": r[0], "nll": r[1]}) + "\n" for r in rows))
    state = {"log_history": [{"step": r[0], "loss": 5.0, "train_nll": r[1]} for r in rows]}
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "trainer_state.json").write_text(json.dumps(state))
    write_tags(tmp_path / "tb", run, {"objective": "loss", "loss": "lr"})
    for path, name in (
        (csv_path, "my_weird_objective"),
        (csv_path, "MY_WEIRD_OBJECTIVE"),  # exactly, else ignoring case
        (jsonl_path, "nll"),
        (tmp_path / "hf", "train_nll"),
        (tmp_path / "hf", "TRAIN_NLL"),
        (tmp_path / "tb", "objective"),  # even where another tag is called 'loss'
    ):
        series = read(path, loss_column=name)
        assert series.loss == pytest.approx(run["loss"], rel=1e-6), (path, name)


@pytest.mark.parametrize("name", ["log.csv", "log.jsonl", "hf", "tb", "run.json"])
def test_a_loss_column_the_log_lacks_is_one_line_listing_what_it_has(tmp_path: Path, name: str) -> None:
    run = logs.run_arrays(n=10)
    if name == "log.csv":
        logs.write_csv(tmp_path / name, run)
        has = "'step', 'loss', 'lr'"
    elif name == "log.jsonl":
        logs.write_jsonl(tmp_path / name, run)
        has = "'loss', 'lr', 'step'"
    elif name == "hf":
        logs.write_trainer_state(tmp_path / name / "trainer_state.json", run)
        has = "'epoch', 'grad_norm', 'learning_rate', 'loss', 'step'"
    elif name == "tb":
        logs.write_tensorboard(tmp_path / name, run)
        has = "'train/grad_norm', 'train/learning_rate', 'train/loss'"
    else:
        history = TrainingHistory(steps=run["step"].tolist(), loss=run["loss"].tolist(), lr=run["lr"].tolist())
        RunRecord(title="r", task="t", total_steps=10, history=history).write_json(tmp_path / name)
        has = "lrpilot's run.json holds its training loss as 'loss'"
    with pytest.raises(DoctorInputError) as info:
        read(tmp_path / name, loss_column="nope")
    message = str(info.value)
    assert "'nope' (--loss-column)" in message
    assert has in message
    assert "\n" not in message


def test_an_empty_loss_column_is_refused() -> None:
    with pytest.raises(DoctorInputError, match="loss_column must be a column name, got ''"):
        read("anything.csv", loss_column="")


# 4. Lightning's LearningRateMonitor: `lr-<optimizer>[/pgN]` columns, on rows of their own.


def lightning_rows(n: int, lr_columns: int) -> tuple[list[str], list[list[object]]]:
    """CSVLogger's metrics.csv of a run with a LearningRateMonitor and on_step + on_epoch logging:
    the monitor's LR row, then the loss row, at each step; a validation row every 10 steps."""
    lr_names = ["lr-SGD"] if lr_columns == 1 else [f"lr-Adam/pg{g + 1}" for g in range(lr_columns)]
    header = ["epoch", *lr_names, "lr-SGD-momentum", "step", "train_loss_epoch", "train_loss_step", "val_loss"]
    rows: list[list[object]] = []
    for s in range(n):
        lrs = [0.01 * (s + 1) * (g + 1) for g in range(lr_columns)]
        rows.append([None, *lrs, 0.9, s, None, None, None])
        rows.append([0, *[None] * lr_columns, None, s, None, 1.0 - s / 100, None])
        if (s + 1) % 10 == 0:
            rows.append([0, *[None] * lr_columns, None, s, None, None, 0.5])
    rows.append([0, *[None] * lr_columns, None, n - 1, 0.7, None, None])  # the epoch's average
    return header, rows


def test_lightning_learning_rate_monitor_rows_give_the_lr(tmp_path: Path) -> None:
    """Doctor ignored `lr-SGD` (its own rows, without a loss) and said the log had no LR."""
    header, rows = lightning_rows(40, 1)
    series = read(write_rows(tmp_path / "version_0" / "metrics.csv", header, rows))
    assert series.format == "lightning"
    assert series.steps.tolist() == list(range(40))
    assert series.loss.tolist() == pytest.approx([1.0 - s / 100 for s in range(40)])  # not the epoch's 0.7
    assert series.lr is not None
    assert series.lr.tolist() == pytest.approx([0.01 * (s + 1) for s in range(40)])  # not the momentum, 0.9
    assert series.eval_steps.size == 4
    assert diagnose(series).schedule is not None  # the LR column now gives the schedule


def test_lightning_with_several_param_groups_reads_the_first(tmp_path: Path) -> None:
    header, rows = lightning_rows(20, 3)
    series = read(write_rows(tmp_path / "metrics.csv", header, rows))
    assert series.lr is not None
    assert series.lr.tolist() == pytest.approx([0.01 * (s + 1) for s in range(20)])
    assert any("LR read from 'lr-Adam/pg1', the first of 3 LR columns" in n for n in series.notes)


def test_lr_rows_of_their_own_in_json_lines_give_the_lr_too(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [
        json.dumps({"step": s, "lr-AdamW": 0.001 * s}) + "\n" + json.dumps({"step": s, "loss": 1.0}) for s in range(5)
    ]
    path.write_text("\n".join(lines) + "\n")
    series = read(path)
    assert series.lr is not None
    assert series.lr.tolist() == pytest.approx([0.001 * s for s in range(5)])


# 5. Evaluation losses only.


def test_a_trainer_state_with_evaluation_losses_only_says_the_doctor_needs_the_training_loss(tmp_path: Path) -> None:
    history = [{"epoch": s / 100, "eval_loss": 1.0 / s, "eval_runtime": 0.02, "step": s} for s in range(10, 260, 10)]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history, "logging_steps": 1, "train_batch_size": 16}))
    with pytest.raises(DoctorInputError) as info:
        read(path)
    message = str(info.value)
    assert "the log has evaluation losses only (25 at steps 10–250), no training loss" in message
    assert "a Trainer logs its training loss as 'loss' every logging_steps steps" in message
    assert read(path, loss_column="eval_loss").steps.size == 25  # unless asked to read them as the loss
