"""`lrpilot report` through the real typer app: a run.json in, the HTML report out."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lrpilot.cli._app import app
from lrpilot.report import RunRecord, TrainingHistory

runner = CliRunner()


def _run_json(path: Path) -> Path:
    history = TrainingHistory(
        steps=list(range(0, 100, 5)),
        loss=[2.3 * 0.97**s for s in range(0, 100, 5)],
        lr=[3e-4] * 20,
        eval_steps=[50, 100],
        eval_loss=[1.1, 0.9],
    )
    record = RunRecord(
        title="tiny run",
        task="digits",
        total_steps=100,
        history=history,
        schedule="cosine(peak=3e-4, warmup_steps=10)",
        guard_actions=[{"step": 40, "action": "cut", "detector": "spike", "lr_before": 3e-4, "lr_after": 1.5e-4}],
        metrics={"val_loss": 0.9},
        status="interrupted",
    )
    return record.write_json(path)


def test_report_renders_beside_the_run_json(tmp_path: Path) -> None:
    run = _run_json(tmp_path / "run" / "run.json")
    result = runner.invoke(app, ["report", str(run.parent)])
    assert result.exit_code == 0, result.output
    assert "tiny run (interrupted): report written to" in " ".join(result.output.split())
    index = run.parent / "index.html"
    assert "What the guard did: 1 × cut" in index.read_text(encoding="utf-8")
    assert {"schedule.png", "training.png"} <= {p.name for p in run.parent.iterdir()}


def test_out_and_json(tmp_path: Path) -> None:
    run = _run_json(tmp_path / "run.json")
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "html"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["index"] == str(tmp_path / "html" / "index.html")
    assert payload["files"] == ["index.html", "run.json", "schedule.png", "training.png"]
    assert payload["status"] == "interrupted"


def test_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1, 2]")
    for target, message in ((tmp_path / "nope", "no such file"), (tmp_path / "bad.json", "must hold a JSON object")):
        result = runner.invoke(app, ["report", str(target)])
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())
        assert "Traceback" not in result.output


def test_finds_json_is_named_as_such_not_by_its_keys(tmp_path: Path) -> None:
    """`lrpilot find --json > find.json; lrpilot report find.json` had answered "RunRecord.from_dict:
    unknown parameter(s) 'band', 'details', ..." (fourteen names)."""
    found = runner.invoke(app, ["find", "--steps", "20", "--json"])
    assert found.exit_code == 0, found.output
    path = tmp_path / "find.json"
    path.write_text(found.stdout, encoding="utf-8")
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        f"error: read_run: {path} is not a run record (`lrpilot find --json`'s answer; `lrpilot find --plot "
        "FILE.png` draws it); give the run.json that fit or write_report writes, or its folder"
    )


def test_out_must_be_new_or_empty_but_the_run_directory_re_renders_in_place(tmp_path: Path) -> None:
    """As `fit --out`: a non-empty --out (or a file) is refused, exit 2, one line, nothing written;
    the run's own directory, given as --out, is re-rendered in place as without it."""
    run = _run_json(tmp_path / "run" / "run.json")
    kept = tmp_path / "x"
    kept.mkdir()
    (kept / "index.html").write_text("keep", encoding="utf-8")
    (tmp_path / "file").write_text("keep", encoding="utf-8")
    for out, what in ((kept, "a directory that is not empty"), (tmp_path / "file", "a file")):
        result = runner.invoke(app, ["report", str(run.parent), "--out", str(out)])
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert message.startswith(f"error: report: --out {out} is {what}; give a new or empty directory")
        assert "Traceback" not in result.output
    assert [p.name for p in kept.iterdir()] == ["index.html"]
    assert (kept / "index.html").read_text(encoding="utf-8") == "keep"
    assert (tmp_path / "file").read_text(encoding="utf-8") == "keep"
    again = runner.invoke(app, ["report", str(run), "--out", str(run.parent)])
    assert again.exit_code == 0, again.output
    assert (run.parent / "index.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["report", str(run.parent), "--out", str(empty)]).exit_code == 0
    assert (empty / "index.html").is_file()
