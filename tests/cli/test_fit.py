"""`lrpilot fit` through the real typer app: the digits task end to end, and every kind of bad input
(exit 2, a clear message, nothing written to the user's paths)."""

from __future__ import annotations

import io
import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from lrpilot.autopilot import AUDIT_FILE, MODEL_FILE
from lrpilot.cli._app import app
from lrpilot.cli._find import _progress
from lrpilot.cli._fit import _Bars
from lrpilot.tasks import get_task
from tests.autopilot.conftest import minilm_dir, save_chat_lm, sst2_rows, write_rows

pytestmark = pytest.mark.usefixtures("torch_one_thread")

runner = CliRunner()


def test_digits_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--task", "digits", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "finished"
    names = {p.name for p in out.iterdir()}
    assert {MODEL_FILE, AUDIT_FILE, "index.html", "run.json"} <= names
    record = payload["record"]
    low, high = record["finder"]["band"]
    assert low <= payload["peak_lr"] <= high
    assert record["metrics"]["val_accuracy"] > 0.9
    assert record["metrics"]["val_loss"] < 0.3
    assert record["history"]["eval_steps"][-1] == 250
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    model = get_task("digits").build_model(0)
    model.load_state_dict(torch.load(out / MODEL_FILE, weights_only=True))


def test_full_warmup_trains_the_whole_warmup_from_the_initial_weights(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["fit", "--task", "digits", "--budget", "60", "--full-warmup", "--out", str(tmp_path / "run"), "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["record"]
    assert record["resumed"] is None
    assert record["history"]["steps"][0] == 0


def test_ramp_warmup_goes_on_from_the_range_tests_ramp(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["fit", "--task", "digits", "--budget", "60", "--ramp-warmup", "--out", str(tmp_path / "run"), "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["record"]
    assert record["resumed"] is not None
    assert record["history"]["steps"][0] == record["resumed"]["start_step"] > 0


def test_the_table_names_the_peak_the_schedule_and_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--task", "digits", "--budget", "50", "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "peak LR" in result.stdout
    assert "schedule: cosine(" in result.stdout
    assert "total_steps=50" in result.stdout
    assert not (out / "index.html").exists()
    assert (out / "run.json").is_file()


def _bar_lines(*updates: tuple[str, int, int | None, float, float]) -> list[str]:
    """fit's progress bars after each update, as an 80-column terminal shows them."""
    progress, lines = _progress(), []
    bars = _Bars(progress)
    for update in updates:
        bars(*update)
        console = Console(file=io.StringIO(), width=80, color_system=None)
        console.print(progress.get_renderable())
        lines.append(console.file.getvalue().rstrip())  # type: ignore[attr-defined]
    return lines


def test_the_bars_of_phases_without_steps_show_no_nan_and_the_loss_keeps_its_width() -> None:
    """Loading, saving and the report had read "0/?  lr nan  loss nan"; and a loss of 6.23 after
    6.231 shifted the bar at every step of a 20-step run. The bars are drawn as an 80-column terminal shows them."""
    load, report = _bar_lines(("load", 0, None, math.nan, math.nan), ("report", 0, None, math.nan, math.nan))
    for line in (load, report):
        assert "nan" not in line, line
        assert "?" not in line, line
    first, second = _bar_lines(("range test", 3, 158, 6.02e-06, 6.231), ("range test", 4, 158, 6.6e-06, 6.23))
    assert "3/158 lr 6.02e-06  loss 6.231" in first
    assert first.index("lr") == second.index("lr")
    evaluating = _bar_lines(("train", 16, 40, 2.34e-2, 6.209), ("evaluate", 16, 40, math.nan, math.nan))[-1]
    assert "\n" not in evaluating  # the longest description beside the LR and loss, on one line
    assert "16/40 lr 2.34e-02  loss 6.209" in evaluating


def test_the_budgets_help_says_the_default_is_at_least_the_minimum_of_steps() -> None:
    """It said "one epoch of --data": a 200-row file trained 50 steps, four epochs."""
    from lrpilot.autopilot._hf import MIN_DEFAULT_STEPS

    fit = typer.main.get_command(app).commands["fit"]  # type: ignore[attr-defined]
    said = next(option.help for option in fit.params if option.name == "budget")
    assert f"one epoch of --data (at least {MIN_DEFAULT_STEPS} steps)" in said


def _fails(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["fit", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["fit", "tune"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed must be an integer in [0, 4294967295], got -1"),
        (["--finder-steps", "2"], "--finder-steps must be an integer in [5, 100000], got 2"),
    ],
)
def test_seed_and_finder_steps_are_refused_by_their_option_names(command: str, args: list[str], message: str) -> None:
    """They had been named as the library's parameters ("fit: seed must be ...", "finder_steps"),
    after the plan's line had been printed as if the run were starting."""
    result = runner.invoke(app, [command, "--task", "digits", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {command}: {message}"
    assert result.stdout == ""


def _csv(tmp_path: Path, rows: list[dict[str, object]], name: str = "train.csv", **kw: object) -> Path:
    return write_rows(tmp_path / name, rows, **kw)  # type: ignore[arg-type]


GOOD = [{"text": f"an example sentence {i}", "label": i % 2} for i in range(30)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_a_model", "is not a Hugging Face model directory (no config.json)"),
        ("no_model_dir", "--model: no such directory"),
        ("missing_column", "train.csv has no column 'label' (columns: text)"),
        ("empty_file", "train.csv has no rows"),
        ("empty_text", "train.csv, row 3: 'text' is empty"),
        ("label_out_of_range", "eval.csv, row 2: label 2 is out of range: labels must be integers in [0, 2)"),
        ("negative_label", "train.csv, row 1: label -1 is out of range"),
        ("wrong_suffix", "train.parquet must be a .csv, .jsonl, .json or .txt file"),
        ("no_data", "--model needs --data FILE"),
        ("gguf_folder", "is a GGUF file (llama.cpp's format); fit trains a Hugging Face folder"),
        ("gguf_file", "is a GGUF file (llama.cpp's format); fit trains a Hugging Face folder"),
    ],
)
def test_bad_user_input_is_refused_before_training(tmp_path: Path, case: str, message: str) -> None:
    model = (
        minilm_dir()
        if case not in ("not_a_model", "no_model_dir", "gguf_folder", "gguf_file")
        else tmp_path / "notamodel"
    )
    if case.startswith("gguf"):
        model.mkdir()
        (model / "model.Q4_K_M.gguf").write_bytes(b"GGUF")
        model = model / "model.Q4_K_M.gguf" if case == "gguf_file" else model
    if case == "not_a_model":
        model.mkdir()
        (model / "weights.txt").write_text("hello", encoding="utf-8")
    data = _csv(tmp_path, GOOD)
    extra: list[str] = []
    if case == "missing_column":
        data = _csv(tmp_path, GOOD, columns=("text",))
    elif case == "empty_file":
        data.write_text("text,label\n", encoding="utf-8")
    elif case == "empty_text":
        data = _csv(tmp_path, [*GOOD[:2], {"text": " ", "label": 0}, *GOOD[3:]])
    elif case == "label_out_of_range":
        extra = ["--eval", str(_csv(tmp_path, [GOOD[0], {"text": "x", "label": 2}], "eval.csv"))]
    elif case == "negative_label":
        data = _csv(tmp_path, [{"text": "x", "label": -1}, *GOOD])
    elif case == "wrong_suffix":
        data = data.rename(tmp_path / "train.parquet")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = tmp_path / "run"
    args = ["--model", str(model), "--out", str(out), *extra]
    _fails(args if case == "no_data" else [*args, "--data", str(data)], message)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, nothing changed


def test_a_budget_too_small_for_warmup_is_refused(tmp_path: Path) -> None:
    _fails(["--task", "digits", "--budget", "3", "--out", str(tmp_path / "run")], "is too small for a warmup")
    assert not (tmp_path / "run").exists()


def test_the_header_names_a_long_model_path_and_the_plan_on_one_line(tmp_path: Path) -> None:
    """Off a terminal the console is 80 columns wide: a model's full path filled the header's line,
    which read "/full/model/path: " with nothing after the colon."""
    model = tmp_path / ("a-folder-whose-name-is-long-enough-to-fill-a-line-" * 2) / "model"
    model.parent.mkdir(parents=True)
    model.symlink_to(minilm_dir())
    data = _csv(tmp_path, GOOD, columns=("text",))  # no label: found as the data is read, after the plan's line
    result = runner.invoke(app, ["fit", "--model", str(model), "--data", str(data)])
    assert result.exit_code == 2
    header = result.stdout.splitlines()[0]
    assert header == f"{model}: recommend → range test → train with the guard → report"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget must be a whole number of steps ≥ 1 (300) or a time > 0 (5m, 90s, 1h), got '0'"),
        (["--task", "digits", "--budget", "3"], "the budget (3 steps) is too small for a warmup"),
        (["--out", "FILE"], "notes.parquet is a file; give a new or empty directory"),
        (["--out", "UNDER_FILE"], "notes.parquet/run is under "),
        (["--device", "tpu"], "--device 'tpu' is not a device; give auto, cpu, cuda or cuda:N"),
        (["--precision", "half"], "--precision must be one of fp32, bf16, fp16, got 'half'"),
        (["--task", "digit"], "--task must be one of ['digits', 'shakespeare', 'sst2-full', 'sst2-lora'], got 'digit'"),
        (["--task", "digits", "--columns", "text=x"], "--columns applies to --model"),
        (["--forgetting-weight", "-1", "--retention", "r.csv"], "--forgetting-weight must be a finite number ≥ 0"),
        (["--resume", "MISSING"], "missing is not a directory (give the interrupted fit's run folder)"),
        (["--resume", "EMPTY"], "empty holds no resume.pt"),
        (["--resume", "EMPTY", "--seed", "3"], "--resume takes the interrupted fit's own settings; drop seed"),
        (["--model", "MISSING", "--data", "DATA"], "--model: no such directory"),
        (["--model", "FILE", "--data", "DATA"], "notes.parquet is a file; give the folder that holds the model"),
        (["--model", "MODEL", "--data", "MISSING"], "--data: no such file"),
        (["--model", "MODEL", "--data", "EMPTY"], "empty is a folder; give a file of rows, .csv, .jsonl"),
        (["--model", "MODEL", "--data", "DATA", "--retention", "EMPTY"], "empty is a folder; give a file of rows"),
        (["--model", "MODEL", "--data", "DATA", "--eval", "MISSING"], "--eval: no such file"),
        (
            ["--model", "MODEL", "--data", "DATA", "--eval", "FILE"],
            "notes.parquet must be a .csv, .jsonl, .json or .txt file",
        ),
        (["--model", "MODEL", "--data", "DATA", "--columns", "sentence"], "--columns takes ROLE=COLUMN pairs"),
        (["--model", "MODEL", "--data", "DATA", "--columns", "sentence=text"], "--columns: 'sentence' is not a role"),
        (
            ["--model", "MODEL", "--data", "DATA", "--max-length", "4"],
            "--max-length must be an integer in [8, ∞], got 4",
        ),
        (
            ["--model", "MODEL", "--data", "DATA", "--batch-size", "0"],
            "--batch-size must be an integer in [1, ∞], got 0",
        ),
        (["--model", "MODEL", "--data", "DATA", "--task-type", "regression"], "--task-type must be one of"),
        (["--model", "MODEL", "--data", "DATA", "--budget", "5"], "the budget (5 steps) is too small for a warmup"),
        (["--model", "MODEL", "--data", "DATA", "--retention", "MISSING"], "--retention: no such file"),
        (["--task", "sst2-lora", "--lora-rank", "16"], "--lora-rank applies to --model (your own model)"),
        (["--lora-targets", "all-linear"], "--lora-targets applies to --model (your own model)"),
        (
            ["--model", "MODEL", "--data", "DATA", "--lora-rank", "16", "--lora-alpha", "32"],
            "fit: --lora-rank, --lora-alpha apply to --method lora (adapters), and this run is --method full",
        ),
        (
            ["--model", "MODEL", "--data", "DATA", "--method", "lora", "--lora-rank", "0"],
            "fit: --lora-rank must be an integer in [1, ∞], got 0",
        ),
        (
            ["--model", "MODEL", "--data", "DATA", "--method", "lora", "--lora-alpha", "-2"],
            "fit: --lora-alpha must be a finite number > 0, got -2.0",
        ),
        (
            ["--model", "MODEL", "--data", "DATA", "--method", "lora", "--lora-targets", "q_proj,,v_proj"],
            "fit: --lora-targets must be attention or all-linear, or module names joined by commas",
        ),
        (
            ["--resume", "EMPTY", "--lora-rank", "4"],
            "--resume takes the interrupted fit's own settings; drop lora_rank",
        ),
    ],
)
def test_bad_options_are_refused_before_the_plan_is_printed(tmp_path: Path, args: list[str], message: str) -> None:
    """`lrpilot fit` printed its plan ("digits: recommend → range test → train with the guard →
    report"), as if the run were starting, and then the error: each of these options was checked
    only once the fit had begun (the data read, a user's model loaded for its budget)."""
    (tmp_path / "empty").mkdir()
    paths = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty", "FILE": tmp_path / "notes.parquet"}
    paths["FILE"].write_text("not data", encoding="utf-8")
    paths["UNDER_FILE"] = paths["FILE"] / "run"
    paths["DATA"] = _csv(tmp_path, GOOD)
    if "MODEL" in args:
        paths["MODEL"] = minilm_dir()
    result = runner.invoke(app, ["fit", *(str(paths.get(arg, arg)) for arg in args)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""


def test_a_too_small_step_budget_is_named_once(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fit", "--task", "digits", "--budget", "5", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "the budget (5 steps) is too small for a warmup" in " ".join(result.output.split())


def test_a_non_empty_out_directory_is_never_written_into(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me", encoding="utf-8")
    _fails(["--task", "digits", "--out", str(out)], "is a directory that is not empty")
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "--task must be one of"),
        (["--task", "digits", "--model", "x"], "give --task (a built-in task) or --model"),
        (["--task", "digits", "--data", "x.csv"], "--data applies to --model"),
        (["--task", "digits", "--method", "lora"], "--method applies to --model"),
        (["--task-type", "causal-lm"], "--task-type applies to --model"),
        (["--task", "digits", "--retention", "r.csv"], "--retention applies to --model"),
        (["--task", "digits", "--forgetting-weight", "1"], "--forgetting-weight needs --retention FILE"),
        (["--forgetting-weight", "-1", "--retention", "r.csv"], "--forgetting-weight must be"),
        (["--task", "digits", "--budget", "5x"], "--budget must be a whole number of steps"),
        (["--model", "x", "--data", "y.csv", "--method", "qlora"], "--method must be one of"),
        (["--task", "digits", "--device", "tpu"], "--device 'tpu' is not a device; give auto, cpu, cuda or cuda:N"),
        (["--task", "digits", "--device", "mps"], "lrpilot trains on the CPU or a CUDA GPU"),
        (["--task", "digits", "--precision", "half"], "--precision must be one of fp32, bf16, fp16, got 'half'"),
        (["--task", "digits", "--columns", "text=x"], "--columns applies to --model"),
        (["--model", "x", "--data", "y.csv", "--columns", "sentence"], "--columns takes ROLE=COLUMN pairs"),
        (["--task", "digits", "--max-length", "64"], "--max-length applies to --model"),
    ],
)
def test_contradictory_or_unknown_options(args: list[str], message: str, tmp_path: Path) -> None:
    _fails([*args, "--out", str(tmp_path / "run")], message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused_before_anything_runs(tmp_path: Path) -> None:
    _fails(["--task", "digits", "--device", "cuda", "--out", str(tmp_path / "run")], "sees no CUDA GPU on this machine")
    assert not (tmp_path / "run").exists()


def test_the_table_says_where_the_run_trained(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--task", "digits", "--budget", "30", "--device", "cpu", "--out", str(out), "--no-report"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"device\s+│ cpu \(\d+ threads?\)", result.stdout), result.stdout


def test_a_classifier_of_text_pairs_from_columns_of_other_names(tmp_path: Path) -> None:
    rows = [
        {"premise": f"the film number {i} was long", "hypothesis": ["it was short", "it lasted"][i % 2], "gold": i % 2}
        for i in range(40)
    ]
    data = _csv(tmp_path, rows, columns=("premise", "hypothesis", "gold"))
    out = tmp_path / "run"
    columns = "text=premise,text_pair=hypothesis,label=gold"
    args = ["fit", "--model", str(minilm_dir()), "--data", str(data), "--columns", columns, "--budget", "6"]
    result = runner.invoke(app, [*args, "--finder-steps", "12", "--out", str(out), "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "finished"
    assert "for classification of text pairs on train.csv" in run["record"]["task"]


def test_a_chat_fine_tune_of_a_causal_lm_with_its_own_column_name(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "Who art thou?"}, {"role": "assistant", "content": "A poor player."}]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"dialogue": chat}) + "\n" for _ in range(30)), encoding="utf-8")
    model = save_chat_lm(tmp_path / "model")
    args = ["fit", "--model", str(model), "--data", str(data), "--task-type", "causal-lm", "--method", "lora"]
    more = ["--columns", "messages=dialogue", "--max-length", "32", "--budget", "6", "--finder-steps", "12"]
    result = runner.invoke(app, [*args, *more, "--out", str(tmp_path / "run"), "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "finished"
    counted = "messages data: the loss counts the assistant turns' tokens only"
    assert any(note.startswith(counted) for note in run["record"]["notes"])
    bad = runner.invoke(app, [*args, "--max-length", "4", "--out", str(tmp_path / "other")])
    assert bad.exit_code == 2
    assert "--max-length must be" in bad.output


def test_lora_rank_alpha_and_targets_reach_the_saved_adapter(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"to be or not to be, {i}"}) + "\n" for i in range(30)), "utf-8")
    model = save_chat_lm(tmp_path / "model")
    args = ["fit", "--model", str(model), "--data", str(data), "--task-type", "causal-lm", "--method", "lora"]
    more = ["--budget", "6", "--finder-steps", "12", "--no-report", "--json"]
    lora = ["--lora-rank", "4", "--lora-alpha", "4", "--lora-targets", "c_attn"]
    result = runner.invoke(app, [*args, *more, *lora, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert any(
        note.startswith("LoRA: rank 4 (alpha 4) adapters on 2 projections (attn.c_attn); ")
        for note in run["record"]["notes"]
    )
    config = json.loads((Path(run["model_path"]) / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (
        4,
        4,
        ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"],
    )
    bad = runner.invoke(app, [*args, *more, "--lora-targets", "q_proj", "--out", str(tmp_path / "other")])
    assert bad.exit_code == 2
    choices = "those of its blocks are attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"
    assert f"--lora-targets: 'q_proj' is none of this model's projections; {choices}" in " ".join(bad.stderr.split())


def test_a_resumes_plan_line_says_it_goes_on_without_a_new_range_test(tmp_path: Path) -> None:
    """It had read "resuming RUN: recommend → range test → train with the guard → report"."""
    from lrpilot.autopilot import fit

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 30:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    assert fit("digits", budget=50, out=out, report=False, callback=stop).status == "interrupted"
    result = runner.invoke(app, ["fit", "--resume", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    plan = f"resuming {out}: put back the saved state → train the rest with the guard → report"
    assert result.stdout.splitlines()[0] == plan


def test_a_ctrl_c_as_the_report_is_written_says_where_the_trained_model_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C after training, while the report was drawn, had been told "interrupted before
    training started: nothing was written", of a folder holding the trained model."""
    from lrpilot.autopilot import SavingInterrupted, fit
    from lrpilot.cli._fit import _stopped_before_training

    def ctrl_c_at_the_report(phase: str, *_: object) -> None:
        if phase == "report":
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(SavingInterrupted) as stopped:
        fit("digits", budget=30, out=out, progress=ctrl_c_at_the_report)
    assert stopped.value.run_dir == out
    assert (out / MODEL_FILE).is_file()
    with pytest.raises(typer.Exit) as exited, _stopped_before_training():
        raise stopped.value
    assert exited.value.exit_code == 130
    said = " ".join(capsys.readouterr().err.split())
    assert f"interrupted after training, as the model and report were written: {out} holds what was" in said
    assert "nothing was written" not in said


def test_ctrl_c_from_outside_during_a_lora_fit_records_the_saved_weights_metrics_and_resumes(tmp_path: Path) -> None:
    """`lrpilot fit` in its own process, sent SIGINT (as `timeout -s INT` or a terminal's Ctrl-C
    does) once training has begun: exit 130, and the record holds the evaluation of the weights it
    saved (it used to hold none: "no final metrics recorded"); ``--resume`` then trains the rest."""
    rows = sst2_rows(240)
    train, val = write_rows(tmp_path / "train.csv", rows[:200]), write_rows(tmp_path / "val.csv", rows[200:])
    out = tmp_path / "run"
    args = ["fit", "--model", str(minilm_dir()), "--data", str(train), "--eval", str(val), "--method", "lora"]
    more = ["--budget", "60", "--finder-steps", "12", "--out", str(out), "--no-report"]
    # Python's own Ctrl-C handler even where this runs in the background (which ignores SIGINT)
    handler = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"
    code = f"{handler}; import sys; from lrpilot.cli import main; sys.argv[0] = 'lrpilot'; main()"
    with subprocess.Popen(
        [sys.executable, "-c", code, *args, *more], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        deadline = time.monotonic() + 300
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the run directory is made as training starts
        time.sleep(2.0)  # a few steps in
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr.decode()
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "interrupted"
    step = run["history"]["eval_steps"][-1]
    assert 0 <= step < 60, step  # 0 where a busy machine was still starting the loop two seconds in
    assert set(run["metrics"]) == {"val_loss", "val_accuracy"}
    assert run["history"]["eval_examples"] == 40  # the whole evaluation set
    assert any(f"the metrics are of the saved weights at step {step}" in note for note in run["notes"])
    assert "val accuracy" in stdout.decode()
    assert "lrpilot: stopping after this step" in stderr.decode()  # the first Ctrl-C waits for the step's end
    said = " ".join(stderr.decode().split())  # --no-report: no report was saved, and the resume names the run
    assert f"interrupted: the weights so far and run.json were saved; lrpilot fit --resume {out} goes on" in said
    resumed = runner.invoke(app, ["fit", "--resume", str(out), "--no-report", "--json"])
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.stdout)
    assert done["status"] == "finished"
    assert done["record"]["history"]["steps"][-1] == 59  # the rest of the 60 steps
    assert f"resumed at step {step} of 60 (lrpilot fit --resume)" in done["record"]["notes"]
    assert not (out / "resume.pt").exists()
