"""The console script's answer to input typer itself refuses (a value of the wrong type, an unknown
option or command, a missing option): one line on stderr and status 2, as lrpilot's own errors,
where typer drew a box over several lines. Run as the user runs it, in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _lrpilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lrpilot", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["schedule", "-n", "abc"],
            "error: schedule: Invalid value for '--steps' / '-n': Input should be a valid integer, unable to parse "
            "string as an integer (see 'python -m lrpilot schedule --help')",
        ),
        (["schedule", "--bogus"], "error: schedule: No such option: --bogus (see 'python -m lrpilot schedule --help')"),
        (["nosuch"], "error: python -m lrpilot: No such command 'nosuch'. (see 'python -m lrpilot --help')"),
        (
            ["tune", "worker"],
            "error: tune worker: Missing option '--study'. (see 'python -m lrpilot tune worker --help')",
        ),
    ],
)
def test_typers_own_refusals_are_one_line_on_stderr_with_status_2(args: list[str], line: str) -> None:
    done = _lrpilot(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == line + "\n"


def test_help_version_and_a_bare_command_are_as_before() -> None:
    bare = _lrpilot()
    assert bare.returncode == 2  # click's status for a command given nothing: the help, on stdout
    assert "Usage:" in bare.stdout
    assert bare.stdout.count("Usage:") == 1
    assert _lrpilot("--version").stdout.startswith("lrpilot ")
    helped = _lrpilot("schedule", "--help")
    assert (helped.returncode, helped.stderr) == (0, "")
    assert "Preview a schedule" in helped.stdout
    previewed = _lrpilot("schedule", "-n", "100", "--json")
    assert previewed.returncode == 0, previewed.stderr


def test_with_json_stdout_gets_the_error_too() -> None:
    done = _lrpilot("schedule", "-n", "abc", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"].startswith("schedule: Invalid value for '--steps' / '-n'")
