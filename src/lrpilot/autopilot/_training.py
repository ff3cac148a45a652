"""fit's training phase: the recipe's AdamW under the guard, evaluations along the run, per-layer
update ratios, a clean stop on Ctrl-C, and the trained model saved."""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lrpilot.autopilot._checkpoint import (
    RunState,
    StopRequest,
    model_device,
    rng_state,
    set_rng_state,
    stop_at_step_boundary,
)
from lrpilot.autopilot._forgetting import Drift
from lrpilot.autopilot._hf import HfTask
from lrpilot.autopilot._layers import UpdateRatioTracker
from lrpilot.autopilot._outcome import above_uniform, one_answer, worse_at_end
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
    "vocabulary",
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
    metrics (of the weights saved; empty where they were not evaluated), the notes for the report,
    a classifier's largest share of one answer at its last evaluation
    (`lrpilot.tasks.Metrics.top_share`), and a causal LM's vocabulary (`vocabulary`)."""

    status: str
    total_steps: int
    history: Any
    guard: dict[str, Any]
    layers: UpdateRatioTracker
    final: dict[str, float]
    notes: list[str] = field(default_factory=list)
    top_share: float | None = None
    vocab: int | None = None
    state: RunState | None = None
    """Where an interrupted run stopped at a step boundary: the loop's state there, to resume it."""


@contextmanager
def _generators(model: nn.Module, state: RunState | None) -> Iterator[None]:
    """Inside the run's seeded block: a resumed run's generators as they were where it stopped."""
    if state is not None:
        set_rng_state(model, state.rng)
    yield


@dataclass
class _Boundary:
    """The loop's last step boundary: the batches drawn by then and torch's generators there (a
    step stopped part-way is resumed from its start, its batch and dropout draws again). One copy
    of the generators a step (~8 µs; a digits step takes ~1 ms)."""

    position: int
    device: torch.device
    """The model's (`model_device`), whose generator a GPU's dropout draws from."""
    rng: dict[str, torch.Tensor] | None = None
    """The generators where the step in progress began; None once it is done (nothing after a step
    draws from them before the next: the generators as a stop finds them are the boundary's,
    read by `kept` inside the seeded block)."""
    stepping: bool = False
    """Inside the guard's step, the update part-applied: no boundary to resume from."""

    def arrive(self, stop: StopRequest) -> None:
        """A step begins: keep the generators' state here, and stop here if the user asked to."""
        self.rng = rng_state(self.device)
        if stop.requested:
            raise KeyboardInterrupt

    def leave(self) -> None:
        """The step is done: one more batch drawn."""
        self.position, self.stepping, self.rng = self.position + 1, False, None

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Inside the run's seeded block: a stop between steps reads the generators there, before
        the block hands the caller's back."""
        try:
            yield
        except KeyboardInterrupt:
            if self.rng is None:
                self.rng = rng_state(self.device)
            raise


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
    task: Task,
    model: nn.Module,
    drift: Drift | None,
    step: int,
    *,
    last: bool,
    evals: dict[str, Any],
    precision: Precision,
) -> list[str]:
    """Evaluate (`run_metrics`, in the run's `precision`) and append it to the history: the quick
    examples' loss and accuracy, the drift, and the whole set's figures where it scored more than
    them (`final_eval`); the figures the run reports and the largest share of one answer are kept.

    A last evaluation whose loss is not finite in bf16 or fp16 is scored again in fp32 where the
    model's weights all are (a frozen half-precision base cannot be): a half-precision forward pass
    overflows on some inputs where the weights are sound (fp16's range ends at 65504), and the
    user is owed the saved weights' real figures. The notes (one at most) say so, or that the loss
    stayed NaN."""
    with precision.autocast():
        reported, quick, whole = run_metrics(task, model, drift, last=last)
    loss = reported["val_loss"]
    if not last or math.isfinite(loss):
        _record(evals, step, reported, quick, whole)
        return []
    if precision.amp is not None and all(p.dtype == torch.float32 for p in model.parameters()):
        reported, quick, whole = run_metrics(task, model, drift, last=last)
        _record(evals, step, reported, quick, whole)
        again = reported["val_loss"]
        if math.isfinite(again):
            return [
                f"the final evaluation's loss was {_shown(loss)} in {precision.name} (an overflow); scored again in "
                f"fp32: {again:.4g}"
            ]
    else:
        _record(evals, step, reported, quick, whole)
    return [
        f"the final evaluation's loss is {_shown(reported['val_loss'])}: the saved weights give non-finite outputs on "
        "the evaluation data; do not use them (try a lower LR, or --precision fp32)"
    ]


def _shown(loss: float) -> str:
    """A loss that is not finite as a person writes it (NaN, inf)."""
    return "NaN" if math.isnan(loss) else str(loss)


def _record(
    evals: dict[str, Any], step: int, reported: dict[str, float], quick: Metrics, whole: Metrics | None
) -> None:
    """Append an evaluation (`run_metrics`' figures) to the history `evals`."""
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
    quick: Precision | None = None,
    state: RunState | None = None,
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
    fp32 by default), the evaluations' too; fp16's loss scale is the guard's to unscale and update.
    `quick`: the evaluations' before the last one, where it differs (fit's bf16 range test's on a
    large fp32 model: those evaluations only draw the report's curve, and bf16 scored MiniLM's in
    0.6 of fp32's time; the last one, whose figures are reported, is in `precision`).

    The first Ctrl-C stops the run at the end of its step (`stop_at_step_boundary`), and the loop's
    state there comes back in `Trained.state`; `state` given, the run goes on from such a state
    (`lrpilot.autopilot._checkpoint`)."""
    from lrpilot.integrations.torch_guard import GuardGaveUpError

    total = recipe.total_steps
    checkpoints = _checkpoints(total, eval_at)
    tracker = UpdateRatioTracker(model, every=max(1, total // LAYER_SNAPSHOTS))
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    status, notes = "finished", []
    kept: RunState | None = None
    start, skip = (resumed.start_step, resumed.ramp_steps) if resumed is not None else (0, 0)
    optimizer = make_optimizer(model, recipe, float(schedule(0)))
    mixed = precision or Precision()
    scaler = mixed.scaler()
    guard = _new_guard(
        task,
        model,
        optimizer,
        schedule,
        recipe,
        seed=seed,
        run_dir=run_dir,
        start=start,
        read_every=read_every,
        scaler=scaler,
    )
    if state is not None:
        _go_on_from(state, model, optimizer, scaler, guard, tracker, evals)
    mark = _Boundary(skip if state is None else state.position, model_device(model))
    batches = itertools.islice(task.batches(seed), mark.position, None)
    started, evaluating = time.perf_counter(), clock.timings.get("evaluate", 0.0)
    try:
        # dropout draws as `lrpilot.tasks.train` makes them (from the resumed state's generators)
        with seeded(seed), _generators(model, state), stop_at_step_boundary() as stop, mark.kept():
            while not _finished(guard, total):
                mark.arrive(stop)
                t = guard.step_count
                with mixed.autocast():
                    loss = task.loss(model, next(batches))
                (loss if scaler is None else scaler.scale(loss)).backward()
                tracker.before(t)
                mark.stepping = True
                action = guard.step(loss)
                _forget_undone(evals, guard.step_count, tracker)
                mark.leave()
                tracker.after(action.applies_update if action is not None else guard.step_count == t + 1)
                _show(guard, t, total, progress, callback)
                done = guard.step_count
                if done > t and (done in checkpoints or done == total):
                    notes += _evaluate_read(
                        task,
                        model,
                        drift,
                        guard,
                        done,
                        total,
                        evals,
                        clock,
                        progress,
                        mixed if done == total else quick or mixed,
                    )
    except KeyboardInterrupt:
        status, note, resumable = _interrupted(guard, total, mark)
        notes.append(note)
        kept = _run_state(guard, optimizer, scaler, model, tracker, evals, mark) if resumable else None
    except GuardGaveUpError as exc:
        status = "gave_up"
        notes.append(_gave_up(exc, guard.step_count))
    finally:
        report = _closed(guard, clock, started, evaluating)
    if status != "finished":
        _forget_undone(evals, guard.step_count, tracker)  # a give-up (or a stop's settle) went back to a snapshot
        notes[-1] += "; " + _score_stopped(
            task, model, drift, evals, guard.step_count, total, clock, progress, precision=mixed
        )
    return Trained(
        status,
        total,
        _history(guard, evals),
        report,
        tracker,
        evals.get("reported", {}),
        notes,
        evals.get("top_share"),
        vocabulary(task, model),
        kept,
    )


def _evaluate_read(  # noqa: PLR0917  (the run's state, passed through from `train_guarded`)
    task: Task,
    model: nn.Module,
    drift: Drift | None,
    guard: Any,
    done: int,
    total: int,
    evals: dict[str, Any],
    clock: Clock,
    progress: Progress,
    precision: Precision,
) -> list[str]:
    """A checkpoint's evaluation (`_evaluate`, its notes returned) once every verdict on its way is
    read; none where one of them rolled the run back (it comes when the run gets there again)."""
    guard.flush()
    _forget_undone(evals, guard.step_count)
    if guard.step_count != done:
        return []
    with clock.phase("evaluate"):
        progress("evaluate", done, total, math.nan, math.nan)
        return _evaluate(task, model, drift, done, last=done == total, evals=evals, precision=precision)


def _gave_up(exc: Exception, step: int) -> str:
    """The note of a guard that gave up, led by the step it gave up at: its reason says that one and
    the step restored (`step`, where the guard is now), a reason without it gets the restored one."""
    reason = str(exc).rstrip(".")
    reason = reason if reason.startswith("gave up at step") else f"gave up at step {step}: {reason}"
    return f"the guard {_restored(reason)}"


def _restored(reason: str) -> str:
    """A give-up's reason for the notes, saying once that the last good state is what was saved: the
    guard's own reason says it restored that state (its step), and the note had added "; its last
    good state was saved" after it."""
    return reason if "last good state" in reason else f"{reason}; its last good state was saved"


def _forget_undone(evals: dict[str, Any], step: int, tracker: UpdateRatioTracker | None = None) -> None:
    """Drop the evaluations after `step`, the step the run is at, and the update ratios measured at
    or after it: a rollback (or a give-up) undid the weights they were measured on. The curves then
    hold one point per step, of the weights the run went on with: a guard that rolled back over step
    10's evaluation eight times and gave up had kept all eight (``eval_steps`` 10, 10, …, 10, then
    the restored state's), each of a pass it abandoned, which the curve drew and `after_run` read as
    the run's course; the layers' figure drew each pass's ratios over the last's."""
    done = evals["eval_steps"]
    kept = len(done)
    while kept and done[kept - 1] > step:  # from the end: a step without a rollback drops nothing, at once
        kept -= 1
    del done[kept:], evals["eval_loss"][kept:]
    for values in evals["metrics"].values():
        del values[kept:]
    if tracker is not None:
        while tracker.steps and tracker.steps[-1] >= step:
            tracker.steps.pop()
            tracker.ratios.pop()


def _closed(guard: Any, clock: Clock, started: float, evaluating: float) -> dict[str, Any]:
    """The guard's report, the guard closed, and the training time added to the clock's (the
    evaluations are timed on their own, so "train" is the steps alone; a resumed run's adds up)."""
    steps = time.perf_counter() - started - (clock.timings.get("evaluate", 0.0) - evaluating)
    clock.timings["train"] = clock.timings.get("train", 0.0) + steps
    report: dict[str, Any] = guard.report()
    guard.close()
    return report


def _show(guard: Any, t: int, total: int, progress: Progress, callback: StepCallback | None) -> None:
    """The step's progress and the user's `callback`, with the latest loss the guard has read."""
    lr, value = _latest(guard)
    progress("train", guard.step_count, total, lr, value)
    if callback is not None:
        callback(t, lr, value)


def _interrupted(guard: Any, total: int, mark: _Boundary) -> tuple[str, str, bool]:
    """Ctrl-C's status and note, once the guard has made the weights safe to save (`TorchGuard.settle`:
    the verdicts on their way read, a non-finite step's update undone): ``interrupted``, or
    ``gave_up`` where a verdict read now gave up; and whether the run can be resumed (stopped at a
    step boundary, its weights those of that boundary)."""
    from lrpilot.integrations.torch_guard import GuardGaveUpError

    stopped = guard.step_count
    try:
        restored = guard.settle()
    except GuardGaveUpError as exc:
        return (
            "gave_up",
            f"interrupted by the user at step {stopped}, and the guard then gave up: {_restored(str(exc).rstrip('.'))}",
            False,
        )
    if restored is not None:
        return (
            "interrupted",
            f"interrupted by the user at step {stopped} of {total}, with a non-finite update in the weights; the "
            f"guard's last good snapshot (step {restored}) was saved (a run restored so cannot be resumed)",
            False,
        )
    if mark.stepping:
        return (
            "interrupted",
            f"interrupted by the user at step {stopped} of {total}, inside the step's update; the weights so far were "
            "saved, but the run cannot be resumed",
            False,
        )
    return (
        "interrupted",
        f"interrupted by the user at step {stopped} of {total}; the weights so far were saved (lrpilot fit --resume "
        "RUN_DIR goes on from there)",
        True,
    )


def _trained_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters an optimizer step changes and the model's state-dict buffers (not the
    non-persistent ones, constants such as a BERT's position ids), by name, copied to the host."""
    kept = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items() if name in kept}


def _run_state(  # noqa: PLR0917  (the loop's pieces, passed through from `train_guarded`)
    guard: Any,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    model: nn.Module,
    tracker: UpdateRatioTracker,
    evals: dict[str, Any],
    mark: _Boundary,
) -> RunState:
    """The loop's state at the step boundary `mark` (`RunState`), its tensors copied to the host."""
    return RunState(
        step=guard.step_count,
        position=mark.position,
        weights=_trained_weights(model),
        optimizer=_to_host(optimizer.state_dict()),
        scaler=None if scaler is None else scaler.state_dict(),
        guard=guard.state_dict(snapshots=True),
        guard_history=(list(guard.history_steps), list(guard.history_loss), list(guard.history_lr)),
        guard_records=list(guard.audit.records),
        rng=cast(dict[str, torch.Tensor], mark.rng),
        evals=copy.deepcopy(evals),
        layer_steps=list(tracker.steps),
        layer_ratios=[list(r) for r in tracker.ratios],
    )


def _to_host(value: Any) -> Any:
    """`value` (a state dict: nested dicts and lists) with every tensor copied to the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_host(v) for v in value)
    return value


def _go_on_from(  # noqa: PLR0917  (the loop's pieces, passed through from `train_guarded`)
    state: RunState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    guard: Any,
    tracker: UpdateRatioTracker,
    evals: dict[str, Any],
) -> None:
    """Put `state` back into the loop's pieces: the weights and the optimizer first, then the guard
    (whose only snapshot becomes this state), its logs, the layer ratios and the evaluations."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    foreign = model.load_state_dict({k: v.to(device) for k, v in state.weights.items()}, strict=False).unexpected_keys
    if foreign:
        raise ValueError(f"fit: --resume: the checkpoint's weights {foreign[:3]} are not this model's")
    optimizer.load_state_dict(state.optimizer)
    if scaler is not None and state.scaler is not None:
        scaler.load_state_dict(state.scaler)
    guard.load_state_dict(state.guard)
    steps, losses, lrs = state.guard_history
    guard.history_steps[:0], guard.history_loss[:0], guard.history_lr[:0] = steps, losses, lrs
    guard.audit.records[:0] = state.guard_records
    tracker.steps, tracker.ratios = list(state.layer_steps), [list(r) for r in state.layer_ratios]
    evals.update(copy.deepcopy(state.evals))


def _new_guard(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    recipe: Recipe,
    *,
    seed: int,
    run_dir: Path,
    start: int,
    read_every: int | None,
    scaler: Any,
) -> Any:
    """The run's `TorchGuard`, made under the run's seed: its first snapshot holds the seeded
    generator the loop starts from, so a rollback to it restores that, not the caller's (which
    torch seeds at random per process: a fit rolled back to its first snapshot ended 0.411-0.445
    from one process to the next)."""
    from lrpilot.integrations.torch_guard import TorchGuard

    with seeded(seed):
        return TorchGuard(
            model,
            optimizer,
            config=_guard_config(task, recipe.total_steps),
            schedule=schedule,
            max_grad_norm=recipe.grad_clip,
            audit=run_dir / AUDIT_FILE,
            step=start,
            read_every=read_every,
            scaler=scaler,
        )


def _checkpoints(total: int, eval_at: Collection[int]) -> set[int]:
    """The steps after which a run of `total` steps evaluates before its end: every quarter
    (`EVALS`), or the steps in `eval_at`."""
    every = max(1, math.ceil(total / EVALS))
    return set(eval_at) if eval_at else set(range(every, total, every))


def _score_stopped(  # noqa: PLR0917  (the run's state, passed through from `train_guarded`)
    task: Task,
    model: nn.Module,
    drift: Drift | None,
    evals: dict[str, Any],
    step: int,
    total: int,
    clock: Clock,
    progress: Progress,
    *,
    precision: Precision,
) -> str:
    """Evaluate the weights a stopped run saves (interrupted, or restored by a guard that gave up)
    as a finished run's last evaluation does, and say so for the notes: the earlier evaluations
    were of other weights, and a user who stopped a run needs to know how good the saved ones are.
    A second Ctrl-C during it stops it, leaving no final metrics (nor any partial entry in the
    curve), which the note says."""
    marks = _marks(evals)
    try:
        with clock.phase("evaluate"):
            progress("evaluate", step, total, math.nan, math.nan)
            found = _evaluate(task, model, drift, step, last=True, evals=evals, precision=precision)
        if evals["eval_steps"][-2:] == [step, step]:  # stopped just after a checkpoint's: this one replaces it
            _drop_before(evals, marks)
    except KeyboardInterrupt:
        _rewind(evals, marks)
        for name in ("reported", "top_share", "final"):
            evals.pop(name, None)
        return "a second Ctrl-C stopped their evaluation, so no final metrics were recorded"
    scored = f"the metrics are of the saved weights at step {step}, scored as a finished run's are"
    return f"{scored} ({found[0]})" if found else scored


def _marks(evals: dict[str, Any]) -> dict[str, int]:
    """How long each of the evaluations' lists is now (`_rewind` cuts them back to it)."""
    return {"eval_steps": len(evals["eval_steps"]), "eval_loss": len(evals["eval_loss"])} | {
        f"metrics.{name}": len(values) for name, values in evals["metrics"].items()
    }


def _rewind(evals: dict[str, Any], marks: dict[str, int]) -> None:
    """Cut the evaluations' lists back to `marks` (a list begun since is dropped)."""
    for name, values in [("eval_steps", evals["eval_steps"]), ("eval_loss", evals["eval_loss"])]:
        del values[marks[name] :]
    for name in list(evals["metrics"]):
        del evals["metrics"][name][marks.get(f"metrics.{name}", 0) :]
        if not evals["metrics"][name]:
            del evals["metrics"][name]


def _drop_before(evals: dict[str, Any], marks: dict[str, int]) -> None:
    """Drop the entry each list held last at `marks` (an evaluation that a later one of the same
    weights replaces), where it has grown since."""
    for name, values in [("eval_steps", evals["eval_steps"]), ("eval_loss", evals["eval_loss"])]:
        del values[marks[name] - 1]
    for name, values in evals["metrics"].items():
        kept = marks.get(f"metrics.{name}", 0)
        if 0 < kept < len(values):
            del values[kept - 1]


def vocabulary(task: Task, model: nn.Module) -> int | None:
    """A causal LM's vocabulary, the outputs its loss is a cross-entropy over (its output layer's
    rows, which may be more than the tokenizer's), for `above_uniform`; None for any other task."""
    if not isinstance(task, HfTask) or task.kind != "causal-lm":
        return None
    get = getattr(model, "get_output_embeddings", None)
    weight = getattr(get() if callable(get) else None, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return size if isinstance(size, int) else None


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


def after_run(trained: Trained, epochs: float | None = None) -> list[str]:
    """What the evaluations say about the run as a whole, once the weights saved are scored: a model
    that answers one class whatever the input (`one_answer`), one clearly better at an earlier
    evaluation than at the end (`worse_at_end`; `epochs`: how many times the run went over its
    data, where known), a causal LM that predicts worse than a uniform guess (`above_uniform`).
    Nothing where the saved weights were not evaluated (a second Ctrl-C). A run the guard gave up
    on is not judged worse at its end: its weights are the last good state it went back to, before
    evaluations made on the way it abandoned, and advice to shorten the run would mislead."""
    if not trained.final:
        return []
    history = trained.history
    examples = history.eval_examples or QUICK_EVAL
    accuracy = history.eval_metrics.get("accuracy")
    worse = worse_at_end(history.eval_steps, history.eval_loss, accuracy, examples=examples, epochs=epochs)
    notes = [
        one_answer(trained.top_share, trained.final.get("val_accuracy")),
        None if trained.status == "gave_up" else worse,
        above_uniform(trained.final.get("val_loss"), trained.vocab),
    ]
    return [note for note in notes if note]


def save_model(task: Task, model: nn.Module, run_dir: Path) -> Path:
    """``save_pretrained`` for a Hugging Face model (or its adapter); a state dict for a built-in task."""
    if isinstance(task, HfTask):
        return task.save(model, run_dir)
    path = run_dir / MODEL_FILE
    torch.save({name: value.cpu() for name, value in model.state_dict().items()}, path)  # loads without a GPU
    return path
