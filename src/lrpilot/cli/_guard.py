"""`lrpilot guard --task digits --inject nan`: the guard on a built-in task with an injected fault.

The task (`lrpilot.tasks`: its model, data and fixed recipe) is trained twice from the same seed,
with the same data and the same fault: without the guard and with it; the command prints how each
run ended and every decision the guard took. CPU, one thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lrpilot.cli._options import output_file
from lrpilot.cli._output import console, errors_as_messages, exit_on, fail_on, print_json

FAULTS = ("none", "nan", "lr-x10", "lr-x100", "bad-batch", "fp16-overflow", "low-lr")
TASKS = ("digits", "shakespeare", "sst2-full", "sst2-lora")
PEAKS = {"digits": 1e-2, "shakespeare": 1e-2, "sst2-full": 5e-5, "sst2-lora": 5e-4}
"""A reasonable peak LR per task when --lr is not given (digits and shakespeare: the best of a small
sweep; sst2: the usual fine-tuning / LoRA values)."""
OUTCOMES = ("finished", "gave_up", "diverged")
"""How a run ended (`--fail-on` names those of the guarded run that fail the command)."""
_SHOWN = {"finished": "finished", "gave_up": "gave up", "diverged": "[red]diverged (NaN)[/]"}


def _outcome(run: dict[str, Any]) -> str:
    """One of `OUTCOMES`: the guard gave up, or the run ended with a non-finite validation loss."""
    if run["stopped_at"] is not None:
        return "gave_up"
    return "finished" if math.isfinite(run["val_loss"]) else "diverged"


def _overflow(output: Any) -> Any:
    """Logits past float16's largest value (65504) become inf: an fp16 overflow, simulated on CPU."""
    if hasattr(output, "logits"):
        output.logits = (output.logits * 1e5).half().float()
        return output
    return (output * 1e5).half().float()


def _faulty_loss(task: Any, model: Any, batch: Any, *, fault: str, b: int, at: int) -> Any:
    """The task's loss on `batch` (the `b`-th), with the fault applied where it hits."""
    overflow = fault == "fp16-overflow" and at <= b < at + 5
    hook = model.register_forward_hook(lambda m, i, o: _overflow(o)) if overflow else None
    try:
        loss = task.loss(model, batch)
    finally:
        if hook is not None:
            hook.remove()
    if fault == "bad-batch" and b == at:
        loss = loss * 1e3  # a corrupted batch: a 1000× gradient
    if fault == "nan" and b == at:
        loss = loss * math.nan
    return loss


def _make_guard(model: Any, opt: Any, recipe: Any, *, fault: str, audit: Path | None, classes: int | None) -> Any:
    from lrpilot.detect import DetectConfig
    from lrpilot.guard import GuardConfig
    from lrpilot.integrations.torch_guard import TorchGuard

    # Knobs measured in steps are scaled to the run (`GuardConfig.for_run`, and the flat-start test
    # over its first fifth), and the task's chance level is known (a loss back at it after the model
    # had learned is a collapse), as in fit; everything else is the default.
    steps = recipe.total_steps
    detect = DetectConfig.for_classes(classes, flat_steps=max(20, steps // 5))
    config = GuardConfig.for_run(steps, detect=detect, raise_on_flat=fault == "low-lr")
    return TorchGuard(model, opt, config=config, audit=audit, max_grad_norm=recipe.grad_clip)


def _train(
    task: Any, recipe: Any, *, fault: str, at: int, lr: float, seed: int, guarded: bool, audit: Path | None
) -> dict[str, Any]:
    from lrpilot.tasks import one_thread

    with one_thread():  # the tasks' timings are for one thread
        return _run(task, recipe, fault=fault, at=at, lr=lr, seed=seed, guarded=guarded, audit=audit)


def _run(
    task: Any, recipe: Any, *, fault: str, at: int, lr: float, seed: int, guarded: bool, audit: Path | None
) -> dict[str, Any]:
    import torch

    from lrpilot.integrations.torch_guard import GuardGaveUpError
    from lrpilot.tasks import make_optimizer

    torch.manual_seed(seed)
    steps = recipe.total_steps
    peak = lr * (0.01 if fault == "low-lr" else 1.0)
    model = task.build_model(seed)
    opt = make_optimizer(model, recipe, peak)
    sched = recipe.schedule(peak)
    data = task.batches(seed)
    jump = {"lr-x10": 10.0, "lr-x100": 100.0}.get(fault, 1.0)
    guard = _make_guard(model, opt, recipe, fault=fault, audit=audit, classes=task.classes) if guarded else None
    step = batches = 0
    stopped = None
    while step < steps and batches < 2 * steps:
        loss = _faulty_loss(task, model, next(data), fault=fault, b=batches, at=at)
        loss.backward()
        batches += 1
        for g in opt.param_groups:
            g["lr"] = float(sched(step)) * (jump if step >= at else 1.0)
        if guard is None:
            if recipe.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            continue
        try:
            guard.step(loss)
        except GuardGaveUpError:
            stopped = guard.step_count
            break
        step = guard.step_count
    metrics = task.metrics(model)
    out: dict[str, Any] = {"val_loss": metrics.loss, "val_accuracy": metrics.accuracy}
    out.update(batches=batches, stopped_at=stopped)
    if guard is not None:
        report = guard.report()
        guard.close()
        out.update(records=report["records"], skips=report["skips"], rollbacks=report["rollbacks"])
        out.update(gave_up=report["gave_up"], history=(guard.history_steps, guard.history_loss, guard.history_lr))
    return out


def guard(  # noqa: PLR0917  (typer reads the options from the signature)
    task: Annotated[str, typer.Option("--task", help=f"Built-in task: {', '.join(TASKS)}.")] = "digits",
    inject: Annotated[str, typer.Option("--inject", help=f"Fault to inject: {', '.join(FAULTS)}.")] = "nan",
    at: Annotated[
        int | None, typer.Option("--at", help="Batch at which the fault hits (default: 40% of the run).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", "-n", help="Shorten the task's recipe to this many steps (50 to 100,000).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak LR (default: a good one for the task).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="SST-2 folder for the sst2 tasks.")] = None,
    audit: Annotated[
        Path | None, typer.Option("--audit", help="Write the guard's JSONL audit log to this file.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the guarded run here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    fail_on_outcomes: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help=f"Exit with status 1 when the guarded run ended so (comma-separated: {', '.join(OUTCOMES)}), or "
            "'any' end but finished: for CI. Without it every outcome exits 0; bad input exits 2.",
        ),
    ] = None,
) -> None:
    """Train a built-in task with an injected fault, without and with the guard, and show what the guard did."""
    from lrpilot import _validate as check

    with errors_as_messages(as_json):
        check.choice("guard", "--task", task, TASKS)
        check.choice("guard", "--inject", inject, FAULTS)
        failing = fail_on("guard", fail_on_outcomes, OUTCOMES, "finished")
        output_file("guard", "--audit", audit)
        plot = output_file("guard", "--plot", plot)
        # Unset options are None, not 0 or -1: a mistyped --at -5, --steps 0 or --lr 0 is refused
        # instead of silently meaning the default.
        check.step_count("guard", "--seed", seed, 0, 2**32 - 1)
        if steps is not None:
            check.step_count("guard", "--steps", steps, 50, 100_000)
        peak = PEAKS[task] if lr is None else check.positive("guard", "--lr", lr)
        from lrpilot.cli._find import _check_sst2
        from lrpilot.tasks import get_task

        if task.startswith("sst2"):  # named by this command's options, as fit and find do
            _check_sst2(data_dir)
        elif data_dir is not None:
            raise ValueError(f"guard: --data-dir applies to the sst2 tasks only, not to {task!r}")
        the_task = get_task(task, data_dir=data_dir)
        recipe = the_task.recipe if steps is None else the_task.recipe.shortened(steps)
        total = recipe.total_steps
        when = int(0.4 * total) if at is None else check.step_count("guard", "--at", at, 0, total - 1)
        common = {"fault": inject, "at": when, "lr": peak, "seed": seed}
        bare = _train(the_task, recipe, guarded=False, audit=None, **common)  # type: ignore[arg-type]
        guarded = _train(the_task, recipe, guarded=True, audit=audit, **common)  # type: ignore[arg-type]
        written = None
        if plot is not None:
            from lrpilot.report.guard_plots import plot_guard_run

            s, losses, lrs = guarded["history"]
            written = plot_guard_run(
                s, losses, lrs, guarded["records"], plot, title=f"{task}: {inject} at batch {when}"
            )
    guarded.pop("history")
    bare["outcome"], guarded["outcome"] = _outcome(bare), _outcome(guarded)
    if as_json:  # strict JSON: a diverged run's NaN loss is null (json.dumps would write NaN, which JSON lacks)
        from lrpilot.report._run import json_safe

        payload = {"task": task, "fault": inject, "at": when, "steps": total, "lr": peak, "seed": seed}
        payload |= {"audit": None if audit is None else str(audit), "plot": None if written is None else str(written)}
        print_json(json_safe({**payload, "no_guard": bare, "guard": guarded}))
        exit_on("guard", "the guarded run's outcome", guarded["outcome"], failing)
        return
    console.print(
        f"[bold]{task}[/]: {total} steps at peak LR {peak:g}, fault [bold]{inject}[/] at batch {when}, seed {seed}"
    )
    _print_runs(bare, guarded)
    if written:
        console.print(f"plot written to {written}")
    exit_on("guard", "the guarded run's outcome", guarded["outcome"], failing)


def _print_runs(bare: dict[str, Any], guarded: dict[str, Any]) -> None:
    """How each run ended, and every decision the guard took."""
    table = Table()
    for col in ("run", "val loss", "val accuracy", "batches", "outcome"):
        table.add_column(col, justify="left" if col in ("run", "outcome") else "right")
    for name, r in (("no guard", bare), ("lrpilot guard", guarded)):
        acc = "–" if r["val_accuracy"] is None else f"{100 * r['val_accuracy']:.1f}%"
        table.add_row(name, f"{r['val_loss']:.4g}", acc, str(r["batches"]), _SHOWN[r["outcome"]])
    console.print(table)
    if not guarded["records"]:
        console.print("the guard took no action")
    for r in guarded["records"]:
        lr_text = f"LR {r['lr_before']:.3g} → {r['lr_after']:.3g}" if r["lr_after"] != r["lr_before"] else ""
        console.print(
            f" step {r['step']:>5}  [bold]{r['action']:<8}[/] {escape(r['reason'])} {lr_text}", soft_wrap=True
        )
