"""`lrpilot schedule` through the real typer app and through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app
from lrpilot.schedules import parse

runner = CliRunner()


def test_default_spec_prints_key_points_and_a_clean_lint() -> None:
    result = runner.invoke(app, ["schedule"])
    assert result.exit_code == 0, result.output
    assert "cosine(peak=0.0003, total_steps=10000, warmup_steps=500, floor_ratio=0.1)" in result.output
    for label in ("start", "end of warmup", "50% of run", "last step"):
        assert label in result.output
    assert "no problems found" in result.output


def test_json_output_is_the_spec_points_and_warnings(tmp_path: Path) -> None:
    plot = tmp_path / "sched.png"
    spec = "linear(peak=1e-3, warmup_steps=100, warmup_offset=0, total_steps=500)"
    result = runner.invoke(app, ["schedule", spec, "--steps", "1000", "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["spec"] == "linear(peak=0.001, total_steps=500, warmup_steps=100, warmup_offset=0)"
    assert payload["schedule"]["name"] == "linear"
    assert [w["code"] for w in payload["warnings"]] == ["zero-first-step", "horizon-mismatch"]
    steps = [p["step"] for p in payload["points"]]
    assert steps == sorted(steps)
    assert steps[0] == 0
    assert steps[-1] == 999
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert payload["plot"] == str(plot)


def test_a_wsd_preview_prints_only_the_decay_length_given() -> None:
    """It printed ``"decay_steps": 2000, "decay_fraction": 0.1``: which one sets the decay?"""
    result = runner.invoke(app, ["schedule", "wsd(peak=1e-3, decay_steps=2000)", "-n", "20000", "--json"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["schedule"]
    assert spec["decay_steps"] == 2000
    assert "decay_fraction" not in spec


def test_json_spec_is_accepted() -> None:
    result = runner.invoke(app, ["schedule", '{"name": "constant", "peak": 0.001}', "-n", "10", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["points"][0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin(peak=1e-3)", "did you mean 'cosine'"),
        ("cosine(peak=-1, warmup_steps=2)", "peak must be a finite number > 0, got -1"),
        ("cosine(peak=1e-3, warmup_steps=20000)", "warmup_steps must be an integer in [0, 10000], got 20000"),
        ("wsd(peak=1e-3, decay_shape=sqrt)", "wsd.decay_shape: strings need quotes: write decay_shape='sqrt'"),
        ("cosine(peak=nan)", "cosine: peak must be a finite number > 0, got nan"),
        # was "wsd: decay_steps must be an integer in [1, 0], got 1000": an empty range, a parameter never written
        ("wsd(peak=1e-3, warmup_steps=10000)", "wsd: warmup_steps must be an integer in [0, 9999], got 10000"),
        ("cosine(peak=1e-2, warmup_steps=10, warmup_shape='exp')", "warmup_start must be in (0, peak=0.01], got 0.0"),
    ],
)
def test_bad_specs_exit_2_with_the_message_and_no_traceback(spec: str, message: str) -> None:
    result = runner.invoke(app, ["schedule", spec])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize("spec", ["cosine(peak=1e-3)", "constant(peak=1e-3)"])
def test_steps_below_one_are_named_as_the_option(spec: str) -> None:
    """--steps fills total_steps: its error names --steps, not a parameter the user never wrote."""
    result = runner.invoke(app, ["schedule", spec, "-n", "0"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "schedule: --steps must be ≥ 1 (the run's length in optimizer steps), got 0" in message
    assert "key_points" not in message
    assert "total_steps" not in message


def test_one_cycle_for_the_run_lints_clean() -> None:
    """torch's OneCycleLR convention ends at step total_steps - 1, the run's last step."""
    result = runner.invoke(app, ["schedule", "one_cycle(peak=0.01)", "-n", "1000", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []
    short = runner.invoke(app, ["schedule", "one_cycle(peak=0.01, total_steps=500)", "-n", "1000", "--json"])
    assert [w["code"] for w in json.loads(short.stdout)["warnings"]] == ["horizon-mismatch"]


def test_a_directory_as_the_plot_file_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schedule", "-n", "1000", "--plot", str(tmp_path)])
    assert result.exit_code == 2
    assert f"schedule: --plot expects a file path, got the directory {tmp_path}" in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == []


def test_version_and_help_through_the_console_script() -> None:
    # the script pip installed beside this interpreter (a venv's bin/ need not be on PATH)
    script = shutil.which("lrpilot", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install should have created the lrpilot console script"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("lrpilot ")
    usage = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "schedule" in usage.stdout
    module = subprocess.run([sys.executable, "-m", "lrpilot", "--version"], capture_output=True, text=True, check=False)
    assert module.stdout == version.stdout, module.stderr  # python -m lrpilot, where scripts are not on PATH


@pytest.mark.parametrize(
    ("command", "args"),
    [("find", ["find", "--task", "digits"]), ("doctor", ["doctor", "LOG"]), ("demo bowl", ["demo", "bowl"])],
)
def test_every_plot_option_refuses_a_directory_before_the_work(command: str, args: list[str], tmp_path: Path) -> None:
    log = tmp_path / "run.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2.0 - i / 100}\n" for i in range(50)), encoding="utf-8")
    folder = tmp_path / "plots"
    folder.mkdir()
    result = runner.invoke(app, [str(log) if a == "LOG" else a for a in args] + ["--plot", str(folder)])
    assert result.exit_code == 2
    assert f"{command}: --plot expects a file path, got the directory {folder}" in " ".join(result.stderr.split())
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("find", ["find", "--task", "digits", "--steps", "30"]),
        ("doctor", ["doctor", "LOG"]),
        ("demo bowl", ["demo", "bowl"]),
    ],
)
def test_a_plot_named_without_an_extension_is_the_png_the_command_says(
    command: str, args: list[str], tmp_path: Path
) -> None:
    """matplotlib adds .png to a name without an extension: the commands had said "plot written to
    out" of a file named out.png, and refused an extension it cannot write only after the work."""
    log = tmp_path / "run.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2.0 - i / 100}\n" for i in range(50)), encoding="utf-8")
    argv = [str(log) if a == "LOG" else a for a in args]
    result = runner.invoke(app, [*argv, "--plot", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plot"] == str(tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "out").exists()
    bad = runner.invoke(app, [*argv, "--plot", str(tmp_path / "curve.txt")])
    assert bad.exit_code == 2
    message = " ".join(bad.stderr.split())
    assert f"{command}: --plot must name an image file ending in one of" in message
    assert ".png" in message
    assert message.endswith(f"got {tmp_path / 'curve.txt'}")
    assert "range test" not in bad.stdout  # refused before the work


def test_an_error_under_json_is_json_on_stdout_too() -> None:
    result = runner.invoke(app, ["schedule", "cosin(peak=1e-3)", "--json"])
    assert result.exit_code == 2
    assert "did you mean 'cosine'" in json.loads(result.stdout)["error"]
    assert result.stderr.count("\n") == 1  # one line however long


def test_a_run_longer_than_int64_previews_plots_and_lints(tmp_path: Path) -> None:
    """--steps 100000000000000000000 ended in a numpy traceback: the sampled steps were built from a
    Python int numpy holds only as an object, and so were the plot's key points."""
    plot = tmp_path / "huge.png"
    steps = 10**20
    spec = "cosine(peak=3e-4, warmup_steps=10)"
    result = runner.invoke(app, ["schedule", spec, "--steps", str(steps), "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [p["step"] for p in payload["points"]] == [0, 10, *(q * steps // 4 for q in (1, 2, 3)), steps - 1]
    assert payload["points"][1]["lr"] == 3e-4
    assert payload["warnings"] == []
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("steps", "warmup"), [("100", 5), ("1", 0), ("20000", 1000)])
def test_the_default_spec_follows_steps(steps: str, warmup: int) -> None:
    """`lrpilot schedule -n 100` was refused: 'cosine: warmup_steps must be an integer in [0, 100], got
    500', the warmup of a default spec the user never wrote."""
    result = runner.invoke(app, ["schedule", "-n", steps, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schedule"]["warmup_steps"] == warmup
    assert payload["schedule"]["total_steps"] == int(steps)


def test_the_plots_labels_clear_the_legend_each_other_and_the_edge() -> None:
    """The README's WSD plot: the legend, inside at the upper right, covered the labels "75% of run"
    and "decay starts" at the peak there, and a label at the end of the run ran off the figure."""
    from lrpilot.report.plots import _pyplot, draw_schedule

    schedule = parse("wsd(peak=1e-3, warmup_steps=200, decay_fraction=0.1)", defaults={"total_steps": 20_000})
    fig = draw_schedule(schedule, 20_000)
    try:
        (ax,) = fig.axes
        renderer = fig.canvas.get_renderer()
        labels = [text.get_window_extent(renderer) for text in ax.texts]
        assert len(labels) == 7
        legend = ax.get_legend().get_window_extent(renderer)
        figure = fig.bbox
        for i, box in enumerate(labels):
            assert not box.overlaps(legend), ax.texts[i].get_text()
            assert figure.x0 <= box.x0, ax.texts[i].get_text()
            assert box.x1 <= figure.x1, ax.texts[i].get_text()
            assert not any(box.overlaps(other) for other in labels[:i]), ax.texts[i].get_text()
    finally:
        _pyplot().close(fig)
