"""`lrpilot tune` through the real typer app: the digits task end to end (table, JSON, a tool's
settings), continuing a run directory, and bad input (exit 2, one clear line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app
from lrpilot.report import read_run

pytestmark = pytest.mark.usefixtures("torch_one_thread")

runner = CliRunner()
DIGITS = ["tune", "--task", "digits", "--steps", "90"]


def test_json_then_a_tools_settings_from_the_same_study(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, [*DIGITS, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    best = payload["best"]["peak_lr"]
    assert payload["value"] == min(t["value"] for t in payload["trials"] if t["value"] is not None)
    assert payload["run_equivalents"] <= 3.0
    assert payload["hf"]["learning_rate"] == best
    assert payload["hf"]["max_steps"] == 90
    assert payload["recommendation"]["confidence"] == "high"
    record = read_run(out)
    assert record.tune is not None
    assert record.tune["best"] == next(t["number"] for t in payload["trials"] if t["value"] == payload["value"])
    assert record.tune["band"] == payload["finder"]["band"]
    assert (out / "tune.png").is_file()
    # the same command with a tool's format continues the finished study: no new trial, its settings
    again = runner.invoke(app, [*DIGITS, "--out", str(out), "--format", "axolotl"])
    assert again.exit_code == 0, again.output
    assert f"learning_rate: {best:g}" in again.stdout
    assert "warmup_steps: 9" in again.stdout


def test_the_table_names_the_winner_and_the_compute(tmp_path: Path) -> None:
    result = runner.invoke(app, [*DIGITS, "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "trials of lrpilot-digits" in result.stdout
    assert "run-equivalents" in result.stdout
    assert "best: lr" in result.stdout
    # each row says what happened to its trial, as TuneResult.trials[i].outcome and .stopped do:
    # the rung trial that won is "promoted to #N" (Optuna's state for it is PRUNED), not "pruned"
    from lrpilot.tuning import tune

    trials = tune("digits", steps=90, out=tmp_path / "run", report=False).trials  # continued: nothing trained
    cells = {}
    for line in result.stdout.splitlines():
        parts = [p.strip() for p in line.split("│")]
        if len(parts) > 3 and parts[1].isdigit():
            cells[int(parts[1])] = parts[3]
    assert sorted(cells) == [t.number for t in trials]
    for t in trials:
        assert t.outcome.startswith(cells[t.number]), (cells[t.number], t.outcome)  # a long one wraps
        if t.stopped == "promoted":
            assert cells[t.number] == f"promoted to #{t.promoted_to}"
        elif t.stopped == "pruned":
            assert cells[t.number] == "pruned at its 30-step rung"
        elif t.state == "COMPLETE":
            assert cells[t.number].startswith(f"finished: full run of #{t.continues}")
    completed = sum(1 for t in trials if t.state == "COMPLETE")
    assert f"{completed} {'trial' if completed == 1 else 'trials'} completed" in " ".join(result.stdout.split())
    assert {t.stopped for t in trials} >= {"promoted", "pruned", None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "yaml"], "--format must be one of"),
        (["--search", "lr,beta2"], "--search must be one of"),
        (["--budget", "1"], "cannot pay for the range test"),
        (["--storage", "mysql://nobody:hunter2@127.0.0.1:1/x"], "cannot open the storage"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*DIGITS, "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "digits", "--budget", "5x"], "tune: --budget must be a number of runs (3) or a time (20m, 1h)"),
        (["--task", "digits", "--budget", "0"], "tune: --budget must be a finite number > 0, got 0.0"),
        (["--task", "digits", "--budget", "-2"], "tune: --budget must be a finite number > 0, got -2.0"),
        (["--task", "digits", "--device", "tpu"], "--device 'tpu' is not a device; give auto, cpu, cuda or cuda:N"),
        (["--task", "digits", "--precision", "half"], "--precision must be one of fp32, bf16, fp16, got 'half'"),
        (["--task", "digits", "--out", "FILE"], "notes.txt is a file; give a new or empty directory"),
        (["--task", "digits", "--out", "FULL"], "is a directory that is not empty and holds no earlier tune"),
        # made only after the model's load and the range test: a NotADirectoryError traceback
        (["--task", "digits", "--out", "UNDER_FILE"], "run is under"),
        (["--task", "digits", "--search", "lr,beta2"], "--search must be one of"),
        (["--task", "digits", "--steps", "0"], "steps must be an integer in [1, ∞], got 0"),
        (["--task", "digits", "--max-trials", "0"], "max_trials must be an integer in [1, 10000], got 0"),
        (["--task", "digit"], "--task must be one of ['digits', 'shakespeare', 'sst2-full', 'sst2-lora'], got 'digit'"),
        (["--task", "digits", "--columns", "text=x"], "--columns applies to --model"),
        (["--task", "digits", "--columns", "x"], "--columns takes ROLE=COLUMN pairs"),
        (
            ["--task", "digits", "--budget", "1"],
            "a budget of 1 runs cannot pay for the range test (at least 38 steps) and the first trial (1.33 runs of "
            "250 steps); give at least 1.49, more where the model makes the range test longer",
        ),
        (["--task", "digits", "--budget", "1.2", "--finder-steps", "20", "--steps", "100"], "give at least 1.54"),
        (["--task", "digits", "--budget", "1.1", "--no-prune"], "first trial (1.00 runs of 250 steps)"),
        (["--task", "digits", "--storage", "bad://x"], "cannot open the storage bad://x: Can't load plugin"),
        (["--task", "digits", "--storage", "sqlite:////no-such-folder/x.db"], "its folder /no-such-folder does not"),
        # an in-memory database crashed after the range test (the heartbeat thread found no tables)
        (["--task", "digits", "--storage", "sqlite://"], "cannot open the storage sqlite://: an in-memory SQLite"),
        (["--task", "digits", "--storage", "sqlite:///:memory:"], "sqlite:///:memory:: an in-memory SQLite database"),
        (["--task", "digits", "--storage", "SQLITE_FOLDER"], "model is a folder; give an SQLite file"),
        # optuna said "Failed to import DB access module for the specified storage URL", after the plan
        (["--task", "digits", "--storage", "mysql://u:pw@h/db"], "it needs the database driver 'MySQLdb', which is"),
        (["--model", "MISSING", "--data", "DATA"], "--model: no such directory"),
        (["--model", "MODEL", "--data", "MISSING"], "--data: no such file"),
        (["--model", "MODEL", "--data", "DATA", "--batch-size", "0"], "--batch-size must be an integer in [1, ∞]"),
        (["--task", "sst2-lora", "--lora-rank", "16"], "--lora-rank applies to --model"),
        (["--model", "MODEL", "--data", "DATA", "--lora-rank", "16"], "--lora-rank applies to --method lora"),
        (
            ["--model", "MODEL", "--data", "DATA", "--method", "lora", "--lora-alpha", "0"],
            "--lora-alpha must be a finite number > 0, got 0.0",
        ),
    ],
)
def test_bad_options_are_refused_before_the_plan_is_printed(tmp_path: Path, args: list[str], message: str) -> None:
    """`lrpilot tune` printed its plan ("digits: rules → range test → trials (successive halving) →
    report"), as if the run were starting, and then the error; a budget of "5x" was also refused
    in fit's words, as "a number of steps (300)", which a tune's budget is not counted in. A budget
    of 1 run and a storage URL naming no database were refused after the plan and the model's load.
    fit's checks of what to train answered as fit ("fit: --task must be one of …")."""
    model, full = tmp_path / "model", tmp_path / "full"
    for folder in (model, full):
        folder.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")  # a model folder by its path: nothing is loaded
    (full / "kept.txt").write_text("the user's", encoding="utf-8")
    paths = {"MISSING": tmp_path / "missing", "FILE": tmp_path / "notes.txt", "FULL": full, "MODEL": model}
    paths["FILE"].write_text("not data", encoding="utf-8")
    paths["UNDER_FILE"] = paths["FILE"] / "run"
    paths["DATA"] = tmp_path / "train.csv"
    paths["DATA"].write_text("text,label\ngood,1\nbad,0\n", encoding="utf-8")
    urls = {"SQLITE_FOLDER": f"sqlite:///{model}"}
    result = runner.invoke(app, ["tune", *(urls.get(arg) or str(paths.get(arg, arg)) for arg in args)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "fit:" not in result.stderr  # fit's checks of what to train had said "fit: --task must be …"
    assert result.stdout == ""
    assert [p.name for p in full.iterdir()] == ["kept.txt"]


@pytest.mark.parametrize("json_option", [["--json"], ["--format", "json"], ["-f", "json"]])
def test_an_error_with_json_output_is_json_on_stdout_however_json_was_asked_for(json_option: list[str]) -> None:
    """--json is 'the same as --format json': with -f json an error left stdout empty."""
    result = runner.invoke(app, [*DIGITS, "--budget", "0", *json_option])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": "tune: --budget must be a finite number > 0, got 0.0"}


def test_json_with_another_format_is_refused_not_silently_preferred() -> None:
    result = runner.invoke(app, [*DIGITS, "--json", "-f", "hf"])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": "tune: --json is --format json; it cannot go with --format hf: give one"
    }
