"""`lrpilot guard` through the real typer app: a real (small) run with a fault, without and with the guard."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app

runner = CliRunner()


def test_a_nan_ruins_the_bare_run_and_the_guard_skips_it(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = runner.invoke(app, ["guard", "--inject", "nan", "--steps", "150", "--json", "--audit", str(audit)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout, parse_constant=_no_constant)  # strict JSON: the NaN loss is null
    assert payload["at"] == 60
    assert payload["steps"] == 150  # the digits recipe, shortened
    assert (payload["seed"], payload["audit"], payload["plot"]) == (0, str(audit), None)  # as the table says
    assert payload["no_guard"]["val_loss"] is None  # NaN
    assert math.isfinite(payload["guard"]["val_loss"])
    assert [(r["action"], r["step"]) for r in payload["guard"]["records"]] == [("skip", 60)]
    assert json.loads(audit.read_text().splitlines()[0])["detector"] == "non_finite"


def _no_constant(name: str) -> None:
    raise AssertionError(f"--json printed {name}, which is not JSON (jq and JSON.parse reject it)")


def test_the_table_and_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "guard.png"
    result = runner.invoke(app, ["guard", "--inject", "lr-x100", "--steps", "150", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "lrpilot guard" in result.output
    assert "rollback" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inject", "nam"], "did you mean 'nan'"),
        (["--task", "mnist"], "--task must be one of ['digits', 'shakespeare', 'sst2-full', 'sst2-lora']"),
        (["--steps", "10"], "--steps must be an integer in [50, 100000], got 10"),
        # 0 and -1 were the unset values: --at -5, --steps 0, --lr 0 silently meant the defaults
        (["--at", "-5"], "--at must be an integer in [0, 249], got -5"),
        (["--at", "-1"], "--at must be an integer in [0, 249], got -1"),
        (["--steps", "0"], "--steps must be an integer in [50, 100000], got 0"),
        (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
        (["--lr", "-1e-3"], "--lr must be a finite number > 0, got -0.001"),
        # as fit's and tune's: torch.manual_seed(-3) had trained both runs
        (["--seed", "-3"], "--seed must be an integer in [0, 4294967295], got -3"),
        # named as the library's parameters: "get_task: data_dir applies ... got data_dir=PosixPath('/tmp')",
        # "pass data_dir=... to get_task", where fit and find name --data-dir
        (["--data-dir", "/tmp"], "guard: --data-dir applies to the sst2 tasks only, not to 'digits'"),
        (["--task", "sst2-lora", "--data-dir", "/nonexistent"], "then pass --data-dir FOLDER"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["guard", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize("option", ["--audit", "--plot"])
def test_a_directory_as_an_output_file_is_refused_before_training(option: str, tmp_path: Path) -> None:
    """The write would fail after both runs had trained, with a traceback: refused up front, one line."""
    result = runner.invoke(app, ["guard", "--inject", "nan", option, f"{tmp_path}/"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"guard: {option} expects a file path, got the directory {tmp_path}: name a file" in message
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("task", "chance"), [("digits", math.log(10)), ("shakespeare", math.log(65))])
def test_the_guard_knows_the_tasks_chance_level_as_fit_does(task: str, chance: float) -> None:
    """A loss back at chance after the model had learned is a collapse (`DetectConfig.learned_rel`)."""
    from lrpilot.cli._guard import _make_guard
    from lrpilot.tasks import get_task, make_optimizer

    built = get_task(task)
    model = built.build_model(0)
    guard = _make_guard(
        model, make_optimizer(model, built.recipe, 1e-3), built.recipe, fault="none", audit=None, classes=built.classes
    )
    try:
        assert guard.config.detect.chance_loss == pytest.approx(chance)
        assert guard.config.detect.flat_steps == max(20, built.recipe.total_steps // 5)
    finally:
        guard.close()


def test_fail_on_exits_1_when_the_guarded_run_ended_so_in_a_process_of_its_own() -> None:
    """`lrpilot guard` exited 0 however its guarded run ended; `--fail-on` names the outcomes that
    exit 1 (finished, gave_up, diverged; 'any': all but finished). The outcome is in --json too."""
    args = [sys.executable, "-m", "lrpilot", "guard", "--inject", "none", "--steps", "50", "--json"]
    for option, status in (("any", 0), ("gave-up,diverged", 0), ("finished", 1)):
        done = subprocess.run([*args, "--fail-on", option], capture_output=True, text=True, check=False)
        assert done.returncode == status, done.stderr
        assert json.loads(done.stdout)["guard"]["outcome"] == "finished"
    done = subprocess.run([*args, "--fail-on", "gaveup"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "did you mean 'gave_up'?" in done.stderr
