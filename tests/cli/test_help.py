"""Every command's --help at a terminal's usual 80 columns reads as prose: its description's
paragraphs are wrapped to the width, not broken where the docstring's source lines end."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lrpilot.cli._app import app

runner = CliRunner()
WIDTH = 80


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path: the groups' (``lrpilot``, ``demo``, ``tune``) and their commands'."""
    out = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's, on the click it vendors)
            out += _commands(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(app))


def _description(text: str) -> list[list[str]]:
    """The paragraphs between the usage line and the first panel, as their rendered lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    paragraphs: list[list[str]] = [[]]
    for line in lines[start:end]:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_every_command_is_listed() -> None:
    assert {"fit", "find", "recommend", "doctor", "guard", "schedule", "report"} <= {c[0] for c in COMMANDS if c}
    assert ("tune", "worker") in COMMANDS
    assert ("demo", "bowl") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lrpilot")
def test_descriptions_are_wrapped_to_the_terminal(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    paragraphs = _description(result.output)
    assert paragraphs, result.output
    for paragraph in paragraphs:
        for line, following in itertools.pairwise(paragraph):
            # greedy wrapping: the next line's first word did not fit on this one (rich indents the
            # description by one column on each side)
            assert len(line) + 1 + len(following.split()[0]) > WIDTH - 2, f"{line!r} then {following!r}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lrpilot")
def test_no_options_help_is_cut_short_at_80_columns(command: tuple[str, ...]) -> None:
    """fit's --columns example, one word too long for its column, had been cut: "(text=sentence,label=senti…"."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH)})
    assert [line for line in result.output.splitlines() if line.rstrip(" │").endswith("…")] == []
