"""`lrpilot report RUN`: re-render a run's HTML report (and its PNGs) from its run.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lrpilot.cli._output import console, errors_as_messages, print_json


def report(
    run: Annotated[
        Path,
        typer.Argument(help="A report directory holding run.json (as `lrpilot fit` writes it), or a run.json file."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="A new or empty directory to write the report to (default: the run's own directory)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Render a run's report: index.html with its figures, readable offline in any browser."""
    from lrpilot.report import read_run, write_report

    with errors_as_messages(as_json):
        record = read_run(run)
        index = write_report(record, _target(run, out))
    files = sorted(p.name for p in index.parent.iterdir() if p.suffix in (".html", ".png", ".json"))
    if as_json:
        print_json({"index": str(index), "title": record.title, "status": record.status, "files": files})
        return
    console.print(f"[bold]{escape(record.title)}[/] ({escape(record.status)}): report written to {escape(str(index))}")
    console.print(f"[dim]{escape(', '.join(files))}[/]", soft_wrap=True)


def _target(run: Path, out: Path | None) -> Path:
    """Where the report goes: the run's own directory (re-rendered in place, as by default), or
    `out` when it is new or empty. Anything else is a ValueError naming `out` and the valid
    choices, before anything is written: the report's index.html, PNGs and run.json would
    overwrite what is there, and `lrpilot fit --out` refuses such a directory too."""
    home = run if run.is_dir() else run.parent
    if out is None or (out.is_dir() and out.resolve() == home.resolve()):
        return home
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a file" if not out.is_dir() else "a directory that is not empty"
        raise ValueError(
            f"report: --out {out} is {what}; give a new or empty directory, or the run directory {home} itself "
            "(nothing is overwritten)"
        )
    return out
