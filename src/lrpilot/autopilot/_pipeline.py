"""`fit`: recommend → range test → pick the peak → fit the schedule to the budget → train under the
guard (from the range test's ramp, which stands for the warmup) → evaluate → save → report.

Each piece is lrpilot's own, composed rather than re-implemented: `lrpilot.recommend` gives the
prior and the schedule shape for a user's model, `find_lr` measures the peak on the model itself,
`Recommendation.check` says whether the two agree, a task's `Recipe` (or the recommendation's
shape) fitted to the budget gives the schedule, `TorchGuard` runs every step, and
`lrpilot.report.write_report` explains the run. What the pipeline adds is the order, the checks
before anything is written, the run directory, and a clean stop on Ctrl-C.

The phases live beside it: `lrpilot.autopilot._target` (what to train, its recipe fitted to the
budget), `lrpilot.autopilot._search` (the range test and the peak) and
`lrpilot.autopilot._training` (the run under the guard, its evaluations, the saved model).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lrpilot import _validate as check
from lrpilot.autopilot._budget import OVERRUN, Budget, parse_budget, steps_for_time, time_for
from lrpilot.autopilot._checkpoint import RESUME_FILE, Checkpoint, check_unchanged, digests, resume_file
from lrpilot.autopilot._data import check_file, read_rows
from lrpilot.autopilot._forgetting import PROBE_SHARE, Drift, load_drift, tradeoff
from lrpilot.autopilot._hf import HfTask
from lrpilot.autopilot._lora import lora_note
from lrpilot.autopilot._progress import Clock, Progress, StepCallback, quiet
from lrpilot.autopilot._resume import Resumed
from lrpilot.autopilot._search import TEST_SHARE, Search, finder_precision, peak_at_horizon, range_test
from lrpilot.autopilot._target import (
    TARGET_ARGUMENTS,
    Target,
    TargetSpec,
    build_model,
    check_target,
    describe_budget,
    fitted_recipe,
    planned,
    resolve_target,
)
from lrpilot.autopilot._training import AUDIT_FILE, MODEL_FILE, Trained, after_run, save_model, train_guarded
from lrpilot.rules import Recommendation
from lrpilot.schedules import Schedule
from lrpilot.tasks import Recipe, Task, make_optimizer
from lrpilot.tasks._base import torch_threads
from lrpilot.tasks._device import Precision, describe_device, resolve_device, resolve_precision

__all__ = [
    "AUDIT_FILE",
    "MODEL_FILE",
    "FitResult",
    "Progress",
    "SavingInterrupted",
    "check_arguments",
    "check_not_under_a_file",
    "claimed",
    "fit",
    "new_run_dir",
    "run_record",
]


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
        metrics: final validation metrics (``val_loss``, ``val_accuracy`` where it applies) of the
            weights saved, however the run ended; empty where a second Ctrl-C skipped their evaluation.
        record: everything the report shows (`lrpilot.report.RunRecord`).
        recommendation, finder: the prior and the range test (None if the range test failed).
        model: the trained model itself, in memory (as saved), in eval mode: dropout off, as
            generating or scoring with it needs (in training mode a GPT-2's two passes of one text differed).
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


def new_run_dir(out: Path | None, label: str) -> Path:
    """`out` (`check_out`), else a new ``runs/fit-<label>-<timestamp>``."""
    if out is not None:
        check_out(out)
        return out
    return stamped_run_dir("fit", label)


def check_out(out: Path) -> None:
    """`out` must not be a file or a non-empty directory: nothing of the user's is ever overwritten;
    nor under a file (``train.csv/run``), where making it had failed with a traceback after the
    range test."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a file" if not out.is_dir() else "a directory that is not empty"
        raise ValueError(f"fit: --out {out} is {what}; give a new or empty directory (nothing is overwritten)")
    check_not_under_a_file("fit", out)


def check_not_under_a_file(owner: str, out: Path) -> None:
    """Refuse an `out` under a file (``train.csv/run``), which no directory can be made at: found
    only when the run made it, after the model's load and the range test, with a traceback."""
    above = next((folder for folder in out.absolute().parents if folder.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"{owner}: --out {out} is under {above}, a file; give a new or empty directory")


@contextmanager
def made_for_training(run_dir: Path, *, stamped: bool = False) -> Iterator[Path]:
    """Make `run_dir` for the training block, and give the folder made. A Ctrl-C that escapes it (one
    before the loop began: the loop's own are caught, and save) removes it again where fit made it
    and nothing was written into it: the command line then says nothing was written, and an empty
    folder would say otherwise. A `stamped` name (fit's own, `stamped_run_dir`) that another fit
    made since it was chosen goes to the next free one (`claimed`); a given --out is checked again
    (`check_out`)."""
    if stamped:
        run_dir, made = claimed(run_dir), True
    else:
        check_out(run_dir)
        made = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield run_dir
    except KeyboardInterrupt:
        if made and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def claimed(run_dir: Path) -> Path:
    """`run_dir`, made here, or where another process made it first, the next of its name with a
    suffix (``-2``, ``-3``, …): two fits started in the same second (seeds launched side by side) had
    chosen one ``runs/fit-<label>-<time>`` while loading and both written into it, the last one's
    model and report left."""
    candidate, n = run_dir, 2
    while True:
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            candidate, n = run_dir.with_name(f"{run_dir.name}-{n}"), n + 1
        else:
            return candidate


def stamped_run_dir(command: str, label: str) -> Path:
    """A new ``runs/<command>-<label>-<time>`` (a suffix where one of that second exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    base = Path("runs") / f"{command}-{safe}-{stamp}"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


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
    device: str | None = None,
    precision: str | None = None,
    columns: Mapping[str, str] | None = None,
    max_length: int | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_targets: str | Sequence[str] | None = None,
    report: bool = True,
    progress: Progress | None = None,
    callback: StepCallback | None = None,
    resume: str | Path | None = None,
) -> FitResult:
    """Train a model with the learning rate chosen, scheduled and watched by lrpilot.

    Either a built-in `task` (``"digits"``, ``"shakespeare"``, ``"sst2-full"``, ``"sst2-lora"``;
    ``"shakespeare"`` when neither is given) trained with its recipe, or a local Hugging Face
    `model` directory fine-tuned on `data` (``.csv`` / ``.jsonl`` / ``.json`` / ``.txt``; for
    ``task_type="classification"`` ``text`` and ``label`` columns, the labels class ids or names;
    for ``"causal-lm"`` ``text``, or ``prompt`` and ``completion``, or a chat's ``messages``, whose
    loss counts the completions' or the assistant's tokens only), `method` ``"full"`` or ``"lora"``,
    evaluated on `eval_data` (default: 10 % of `data` held out). `columns` maps the roles (``text``,
    ``text_pair``, ``label``, ``prompt``, ``completion``, ``messages``) to the data's columns where
    they have other names (``{"text": "sentence"}``); a classifier's data with a ``text_pair``
    column is one of pairs of texts. `max_length`: tokens per example, longer ones truncated
    (default 128 for a classifier; for a causal LM 1024, TRL's, or the model's context where
    shorter). With ``method="lora"``: `lora_rank` (default 8) and `lora_alpha` (default twice the
    rank, so that the adapters' scale alpha / rank stays 2 when only the rank changes) set the
    adapters, and `lora_targets` where they go: ``"attention"`` (the default: a causal LM's
    language model's attention projections, a classifier's every one), ``"all-linear"`` (every
    linear projection of the model's blocks; never a head, the embeddings or a vision tower), or
    the ends of module names (``"q_proj,v_proj"`` or a list), each of which must name one of the
    blocks' projections. fit's LR choice for causal LMs was calibrated with attention adapters,
    which the notes say where others are chosen.

    Steps: (1) `lrpilot.recommend` from the model's size, the method, batch size and steps;
    (2) the range test (fast mode, state restored) from the recommendation's band's low end to 10 at
    the finder's default ramp rate (`finder_steps` overrides the step count), stopped once its
    minimum has settled (`lrpilot.finder.SETTLE`), and run again from 100× lower if it started too
    high (its minimum within a decade of its start); one whose loss fell by under 4 noise levels is
    followed by a second test on other batches, the peak their geometric mean
    (`lrpilot.autopilot._search.SECOND_TEST_BELOW`); (3) its peak, checked against the
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
    (the same `QUICK_EVAL` validation examples each time, for the curve; the last on all of them
    too, for the figures it reports) and measuring per-layer update ratios;
    (6) saving the model and writing the report into `out` (default: a new
    ``runs/fit-<task>-<timestamp>``).

    `device`: where the model trains, ``"auto"`` (the default: a CUDA GPU where torch sees one, else
    the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; every phase runs there, the range test and the
    evaluations included (`lrpilot.tasks._device`). On a GPU the guard reads its verdicts every few
    steps (`TorchGuard`'s ``read_every``), so the host does not wait for the device each step
    (`train_guarded`). `precision`:
    ``"fp32"``, ``"bf16"`` or ``"fp16"`` (with a loss scale): the forward passes of every phase
    autocast to it (`lrpilot.tasks._device.Precision`). None (the default) trains in fp32, and runs
    the range test of a model of 10M parameters or more in bf16 where the hardware computes it
    (`lrpilot.autopilot._search.finder_precision`: fp32's peak on 49 of 56 SST-2 seeds, one ramp step off
    on 7, in two thirds of the time), and the evaluations along the run but the last in it too
    (without `retention`: their figures only draw the report's curve).

    Forgetting (a user's pretrained model): with `retention` (a ``.csv`` / ``.jsonl`` of general
    texts, column ``text``) every evaluation also measures the *drift*, the mean cosine distance of
    the model's sentence embeddings from the original's (`lrpilot.autopilot._forgetting`). With
    `forgetting_weight` w, short probes at 1, 1/2, 1/4 and 1/8 of the found peak are scored by
    ``val_loss + w × drift`` and the best peak is trained with; the trade-off is in the report's notes.

    Bad input (an unknown task, a directory that is not a model, data with missing or empty columns
    or labels out of range, a budget too small for a warmup, an `out` that is not empty) raises
    ValueError or FileNotFoundError before any training and before anything is written.
    Ctrl-C during training (or a `callback` raising KeyboardInterrupt) stops the run, saves the
    weights so far, evaluates them as a finished run's last evaluation does (a second Ctrl-C skips
    it, leaving no metrics) and writes the report with status ``"interrupted"``. The first Ctrl-C
    stops at the end of the step in progress, and the run directory then holds ``resume.pt``:
    `resume` (that directory, and no other argument but `report`, `progress` and `callback`) goes on
    from there to the end of the run, as the uninterrupted fit would have trained
    (`lrpilot.autopilot._checkpoint`), and updates the directory's model and report.
    """
    progress = progress or quiet
    check_arguments(**{name: value for name, value in locals().items() if name not in RUNTIME})
    if resume is not None:
        return _resumed_fit(Path(resume), report=report, progress=progress, callback=callback)
    arguments = _arguments(locals())
    clock = Clock()
    where, mixed = _checked(seed, finder_steps, device, precision)
    plan = parse_budget(budget)
    with clock.phase("load"):
        progress("load", 0, None, math.nan, math.nan)
        target = resolve_target(TargetSpec.of(locals()))
        rows = _retention(retention)
        run_dir = new_run_dir(None if out is None else Path(out), target.label)
        steps = plan.steps if plan is not None and plan.steps is not None else target.steps
        net = build_model(target, seed, where, mixed)
        with mixed.autocast():  # the reference embeddings as the run's will be computed
            drift = None if rows is None else load_drift(cast(HfTask, target.task), net, rows)
        _first_costs(target.task, net, seed)
    with clock.phase("recommend"):  # for the model loaded above, which the "load" phase's time counts
        rec, job, recipe = planned(target, net, steps, describe_budget(plan))
    warm_in_full = target.method != "pretraining" if full_warmup is None else full_warmup
    seconds = None if plan is None else plan.seconds
    tested, why = finder_precision(
        mixed,
        net,
        where,
        chosen=precision is not None,
        timed=seconds is not None,
        from_ramp=not warm_in_full,
        evaluations=drift is None,  # a drift is measured against embeddings computed in the run's precision
    )
    quick = tested if drift is None else mixed
    with clock.phase("find"):
        search = range_test(
            job,
            net,
            recipe,
            rec,
            seed=seed,
            steps=finder_steps,
            progress=progress,
            for_fit=True,
            snapshots=not warm_in_full,
            amp=tested.amp,
            deadline=None if seconds is None else clock.started + TEST_SHARE * seconds,
        )
    if why is not None:
        search.notes.insert(0, why)
    if warm_in_full and full_warmup is None:
        search.notes.append(
            f"a fine-tune ({target.method}): the whole warmup is trained from the initial weights (going on from "
            "the range test's ramp ended ~1 % higher on the SST-2 fine-tunes; --ramp-warmup spares those steps)"
        )
    steps = _budget_steps(plan, steps, search, clock)
    fitted = fitted_recipe(job.recipe, steps, describe_budget(plan))
    if search.finder is not None:  # what the search cost, in the run's own units
        used = search.finder.steps_used
        search.notes.append(
            f"range test: {used} steps in {clock.timings['find']:.3g} s ({used / steps:.0%} of the run's {steps})"
        )
    peak, _ = peak_at_horizon(search, fitted.total_steps, target.calibrated)
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
                precision=mixed,
            )
    fitted, schedule, resumed = _from_ramp(job, fitted, search, peak, plan)
    with made_for_training(run_dir, stamped=out is None) as run_dir:
        trained = train_guarded(
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
            precision=mixed,
            quick=quick,
        )
    before: dict[str, Any] = {
        "notes": [*target.notes, *filter(None, [lora_note(net)]), *search.notes],
        "tradeoff": search.tradeoff,
        "horizon": search.horizon,
        "device": describe_device(where),
    }
    if trained.state is not None:
        with _saving(run_dir):  # a second Ctrl-C as resume.pt is written
            Checkpoint(
                arguments=arguments,
                recipe=fitted,
                job_recipe=job.recipe if isinstance(job, HfTask) else None,
                schedule=schedule,
                peak=peak,
                resumed=resumed,
                recommendation=rec,
                finder=search.finder,
                record=before | {"timings": dict(clock.timings, total=clock.elapsed)},
                state=trained.state,
                files=digests(arguments),
                threads=torch.get_num_threads(),
                quick=quick,
            ).save(run_dir)
    if plan is not None and plan.seconds is not None:
        trained_steps = fitted.total_steps - (0 if resumed is None else resumed.start_step)
        before["notes"].append(_time_note(plan, trained_steps, search, trained, clock))
    return _finish(
        target,
        job,
        net,
        run_dir,
        trained,
        clock,
        before,
        rec=rec,
        finder=search.finder,
        schedule=schedule,
        peak=peak,
        resumed=resumed,
        precision=mixed,
        report=report,
        progress=progress,
    )


def _finish(  # noqa: PLR0917  (what fit decided, passed on to the record)
    target: Target,
    job: Task,
    net: nn.Module,
    run_dir: Path,
    trained: Trained,
    clock: Clock,
    before: dict[str, Any],
    *,
    rec: Recommendation,
    finder: Any,
    schedule: Schedule,
    peak: float,
    resumed: Resumed | None,
    precision: Precision,
    report: bool,
    progress: Progress,
) -> FitResult:
    """Save the model, write the record and the report, and say what fit did (a fit and a resumed one).
    A Ctrl-C here raises `SavingInterrupted`, which names the folder that holds what was written."""
    with _saving(run_dir):
        with clock.phase("save"):
            progress("save", 0, None, math.nan, math.nan)
            model_path = save_model(job, net, run_dir)
            (run_dir / AUDIT_FILE).touch()
        if trained.state is None:  # finished, or stopped where it cannot go on: nothing to resume
            (run_dir / RESUME_FILE).unlink(missing_ok=True)
        notes = [*before["notes"], *trained.notes, *after_run(trained, _epochs(job, trained))]
        record = run_record(
            target,
            task=job,
            recommendation=rec.to_dict(),
            finder=None if finder is None else finder.to_dict(),
            schedule=schedule,
            trained=trained,
            notes=notes,
            clock=clock,
            tradeoff=before["tradeoff"],
            resumed=None if resumed is None else dataclasses.asdict(resumed),
            resumes=before.get("resumes", []),
            horizon=before["horizon"],
            device=before["device"],
            precision=precision.name,
        )
        progress("report", 0, None, math.nan, math.nan)
        report_path = _write(record, run_dir, report, clock)
        net.eval()
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
            finder=finder,
            model=net,
        )


class SavingInterrupted(KeyboardInterrupt):
    """Ctrl-C after training, as the model, ``run.json`` and the report were written into `run_dir`:
    the command line had said "interrupted before training started: nothing was written" of a run
    folder holding the trained model and its run.json."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@contextmanager
def _saving(run_dir: Path) -> Iterator[None]:
    """A Ctrl-C as `_finish` writes the run's files, raised as `SavingInterrupted`."""
    try:
        yield
    except KeyboardInterrupt:
        raise SavingInterrupted(run_dir) from None


RESUMABLE = ("report", "progress", "callback", "resume")
"""fit's arguments a resumed fit takes; the others are the interrupted fit's own."""


def _arguments(given: dict[str, Any]) -> dict[str, Any]:
    """fit's arguments that rebuild its model and data (`_resumed_fit`), paths made absolute (a
    resume may run from another directory)."""
    names = (*TARGET_ARGUMENTS, "seed", "retention", "forgetting_weight", "device", "precision")
    paths = ("model", "data", "eval_data", "data_dir", "retention")
    return {
        name: str(Path(given[name]).resolve()) if name in paths and given[name] is not None else given[name]
        for name in names
    }


def _given_beside_resume(given: dict[str, Any]) -> list[str]:
    """The arguments given with `resume` that it does not take (their defaults are fine)."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(fit).parameters.items()}
    return [name for name, default in defaults.items() if name not in RESUMABLE and given[name] != default]


RUNTIME = ("report", "progress", "callback")
"""fit's arguments that say how to run and report, not what: `check_arguments` takes the others."""


def check_arguments(
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
    device: str | None = None,
    precision: str | None = None,
    columns: Mapping[str, str] | None = None,
    max_length: int | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_targets: str | Sequence[str] | None = None,
    resume: str | Path | None = None,
) -> None:
    """Refuse bad arguments of `fit` (the same, less `RUNTIME`) before anything is read or loaded:
    each value and combination, the paths of the model, data, run directory and resumed run, and
    a step budget against the warmup. fit runs it first, and ``lrpilot fit`` before it prints its
    plan, which had read "shakespeare: recommend → … → report" above "--budget must be …". What
    the data files hold and what the model is are checked as they load."""
    if resume is not None:
        given = _given_beside_resume(locals())
        if given:
            raise ValueError(f"fit: --resume takes the interrupted fit's own settings; drop {', '.join(given)}")
        resume_file(Path(resume))
        return
    _checked(seed, finder_steps, device, precision)
    plan = parse_budget(budget)
    check_target(TargetSpec.of(locals()), plan=plan)
    _check_retention(model, retention, forgetting_weight)
    if out is not None:
        check_out(Path(out))


def _resumed_fit(run_dir: Path, *, report: bool, progress: Progress, callback: StepCallback | None) -> FitResult:
    """Go on with the fit interrupted in `run_dir` (`Checkpoint`): its model rebuilt from its source,
    the loop's state put back, trained to the end of its run; the directory's model and report updated."""
    saved = Checkpoint.load(run_dir)
    check_unchanged(saved)
    with torch_threads(saved.threads):
        return _go_on(saved, run_dir, report=report, progress=progress, callback=callback)


def _go_on(
    saved: Checkpoint, run_dir: Path, *, report: bool, progress: Progress, callback: StepCallback | None
) -> FitResult:
    """`_resumed_fit`'s work, on the threads the fit trained on."""
    args = saved.arguments
    clock = Clock()
    clock.timings.update({k: v for k, v in saved.record["timings"].items() if k != "total"})
    clock.started -= saved.record["timings"]["total"]
    where, mixed = _checked(args["seed"], None, args["device"], args["precision"])
    with clock.phase("load"):
        progress("load", 0, None, math.nan, math.nan)
        target = resolve_target(TargetSpec.of(args))
        rows = _retention(args["retention"])
        net = build_model(target, args["seed"], where, mixed)
        with mixed.autocast():
            drift = None if rows is None else load_drift(cast(HfTask, target.task), net, rows)
    job = target.task.with_recipe(saved.job_recipe) if isinstance(target.task, HfTask) else target.task
    trained = train_guarded(
        job,
        net,
        saved.recipe,
        saved.schedule,
        seed=args["seed"],
        run_dir=run_dir,
        progress=progress,
        callback=callback,
        clock=clock,
        drift=drift,
        resumed=saved.resumed,
        precision=mixed,
        quick=saved.quick,
        state=saved.state,
    )
    resumed_at = f"resumed at step {saved.state.step} of {saved.recipe.total_steps} (lrpilot fit --resume)"
    # where the report's figure marks it: the step and the entries logged by then (a rollback repeats steps)
    here = {"step": saved.state.step, "logged": len(saved.state.guard_history[0])}
    resumes = [*saved.record.get("resumes", []), here]
    before = saved.record | {
        "notes": [*saved.record["notes"], resumed_at],
        "device": describe_device(where),
        "resumes": resumes,
    }
    if trained.state is not None:  # stopped again: the next resume goes on from here, its notes kept
        done = dict(clock.timings, total=clock.elapsed)
        with _saving(run_dir):  # a second Ctrl-C as resume.pt is written: the earlier one stays whole
            dataclasses.replace(saved, state=trained.state, record=before | {"timings": done}).save(run_dir)
    return _finish(
        target,
        job,
        net,
        run_dir,
        trained,
        clock,
        before,
        rec=saved.recommendation,
        finder=saved.finder,
        schedule=saved.schedule,
        peak=saved.peak,
        resumed=saved.resumed,
        precision=mixed,
        report=report,
        progress=progress,
    )


def _first_costs(task: Task, net: nn.Module, seed: int) -> None:
    """Pay the one-time costs of a process's first batch and first optimizer here, in the load
    phase: the data set's loading (the digits task imports scikit-learn) and torch.optim's import of
    ``torch._dynamo`` on the first optimizer built (1–2 s). They had counted as the range test's:
    digits' 39-step test read 2.97 s beside a 0.3 s run, "16 % of the run's steps", and the default
    demo's 34-step test twice what its steps took."""
    next(iter(task.batches(seed)), None)
    make_optimizer(net, task.recipe, 1e-3)


def _checked(
    seed: int, finder_steps: int | None, device: str | None, precision: str | None
) -> tuple[torch.device, Precision]:
    """The device to train on and the precision, once they, the seed and the range test's steps are checked."""
    check.step_count("fit", "seed", seed, 0, 2**32 - 1)
    if finder_steps is not None:
        check.step_count("fit", "finder_steps", finder_steps, 5, 100_000)
    where = resolve_device(device)
    return where, resolve_precision(precision, where)


def _check_retention(model: str | Path | None, retention: str | Path | None, weight: float | None) -> None:
    """--forgetting-weight and --retention: a weight of 0 or more, given with a retention file, which
    exists and is a ``.csv`` / ``.jsonl``, for a user's model (a built-in task is trained from scratch)."""
    if weight is not None:
        check.non_negative("fit", "--forgetting-weight", weight)
        if retention is None:
            raise ValueError("fit: --forgetting-weight needs --retention FILE (general texts to measure drift on)")
    if retention is None:
        return
    if model is None:
        raise ValueError(
            "fit: --retention applies to --model (a pretrained model that can forget), not to a built-in task"
        )
    check_file(Path(retention), "text", "--retention")


def _retention(retention: str | Path | None) -> list[dict[str, Any]] | None:
    """The retention texts (`_check_retention` passed them), read before any weight is loaded; None
    without `retention`."""
    return None if retention is None else read_rows(Path(retention), ("text",), "--retention")


def _trade(
    task: HfTask,
    model: nn.Module,
    recipe: Recipe,
    search: Search,
    peak: float,
    *,
    drift: Drift,
    weight: float,
    seed: int,
    progress: Progress,
    precision: Precision,
) -> float:
    """The peak that minimises ``val_loss + weight × drift`` over `tradeoff`'s probes (fractions of
    the found `peak`); the table goes into the notes."""

    def advance(done: int, total: int) -> None:
        progress("forgetting trade-off", done, total, math.nan, math.nan)

    points = tradeoff(task, model, recipe, peak, drift, weight=weight, seed=seed, progress=advance, precision=precision)
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


def _from_ramp(
    job: Task, fitted: Recipe, search: Search, peak: float, plan: Budget | None
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
            fitted = fitted_recipe(job.recipe, fitted.total_steps + extra, describe_budget(plan))
            schedule = fitted.schedule(peak)
    resumed = search.ramp.resume(peak, schedule, fitted.warmup_steps)
    if resumed is not None:
        search.notes.append(resumed.note())
    return fitted, schedule, resumed


def _epochs(task: Task, trained: Trained) -> float | None:
    """How many times the run went over a user's training data (steps trained over one epoch's), for
    the after-run notes: a run that got worse after dozens of epochs over-fitted. None for a
    built-in task, whose batches are drawn without epochs."""
    steps = trained.history.steps
    if not isinstance(task, HfTask) or not steps or task.epoch_steps < 1:
        return None
    return float(steps[-1] + 1) / task.epoch_steps


def _time_note(plan: Budget, trained_steps: int, search: Search, trained: Trained, clock: Clock) -> str:
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


def _budget_steps(plan: Budget | None, steps: int, search: Search, clock: Clock) -> int:
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
            f"the range test, at {search.step_seconds:.2g} s a step); give a larger one (--budget "
            f"{time_for(30, clock.elapsed, search.step_seconds)} trains about 30 steps here) or steps (--budget 30)"
        )
    return fitted


def run_record(
    target: Target,
    *,
    task: Task,
    recommendation: dict[str, Any],
    finder: dict[str, Any] | None,
    schedule: Schedule,
    trained: Trained,
    notes: list[str],
    clock: Clock,
    tradeoff: dict[str, Any] | None = None,
    resumed: dict[str, Any] | None = None,
    resumes: list[dict[str, int]] | None = None,
    horizon: dict[str, Any] | None = None,
    device: str | None = None,
    precision: str | None = None,
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
        layer_stats=LayerStats(layers.names, layers.steps, layers.ratios, layers.adapted) if layers.steps else None,
        metrics=trained.final,
        timings=timings,
        notes=notes,
        status=trained.status,
        tradeoff=tradeoff,
        resumed=resumed,
        resumes=list(resumes or []),
        horizon=horizon,
        classes=task.classes,
        batch_size=task.recipe.batch_size,
        chance_loss=_unbalanced_chance(task),
        device=device,
        precision=precision,
    )


def _unbalanced_chance(task: Task) -> float | None:
    """The task's chance level where it is not ln(classes) (unbalanced labels), else None."""
    chance, classes = task.chance_loss, task.classes
    return None if chance is None or classes is None or math.isclose(chance, math.log(classes)) else chance


def _write(record: Any, run_dir: Path, report: bool, clock: Clock) -> Path | None:
    """The HTML report (with ``run.json``), or only ``run.json`` with ``report=False``."""
    with clock.phase("report"):
        if not report:
            record.write_json(run_dir / "run.json")
            return None
        from lrpilot.report import write_report

        return Path(write_report(record, run_dir))
