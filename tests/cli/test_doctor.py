"""`lrpilot doctor` through the real typer app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app
from tests.detect import curves
from tests.doctor import logs

runner = CliRunner()


def test_a_diverged_hf_run_gets_a_verdict_findings_advice_and_a_plot(tmp_path: Path) -> None:
    path = logs.write_trainer_state(tmp_path / "trainer_state.json", logs.run_arrays(n=300, every=10, nan_from=250))
    plot = tmp_path / "doctor.png"
    result = runner.invoke(app, ["doctor", str(path), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    for fragment in ("verdict: diverged", "non finite", "2,510–3,000", "halve the peak LR: 0.0003 → 0.00015"):
        assert fragment in result.output
    assert "try:  cosine(peak=0.00015, total_steps=3000, warmup_steps=300, floor_ratio=0.1)" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_json_is_the_diagnosis_dict(tmp_path: Path) -> None:
    path = logs.write_csv(tmp_path / "log.csv", logs.run_arrays(n=400))
    result = runner.invoke(app, ["doctor", str(path), "--json", "--num-classes", "10"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "healthy"
    assert payload["advice"][0]["action"] == "keep"
    assert payload["log"]["rows"] == 400
    assert payload["plot"] is None


def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("step,acc\n1,0.5\n")
    for target, message in ((tmp_path / "bad.csv", "no training loss column"), (tmp_path / "nope", "no such file")):
        result = runner.invoke(app, ["doctor", str(target)])
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())  # rich wraps long lines
        assert "Traceback" not in result.output


def test_max_grad_norm_judges_the_clipped_norm(tmp_path: Path) -> None:
    """A classifier's log whose grad norm grows ×5–8 as it grows confident: spikes as logged (the
    norm before clipping), none as the run's clip of 1.0 left them; a clip ≤ 0 is refused."""
    loss = curves.clean(n=600, seed=7)
    run = {"step": np.arange(600), "loss": loss, "grad_norm": curves.confident_classifier_grads()}
    path = logs.write_csv(tmp_path / "log.csv", run, columns=("step", "loss", "grad_norm"))
    verdicts = []
    for extra in ([], ["--max-grad-norm", "1.0"]):
        result = runner.invoke(app, ["doctor", str(path), "--json", *extra])
        assert result.exit_code == 0, result.output
        verdicts.append(json.loads(result.stdout)["verdict"])
    assert verdicts == ["unstable", "healthy"]
    result = runner.invoke(app, ["doctor", str(path), "--max-grad-norm", "0"])
    assert result.exit_code == 2
    assert "--max-grad-norm must be a finite number > 0, got 0" in " ".join(result.output.split())


def test_batch_size_reads_a_small_batch_run_over_as_many_examples_as_the_guard_does(tmp_path: Path) -> None:
    """A batch-8 fine-tune's overshoot that came back by itself (`curves.LORA_BATCH8_OVERSHOOTS`):
    a collapse to chance on a median of 8 losses, none on the 32 that `--batch-size 8` reads."""
    loss = curves.LORA_BATCH8_OVERSHOOTS[0]
    path = logs.write_csv(tmp_path / "log.csv", {"step": np.arange(loss.size), "loss": loss}, columns=("step", "loss"))
    kinds = []
    for extra in ([], ["--batch-size", "8"]):
        result = runner.invoke(app, ["doctor", str(path), "--json", "--num-classes", "2", *extra])
        assert result.exit_code == 0, result.output
        kinds.append({f["kind"] for f in json.loads(result.stdout)["findings"]})
    assert "collapse" in kinds[0]
    assert "collapse" not in kinds[1]
    result = runner.invoke(app, ["doctor", str(path), "--batch-size", "0"])
    assert result.exit_code == 2
    assert "--batch-size must be an integer in [1, ∞], got 0" in " ".join(result.output.split())


def test_loss_column_names_the_loss_and_a_missing_one_lists_the_columns(tmp_path: Path) -> None:
    run = logs.run_arrays(n=200)
    path = logs.write_csv(tmp_path / "log.csv", {**run, "objective": run["loss"]}, columns=("step", "objective", "lr"))
    result = runner.invoke(app, ["doctor", str(path)])
    assert result.exit_code == 2
    assert "--loss-column NAME reads another" in " ".join(result.output.split())
    result = runner.invoke(app, ["doctor", str(path), "--loss-column", "objective", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["log"]["rows"] == 200
    result = runner.invoke(app, ["doctor", str(path), "--loss-column", "nope"])
    assert result.exit_code == 2
    assert "no column 'nope' (--loss-column); the log has 'step', 'objective', 'lr'" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_an_lrpilot_run_json_that_went_nan_is_diagnosed_as_diverged(tmp_path: Path) -> None:
    """Its writer stores a NaN loss as null; doctor read those steps as missing and called it healthy."""
    from lrpilot.report import RunRecord, TrainingHistory

    run = logs.run_arrays(n=300, nan_from=200)
    history = TrainingHistory(steps=run["step"].tolist(), loss=run["loss"].tolist(), lr=run["lr"].tolist())
    RunRecord(title="nan", task="t", total_steps=300, history=history).write_json(tmp_path / "run" / "run.json")
    result = runner.invoke(app, ["doctor", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "diverged"
    assert payload["log"]["non_finite_losses"] == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-classes", "1"], "--num-classes must be an integer in [2, ∞], got 1"),
        (["--spike-z", "-3"], "--spike-z must be in [1.0, 1000000.0], got -3.0"),
        (["--max-grad-norm", "-1"], "--max-grad-norm must be a finite number > 0, got -1.0"),
        (["--batch-size", "0"], "--batch-size must be an integer in [1, ∞], got 0"),
    ],
)
def test_bad_options_are_refused_by_their_names_before_the_log_is_read(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """They were refused once the log had been read, as the library's parameters ("DetectConfig:
    num_classes must be ...", "diagnose: max_grad_norm ..."): the path here does not exist, and the
    option is what is named."""
    result = runner.invoke(app, ["doctor", str(tmp_path / "missing.csv"), *args, "--json"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: doctor: {message}"
    assert json.loads(result.stdout) == {"error": f"doctor: {message}"}


def _lrpilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lrpilot", *args], capture_output=True, text=True, check=False)


def test_fail_on_exits_1_on_a_named_verdict_in_a_process_of_its_own(tmp_path: Path) -> None:
    """Every verdict exited 0, so CI could not fail a job on a diverged run; `--fail-on` names the
    verdicts that exit 1 ('any': all but healthy), as a linter's findings do; bad input stays 2."""
    healthy = str(logs.write_csv(tmp_path / "healthy.csv", logs.run_arrays(n=400)))
    diverged = str(logs.write_csv(tmp_path / "nan.csv", logs.run_arrays(n=400, nan_from=300)))
    for path, option, status in (
        (healthy, "any", 0),
        (diverged, None, 0),
        (diverged, "lr_too_low,oscillating", 0),
        (diverged, "any", 1),
        (diverged, "collapsed, diverged", 1),
    ):
        done = _lrpilot("doctor", path, "--num-classes", "10", *(["--fail-on", option] if option else []))
        assert done.returncode == status, (option, done.stdout, done.stderr)
        assert ("'diverged' is one of --fail-on" in done.stderr) == (status == 1)
    done = _lrpilot("doctor", diverged, "--json", "--fail-on", "diverged")
    assert done.returncode == 1
    assert json.loads(done.stdout)["verdict"] == "diverged"  # stdout stays the JSON document
    done = _lrpilot("doctor", diverged, "--fail-on", "divergd")
    assert done.returncode == 2
    assert "--fail-on must be one of" in done.stderr
    assert "did you mean 'diverged'?" in done.stderr


def test_a_log_of_nan_losses_only_exits_2_with_one_line(tmp_path: Path) -> None:
    path = logs.write_csv(tmp_path / "nan.csv", logs.run_arrays(n=50, nan_from=0))
    done = _lrpilot("doctor", str(path), "--fail-on", "any")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: {path}: every logged loss is NaN or Inf (50 at steps 1–50)")
    assert done.stderr.count("\n") == 1
