"""`lrpilot tune` and `lrpilot tune worker`: the peak LR (and optionally warmup and decay) searched
with Optuna at a few runs' cost, on one machine or many sharing a PostgreSQL study.

The work is `lrpilot.tuning`'s; this module adds the progress display, the trial table and the
exit codes. A study's settings live in the study, so a worker needs only its name and storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lrpilot import _validate as check
from lrpilot.cli._find import _check_sst2, _finite, _progress
from lrpilot.cli._fit import EXIT_INTERRUPTED, _Bars
from lrpilot.cli._options import (
    BatchSizeOption,
    ColumnsOption,
    DataDirOption,
    DataOption,
    DeviceOption,
    EvalOption,
    FinderStepsOption,
    LoraAlphaOption,
    LoraRankOption,
    LoraTargetsOption,
    MaxLengthOption,
    MethodOption,
    ModelOption,
    PrecisionOption,
    TaskOption,
    TaskTypeOption,
    check_run_options,
    parse_columns,
)
from lrpilot.cli._output import console, errors_as_messages, print_json, stderr
from lrpilot.cli._recommend import OUTPUTS, emit

if TYPE_CHECKING:
    from lrpilot.tuning import TuneResult

tune_app = typer.Typer(
    help="Search the peak LR (and warmup, decay) with Optuna at a few runs' cost; `tune worker` joins a study.",
    no_args_is_help=False,
)


def _trials_table(result: TuneResult) -> Table:
    """The trials, each with what happened to it (`TrialSummary.outcome`, not Optuna's state, which
    calls a rung trial that went on to its full run ``pruned``); the winner in bold green."""
    table = Table(title=f"trials of {escape(result.study_name)}")
    for column in ("#", "peak LR", "outcome", "rung loss", "final loss", "steps"):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    best = next((t.number for t in result.trials if t.candidate == result.best and t.value == result.value), None)
    for t in result.trials:
        rung = ", ".join(f"{v:.4g}" for v in t.intermediate.values()) or "–"
        final = "–" if t.value is None else f"{t.value:.4g}"
        style = "bold green" if t.number == best else ""
        what = t.candidate.describe().removeprefix("lr ")
        table.add_row(str(t.number), what, escape(t.outcome), rung, final, str(t.steps), style=style)
    return table


def _print(result: TuneResult) -> None:
    console.print(_trials_table(result))
    console.print(f"best: [bold green]{escape(result.best.describe())}[/], val loss {result.value:.4g}")
    console.print(f"schedule: [cyan]{escape(result.schedule)}[/]", soft_wrap=True)
    for note in result.notes:
        console.print(f"[dim]note[/] {escape(note)}", highlight=False, soft_wrap=True)
    where = result.report_path or result.run_dir
    console.print(
        f"compute {result.run_equivalents:.2f} run-equivalents, {result.wall_time_s:.0f} s here; "
        f"model: {escape(str(result.model_path))}; report: {escape(str(where))}",
        soft_wrap=True,
    )


@tune_app.callback(invoke_without_command=True)
def tune(  # noqa: PLR0917  (typer reads the options from the signature)
    ctx: typer.Context,
    task: TaskOption = None,
    model: ModelOption = None,
    data: DataOption = None,
    eval_data: EvalOption = None,
    task_type: TaskTypeOption = None,
    method: MethodOption = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Length of a training run (default: the task's recipe).")
    ] = None,
    budget: Annotated[
        str, typer.Option("--budget", help="Compute for the whole search: full runs (3) or a time (20m).")
    ] = "3",
    search: Annotated[
        str, typer.Option("--search", help="What to search: lr, or lr,warmup,decay (comma-separated).")
    ] = "lr",
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL shared by workers (default: sqlite in the run directory)."),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: lrpilot-TASK); an existing one continues.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory: new, empty, or an earlier tune's (continues its study)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Every trial's seed (weights, data order, dropout).")] = 0,
    batch_size: BatchSizeOption = None,
    data_dir: DataDirOption = None,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="Train every trial in full (no successive halving).")
    ] = False,
    max_trials: Annotated[
        int | None, typer.Option("--max-trials", help="Cap the trials (default: what the budget pays for).")
    ] = None,
    finder_steps: FinderStepsOption = None,
    heartbeat: Annotated[
        float | None,
        typer.Option("--heartbeat", help="Seconds between a trial's heartbeats, default 10 (3 missed: retried)."),
    ] = None,
    columns: ColumnsOption = None,
    max_length: MaxLengthOption = None,
    lora_rank: LoraRankOption = None,
    lora_alpha: LoraAlphaOption = None,
    lora_targets: LoraTargetsOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="Output: table, json, or the tuned settings for hf, trl, axolotl, torchtune, llama-cpp, pytorch.",
        ),
    ] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Write run.json only, no HTML report.")] = False,
) -> None:
    """Search the peak LR for your full training run, keep the best run's model, and report.

    The rules and a range test set the interval; every candidate (the range test's answer, ×½, ×2,
    a line search from there, then Optuna's TPE) trains a run a third as long, and the best third of
    those train the full run (synchronous successive halving).
    Many machines: give --storage postgresql://… --study NAME here, and run
    `lrpilot tune worker --storage … --study NAME` on the others.
    """
    if ctx.invoked_subcommand is not None:
        return
    from lrpilot.tasks import one_thread
    from lrpilot.tuning import tune as run_tune
    from lrpilot.tuning._study import HEARTBEAT
    from lrpilot.tuning._tune import check_arguments

    fmt = "json" if as_json else output
    with errors_as_messages(as_json or output == "json"):  # either way a script reads the error as JSON
        check.choice("tune", "--format", fmt, OUTPUTS)
        if as_json and output not in ("table", "json"):  # --json would silently win over --format
            raise ValueError(f"tune: --json is --format json; it cannot go with --format {output}: give one")
        check_run_options("tune", seed, finder_steps)
        if task is not None and task.startswith("sst2") and model is None:
            _check_sst2(data_dir)
        arguments: dict[str, Any] = {
            "model": model,
            "data": data,
            "eval_data": eval_data,
            "task_type": task_type,
            "method": method,
            "steps": steps,
            "budget": budget,
            "search": search,
            "storage": storage,
            "study": study,
            "out": out,
            "seed": seed,
            "data_dir": data_dir,
            "batch_size": batch_size,
            "max_trials": max_trials,
            "finder_steps": finder_steps,
            "heartbeat": HEARTBEAT if heartbeat is None else heartbeat,
            "device": device,
            "precision": precision,
            "columns": parse_columns(columns, "tune"),
            "max_length": max_length,
            "lora_rank": lora_rank,
            "lora_alpha": lora_alpha,
            "lora_targets": lora_targets,
            "prune": not no_prune,
        }
        check_arguments(task, **arguments)  # every bad option refused before the plan's line says the run starts
        if fmt == "table":
            what = str(model) if model is not None else (task or "shakespeare")
            console.print(f"[bold]{escape(what)}[/]: rules → range test → trials (successive halving) → report")
        try:
            with one_thread(model is None), _progress() as progress:
                result = run_tune(
                    task,
                    **arguments,
                    report=not no_report,
                    progress=_Bars(progress),
                )
        except KeyboardInterrupt:
            stderr.print(
                "[yellow]interrupted[/]: finished trials are kept in the study; run the same command "
                "(same --out, or --storage and --study) to continue"
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if fmt == "json":
        print_json(_finite(result.to_dict()))
    elif fmt == "table":
        _print(result)
    else:
        emit(result.recommendation, fmt)


@tune_app.command("worker")
def worker(  # noqa: PLR0917  (typer reads the options from the signature)
    study: Annotated[str, typer.Option("--study", help="The study's name, as given to `lrpilot tune`.")],
    storage: Annotated[str, typer.Option("--storage", help="The study's storage URL (postgresql://…).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where a best trial's weights go (default: runs/tune-worker-STUDY).")
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the study to appear (its range test runs first).")
    ] = 0.0,
    heartbeat: Annotated[
        float | None,
        typer.Option("--heartbeat", help="Seconds between a trial's heartbeats, default 10 (3 missed: retried)."),
    ] = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a line.")] = False,
) -> None:
    """Join a study started by `lrpilot tune --storage … --study …` and run its trials until none is left."""
    from lrpilot.tuning import work
    from lrpilot.tuning._study import HEARTBEAT

    with errors_as_messages(as_json):
        try:
            with _progress() as progress:
                summary = work(
                    study,
                    storage,
                    out=out,
                    wait=wait,
                    progress=_Bars(progress),
                    heartbeat=HEARTBEAT if heartbeat is None else heartbeat,
                    device=device,
                    precision=precision,
                )
        except KeyboardInterrupt:
            stderr.print("[yellow]interrupted[/]: the trial in progress goes back to the queue")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        print_json(
            {
                "study": summary.study_name,
                "trials_run": summary.trials_run,
                "completed": summary.completed,
                "total": summary.total,
            }
        )
    else:
        console.print(
            f"ran {len(summary.trials_run)} trials of {escape(summary.study_name)} "
            f"({summary.completed} of {summary.total} completed in the study)"
        )
