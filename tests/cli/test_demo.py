"""`lrpilot demo bowl` through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lrpilot.cli._app import app

runner = CliRunner()


def test_bowl_prints_the_thresholds_and_each_regime(tmp_path: Path) -> None:
    plot = tmp_path / "bowl.png"
    result = runner.invoke(app, ["demo", "bowl", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    for fragment in ("stable iff η < 2/λ_max = 1.25", "2/(λ_min+λ_max) = 1.081", "0.224 ≤ η ≤ 1.22"):
        assert fragment in result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.output.splitlines() if "│" in line
    }
    assert rows == {"0.02": "stalls", "0.5": "converges", "1.35": "diverges"}
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_json_has_the_bowl_thresholds_and_runs() -> None:
    result = runner.invoke(app, ["demo", "bowl", "--json", "--eta", "1.2", "--eta", "1.24", "--lam-max", "1.6"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["bowl"]["eigenvalues"] == [0.25, 1.6]
    assert payload["thresholds"]["stable_below"] == 1.25
    assert [(r["eta"], r["regime"]) for r in payload["runs"]] == [(1.2, "converges"), (1.24, "oscillates")]
    assert payload["plot"] is None


def test_a_steeper_bowl_moves_the_threshold() -> None:
    result = runner.invoke(app, ["demo", "bowl", "--json", "--lam-max", "4", "--eta", "0.5", "--eta", "0.51"])
    payload = json.loads(result.stdout)
    assert payload["thresholds"]["stable_below"] == 0.5
    assert [r["regime"] for r in payload["runs"]] == ["oscillates", "diverges"]
    assert payload["runs"][1]["final_loss"] > payload["runs"][1]["start_loss"]


def test_bad_input_exits_2_with_a_message_naming_the_option() -> None:
    """The messages had named the library's parameters ("run_bowl: eta", "Bowl: eigenvalues"), a
    flat direction steeper than the steep one was drawn as asked, and -n 100000000 never ended."""
    cases = (
        (["--eta", "-1"], "demo bowl: --eta must be a finite number > 0, got -1.0"),
        (["--lam-min", "0"], "demo bowl: --lam-min must be a finite number > 0, got 0.0"),
        (["--lam-min", "2", "--lam-max", "1"], "demo bowl: --lam-min must be at most --lam-max, got 2 and 1"),
        (["-n", "100000000"], "demo bowl: --iterations must be an integer in [1, 10000], got 100000000"),
    )
    for args, message in cases:
        result = runner.invoke(app, ["demo", "bowl", *args])
        assert result.exit_code == 2
        assert " ".join(result.output.split()) == f"error: {message}"
