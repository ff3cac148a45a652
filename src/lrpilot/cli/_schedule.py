"""`lrpilot schedule`: preview a schedule over a run — key points, lint warnings, a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lrpilot.cli._options import output_file
from lrpilot.cli._output import console, errors_as_messages, print_json, stderr
from lrpilot.schedules import key_points, lint, parse


def default_spec(steps: int) -> str:
    """The schedule previewed when none is given: cosine to 10 % of a 3e-4 peak after a warmup of
    5 % of the run (500 of the default 10,000 steps). The warmup follows --steps, so that
    ``lrpilot schedule -n 100`` previews it rather than refusing a warmup of 500 nobody wrote."""
    return f"cosine(peak=3e-4, warmup_steps={round(0.05 * steps)}, floor_ratio=0.1)"


def _check_steps(steps: int) -> None:
    """--steps first: it fills the spec's total_steps, so a bad value would otherwise be reported under
    a parameter the user never wrote (``key_points: total_steps``)."""
    if steps < 1:
        raise ValueError(f"schedule: --steps must be ≥ 1 (the run's length in optimizer steps), got {steps}")


def schedule(
    spec: Annotated[
        str | None,
        typer.Argument(
            help="A schedule: short form like 'cosine(peak=3e-4, warmup_steps=500)' or a JSON spec. "
            "total_steps defaults to --steps. Default: cosine(peak=3e-4, warmup_steps=5 % of --steps, "
            "floor_ratio=0.1).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", "-n", help="Length of the run in optimizer steps.")] = 10_000,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the schedule here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Preview a schedule: its LR at the key points of the run, and what lint finds wrong with it."""
    with errors_as_messages(as_json):
        _check_steps(steps)
        plot = output_file("schedule", "--plot", plot)
        sched = parse(default_spec(steps) if spec is None else spec, defaults={"total_steps": steps})
        points = key_points(sched, steps)
        warnings = lint(sched, steps)
        written = None
        if plot is not None:
            from lrpilot.report.plots import plot_schedule

            written = plot_schedule(sched, steps, plot)
    if as_json:
        print_json(
            {
                "schedule": sched.to_dict(),
                "spec": sched.to_string(),
                "total_steps": steps,
                "points": [p.to_dict() for p in points],
                "warnings": [w.to_dict() for w in warnings],
                "plot": str(written) if written else None,
            }
        )
        return
    console.print(f"[bold]{escape(sched.to_string())}[/]", soft_wrap=True)
    table = Table()
    table.add_column("point")
    table.add_column("step", justify="right")
    table.add_column("learning rate", justify="right")
    table.add_column("of peak", justify="right")
    for point in points:
        table.add_row(point.label, f"{point.step:,}", f"{point.lr:.4g}", f"{100 * point.fraction_of_peak:.1f}%")
    console.print(table)
    for warning in warnings:
        stderr.print(f"[yellow]warning[/] {escape(f'[{warning.code}]')} {warning.message}", highlight=False)
    if not warnings:
        console.print("[green]lint: no problems found[/]")
    if written:
        console.print(f"plot written to {written}")
