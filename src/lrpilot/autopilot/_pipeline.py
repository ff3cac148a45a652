"""`fit`: recommend → range test → pick the peak → fit the schedule to the budget → train under the
guard (from the range test's ramp, which stands for the warmup) → evaluate → save → report.

Each piece is lrpilot's own, composed rather than re-implemented: `lrpilot.recommend` gives the
prior and the schedule shape for a user's model, `find_lr` measures the peak on the model itself,
`Recommendation.check` says whether the two agree, a task's `Recipe` (or the recommendation's
shape) fitted to the budget gives the schedule, `TorchGuard` runs every step, and
`lrpilot.report.write_report` explains the run. What the pipeline adds is the order, the checks
before anything is written, the run directory, and a clean stop on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lrpilot import _validate as check
from lrpilot.autopilot._budget import OVERRUN, Budget, parse_budget, steps_for_time
from lrpilot.autopilot._forgetting import PROBE_SHARE, Drift, load_drift, tradeoff
from lrpilot.autopilot._hf import HfTask, load_hf_task, read_rows, recipe_from
from lrpilot.autopilot._layers import UpdateRatioTracker
from lrpilot.autopilot._outcome import accuracy_drop
from lrpilot.autopilot._resume import RampStates, Resumed
from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig
from lrpilot.rules import CALIBRATED_STEPS, Recommendation, at_horizon, recommend, stretched_to_epoch
from lrpilot.schedules import Schedule
from lrpilot.tasks import Recipe, Task, get_task, make_optimizer, task_names
from lrpilot.tasks._base import seeded

__all__ = ["AUDIT_FILE", "MODEL_FILE", "FitResult", "Progress", "fit"]

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
RAMP_DENSITY = 12.5
"""Range-test steps per decade of LR: `find_lr`'s default (100 steps from 1e-7 to 10), the ramp
rate its rule is calibrated at (a faster ramp moves the loss minimum to higher LRs)."""
RAMP_BELOW_PEAK = 10.0
"""The ramp starts at the rules' band's low end (`Recommendation.low`), and at least this far below
their peak where the band is narrower (pretraining a char-GPT: 3× either side), so that its first
steps leave the loss flat (the rule's baseline). Steps below the band buy nothing: replayed on the
stored range tests (``benchmarks/range_test_budget.py --starts``), cutting each curve from a decade
under the band to its low end moved no SST-2 or digits answer by more than 0.013 decades and saved
12.5 steps a test, a twelfth of a 150-step run."""
FLAT_START = 1.0
"""Decades of LR a range test needs between its start and its loss minimum. Closer, the loss is
already falling at the start, the test reads less of a fall than the model has to take, and the
answer comes out high (a digits MLP reparametrised 100× stiffer, its minimum 0.7 decades in: 1.8×
its best peak). The stored tests of the built-in tasks at their recipes' batch have their minima
1.3–2.4 decades above where fit's ramp starts (``benchmarks/range_test_budget.py --starts``)."""
START_RISE = 4.0
"""Noise levels by which a range test's loss may rise over its first five steps before its ramp
counts as having started too high: at the start the LR barely moves the model, so the losses there
differ by batch noise alone (at most 3.2 noise levels on the 139 stored tests); a start above the
usable LRs throws the model out at once (a digits MLP reparametrised 1000× stiffer: 5.2, and then a
spurious minimum lower down the ramp, after the chaos)."""
RETRY_BELOW = 100.0
"""A test that started too high (`FLAT_START`, `START_RISE`) is run again from this far lower, once
(25 steps more at `RAMP_DENSITY`): it then measures best LRs down to ~1/30 of the band's low end,
where a retry a decade lower would only have reached ~1/3."""
RAMP_END = 10.0
FINETUNE_WARMUP = 0.1
"""The rules' fine-tuning warmup (10 % of the run, ``warmup-finetuning``), which a user model's recipe follows."""
LAYER_SNAPSHOTS = 50
"""Per-layer update ratios are measured at about this many steps of a run."""

Progress = Callable[[str, int, "int | None", float, float], None]
"""``progress(phase, done, total, lr, loss)`` as a phase advances (``load``, ``range test``,
``train``, ``evaluate``, ``save``, ``report``); ``total`` None for phases without a count, lr and loss NaN where
they do not apply."""
StepCallback = Callable[[int, float, float], None]
"""``callback(step, lr, loss)`` after every training step; raising KeyboardInterrupt stops the run
as Ctrl-C does."""


@dataclass(frozen=True)
class FitResult:
    """What `fit` did.

    Attributes:
        status: ``finished``, ``interrupted`` (Ctrl-C: the weights so far are saved) or ``gave_up``
            (the guard stopped the run and restored its last good state, which is saved).
        run_dir: the new directory holding everything below.
        model_path: ``model.pt`` (a built-in task's state dict), or the ``save_pretrained`` folder
            (``model/`` or, for LoRA, ``adapter/``).
        report_path: the report's ``index.html``, or None with ``report=False``.
        peak_lr: the peak LR trained with.
        schedule: the schedule trained with (as planned; the guard's changes are in the record).
        metrics: final validation metrics (``val_loss``, ``val_accuracy`` where it applies).
        record: everything the report shows (`lrpilot.report.RunRecord`).
        recommendation, finder: the prior and the range test (None if the range test failed).
        model: the trained model itself, in memory (as saved).
    """

    status: str
    run_dir: Path
    model_path: Path
    report_path: Path | None
    peak_lr: float
    schedule: Schedule
    metrics: dict[str, float]
    record: Any
    recommendation: Recommendation
    finder: Any = None
    model: nn.Module | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: paths as strings, the schedule as a spec, the whole run record."""
        return {
            "status": self.status,
            "run_dir": str(self.run_dir),
            "model_path": str(self.model_path),
            "report_path": None if self.report_path is None else str(self.report_path),
            "peak_lr": self.peak_lr,
            "schedule": self.schedule.to_string(),
            "metrics": dict(self.metrics),
            "record": self.record.to_dict(),
        }


# --- what to train ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A task to train plus what the rules need to know about it."""

    task: Task
    label: str
    method: str
    """`recommend`'s method: pretraining from scratch, full fine-tuning or LoRA."""
    steps: int
    """The default budget in steps."""
    seq_len: int | None = None
    calibrated: tuple[int, int] = CALIBRATED_STEPS
    """The run lengths the range test's rule is calibrated at for this task (`horizon_factor`): a
    built-in task's own recipe; for a user's model the calibration suite's range, stretched to one
    epoch of the data."""


def _builtin(name: str, data_dir: Path | None) -> _Target:
    from lrpilot.tasks._shakespeare import ShakespeareTask
    from lrpilot.tasks._sst2 import Sst2Task

    check.choice("fit", "--task", name, task_names())
    if data_dir is not None and not name.startswith("sst2"):
        raise ValueError(f"fit: --data-dir applies to the sst2 tasks only, not to {name!r}")
    task = get_task(name, data_dir=data_dir) if data_dir is not None else get_task(name)
    method = ("lora" if task.lora else "full") if isinstance(task, Sst2Task) else "pretraining"
    seq_len = task.context if isinstance(task, ShakespeareTask) else None
    steps = task.recipe.total_steps
    return _Target(task, name, method, steps, seq_len, calibrated=(steps, steps))


def _user_model(
    model: Path, data: Path | None, eval_data: Path | None, *, kind: str, method: str, batch_size: int
) -> _Target:
    if data is None:
        raise ValueError("fit: --model needs --data FILE (.csv or .jsonl with a text column)")
    task = load_hf_task(model, data, eval_data, kind=kind, method=method, batch_size=batch_size)
    return _Target(task, task.name, method, task.default_steps, calibrated=stretched_to_epoch(task.epoch_steps))


# --- small helpers ------------------------------------------------------------------------------


class _Clock:
    """Seconds per phase, and since the start."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _quiet(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
    """The default progress: none."""


def _run_dir(out: Path | None, label: str) -> Path:
    """`out`, which must not be a file or a non-empty directory (nothing of the user's is ever
    overwritten), else a new ``runs/fit-<label>-<timestamp>``."""
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            what = "a file" if not out.is_dir() else "a directory that is not empty"
            raise ValueError(f"fit: --out {out} is {what}; give a new or empty directory (nothing is overwritten)")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    base = Path("runs") / f"fit-{safe}-{stamp}"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _describe(plan: Budget | None) -> str:
    return "the default" if plan is None else str(plan)


def _fitted(recipe: Recipe, steps: int, budget: str) -> Recipe:
    """The recipe compressed (or stretched) to `steps`, warmup in proportion. Every schedule fit
    trains with has a warmup (Adam's first updates are its largest relative to the weights): a
    budget whose warmup rounds to nothing is refused, with the smallest one that has a step of it."""
    fitted = recipe.shortened(steps)
    if fitted.warmup_steps < 1:
        ratio = recipe.warmup_steps / recipe.total_steps if recipe.warmup_steps else FINETUNE_WARMUP
        smallest = next(n for n in itertools.count(1) if round(ratio * n) >= 1)  # as `Recipe.shortened` rounds
        raise ValueError(
            f"fit: the budget ({budget}, {steps} steps) is too small for a warmup: the schedule warms up over "
            f"{ratio:.0%} of the run, which needs at least {smallest} steps"
        )
    return fitted


# --- the phases ---------------------------------------------------------------------------------


@dataclass
class _Search:
    """The outcome of the range test and the choice of the peak."""

    peak: float
    finder: Any
    notes: list[str]
    step_seconds: float | None
    tradeoff: dict[str, Any] | None = None
    """The forgetting trade-off's probes (`lrpilot.report.RunRecord.tradeoff`), when one was made."""
    ramp: RampStates | None = None
    """Snapshots along the ramp, to start the run from (None if the range test failed)."""
    horizon: dict[str, Any] | None = None
    """How the peak was scaled to the run's length (`lrpilot.report.RunRecord.horizon`), when it was."""
    from_rules: bool = False
    """The peak is the rules' (the test failed, or too weak a fall put it outside their band),
    which already reads the run's length: the horizon law leaves it alone."""


def ramp(rec: Recommendation, steps: int | None = None, *, below: float = 1.0) -> tuple[float, float, int]:
    """``(start_lr, end_lr, num_steps)`` of fit's range test: from the rules' band's low end (at
    least `RAMP_BELOW_PEAK` under their peak; `below` times lower still for a retry) to `RAMP_END`,
    at `RAMP_DENSITY` steps per decade unless `steps` is given (the settled stop ends it early,
    usually a decade above the best LR).

    >>> ramp(recommend(1e6, "pretraining", steps=1000))
    (6e-05, 10.0, 65)
    """
    start = min(rec.low, rec.peak_lr / RAMP_BELOW_PEAK, RAMP_END / 1e3) / below
    count = steps if steps is not None else round(RAMP_DENSITY * math.log10(RAMP_END / start))
    return float(f"{start:.3g}"), RAMP_END, count


def _range_test(
    task: Task,
    model: nn.Module,
    recipe: Recipe,
    rec: Recommendation,
    *,
    seed: int,
    steps: int | None,
    progress: Progress,
    for_fit: bool = False,
    snapshots: bool = True,
    below: float = 1.0,
) -> _Search:
    """`find_lr` in fast mode on the model as it will train (its AdamW, clipping and recipe) over
    the `ramp` the recommendation sets (`below` it, for a retry); its peak, checked against the
    rules' band.

    A test that started too high (`_too_high`: its minimum within `FLAT_START` of its start, or a
    loss thrown out at once) is run again from `RETRY_BELOW` lower, once, at the same steps per
    decade, unless it ramps at under half `RAMP_DENSITY` (a user's few `steps`: too few points in
    its first decade to tell a flat start from noise). A range test that finds nothing falls back
    to the rules. One whose loss fell by less than `CLEAR_FALL` times its noise is kept where it
    agrees with the rules' band (fit's stored SST-2 tests fall by 2.7–9.2 noise levels,
    ``benchmarks/range_test_budget.py --landmarks``, and answer well near the low end) and is moved
    to the band's nearest end where it does not: a minimum the noise may have placed does not
    overrule the rules by more than their own uncertainty (a 12-step test on 100 texts put a LoRA
    peak at 0.36, 724× the rules'). `for_fit`: the test stops once its minimum has settled
    (`lrpilot.finder.SETTLE`; tune's runs to divergence, the whole curve its band reads) and, with
    `snapshots`, keeps snapshots along the ramp to start the run from (`RampStates`)."""
    from lrpilot.finder import SETTLE, DivergenceRule, RangeTestError, RangeTestWarning
    from lrpilot.integrations.torch_finder import find_lr

    start_lr, end_lr, count = ramp(rec, steps, below=below)
    optimizer = make_optimizer(model, recipe, 1.0)
    decades = math.log10(end_lr / start_lr)
    states = RampStates(model, optimizer, steps=count, decades=decades) if for_fit and snapshots else None

    stamps: list[float] = []

    def advance(point: int, lr: float, loss: float) -> None:
        stamps.append(time.perf_counter())
        if states is not None:
            states.capture(point, lr)
        progress("range test", point + 1, count, lr, loss)

    def again(why: str) -> _Search:
        lower = start_lr / RETRY_BELOW
        more = None if steps is None else round(steps * math.log(end_lr / lower) / math.log(end_lr / start_lr))
        search = _range_test(
            task,
            model,
            recipe,
            rec,
            seed=seed,
            steps=more,
            progress=progress,
            for_fit=for_fit,
            snapshots=snapshots,
            below=RETRY_BELOW,
        )
        search.notes.insert(0, f"range test from {start_lr:.3g}: {why}; run again from {lower:.3g}")
        if search.finder is not None:  # the steps spent on the model count both tests
            search.finder = dataclasses.replace(search.finder, steps_used=search.finder.steps_used + len(stamps))
        return search

    may_retry = below == 1.0 and count >= RAMP_DENSITY / 2 * decades
    notes: list[str] = []
    try:  # the dropout draws are the seed's, so that a fit (and a tune study) repeats exactly
        with seeded(seed), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RangeTestWarning)
            result = find_lr(
                model,
                optimizer,
                task.batches(seed),
                step=lambda batch: task.loss(model, batch),
                start_lr=start_lr,
                end_lr=end_lr,
                num_steps=count,
                max_grad_norm=recipe.grad_clip,
                total_steps=recipe.total_steps,
                calibrated_steps=None,  # the caller scales the peak (`_at_horizon`), once a time budget is steps
                warmup_ratio=recipe.warmup_steps / recipe.total_steps,
                floor_ratio=recipe.floor_ratio,
                decay=recipe.decay,
                divergence=DivergenceRule(settle=SETTLE) if for_fit else None,
                callback=advance,
            )
    except RangeTestError as exc:
        why = _too_high(exc.records) if may_retry else None
        if why is not None:
            return again(why)
        notes.append(f"range test failed ({exc}); trained at the rules' peak {rec.peak_lr:.3g} instead")
        return _Search(rec.peak_lr, None, notes, None, from_rules=True)
    why = _too_high(result.records) if may_retry else None
    if why is not None:
        return again(why)
    notes.extend(f"range test: {w.message}" for w in caught if issubclass(w.category, RangeTestWarning))
    peak = float(f"{result.peak_lr:.3g}")  # the band spans ~4x: more digits are noise
    step_seconds = _step_seconds(stamps)
    clarity = min(result.details["drop_sigma"])
    blew_up = any(r.stop_reason in ("diverged", "non-finite") for r in result.records)
    weak = _weak_fall(peak, clarity, rec, result.max_stable_lr if blew_up else math.inf)
    if weak is not None:
        notes.append(weak[1])
        return _Search(weak[0], result, notes, step_seconds, ramp=states, from_rules=True)
    notes.append(f"range test peak {peak:.3g} vs the rules: {rec.check(peak).message}")
    return _Search(peak, result, notes, step_seconds, ramp=states)


def _too_high(records: Sequence[Any]) -> str | None:
    """Why a range test's ramp started too high to measure the best LR, or None: its loss went
    non-finite within five points, rose by `START_RISE` noise levels over its first five steps, or
    was lowest within `FLAT_START` decades of its start."""
    from lrpilot.finder._features import curve_features, noise_level

    curve = next((r for r in reversed(records) if r.lrs), None)
    if curve is None:
        return None
    try:
        f = curve_features(curve.lrs, curve.losses)
    except ValueError:  # fewer than five finite points
        return "its loss went non-finite within five steps, so the best LR lies under the rules' band"
    losses = curve.losses[: f.usable]
    noise = noise_level(losses)
    rise = (max(losses[1:6]) - losses[0]) / noise if noise > 0 else 0.0
    above = math.log10(f.lrs[f.i_min] / f.lrs[0])
    if rise >= START_RISE:
        why = f"its loss rose by {rise:.1f}× its noise over its first five steps"
    elif above < FLAT_START:
        why = (
            f"its loss was lowest {above:.2f} decades above its start ({f.lrs[f.i_min]:.3g}), too close to read a fall"
        )
    else:
        return None
    return f"{why}, so the best LR lies under the rules' band"


def _weak_fall(peak: float, clarity: float, rec: Recommendation, max_stable: float) -> tuple[float, str] | None:
    """``(peak, note)`` for a range test too weak to overrule the rules: a fall of fewer than
    `CLEAR_FALL` noise levels whose `peak` lies outside their band gets the band's nearest end
    (held below `max_stable`: the caller's inf unless the test ended on a blow-up, since the edge
    of a curve that only wobbled is as arbitrary as its minimum); None keeps the test's peak (a
    clear fall, or one within the band)."""
    from lrpilot.finder import CLEAR_FALL

    agreement = rec.check(peak)
    if clarity >= CLEAR_FALL or agreement.verdict == "agrees":
        return None
    end = rec.high if agreement.verdict == "above" else rec.low
    chosen = float(f"{min(end, max_stable):.3g}")
    held = " (held at the test's max stable LR)" if chosen < float(f"{end:.3g}") else ""
    note = (
        f"range test peak {peak:.3g} not used: its loss fell by only {clarity:.1f}× its noise, too weak a "
        f"measurement to overrule the rules, and it is {agreement.verdict} their band {rec.low:.3g}–{rec.high:.3g}; "
        f"trained at the band's nearest end, {chosen:.3g}{held}, instead"
    )
    return chosen, note


STALL = 10.0
"""`_step_seconds` counts no gap between range-test steps as more than this many typical ones."""


def _step_seconds(stamps: Sequence[float]) -> float | None:
    """The range test's time per step: the mean gap over its second half, which one-off costs of the
    first steps do not reach (torch imports its compiler on the first optimizer step: nearly all of a
    30-step digits test's 2.8–3.1 s in a fresh process, which made a 10 s budget train 84 steps
    instead of thousands), and which, unlike a median, counts the time the process waits for a busy
    CPU. Neither holds when the load changes between the test and the run: beside two CPU-bound
    processes a digits test's median forecast 0.4× what its training steps then cost (a 10 s budget
    took 22 s), this mean 0.4–1.2× over three runs; `_time_note` says so in the fit's notes. Each gap
    counts at most `STALL` times the half's median: a one-off stall there (0.7 s among 1–4 ms digits
    steps, in a fresh process on the CI machine) forecast 12× what the training steps then cost."""
    if len(stamps) < 2:
        return None
    half = len(stamps) // 2
    gaps = [b - a for a, b in itertools.pairwise(stamps[half - 1 :])]
    cap = STALL * statistics.median(gaps)
    return sum(min(gap, cap) for gap in gaps) / len(gaps)


@dataclass
class _Trained:
    status: str
    total_steps: int
    history: Any
    guard: dict[str, Any]
    layers: UpdateRatioTracker
    final: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _metrics(task: Task, model: nn.Module, drift: Drift | None, limit: int | None = None) -> dict[str, float]:
    """``val_loss``, ``val_accuracy`` where the task has it (on `limit` examples, None: all), and
    ``drift`` with a retention set."""
    metrics = task.metrics(model, limit)
    out = {"val_loss": metrics.loss}
    if metrics.accuracy is not None:
        out["val_accuracy"] = metrics.accuracy
    if drift is not None:
        out["drift"] = drift(model)
    return out


def _eval_into(metrics: dict[str, float], step: int, evals: dict[str, Any]) -> dict[str, float]:
    """Append an evaluation to the history: the loss, and the other metrics by name (``accuracy``, ``drift``)."""
    evals["eval_steps"].append(step)
    evals["eval_loss"].append(metrics["val_loss"])
    for name, value in metrics.items():
        if name != "val_loss":
            evals["metrics"].setdefault(name.removeprefix("val_"), []).append(value)
    return metrics


def _train(
    task: Task,
    model: nn.Module,
    recipe: Recipe,
    schedule: Schedule,
    *,
    seed: int,
    run_dir: Path,
    progress: Progress,
    callback: StepCallback | None,
    clock: _Clock,
    drift: Drift | None = None,
    eval_at: Collection[int] = (),
    resumed: Resumed | None = None,
) -> _Trained:
    """The recipe's AdamW under `TorchGuard` (which sets the LR, clips, skips or rolls back; its
    configuration `_guard_config`), with evaluations every quarter (or after the steps in
    `eval_at`; always at the end) and per-layer update ratios; Ctrl-C or a guard that gives up ends
    the loop with the weights as they are (any other exception propagates, the guard closed).
    Evaluations before the end score `QUICK_EVAL` examples, the last one all. `resumed`: the model
    holds the range test's ramp weights; the run goes on from its start step, on the batches after
    the ramp's, with a fresh optimizer (`lrpilot.autopilot._resume`)."""
    from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard

    total = recipe.total_steps
    every = max(1, math.ceil(total / EVALS))
    checkpoints = set(eval_at) if eval_at else set(range(every, total, every))
    tracker = UpdateRatioTracker(model, every=max(1, total // LAYER_SNAPSHOTS))
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    final: dict[str, float] = {}
    status, notes = "finished", []
    start, skip = (resumed.start_step, resumed.ramp_steps) if resumed is not None else (0, 0)
    optimizer = make_optimizer(model, recipe, float(schedule(0)))
    guard = TorchGuard(
        model,
        optimizer,
        config=_guard_config(task, total),
        schedule=schedule,
        max_grad_norm=recipe.grad_clip,
        audit=run_dir / AUDIT_FILE,
        step=start,
    )
    batches = itertools.islice(task.batches(seed), skip, None)
    started, evaluating = time.perf_counter(), clock.timings.get("evaluate", 0.0)
    try:
        with seeded(seed):  # dropout draws as `lrpilot.tasks.train` makes them
            while guard.step_count < total:
                t = guard.step_count
                loss = task.loss(model, next(batches))
                loss.backward()  # type: ignore[no-untyped-call]
                tracker.before(t)
                action = guard.step(loss)
                tracker.after(action is not None and action.applies_update)
                lr, value = guard.history_lr[-1], guard.history_loss[-1]
                progress("train", guard.step_count, total, lr, value)
                if callback is not None:
                    callback(t, lr, value)
                done = guard.step_count
                if done > t and (done in checkpoints or done == total):
                    with clock.phase("evaluate"):
                        progress("evaluate", done, total, math.nan, math.nan)
                        limit = None if done == total else QUICK_EVAL
                        final = _eval_into(_metrics(task, model, drift, limit), done, evals)
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
    from lrpilot.report import TrainingHistory

    history = TrainingHistory(
        steps=list(guard.history_steps),
        loss=list(guard.history_loss),
        lr=list(guard.history_lr),
        eval_steps=evals["eval_steps"],
        eval_loss=evals["eval_loss"],
        eval_metrics=evals["metrics"],
    )
    return _Trained(status, total, history, report, tracker, final, notes)


def _guard_config(task: Task, total: int) -> GuardConfig:
    """The guard's configuration for a run of `total` steps: snapshots, re-warmups and the
    detectors' warm-up sized to it (`GuardConfig.for_run`), and the task's chance level where it is
    known, so that a loss back at chance after the model had learned is a collapse to roll back
    (`lrpilot.detect.DetectConfig.learned_rel`)."""
    return GuardConfig.for_run(total, detect=DetectConfig.for_classes(task.classes))


def _after_run(trained: _Trained) -> list[str]:
    """What the evaluations say about a finished run as a whole (`accuracy_drop`)."""
    accuracy = trained.history.eval_metrics.get("accuracy")
    if trained.status != "finished" or not accuracy:
        return []
    drop = accuracy_drop(trained.history.eval_steps, accuracy, QUICK_EVAL)
    return [] if drop is None else [drop]


def _save(task: Task, model: nn.Module, run_dir: Path) -> Path:
    """``save_pretrained`` for a Hugging Face model (or its adapter); a state dict for a built-in task."""
    if isinstance(task, HfTask):
        return task.save(model, run_dir)
    path = run_dir / MODEL_FILE
    torch.save(model.state_dict(), path)
    return path


# --- fit ----------------------------------------------------------------------------------------


def fit(
    task: str | None = None,
    *,
    model: str | Path | None = None,
    data: str | Path | None = None,
    eval_data: str | Path | None = None,
    task_type: str | None = None,
    method: str | None = None,
    budget: str | int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    finder_steps: int | None = None,
    retention: str | Path | None = None,
    forgetting_weight: float | None = None,
    full_warmup: bool | None = None,
    report: bool = True,
    progress: Progress | None = None,
    callback: StepCallback | None = None,
) -> FitResult:
    """Train a model with the learning rate chosen, scheduled and watched by lrpilot.

    Either a built-in `task` (``"digits"``, ``"shakespeare"``, ``"sst2-full"``, ``"sst2-lora"``;
    ``"shakespeare"`` when neither is given) trained with its recipe, or a local Hugging Face
    `model` directory fine-tuned on `data` (``.csv`` / ``.jsonl``; ``text`` and, for
    ``task_type="classification"``, integer ``label`` columns), `method` ``"full"`` or ``"lora"``,
    evaluated on `eval_data` (default: 10 % of `data` held out).

    Steps: (1) `lrpilot.recommend` from the model's size, the method, batch size and steps;
    (2) the range test (fast mode, state restored) from the recommendation's band's low end to 10 at
    the finder's default ramp rate (`finder_steps` overrides the step count), stopped once its
    minimum has settled (`lrpilot.finder.SETTLE`), and run again from 100× lower if it started too
    high (its minimum within a decade of its start); (3) its peak, checked against the
    recommendation's band (a note either way; the rules' peak if the test fails); (4) the
    schedule: the task's recipe (a user model: the recommendation's warmup and decay) at that
    peak, fitted to `budget` (steps, or a time such as ``"5m"`` for the whole fit, converted with
    the range test's measured step time), the peak scaled to the run's length by the horizon law
    (`lrpilot.rules.horizon_factor`: from a built-in task's own recipe length; for a user's model
    from the 150–1000 steps the rule is calibrated on, or one epoch if that is longer); (5)
    training under `TorchGuard`: a fine-tune of a pretrained model (method ``"full"`` or ``"lora"``)
    trains its whole warmup from the initial weights; a model trained from scratch goes on from the
    range test's state where its ramp can stand for the warmup's first steps
    (`lrpilot.autopilot._resume`), sparing those steps (`full_warmup` True or False chooses either
    way). On the SST-2 fine-tunes going on from the ramp ended 1.2 % ± 0.5 % (sst2-lora, 30 seeds)
    and 1.1 % ± 0.5 % (sst2-full, 26) higher than the full warmup, for ~0.09 of a 150-step run; on
    digits it ends 0.6 % lower (``benchmarks/fit_vs_defaults.py``, fit vs train@fit). It evaluates
    every quarter of the run
    (on `QUICK_EVAL` validation examples, the last on all) and measuring per-layer update ratios;
    (6) saving the model and writing the report into `out` (default: a new
    ``runs/fit-<task>-<timestamp>``).

    Forgetting (a user's pretrained model): with `retention` (a ``.csv`` / ``.jsonl`` of general
    texts, column ``text``) every evaluation also measures the *drift*, the mean cosine distance of
    the model's sentence embeddings from the original's (`lrpilot.autopilot._forgetting`). With
    `forgetting_weight` w, short probes at 1, 1/2, 1/4 and 1/8 of the found peak are scored by
    ``val_loss + w × drift`` and the best peak is trained with; the trade-off is in the report's notes.

    Bad input (an unknown task, a directory that is not a model, data with missing or empty columns
    or labels out of range, a budget too small for a warmup, an `out` that is not empty) raises
    ValueError or FileNotFoundError before any training and before anything is written.
    Ctrl-C during training (or a `callback` raising KeyboardInterrupt) stops the run, saves the
    weights so far and writes the report with status ``"interrupted"``.
    """
    progress = progress or _quiet
    clock = _Clock()
    check.step_count("fit", "seed", seed, 0, 2**32 - 1)
    if finder_steps is not None:
        check.step_count("fit", "finder_steps", finder_steps, 5, 100_000)
    plan = parse_budget(budget)
    with clock.phase("load"):
        progress("load", 0, None, math.nan, math.nan)
        target = _target(
            task,
            model=model,
            data=data,
            eval_data=eval_data,
            task_type=task_type,
            method=method,
            data_dir=data_dir,
            batch_size=batch_size,
        )
        rows = _retention(target, retention, forgetting_weight)
        run_dir = _run_dir(None if out is None else Path(out), target.label)
        steps = plan.steps if plan is not None and plan.steps is not None else target.steps
        if not isinstance(target.task, HfTask):  # the recipe is known: refuse a short budget before loading
            _fitted(target.task.recipe, steps, _describe(plan))
        net = target.task.build_model(seed)
        drift = None if rows is None else load_drift(cast(HfTask, target.task), net, rows)
    with clock.phase("recommend"):
        batch = target.task.recipe.batch_size
        rec = recommend(net, target.method, batch_size=batch, steps=steps, seq_len=target.seq_len)
        job = target.task.with_recipe(recipe_from(rec, batch)) if isinstance(target.task, HfTask) else target.task
        planned = _fitted(job.recipe, steps, _describe(plan))
    warm_in_full = target.method != "pretraining" if full_warmup is None else full_warmup
    with clock.phase("find"):
        search = _range_test(
            job,
            net,
            planned,
            rec,
            seed=seed,
            steps=finder_steps,
            progress=progress,
            for_fit=True,
            snapshots=not warm_in_full,
        )
    if warm_in_full and full_warmup is None:
        search.notes.append(
            f"a fine-tune ({target.method}): the whole warmup is trained from the initial weights (going on from "
            "the range test's ramp ended ~1 % higher on the SST-2 fine-tunes; --ramp-warmup spares those steps)"
        )
    steps = _budget_steps(plan, steps, search, clock)
    fitted = _fitted(job.recipe, steps, _describe(plan))
    if search.finder is not None:  # what the search cost, in the run's own units
        used = search.finder.steps_used
        search.notes.append(
            f"range test: {used} steps in {clock.timings['find']:.3g} s ({used / steps:.0%} of the run's {steps})"
        )
    peak, _ = _at_horizon(search, fitted.total_steps, target.calibrated)
    if drift is not None and forgetting_weight is not None:
        with clock.phase("tradeoff"):
            peak = _trade(
                cast(HfTask, job),
                net,
                fitted,
                search,
                peak,
                drift=drift,
                weight=forgetting_weight,
                seed=seed,
                progress=progress,
            )
    fitted, schedule, resumed = _from_ramp(job, fitted, search, peak, plan)
    run_dir.mkdir(parents=True, exist_ok=True)
    trained = _train(
        job,
        net,
        fitted,
        schedule,
        seed=seed,
        run_dir=run_dir,
        progress=progress,
        callback=callback,
        clock=clock,
        drift=drift,
        resumed=resumed,
    )
    with clock.phase("save"):
        progress("save", 0, None, math.nan, math.nan)
        model_path = _save(job, net, run_dir)
        (run_dir / AUDIT_FILE).touch()
    notes = [*search.notes, *trained.notes, *_after_run(trained)]
    if plan is not None and plan.seconds is not None:
        trained_steps = fitted.total_steps - (0 if resumed is None else resumed.start_step)
        notes.append(_time_note(plan, trained_steps, search, trained, clock))
    record = _record(
        target,
        task=job,
        recommendation=rec.to_dict(),
        finder=None if search.finder is None else search.finder.to_dict(),
        schedule=schedule,
        trained=trained,
        notes=notes,
        clock=clock,
        tradeoff=search.tradeoff,
        resumed=None if resumed is None else dataclasses.asdict(resumed),
        horizon=search.horizon,
    )
    progress("report", 0, None, math.nan, math.nan)
    report_path = _write(record, run_dir, report, clock)
    return FitResult(
        status=trained.status,
        run_dir=run_dir,
        model_path=model_path,
        report_path=report_path,
        peak_lr=peak,
        schedule=schedule,
        metrics=dict(record.metrics),
        record=record,
        recommendation=rec,
        finder=search.finder,
        model=net,
    )


def _target(
    task: str | None,
    *,
    model: str | Path | None,
    data: str | Path | None,
    eval_data: str | Path | None,
    task_type: str | None,
    method: str | None,
    data_dir: str | Path | None,
    batch_size: int | None,
) -> _Target:
    """A built-in task, or the user's model and data; options that belong to the other are errors."""
    if model is None:
        given = {"--data": data, "--eval": eval_data, "--task-type": task_type, "--method": method}
        for name, value in {**given, "--batch-size": batch_size}.items():
            if value is not None:
                raise ValueError(f"fit: {name} applies to --model (your own model); a built-in task's recipe fixes it")
        return _builtin(task or DEFAULT_TASK, None if data_dir is None else Path(data_dir))
    if task is not None:
        raise ValueError("fit: give --task (a built-in task) or --model (your own), not both")
    if data_dir is not None:
        raise ValueError("fit: --data-dir applies to the sst2 tasks, not to --model")
    return _user_model(
        Path(model),
        None if data is None else Path(data),
        None if eval_data is None else Path(eval_data),
        kind=task_type or "classification",
        method=method or "full",
        batch_size=16 if batch_size is None else batch_size,
    )


DEFAULT_TASK = "shakespeare"
"""What ``lrpilot fit`` trains with no arguments: the char-GPT on tiny shakespeare (shipped), a few
minutes end to end on one CPU thread."""


def _retention(target: _Target, retention: str | Path | None, weight: float | None) -> list[dict[str, Any]] | None:
    """The retention texts, checked now (before any weight is loaded); None without `retention`."""
    if weight is not None:
        check.non_negative("fit", "--forgetting-weight", weight)
        if retention is None:
            raise ValueError("fit: --forgetting-weight needs --retention FILE (general texts to measure drift on)")
    if retention is None:
        return None
    if not isinstance(target.task, HfTask):
        raise ValueError(
            "fit: --retention applies to --model (a pretrained model that can forget), not to a built-in task"
        )
    return read_rows(Path(retention), ("text",), "--retention")


def _trade(
    task: HfTask,
    model: nn.Module,
    recipe: Recipe,
    search: _Search,
    peak: float,
    *,
    drift: Drift,
    weight: float,
    seed: int,
    progress: Progress,
) -> float:
    """The peak that minimises ``val_loss + weight × drift`` over `tradeoff`'s probes (fractions of
    the found `peak`); the table goes into the notes."""

    def advance(done: int, total: int) -> None:
        progress("forgetting trade-off", done, total, math.nan, math.nan)

    points = tradeoff(task, model, recipe, peak, drift, weight=weight, seed=seed, progress=advance)
    best = min(points, key=lambda point: point.score)
    search.notes.append(
        f"forgetting trade-off (score = val loss + {weight:g} × drift, probes of {PROBE_SHARE:.0%} of the run): "
        + "; ".join(point.line() for point in points)
        + f"; trained at {best.peak_lr:.3g}"
    )
    search.tradeoff = {
        "weight": weight,
        "probe_share": PROBE_SHARE,
        "points": [dataclasses.asdict(point) for point in points],
        "chosen": best.peak_lr,
    }
    return best.peak_lr


def _at_horizon(search: _Search, steps: int, calibrated: tuple[int, int]) -> tuple[float, float]:
    """``(peak, factor)``: the range test's peak scaled from the run length its rule is calibrated
    at to this run's (`lrpilot.rules.horizon_factor`; noted, and kept in `search.horizon`, when
    that moves it), never above the LR where the test's loss turned up (`max_stable_lr`: a short
    run's best LR is higher, but not past the point where a few steps at it stopped helping). The
    rules' fallback peak already reads the run's length and stays as it is (factor 1)."""
    if search.from_rules:
        return search.peak, 1.0
    moved = at_horizon(search.peak, steps, calibrated, ceiling=float(search.finder.max_stable_lr))
    if moved.factor == 1.0:
        return search.peak, 1.0
    peak = float(f"{moved.lr:.3g}")
    search.horizon = moved.to_dict()
    search.notes.append(moved.note())
    return peak, peak / search.peak


def _from_ramp(
    job: Task, fitted: Recipe, search: _Search, peak: float, plan: Budget | None
) -> tuple[Recipe, Schedule, Resumed | None]:
    """The recipe and schedule at `peak`, the model put back to the range test's state where its
    ramp can stand for the warmup's first steps (`RampStates.resume`, noted). A time budget pays
    for the steps trained, so those the ramp stands for lengthen its schedule."""
    schedule = fitted.schedule(peak)
    if search.ramp is None:
        return fitted, schedule, None
    if plan is not None and plan.seconds is not None:
        extra = search.ramp.start_step(peak, schedule, fitted.warmup_steps)
        if extra:
            fitted = _fitted(job.recipe, fitted.total_steps + extra, _describe(plan))
            schedule = fitted.schedule(peak)
    resumed = search.ramp.resume(peak, schedule, fitted.warmup_steps)
    if resumed is not None:
        search.notes.append(resumed.note())
    return fitted, schedule, resumed


def _time_note(plan: Budget, trained_steps: int, search: _Search, trained: _Trained, clock: _Clock) -> str:
    """How a time budget became steps and, when the fit ran past it, why: a time budget is a forecast
    from the range test's steps, and a machine that gets busier after them makes every training step
    dearer (a digits fit beside two CPU-bound processes: 10 s budgeted, up to 18 s spent)."""
    note = f"time budget {plan}: {trained_steps} training steps at the range test's {search.step_seconds:.3g} s/step"
    took = clock.timings.get("train", 0.0) / max(trained_steps, 1)
    if plan.seconds is not None and clock.elapsed > plan.seconds * OVERRUN and trained.status == "finished":
        note += (
            f"; the fit took {clock.elapsed:.3g} s, {clock.elapsed / plan.seconds:.2g}× its budget: a training step "
            f"cost {took:.3g} s, {took / cast(float, search.step_seconds):.2g}× what the range test measured "
            "(a machine busier than during the test, or work the test's steps do not do: a callback, the guard)"
        )
    return note


def _budget_steps(plan: Budget | None, steps: int, search: _Search, clock: _Clock) -> int:
    """A time budget in steps, from the range test's measured step time (what is left of it after
    loading and the range test); a step budget as given."""
    if plan is None or plan.seconds is None:
        return steps
    if search.step_seconds is None:
        raise ValueError(f"fit: the range test measured no step time to turn the budget {plan} into steps; give steps")
    fitted = steps_for_time(plan.seconds, clock.elapsed, search.step_seconds)
    if fitted < 1:
        raise ValueError(
            f"fit: the budget {plan} was spent before training could start ({clock.elapsed:.0f} s for loading and "
            "the range test); give a larger one"
        )
    return fitted


def _record(
    target: _Target,
    *,
    task: Task,
    recommendation: dict[str, Any],
    finder: dict[str, Any] | None,
    schedule: Schedule,
    trained: _Trained,
    notes: list[str],
    clock: _Clock,
    tradeoff: dict[str, Any] | None = None,
    resumed: dict[str, Any] | None = None,
    horizon: dict[str, Any] | None = None,
) -> Any:
    from lrpilot.report import LayerStats, RunRecord

    timings = dict(clock.timings)
    timings["total"] = clock.elapsed
    layers = trained.layers
    return RunRecord(
        title=f"lrpilot fit: {target.label}",
        task=target.label if not isinstance(task, HfTask) else task.description,
        total_steps=trained.total_steps,
        history=trained.history,
        schedule=schedule.to_string(),
        recommendation=recommendation,
        finder=finder,
        guard_actions=list(trained.guard.get("records", [])),
        layer_stats=LayerStats(layers.names, layers.steps, layers.ratios) if layers.steps else None,
        metrics=trained.final,
        timings=timings,
        notes=notes,
        status=trained.status,
        tradeoff=tradeoff,
        resumed=resumed,
        horizon=horizon,
        classes=task.classes,
    )


def _write(record: Any, run_dir: Path, report: bool, clock: _Clock) -> Path | None:
    """The HTML report (with ``run.json``), or only ``run.json`` with ``report=False``."""
    with clock.phase("report"):
        if not report:
            record.write_json(run_dir / "run.json")
            return None
        from lrpilot.report import write_report

        return Path(write_report(record, run_dir))
