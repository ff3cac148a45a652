"""`lrpilot demo`: worked examples that show what the learning rate does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lrpilot import _validate as check
from lrpilot.cli._options import output_file
from lrpilot.cli._output import console, errors_as_messages, print_json
from lrpilot.demos.bowl import DEFAULT_ETAS, Bowl, BowlDemo, run_bowl

demo = typer.Typer(
    help="Worked examples that show what the learning rate does.", no_args_is_help=True, add_completion=False
)

_STYLE = {"stalls": "blue", "converges": "green", "oscillates": "yellow", "diverges": "red"}


def _print_bowl(result: BowlDemo) -> None:
    """The bowl, the thresholds its curvature sets, and a row per step size."""
    b, t = result.bowl, result.thresholds
    lam = ", ".join(f"{v:g}" for v in b.eigenvalues)
    console.print(f"[bold]f(x) = ½ xᵀAx[/], eigenvalues of A: {lam} (κ = {b.lam_max / b.lam_min:.3g}), start {b.start}")
    console.print(f"stable iff η < 2/λ_max = [bold]{t.stable_below:.4g}[/]")
    console.print(
        f"fastest at η = 2/(λ_min+λ_max) = [bold]{t.fastest:.4g}[/] (slowest direction × {t.best_rate:.3g} per step)"
    )
    if t.converge_low <= t.converge_high:
        console.print(
            f"converges within {b.iterations} steps (loss below {b.tol:g} × the start) "
            f"iff {t.converge_low:.3g} ≤ η ≤ {t.converge_high:.3g}"
        )
    table = Table(title=f"gradient descent, {b.iterations} iterations")
    table.add_column("η", justify="right")
    table.add_column("regime")
    table.add_column("ρ(η) = max |1 − ηλ|", justify="right")
    table.add_column("final loss", justify="right")
    table.add_column("final / start", justify="right")
    for run in result.runs:
        ratio = run.final_loss / float(run.losses[0])
        regime = f"[{_STYLE[run.regime]}]{run.regime}[/]"
        table.add_row(f"{run.eta:g}", regime, f"{run.contraction:.3f}", f"{run.final_loss:.3g}", f"{ratio:.3g}")
    console.print(table)


MAX_ITERATIONS = 10_000
"""`demo bowl -n`'s limit: every iterate is kept and drawn, so -n 100000000 had filled the memory
and never finished; a diverging η overflows to inf within ~2,000 steps anyway."""


def _check_bowl(etas: Sequence[float], lam_min: float, lam_max: float, iterations: int) -> None:
    """The options, checked by their own names (the library's messages name its parameters, which
    the command line does not have), the curvatures in the order their help and the plot's axes
    ("flat", "steep" direction) give them."""
    for value in etas:
        check.positive("demo bowl", "--eta", value)
    check.positive("demo bowl", "--lam-min", lam_min)
    check.positive("demo bowl", "--lam-max", lam_max)
    if lam_min > lam_max:
        raise ValueError(f"demo bowl: --lam-min must be at most --lam-max, got {lam_min:g} and {lam_max:g}")
    check.step_count("demo bowl", "--iterations", iterations, 1, MAX_ITERATIONS)


def bowl(  # noqa: PLR0917  (typer reads the options from the signature)
    eta: Annotated[
        list[float] | None,
        typer.Option(
            "--eta",
            help="A step size to try (repeat for several). Default: 0.02, 0.5, 1.35, article 003's (docs/sources.md).",
        ),
    ] = None,
    lam_min: Annotated[float, typer.Option("--lam-min", help="The bowl's smaller curvature (flat direction).")] = 0.25,
    lam_max: Annotated[float, typer.Option("--lam-max", help="The bowl's larger curvature (steep direction).")] = 1.6,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Gradient-descent steps per η.")] = 40,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the paths, losses and regimes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Gradient descent on a quadratic bowl: too low stalls, right converges, too high diverges (η < 2/λ_max)."""
    with errors_as_messages(as_json):
        plot = output_file("demo bowl", "--plot", plot)
        _check_bowl(eta or DEFAULT_ETAS, lam_min, lam_max, iterations)
        result = run_bowl(eta or DEFAULT_ETAS, Bowl(eigenvalues=(lam_min, lam_max), iterations=iterations))
        written = None
        if plot is not None:
            from lrpilot.report.bowl_plots import plot_bowl

            written = plot_bowl(result, plot)
    if as_json:
        print_json({**result.to_dict(), "plot": str(written) if written else None})
        return
    _print_bowl(result)
    if written:
        console.print(f"plot written to {written}")


demo.command("bowl")(bowl)
