"""`lrpilot guard` through the real typer app: a real (small) run with a fault, without and with the guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app

runner = CliRunner()


def test_a_nan_ruins_the_bare_run_and_the_guard_skips_it(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = runner.invoke(app, ["guard", "--inject", "nan", "--steps", "150", "--json", "--audit", str(audit)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.replace("NaN", "null"))
    assert payload["at"] == 60
    assert payload["steps"] == 150  # the digits recipe, shortened
    assert payload["no_guard"]["val_loss"] is None  # NaN
    assert math.isfinite(payload["guard"]["val_loss"])
    assert [(r["action"], r["step"]) for r in payload["guard"]["records"]] == [("skip", 60)]
    assert json.loads(audit.read_text().splitlines()[0])["detector"] == "non_finite"


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
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["guard", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
