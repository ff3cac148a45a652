"""The typer application: one module per command, registered here."""

from __future__ import annotations

from typing import Annotated

import typer

from lrpilot._version import __version__
from lrpilot.cli._demo import demo
from lrpilot.cli._doctor import doctor
from lrpilot.cli._find import SCRIPT_HELP, find
from lrpilot.cli._fit import fit
from lrpilot.cli._guard import guard
from lrpilot.cli._recommend import recommend
from lrpilot.cli._report import report
from lrpilot.cli._schedule import schedule
from lrpilot.cli._tune import tune_app

app = typer.Typer(
    name="lrpilot",
    help="Learning rates without guessing: shape, find, scale, watch and explain the learning rate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Markdown: a docstring's paragraphs are reflowed to the terminal (rich mode kept their line
    # breaks, so at 80 columns every wrapped line of a command's description left a stub behind).
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lrpilot {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Learning rates without guessing."""


app.command("schedule")(schedule)
app.command("find", epilog=SCRIPT_HELP)(find)
app.command("recommend")(recommend)
app.command("doctor")(doctor)
app.command("guard")(guard)
app.command("fit")(fit)
app.command("report")(report)
app.add_typer(demo, name="demo")
app.add_typer(tune_app, name="tune")
