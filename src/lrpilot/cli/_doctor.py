"""`lrpilot doctor PATH`: read a training log, say what went wrong and what LR / schedule to try next."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lrpilot.cli._options import output_file
from lrpilot.cli._output import console, errors_as_messages, exit_on, fail_on, print_json
from lrpilot.doctor import VERDICTS, diagnose, fitted_config, read

_VERDICT_STYLE = {"healthy": "green", "lr_too_low": "yellow", "oscillating": "yellow", "unstable": "yellow"}


def doctor(  # noqa: PLR0917  (typer reads the options from the signature)
    path: Annotated[
        Path,
        typer.Argument(
            help="A log: HF trainer_state.json (or an output/checkpoint dir), TensorBoard event file or run dir, "
            "a CSV/JSONL with step and loss (lr, grad_norm, eval loss optional), a W&B CSV export, Lightning's "
            "metrics.csv, lrpilot's run.json (a fit / tune run dir), or a training script's printed output "
            "(.log, .txt, .out: nanoGPT's, llm.c's, torchtune's lines, the HF Trainer's console).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of loss and LR, findings marked.")] = None,
    num_classes: Annotated[
        int | None,
        typer.Option(
            "--num-classes",
            help="Classes (or vocabulary): the chance level, which tells a collapse to chance from a flat start "
            "and finds a loss that drifted back to it after learning (default: what an lrpilot run.json records, or "
            "the classifier's config.json a Trainer saved beside its trainer_state.json).",
        ),
    ] = None,
    spike_z: Annotated[float | None, typer.Option("--spike-z", help="Spike threshold in robust sigmas.")] = None,
    loss_column: Annotated[
        str | None,
        typer.Option(
            "--loss-column",
            help="The training-loss column (CSV), key (JSONL, trainer_state.json) or scalar tag (TensorBoard), for a "
            "log that names it otherwise than loss, train/loss, Loss/train, train_loss, ... (any case), or to pick "
            "one run's '<run> - train/loss' column of a W&B export.",
        ),
    ] = None,
    max_grad_norm: Annotated[
        float | None,
        typer.Option(
            "--max-grad-norm",
            help="The norm the run clipped gradients to (the Trainer's max_grad_norm, 1.0 by default): judge the "
            "clipped norm, what the update applied, as the guard does. Logs record the norm before clipping.",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Examples behind each logged loss (the batch, times the steps a logged loss averages: Hugging "
            "Face's logging_steps): below 32 the divergence and collapse tests read a median of more losses, as the "
            "guard's do at that batch, so a small batch's noise is not read as a relapse to chance (default: what an "
            "lrpilot run.json records; train_batch_size × logging_steps from a trainer_state.json).",
        ),
    ] = None,
    fail_on_verdicts: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help=f"Exit with status 1 when the verdict is one of these (comma-separated: {', '.join(VERDICTS)}), or "
            "'any' verdict but healthy: for CI. Without it every verdict exits 0; bad input exits 2.",
        ),
    ] = None,
) -> None:
    """Diagnose a training run from its log: spikes, NaN, divergence, collapse, a flat start, oscillation."""
    with errors_as_messages(as_json):
        plot = output_file("doctor", "--plot", plot)
        failing = fail_on("doctor", fail_on_verdicts, VERDICTS, "healthy")
        _check_options(num_classes, spike_z, max_grad_norm, batch_size)
        series = read(path, loss_column=loss_column)
        config = fitted_config(series, num_classes, batch_size)
        if spike_z is not None:
            config = replace(config, spike_z=spike_z)
        diagnosis = diagnose(series, config, max_grad_norm=max_grad_norm)
        written = None
        if plot is not None:
            from lrpilot.report.guard_plots import plot_diagnosis

            written = plot_diagnosis(series, diagnosis, plot)
    if as_json:
        print_json({**diagnosis.to_dict(), "plot": str(written) if written else None})
        exit_on("doctor", "the verdict", diagnosis.verdict, failing)
        return
    info = diagnosis.series
    peak = f", LR peak {diagnosis.lr_peak:.3g}" if diagnosis.lr_peak else ""
    console.print(
        f"[bold]{escape(str(info['source']))}[/] ({info['format']}): {info['rows']:,} rows, "
        f"steps {info['first_step']:,}–{info['last_step']:,}{peak}",
        soft_wrap=True,
    )
    if diagnosis.schedule:
        where = "as the run recorded it" if info.get("schedule_recorded") else "from the LR column"
        console.print(f"schedule ({where}): {escape(diagnosis.schedule)}", soft_wrap=True)
    style = _VERDICT_STYLE.get(diagnosis.verdict, "red")
    console.print(f"verdict: [bold {style}]{diagnosis.verdict}[/] — {diagnosis.headline}")
    if diagnosis.findings:
        table = Table(title="findings")
        table.add_column("what")
        table.add_column("steps", justify="right")
        table.add_column("evidence")
        for f in diagnosis.findings:
            span = f"{f.start:,}" if f.start == f.end else f"{f.start:,}–{f.end:,}"
            table.add_row(f.kind.replace("_", " "), span, escape(f.message))
        console.print(table)
    console.print("[bold]what to try next[/]")
    for i, a in enumerate(diagnosis.advice, 1):
        console.print(f" {i}. {escape(a.reason)}", soft_wrap=True)
        console.print(f"    rule: {escape(a.rule_text)} [dim]({escape(a.source)})[/]", soft_wrap=True)
        if a.schedule:
            console.print(f"    try:  [cyan]{escape(a.schedule)}[/]", soft_wrap=True)
    for note in info["notes"]:
        console.print(f"[dim]note: {escape(note)}[/]", soft_wrap=True)
    if written:
        console.print(f"plot written to {written}")
    exit_on("doctor", "the verdict", diagnosis.verdict, failing)


def _check_options(
    num_classes: int | None, spike_z: float | None, max_grad_norm: float | None, batch_size: int | None
) -> None:
    """Refuse a bad option by its name before the log is read: they were refused after it (a large
    TensorBoard log read first), named as the library's parameters ("DetectConfig: num_classes must
    be ...", "diagnose: max_grad_norm ...")."""
    from lrpilot import _validate as check

    if num_classes is not None:
        check.step_count("doctor", "--num-classes", num_classes, 2)
    if spike_z is not None:
        check.in_range("doctor", "--spike-z", spike_z, 1.0, 1e6)
    if max_grad_norm is not None:
        check.positive("doctor", "--max-grad-norm", max_grad_norm)
    if batch_size is not None:
        check.step_count("doctor", "--batch-size", batch_size, 1)
