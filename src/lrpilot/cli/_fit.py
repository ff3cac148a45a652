"""`lrpilot fit`: the autopilot. Recommend, range-test, schedule, train under the guard, evaluate,
save and report, on a built-in task or on a local Hugging Face model and your data.

With no arguments it trains the ``shakespeare`` task (a char-level GPT on tiny shakespeare, which
ships with lrpilot) end to end in a few minutes on a CPU. Everything goes into a new run directory;
Ctrl-C stops training, keeps the weights so far and still writes the report. The work is
`lrpilot.autopilot.fit`'s; this module adds the progress bars, the summary and the exit codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from lrpilot.cli._find import _check_sst2, _finite, _progress
from lrpilot.cli._options import (
    BatchSizeOption,
    ColumnsOption,
    DataDirOption,
    DataOption,
    DeviceOption,
    EvalOption,
    FinderStepsOption,
    FitPrecisionOption,
    LoraAlphaOption,
    LoraRankOption,
    LoraTargetsOption,
    MaxLengthOption,
    MethodOption,
    ModelOption,
    TaskOption,
    TaskTypeOption,
    check_run_options,
    parse_columns,
)
from lrpilot.cli._output import console, errors_as_messages, print_json, stderr

if TYPE_CHECKING:
    from lrpilot.autopilot import FitResult

EXIT_INTERRUPTED = 130
"""Ctrl-C's conventional exit status (128 + SIGINT), also after the checkpoint and report are written."""
EXIT_GAVE_UP = 1
_RESUME_PLAN = "put back the saved state → train the rest with the guard → report"
"""What ``fit --resume`` does, as its first line says: the interrupted fit's own LR and schedule go on."""


class _Bars:
    """`lrpilot.autopilot.fit`'s progress as rich bars: one per phase, the evaluations shown on the training bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        name = "train" if phase == "evaluate" else phase
        if name not in self.bars:
            for other in [k for k in self.bars if k != "train"]:  # a finished phase's bar goes away
                self.progress.remove_task(self.bars.pop(other))
            self.bars[name] = self.progress.add_task(name, total=total, lr=lr, loss=loss)
        fields: dict[str, Any] = {
            "completed": done,
            "description": "train (evaluating)" if phase == "evaluate" else name,
        }
        if not math.isnan(lr):
            fields.update(lr=lr, loss=loss)
        self.progress.update(self.bars[name], **fields)


@contextmanager
def _stopped_before_training() -> Iterator[None]:
    """Ctrl-C while loading or during the range test: nothing was written yet (training catches its own
    Ctrl-C, saves and reports), so say so and exit as an interrupted program does. One after training,
    as the model and report were written, says where they are (it had said nothing was written)."""
    from lrpilot.autopilot import SavingInterrupted

    try:
        yield
    except SavingInterrupted as stopped:
        run = escape(str(stopped.run_dir))
        stderr.print(
            f"[yellow]interrupted[/] after training, as the model and report were written: {run} holds what was "
            f"(lrpilot report {run} writes the report from its run.json, where it has one)",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/] before training started: nothing was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _kept(result: FitResult) -> str:
    """What an interrupted fit left, and the command that goes on with it: "the report were saved"
    had been said under --no-report too, and the resume named only as RUN_DIR."""
    from lrpilot.autopilot._checkpoint import RESUME_FILE

    said = f"the weights so far and {'the report' if result.report_path is not None else 'run.json'} were saved"
    if (result.run_dir / RESUME_FILE).is_file():
        said += f"; lrpilot fit --resume {result.run_dir} goes on from there"
    return said


def _summary(result: FitResult) -> Table:
    record = result.record
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    colour = "green" if result.status == "finished" else "yellow"
    table.add_row("status", f"[{colour}]{result.status}[/]")
    table.add_row("peak LR", f"[bold green]{result.peak_lr:.3g}[/]")
    if result.finder is not None:
        low, high = result.finder.band
        table.add_row("range test band", f"{low:.3g} – {high:.3g} (max stable {result.finder.max_stable_lr:.3g})")
    rec = result.recommendation
    table.add_row("rules' prior", f"{rec.peak_lr:.3g} ({rec.low:.3g} – {rec.high:.3g}, {rec.confidence} confidence)")
    table.add_row("steps", record.steps_said())
    for name, value in record.metrics.items():
        table.add_row(name.replace("_", " "), f"{value:.4g}")
    actions = [a["action"] for a in record.guard_actions]
    table.add_row("guard", ", ".join(f"{actions.count(k)} {k}" for k in dict.fromkeys(actions)) or "no action needed")
    timings = record.timings
    table.add_row(
        "wall time",
        f"{timings.get('total', math.nan):.1f} s (loading {timings.get('load', 0.0):.1f} s, range test "
        f"{timings.get('find', 0.0):.1f} s, training {timings.get('train', 0.0):.1f} s)",
    )
    if record.device is not None:
        mixed = "" if record.precision in (None, "fp32") else f", {record.precision} autocast"
        table.add_row("device", escape(record.device + mixed))
    table.add_row("run directory", escape(str(result.run_dir)))
    return table


def _print(result: FitResult) -> None:
    console.print(_summary(result))
    console.print(f"schedule: [cyan]{escape(result.schedule.to_string())}[/]", soft_wrap=True)
    for note in result.record.notes:
        console.print(f"[dim]note[/] {escape(note)}", highlight=False, soft_wrap=True)
    where = result.report_path or result.run_dir / "run.json"
    console.print(f"model saved to {escape(str(result.model_path))}; report: {escape(str(where))}", soft_wrap=True)


def fit(  # noqa: PLR0917  (typer reads the options from the signature)
    task: TaskOption = None,
    model: ModelOption = None,
    data: DataOption = None,
    eval_data: EvalOption = None,
    task_type: TaskTypeOption = None,
    method: MethodOption = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Training steps (300) or wall time for the whole fit (5m, 90s); default: the task's recipe, "
            "or one epoch of --data (at least 50 steps). The peak follows the run's length (horizon law).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="New or empty run directory (default: runs/fit-TASK-TIME).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the model, the data order and dropout.")] = 0,
    batch_size: BatchSizeOption = None,
    finder_steps: FinderStepsOption = None,
    data_dir: DataDirOption = None,
    retention: Annotated[
        Path | None,
        typer.Option(
            "--retention",
            help="--model: general texts (.csv/.jsonl/.json/.txt, text) to measure forgetting on.",
        ),
    ] = None,
    forgetting_weight: Annotated[
        float | None,
        typer.Option(
            "--forgetting-weight",
            help="--retention: pick the peak minimising val loss + W × drift over probes at 1–1/8 of the found peak.",
        ),
    ] = None,
    full_warmup: Annotated[
        bool | None,
        typer.Option(
            "--full-warmup/--ramp-warmup",
            help="Train the whole warmup from the initial weights, or go on from the range test's ramp "
            "(sparing those steps). Default: in full for a fine-tune (lora, full), from the ramp from scratch.",
            show_default=False,
        ),
    ] = None,
    columns: ColumnsOption = None,
    max_length: MaxLengthOption = None,
    lora_rank: LoraRankOption = None,
    lora_alpha: LoraAlphaOption = None,
    lora_targets: LoraTargetsOption = None,
    device: DeviceOption = None,
    precision: FitPrecisionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Write run.json only, no HTML report.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Go on with the fit interrupted (Ctrl-C) in this run directory, to the end of its run, with its "
            "own settings; updates its model and report.",
        ),
    ] = None,
) -> None:
    """Train with the learning rate found, scheduled and guarded for you, and report on it.

    Recommends a prior from published rules, runs the LR range test, fits warmup and decay to the
    budget, trains with the guard on, evaluates, saves the model (or LoRA adapter) and writes an
    HTML report into a new run directory. Without options: the shakespeare task, a few minutes on a CPU.
    """
    from lrpilot.autopilot import fit as run_fit
    from lrpilot.autopilot._pipeline import check_arguments
    from lrpilot.tasks import one_thread

    with errors_as_messages(as_json):
        check_run_options("fit", seed, finder_steps)
        if task is not None and task.startswith("sst2") and model is None:
            _check_sst2(data_dir)
        arguments: dict[str, Any] = {
            "model": model,
            "data": data,
            "eval_data": eval_data,
            "task_type": task_type,
            "method": method,
            "budget": budget,
            "out": out,
            "seed": seed,
            "data_dir": data_dir,
            "batch_size": batch_size,
            "finder_steps": finder_steps,
            "retention": retention,
            "forgetting_weight": forgetting_weight,
            "full_warmup": full_warmup,
            "device": device,
            "precision": precision,
            "columns": parse_columns(columns, "fit"),
            "max_length": max_length,
            "lora_rank": lora_rank,
            "lora_alpha": lora_alpha,
            "lora_targets": lora_targets,
            "resume": resume,
        }
        check_arguments(task, **arguments)  # every bad option refused before the plan's line says the run starts
        if not as_json:
            what = str(model) if model is not None else (task or "shakespeare")
            what = what if resume is None else f"resuming {resume}"
            # one line however long the model's path: wrapped at the console's width (80 columns off a
            # terminal), a long path left "PATH: " alone on its line and the plan on the next. A resume
            # recommends and tests nothing again (its plan had said it would)
            plan = "recommend → range test → train with the guard → report" if resume is None else _RESUME_PLAN
            console.print(f"[bold]{escape(what)}[/]: {plan}", soft_wrap=True, highlight=False)
        with one_thread(model is None and resume is None), _progress() as progress, _stopped_before_training():
            result = run_fit(task, **arguments, report=not no_report, progress=_Bars(progress))
    if as_json:
        print_json(_finite(result.to_dict()))
    else:
        _print(result)
    if result.status == "interrupted":
        stderr.print(f"[yellow]interrupted[/]: {escape(_kept(result))}", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "gave_up":
        raise typer.Exit(EXIT_GAVE_UP)
