"""fit's training phase: the recipe's AdamW under the guard, evaluations along the run, per-layer
update ratios, a clean stop on Ctrl-C, and the trained model saved."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpilot.autopilot._forgetting import Drift
from lrpilot.autopilot._hf import HfTask
from lrpilot.autopilot._layers import UpdateRatioTracker
from lrpilot.autopilot._outcome import accuracy_drop, one_answer
from lrpilot.autopilot._progress import Clock, Progress, StepCallback
from lrpilot.autopilot._resume import Resumed
from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig
from lrpilot.schedules import Schedule
from lrpilot.tasks import Metrics, Recipe, Task, make_optimizer
from lrpilot.tasks._base import seeded
from lrpilot.tasks._device import Precision

__all__ = [
    "AUDIT_FILE",
    "EVALS",
    "LAYER_SNAPSHOTS",
    "MODEL_FILE",
    "QUICK_EVAL",
    "Trained",
    "after_run",
    "run_metrics",
    "save_model",
    "train_guarded",
]

MODEL_FILE = "model.pt"
"""A built-in task's trained weights (``torch.save`` of the state dict) in the run directory."""
AUDIT_FILE = "guard_audit.jsonl"
"""The guard's audit log in the run directory: one JSON line per action (empty for a quiet run)."""
EVALS = 4
"""Evaluations over a run (the last at its end): enough to see over- or under-fitting set in."""
QUICK_EVAL = 128
"""Validation examples the evaluations before the last one score (spread over the set; the last
scores all): on SST-2's 872 sentences a full evaluation costs a tenth of a 150-step run, so three
of them would cost a third."""
LAYER_SNAPSHOTS = 50
"""Per-layer update ratios are measured at about this many steps of a run."""


@dataclass
class Trained:
    """What the training phase hands back: how it ended (``finished``, ``interrupted``, ``gave_up``),
    the history the report draws, the guard's report, the per-layer update ratios, the final
    metrics, the notes for the report, and a classifier's largest share of one answer at its last
    evaluation (`lrpilot.tasks.Metrics.top_share`)."""

    status: str
    total_steps: int
    history: Any
    guard: dict[str, Any]
    layers: UpdateRatioTracker
    final: dict[str, float]
    notes: list[str] = field(default_factory=list)
    top_share: float | None = None


def run_metrics(
    task: Task, model: nn.Module, drift: Drift | None, *, last: bool
) -> tuple[dict[str, float], Metrics, Metrics | None]:
    """An evaluation: the figures the run reports (``val_loss``, ``val_accuracy`` where the task
    has it, ``drift`` with a retention set; the `last` one's on the whole validation set) and the
    metrics of the `QUICK_EVAL` examples every evaluation of the run scores, so that its curve
    compares like with like. The last one reads them off its pass over the whole set
    (`Task.metrics_and_subset`; None where the quick examples are the whole set, or its size is
    not said); the ones before score only them."""
    whole: Metrics | None = None
    if not last:
        quick = task.metrics(model, QUICK_EVAL)
    else:
        everything, quick = task.metrics_and_subset(model, QUICK_EVAL)
        if (quick.examples or 0) < (everything.examples or 0):
            whole = everything
        else:
            quick = everything
    reported = quick if whole is None else whole
    out = {"val_loss": reported.loss}
    if reported.accuracy is not None:
        out["val_accuracy"] = reported.accuracy
    if drift is not None:
        out["drift"] = drift(model)
    return out, quick, whole


def _evaluate(
    task: Task, model: nn.Module, drift: Drift | None, step: int, *, last: bool, evals: dict[str, Any]
) -> None:
    """Evaluate (`run_metrics`) and append it to the history: the quick examples' loss and
    accuracy, the drift, and the whole set's figures where it scored more than them
    (`final_eval`); the figures the run reports and the largest share of one answer are kept."""
    reported, quick, whole = run_metrics(task, model, drift, last=last)
    evals["reported"], evals["top_share"] = reported, (quick if whole is None else whole).top_share
    evals["eval_steps"].append(step)
    evals["eval_loss"].append(quick.loss)
    for name, value in {"accuracy": quick.accuracy, "drift": reported.get("drift")}.items():
        if value is not None:
            evals["metrics"].setdefault(name, []).append(value)
    evals["examples"] = quick.examples
    evals["final"] = {} if whole is None else {**reported, "examples": whole.examples}


def train_guarded(
    task: Task,
    model: nn.Module,
    recipe: Recipe,
    schedule: Schedule,
    *,
    seed: int,
    run_dir: Path,
    progress: Progress,
    callback: StepCallback | None,
    clock: Clock,
    drift: Drift | None = None,
    eval_at: Collection[int] = (),
    resumed: Resumed | None = None,
    read_every: int | None = None,
    precision: Precision | None = None,
) -> Trained:
    """The recipe's AdamW under `TorchGuard` (which sets the LR, clips, skips or rolls back; its
    configuration `_guard_config`), with evaluations every quarter (or after the steps in
    `eval_at`; always at the end) and per-layer update ratios; Ctrl-C or a guard that gives up ends
    the loop with the weights as they are (any other exception propagates, the guard closed).
    Evaluations before the end score `QUICK_EVAL` examples, the last one all. `resumed`: the model
    holds the range test's ramp weights; the run goes on from its start step, on the batches after
    the ramp's, with a fresh optimizer (`lrpilot.autopilot._resume`).

    The run trains on the model's device. On a GPU the guard reads its verdicts every `read_every`
    steps (`TorchGuard`'s default there: its snapshot interval's largest divisor up to 16), not
    every step, so that the host never waits for the device: the progress and `callback` then show
    the latest loss the guard has read, and every verdict on its way is read before an evaluation
    and at the end (a rollback among them trains on from its snapshot; that evaluation comes when
    the run gets there again). `precision`: the forward passes' (`lrpilot.tasks._device.Precision`;
    fp32 by default), the evaluations' too; fp16's loss scale is the guard's to unscale and update."""
    from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard

    total = recipe.total_steps
    every = max(1, math.ceil(total / EVALS))
    checkpoints = set(eval_at) if eval_at else set(range(every, total, every))
    tracker = UpdateRatioTracker(model, every=max(1, total // LAYER_SNAPSHOTS))
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    status, notes = "finished", []
    start, skip = (resumed.start_step, resumed.ramp_steps) if resumed is not None else (0, 0)
    optimizer = make_optimizer(model, recipe, float(schedule(0)))
    mixed = precision or Precision()
    scaler = mixed.scaler()
    # the guard's first snapshot holds the seeded generator the loop starts from, so a rollback to it
    # restores that, not the caller's (which torch seeds at random per process: a fit rolled back to
    # its first snapshot ended 0.411-0.445 from one process to the next)
    with seeded(seed):
        guard = TorchGuard(
            model,
            optimizer,
            config=_guard_config(task, total),
            schedule=schedule,
            max_grad_norm=recipe.grad_clip,
            audit=run_dir / AUDIT_FILE,
            step=start,
            read_every=read_every,
            scaler=scaler,
        )
    batches = itertools.islice(task.batches(seed), skip, None)
    started, evaluating = time.perf_counter(), clock.timings.get("evaluate", 0.0)
    try:
        with seeded(seed):  # dropout draws as `lrpilot.tasks.train` makes them
            while not _finished(guard, total):
                t = guard.step_count
                with mixed.autocast():
                    loss = task.loss(model, next(batches))
                (loss if scaler is None else scaler.scale(loss)).backward()
                tracker.before(t)
                action = guard.step(loss)
                tracker.after(action.applies_update if action is not None else guard.step_count == t + 1)
                lr, value = _latest(guard)
                progress("train", guard.step_count, total, lr, value)
                if callback is not None:
                    callback(t, lr, value)
                done = guard.step_count
                if done > t and (done in checkpoints or done == total):
                    guard.flush()
                    if guard.step_count != done:  # a verdict read now rolled the run back
                        continue
                    with clock.phase("evaluate"), mixed.autocast():
                        progress("evaluate", done, total, math.nan, math.nan)
                        _evaluate(task, model, drift, done, last=done == total, evals=evals)
    except KeyboardInterrupt:
        status = "interrupted"
        notes.append(f"interrupted by the user at step {guard.step_count} of {total}; the weights so far were saved")
    except GuardGaveUpError as exc:
        status = "gave_up"
        notes.append(f"the guard gave up at step {guard.step_count}: {exc}; its last good state was saved")
    finally:
        # the evaluations are timed on their own, so "train" is the steps alone
        clock.timings["train"] = time.perf_counter() - started - (clock.timings.get("evaluate", 0.0) - evaluating)
        report = guard.report()
        guard.close()
    return Trained(
        status, total, _history(guard, evals), report, tracker, evals.get("reported", {}), notes, evals.get("top_share")
    )


def _history(guard: Any, evals: dict[str, Any]) -> Any:
    """The run's `lrpilot.report.TrainingHistory`: the guard's log of every step it judged, and the evaluations."""
    from lrpilot.report import TrainingHistory

    return TrainingHistory(
        steps=list(guard.history_steps),
        loss=list(guard.history_loss),
        lr=list(guard.history_lr),
        eval_steps=evals["eval_steps"],
        eval_loss=evals["eval_loss"],
        eval_metrics=evals["metrics"],
        eval_examples=evals.get("examples"),
        final_eval=evals.get("final", {}),
    )


def _finished(guard: Any, total: int) -> bool:
    """Whether the run has its `total` steps with every verdict on them read (`TorchGuard.flush`:
    one still on its way may roll the run back)."""
    if guard.step_count < total:
        return False
    guard.flush()
    return bool(guard.step_count >= total)


def _latest(guard: Any) -> tuple[float, float]:
    """The LR and loss of the latest step the guard has judged (NaN before its first read)."""
    if not guard.history_loss:
        return math.nan, math.nan
    return float(guard.history_lr[-1]), float(guard.history_loss[-1])


def _guard_config(task: Task, total: int) -> GuardConfig:
    """The guard's configuration for a run of `total` steps: snapshots, re-warmups and the
    detectors' warm-up sized to it, their short median to the recipe's batch (`GuardConfig.for_run`),
    and the task's chance level where it is known (`Task.chance_loss`), so that a loss back at chance
    after the model had learned is a collapse to roll back (`lrpilot.detect.DetectConfig.learned_rel`)."""
    detect = DetectConfig(chance_loss=task.chance_loss)
    return GuardConfig.for_run(total, batch_size=task.recipe.batch_size, detect=detect)


def after_run(trained: Trained) -> list[str]:
    """What the evaluations say about the run as a whole: a model that answers one class whatever
    the input (`one_answer`), one that was clearly better earlier (`accuracy_drop`)."""
    accuracy = trained.history.eval_metrics.get("accuracy")
    notes = [note for note in (one_answer(trained.top_share, trained.final.get("val_accuracy")),) if note]
    if trained.status == "finished" and accuracy:
        drop = accuracy_drop(trained.history.eval_steps, accuracy, trained.history.eval_examples or QUICK_EVAL)
        notes += [] if drop is None else [drop]
    return notes


def save_model(task: Task, model: nn.Module, run_dir: Path) -> Path:
    """``save_pretrained`` for a Hugging Face model (or its adapter); a state dict for a built-in task."""
    if isinstance(task, HfTask):
        return task.save(model, run_dir)
    path = run_dir / MODEL_FILE
    torch.save({name: value.cpu() for name, value in model.state_dict().items()}, path)  # loads without a GPU
    return path
