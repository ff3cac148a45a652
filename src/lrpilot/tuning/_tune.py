"""`tune` and `work`: the peak LR (and optionally the warmup and decay) searched with Optuna, on one
machine or many, at a few runs' cost.

`tune` starts a study (or continues one): rules and a range test give the prior and the interval;
candidates (a fixed design around the range test's peak, a line search in log LR from there, then
Optuna's TPE sampler) each train the user's schedule compressed to a third of the run (successive
halving's rung); when the budget (in run-equivalents) can start no further rung, the best third of
the rungs train the full run under the guard. The best full run *is* the final model: no run is
repeated. `work` joins an existing study from any machine that reaches its storage.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrpilot import _validate as check
from lrpilot.autopilot._budget import Budget, parse_budget, steps_for_time, time_for
from lrpilot.autopilot._lora import parse_targets
from lrpilot.autopilot._progress import Clock, Progress, quiet
from lrpilot.autopilot._search import TEST_SHARE, peak_at_horizon, ramp, ramp_density, range_test
from lrpilot.autopilot._target import Target, TargetSpec, check_target
from lrpilot.rules import HORIZON_EXPONENT, Recommendation
from lrpilot.tasks import Recipe, Task
from lrpilot.tasks._device import resolve_device, resolve_precision
from lrpilot.tuning._engine import (
    FIRST_TRIAL_SHARE,
    REDUCTION,
    attach,
    build_target,
    load_study,
    make_runner,
    plan_run,
    quiet_optuna,
    run_until_done,
    rungs_for,
    target_spec,
)
from lrpilot.tuning._halving import (
    committed_steps,
    next_trial_steps,
    overhead_steps,
    trial_cap,
    unpaid_winners,
)
from lrpilot.tuning._result import TuneResult, summaries, tune_dict, tuned_recommendation
from lrpilot.tuning._rundir import DB_FILE, Place, has_studies, place, write_mark
from lrpilot.tuning._space import Space, parse_search
from lrpilot.tuning._study import (
    CONFIG_KEY,
    HEARTBEAT,
    StudyConfig,
    check_url,
    current,
    open_storage,
    redact,
    spent_steps,
)
from lrpilot.tuning._trial import RUN_FILE, TrialRunner

if TYPE_CHECKING:
    import optuna

__all__ = ["DB_FILE", "check_arguments", "tune"]

SETTINGS_WAIT = 5.0
"""Seconds a tune that finds its new study created by another waits for the other to store its
settings (the next call after creating it)."""
FINAL_KEY = "lrpilot_final"
"""The study's user attribute naming the trial whose weights the run directory holds (a re-run that
finds the same winner reuses them: the trial folders are gone by then)."""


def tune(
    task: str | None = None,
    *,
    model: str | Path | None = None,
    data: str | Path | None = None,
    eval_data: str | Path | None = None,
    task_type: str | None = None,
    method: str | None = None,
    steps: int | None = None,
    budget: float | str = 3.0,
    search: str | tuple[str, ...] = "lr",
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    prune: bool = True,
    max_trials: int | None = None,
    finder_steps: int | None = None,
    heartbeat: float = HEARTBEAT,
    device: str | None = None,
    precision: str | None = None,
    columns: dict[str, str] | None = None,
    max_length: int | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_targets: str | Sequence[str] | None = None,
    report: bool = True,
    progress: Progress | None = None,
) -> TuneResult:
    """Search the peak LR (and, with `search`, the warmup share and decay) for a full training run,
    and keep the best run's model.

    Inputs as `lrpilot.fit`: a built-in `task`, or a local Hugging Face `model` with `data`.
    `steps`: the run's length (default: the task's). `budget`: the compute for the whole search in
    full runs (``3.0``: three runs' worth of steps, the range test included), or a time (``"20m"``).
    `storage`: an Optuna RDB URL (``postgresql://user:pw@host/db``) shared by many machines, where
    each runs ``lrpilot tune worker --study NAME --storage URL``; default an SQLite file in the run
    directory. `study`: its name (default ``lrpilot-<task>``). `out`: a new or empty directory, or
    an earlier tune's: re-running with the same `out` (its ``tune.json`` names the study and its
    storage, so `storage` may be left out unless its URL has a password), or with the same
    `storage` and `study`, continues the study: no finished trial is repeated, and the range test
    is not run again; a larger `budget` on the re-run runs the trials it pays for (a note says why
    when it pays for none). `prune`:
    successive halving (each trial first trains a run a third as long, at its LR scaled to that
    length; the best third go on to the full run).
    `max_trials`: cap the trials (default: what the budget pays for). `finder_steps`: the range
    test's length, `device` where this process trains (``"auto"``, the default, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``; each worker chooses its own) and `precision` its forward passes'
    (``"fp32"``, the default, ``"bf16"``, ``"fp16"``), `columns` and `max_length` the data's, and
    `lora_rank`, `lora_alpha` and `lora_targets` the adapters' (``method="lora"``), as in
    `lrpilot.fit`; every trial trains the same adapters, and a study continues only with them.

    Bad input (an unknown task or search name, a budget too small for one full run plus the range
    test, an unreachable or malformed storage URL, a study created with other settings, an `out`
    that holds anything but this study's earlier tune) raises ValueError before any training.
    """
    check_arguments(**{name: value for name, value in locals().items() if name not in RUNTIME})
    progress = progress or quiet
    clock = Clock()
    quiet_optuna()
    names = _checked(seed=seed, search=search, max_trials=max_trials, finder_steps=finder_steps, heartbeat=heartbeat)
    where = resolve_device(device, "tune")
    mixed = resolve_precision(precision, where, "tune")
    plan = _parse_budget(budget)
    given = {"task": task, "model": model, "data": data, "eval_data": eval_data, "task_type": task_type}
    spec = target_spec({**given, "method": method, "data_dir": data_dir, "batch_size": batch_size})
    given_data = {
        "columns": dict(columns) if columns else None,
        "max_length": max_length,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "lora_targets": _stored_targets(lora_targets),
    }
    spec.update({k: v for k, v in given_data.items() if v is not None})  # a study stored without them continues
    target = build_target(spec, "tune")  # the data and the model load here
    run_steps = steps if steps is not None else target.steps
    check.step_count("tune", "steps", run_steps, 1)
    net, rec, job, recipe = plan_run(target, run_steps, seed, where, mixed, owner="tune")
    ramp_steps = ramp(rec, finder_steps, batch_size=recipe.batch_size)[2]
    first = FIRST_TRIAL_SHARE if prune else 1.0
    smallest = first + ramp_steps / run_steps
    if isinstance(plan, float) and plan < smallest:
        raise ValueError(
            f"tune: a budget of {plan:g} runs cannot pay for the range test (up to {ramp_steps} steps) and "
            f"the first trial ({first:.2f} runs of {run_steps} steps); give at least {smallest:.2f}"
        )
    home = place(out, storage, study, target.label)
    run_dir, url, name = home.run_dir, home.url, home.name
    if home.default_storage:
        run_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    store = open_storage(url, heartbeat=heartbeat)
    existing = load_study(store, name)
    _check_continued(home, existing is not None, store)
    run_dir.mkdir(parents=True, exist_ok=True)
    asked = {"target": spec, "seed": seed, "run_steps": run_steps, "search": list(names), "prune": prune}
    if existing is not None and CONFIG_KEY in existing.user_attrs:
        config = StudyConfig.from_dict(existing.user_attrs[CONFIG_KEY])
        _check_same(config, asked, name, out=home.run_dir if home.resuming else None)
        optuna_study = existing
        notes = [f"continued the study {name!r} ({len(existing.trials)} trials so far)"]
        config = _raise_budget(existing, config, plan, clock, max_trials=max_trials, notes=notes)
    else:
        setup = _Setup(target, job, spec, recipe, rec, seed, names, prune, max_trials, finder_steps, mixed.amp)
        config = _search_prior(setup, net, plan, clock, progress)
        optuna_study, config, notes = _create(store, name, config, asked=asked, plan=plan, clock=clock)
    write_mark(home)  # from now on the same command (same --out) continues this study
    space = Space.from_dict(config.space)
    live = attach(optuna_study, config)
    runner = make_runner(config, run_dir / "trials", progress, where, mixed)
    runner.on_trial = lambda number, cand: progress(f"trial {number} ({cand.describe()})", 0, None, math.nan, math.nan)
    with clock.phase("trials"):
        run_until_done(live, runner, progress)
    return _finish(
        live,
        config=current(live, config),
        space=space,
        runner=runner,
        run_dir=run_dir,
        url=url,
        notes=notes,
        clock=clock,
        report=report,
        rec=rec,
    )


RUNTIME = ("report", "progress")
"""tune's arguments that say how to report, not what to search: `check_arguments` takes the others."""


def check_arguments(
    task: str | None = None,
    *,
    model: str | Path | None = None,
    data: str | Path | None = None,
    eval_data: str | Path | None = None,
    task_type: str | None = None,
    method: str | None = None,
    steps: int | None = None,
    budget: float | str = 3.0,
    search: str | tuple[str, ...] = "lr",
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    max_trials: int | None = None,
    finder_steps: int | None = None,
    heartbeat: float = HEARTBEAT,
    device: str | None = None,
    precision: str | None = None,
    columns: dict[str, str] | None = None,
    max_length: int | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_targets: str | Sequence[str] | None = None,
    prune: bool = True,
) -> None:
    """Refuse bad arguments of `tune` (the same, less `report` and `progress`) before
    anything is loaded or trained: each value, the budget, the device and precision, what to train
    (`lrpilot.autopilot._target.check_target`, fit's own: the task, the paths of the model and its
    data, their options), a budget in runs too small for the first trial and the least range test,
    a storage URL that names no database (`check_url`) and an `out` that is a file or holds
    something other than an earlier tune (`place`). tune runs it first, and ``lrpilot tune``
    before it prints its plan, which had read "digits: rules → range test → … → report" above
    "--budget must be …". What the data files hold, what the model is, the exact range test and
    whether the storage opens are checked as they load."""
    _checked(seed=seed, search=search, max_trials=max_trials, finder_steps=finder_steps, heartbeat=heartbeat)
    resolve_precision(precision, resolve_device(device, "tune"), "tune")
    plan = _parse_budget(budget)
    if steps is not None:
        check.step_count("tune", "steps", steps, 1)
    recipe = check_target(TargetSpec.of(locals(), owner="tune"))
    if isinstance(plan, float):
        run_steps = steps if steps is not None or model is not None else recipe.total_steps  # a user's: once loaded
        _check_least_budget(plan, prune=prune, run_steps=run_steps, ramp_steps=finder_steps, batch=recipe.batch_size)
    if storage is not None:
        check_url(storage)
    if out is not None:
        place(out, storage, study, "check")  # the label names only a new study: an `out` is checked the same


def _stored_targets(targets: str | Sequence[str] | None) -> str | list[str] | None:
    """`lora_targets` as the study stores it (JSON): one spelling for each choice, so that
    ``"q_proj,v_proj"`` and ``["q_proj", "v_proj"]`` continue the same study."""
    parsed = None if targets is None else parse_targets("tune", targets)
    return list(parsed) if isinstance(parsed, tuple) else parsed


def _check_least_budget(plan: float, *, prune: bool, run_steps: int | None, ramp_steps: int | None, batch: int) -> None:
    """Refuse a budget in runs that cannot pay for the first trial and the least range test
    (`finder_steps`, else `ramp` over three decades, the least it spans, at `ramp_density`): what
    tune refuses once the rules set the ramp's start, said before anything is loaded (a run's
    length is known then for a built-in task, or given by `steps`). tune's own check, exact, stays."""
    first = FIRST_TRIAL_SHARE if prune else 1.0
    least_ramp = ramp_steps if ramp_steps is not None else round(ramp_density(batch) * 3)
    share = least_ramp / run_steps if run_steps is not None else 0.0
    if plan >= first + share:
        return
    test = f"{least_ramp} steps" if ramp_steps is not None else f"at least {least_ramp} steps"
    runs = f"{first:.2f} runs" + (f" of {run_steps} steps" if run_steps is not None else "")
    exact = ramp_steps is not None and run_steps is not None
    more = "" if exact else ", more where the model makes the range test longer"
    raise ValueError(
        f"tune: a budget of {plan:g} runs cannot pay for the range test ({test}) and the first trial "
        f"({runs}); give at least {math.ceil((first + share) * 100) / 100:.2f}{more}"
    )


def _check_continued(where: Place, found: bool, store: optuna.storages.RDBStorage) -> None:
    """A run directory that holds an earlier tune must find its study in the storage: else a
    ValueError naming both (the study was deleted, or the storage is another). A bare `DB_FILE`
    holding no study at all (a tune stopped during its range test, before the mark) starts afresh."""
    if not where.resuming or found or (not where.marked and not has_studies(store)):
        return
    raise ValueError(
        f"tune: --out {where.run_dir} holds a tune of the study {where.name!r}, which {redact(where.url)} "
        "does not hold (deleted, or another storage?); give --study and --storage to name it, or a new --out"
    )


def _checked(
    *, seed: int, search: str | tuple[str, ...], max_trials: int | None, finder_steps: int | None, heartbeat: float
) -> tuple[str, ...]:
    """`tune`'s plain arguments checked (a ValueError naming the bad one); the search names."""
    check.step_count("tune", "seed", seed, 0, 2**32 - 1)
    if max_trials is not None:
        check.step_count("tune", "max_trials", max_trials, 1, 10_000)
    if finder_steps is not None:
        check.step_count("tune", "finder_steps", finder_steps, 5, 100_000)
    check.positive("tune", "heartbeat", heartbeat)
    return parse_search(search)


@dataclass(frozen=True)
class _Setup:
    """What a new study is made from."""

    target: Target
    job: Task
    spec: dict[str, Any]
    recipe: Recipe
    rec: Recommendation
    seed: int
    search: tuple[str, ...]
    prune: bool
    max_trials: int | None
    finder_steps: int | None
    amp: str | None


def _search_prior(setup: _Setup, net: Any, plan: float | Budget, clock: Clock, progress: Progress) -> StudyConfig:
    """The range test on the fresh model, and the study's configuration from it and the budget."""
    recipe = setup.recipe
    run_steps = recipe.total_steps
    with clock.phase("find"):
        found = range_test(
            setup.job,
            net,
            recipe,
            setup.rec,
            seed=setup.seed,
            steps=setup.finder_steps,
            progress=progress,
            amp=setup.amp,
            deadline=None
            if isinstance(plan, float) or plan.seconds is None
            else clock.started + TEST_SHARE * plan.seconds,
        )
    finder = found.finder
    peak, factor = peak_at_horizon(found, run_steps, setup.target.calibrated)
    band = (peak, peak) if finder is None else (finder.band[0] * factor, finder.band[1] * factor)
    space = Space.around(peak, band, recipe, setup.search)
    ramp_used = 0 if finder is None else int(finder.steps_used)
    rungs = rungs_for(run_steps) if setup.prune else []
    first = run_steps + (rungs[0] if rungs else 0)
    budget_steps = _budget_steps(plan, run_steps, ramp_used, found.step_seconds, clock, first=first)
    if isinstance(plan, float) and budget_steps < first:  # the range test ran again from lower (`too_high`)
        found.notes.append(
            f"the range test took {ramp_used} steps, leaving {budget_steps} of the budget's {plan:g} runs, less "
            f"than the first trial's {first}: it runs anyway, {first - budget_steps} steps over the budget"
        )
        budget_steps = first
    cap = setup.max_trials or trial_cap(budget_steps, run_steps, rungs[0] if rungs else None, REDUCTION)
    return StudyConfig(
        target=setup.spec,
        seed=setup.seed,
        run_steps=run_steps,
        space=space.to_dict(),
        design=space.design(peak, recipe),
        search=list(setup.search),
        rungs=rungs,
        reduction=REDUCTION,
        horizon_exponent=HORIZON_EXPONENT,
        prune=setup.prune,
        budget_steps=budget_steps,
        max_trials=cap,
        trials_given=setup.max_trials is not None,
        deadline=_deadline(plan, clock),
        finder={
            "peak_lr": peak,
            "band": list(band),
            "steps": ramp_used,
            "seconds": clock.timings["find"],
            "step_seconds": found.step_seconds,
            "notes": found.notes,
            "horizon": found.horizon,
            "result": None if finder is None else finder.to_dict(),
        },
        recommendation=setup.rec.to_dict(),
    )


def _deadline(plan: float | Budget, clock: Clock) -> float | None:
    """When a time budget is spent, on the wall clock every worker reads (None for runs)."""
    if isinstance(plan, float) or plan.seconds is None:
        return None
    return time.time() - clock.elapsed + plan.seconds


def _parse_budget(budget: float | str) -> float | Budget:
    """Run-equivalents as a float, or a time `Budget`."""
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        return check.positive("tune", "--budget", float(budget))
    text = str(budget).strip()
    try:
        runs = float(text)
    except ValueError:
        runs = None
    if runs is not None:  # "0" or "-1" had been refused as "must be a number of runs (3) or a time"
        return check.positive("tune", "--budget", runs)
    bad = f"tune: --budget must be a number of runs (3) or a time (20m, 1h), got {budget!r}"
    try:
        plan = parse_budget(text)
    except ValueError:  # fit's message asks for steps, which a tune's budget is not counted in
        raise ValueError(bad) from None
    if plan is None or plan.seconds is None:
        raise ValueError(bad)
    return plan


def _budget_steps(
    plan: float | Budget, run_steps: int, ramp_used: int, step_seconds: float | None, clock: Clock, *, first: int
) -> int:
    """The trials' share of the budget in training steps (the range test's steps taken off); a
    time budget must leave the `first` trial's steps (a rung and its full run, or one run)."""
    if isinstance(plan, float):
        return round(plan * run_steps) - ramp_used
    if step_seconds is None or plan.seconds is None:
        raise ValueError("tune: the range test measured no step time to turn a time budget into steps; give runs")
    steps = steps_for_time(plan.seconds, clock.elapsed, step_seconds)
    if steps < first:
        raise ValueError(
            f"tune: the time budget {plan} leaves {steps} steps after the range test, less than the first "
            f"trial's {first} ({run_steps} steps a run, {step_seconds:.3g} s a step); give at least "
            f"{time_for(first, clock.elapsed, step_seconds)}"
        )
    return steps


def _create(
    storage: optuna.storages.RDBStorage,
    name: str,
    config: StudyConfig,
    *,
    asked: dict[str, Any],
    plan: float | Budget,
    clock: Clock,
) -> tuple[optuna.Study, StudyConfig, list[str]]:
    """The new study, its settings and the notes to show. A tune started beside another on one
    storage may find the study the other created during their range tests: it continues that one,
    as a re-run would (its own settings had gone on with their own design, budget, seed or task
    in the other's study)."""
    import optuna

    try:  # atomic: the database's unique study name says which of two tunes created it
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        waited = time.monotonic() + SETTINGS_WAIT
        while CONFIG_KEY not in study.user_attrs and time.monotonic() < waited:
            time.sleep(0.1)
    if CONFIG_KEY not in study.user_attrs:  # created here, or left without settings by a tune stopped then
        study.set_user_attr(CONFIG_KEY, config.to_dict())
        return study, config, list(config.finder["notes"])
    stored = StudyConfig.from_dict(study.user_attrs[CONFIG_KEY])
    _check_same(stored, asked, name)
    notes = [f"joined the study {name!r}, which another tune created during this one's range test"]
    return study, _join(study, stored, config, plan, clock, notes=notes), notes


def _join(
    study: optuna.Study, stored: StudyConfig, own: StudyConfig, plan: float | Budget, clock: Clock, *, notes: list[str]
) -> StudyConfig:
    """The study's settings once a tune that ran its range test beside the creator's joins it: its
    test is the study's compute too (``joined_steps``: a budget in runs pays for it, and the
    compute note counts it; two tunes given ``--budget 3`` had each said 2.82 run-equivalents, the
    second test's 40 steps in neither); then a re-run's rules (`_raise_budget`: a time budget is
    this tune's time from its start, its own range test's taken off)."""
    tests = int(own.finder.get("steps") or 0)
    finder = {**stored.finder, "joined_steps": int(stored.finder.get("joined_steps") or 0) + tests}
    budget = stored.budget_steps - (tests if stored.deadline is None else 0)  # a budget in runs pays for both tests
    joined = dataclasses.replace(stored, finder=finder, budget_steps=budget)
    study.set_user_attr(CONFIG_KEY, joined.to_dict())
    max_trials = own.max_trials if own.trials_given else None
    return _raise_budget(study, joined, plan, clock, max_trials=max_trials, notes=notes)


def _raise_budget(
    study: optuna.Study,
    config: StudyConfig,
    plan: float | Budget,
    clock: Clock,
    *,
    max_trials: int | None,
    notes: list[str],
) -> StudyConfig:
    """A continued study given a larger budget (in runs) than it was created with gets it: the
    stored budget and trial cap grow (the search goes on where it stopped: further rungs, and the
    full runs of rung winners the old budget could not pay). A time budget is more time: a new
    deadline, and that time's steps at the stored range test's pace on top of those committed; a
    run budget replaces a time budget the study was created with, deadline and steps: those steps
    were the time at the range test's pace, which only the deadline held the study to, and a tune
    stopped early in a 20 s budget and re-run with ``--budget 3`` had trained 107 runs' worth."""
    if not isinstance(plan, float):
        return _more_time(study, config, plan, clock, max_trials=max_trials, notes=notes)
    timed = config.deadline is not None
    wanted = round(plan * config.run_steps) - config.test_steps()
    if not timed and wanted <= config.budget_steps:
        return config
    rung = config.rungs[0] if config.rungs else None
    cap = max_trials or trial_cap(wanted, config.run_steps, rung, config.reduction)
    if timed:
        cap = config.max_trials if config.trials_given and max_trials is None else cap
    raised = dataclasses.replace(
        config,
        deadline=None,
        budget_steps=wanted,
        max_trials=cap if timed else max(cap, config.max_trials),
        trials_given=config.trials_given or max_trials is not None,
    )
    study.set_user_attr(CONFIG_KEY, raised.to_dict())
    said = f"budget: {plan:g} runs in place of the time budget" if timed else f"budget raised to {plan:g} runs"
    notes.append(f"{said} ({wanted} trial steps, up to {raised.max_trials} trials)")
    if (idle := _nothing_to_run(study, raised, capped=max_trials is not None)) is not None:
        notes.append(idle)
    return raised


def _nothing_to_run(study: optuna.Study, config: StudyConfig, *, capped: bool) -> str | None:
    """Why a raised budget runs no further trial, if it runs none: its extra steps pay neither a
    rung (with the full runs it earns) nor the full run of a rung not trained in full; with the
    budget that would pay the next one (`capped`: the user's --max-trials holds, else the cap grows
    with the budget). Said, so that a raise that buys nothing is not silent."""
    now = next_trial_steps(study, config)
    if now is not None and now <= config.budget_steps:
        return None
    committed = committed_steps(study, config)
    need = next_trial_steps(study, config, capped=capped)
    if need is None:
        return (
            f"the raised budget runs no further trial: the study has its {config.max_trials} trials and every "
            "rung that did not diverge is trained in full (give --max-trials to allow more)"
        )
    runs = (need + config.test_steps()) / config.run_steps
    return (
        f"the raised budget runs no further trial: it leaves {max(0, config.budget_steps - committed)} trial steps, "
        f"the next trial needs {need - committed} (a {config.rungs[0] if config.rungs else config.run_steps}-step "
        f"rung with the full runs it earns, or a full run of {config.run_steps}); give --budget "
        f"{math.ceil(runs * 10) / 10:g} or more"
    )


def _more_time(
    study: optuna.Study, config: StudyConfig, plan: Budget, clock: Clock, *, max_trials: int | None, notes: list[str]
) -> StudyConfig:
    """`_raise_budget` for a time budget (see there): the time left of it, at the range test's
    pace, on top of the steps the study has trained or started (a rung winner's full run an
    earlier budget could not pay comes out of it). The pace had been the range test's whole phase
    over its steps (its setup and first step's one-off costs included: 83 ms a digits step, not
    1.4 ms), so `--budget 10s` said "92 trial steps" while the full runs owed came on top."""
    pace = _pace(study, config)
    if plan.seconds is None or pace is None:
        notes.append(f"budget: {plan} more is not counted: the study holds no step time to turn it into steps")
        return config
    source = "the range test's" if config.finder.get("step_seconds") else "its trials'"
    raised = dataclasses.replace(
        config, deadline=_deadline(plan, clock), finder={**config.finder, "step_seconds": pace}
    )
    extra = steps_for_time(plan.seconds, clock.elapsed, pace)
    budget = committed_steps(study, raised, earned=False) + extra
    overhead = overhead_steps(study.get_trials(deepcopy=False), raised)
    rung = config.rungs[0] if config.rungs else None
    cap = max_trials or trial_cap(budget, config.run_steps, rung, config.reduction, overhead=overhead)
    raised = dataclasses.replace(raised, budget_steps=budget, max_trials=max(cap, config.max_trials))
    study.set_user_attr(CONFIG_KEY, raised.to_dict())
    costs = f", each trial's own costs {overhead * pace:.2g} s of it" if overhead else ""
    said = f"{extra} trial steps at {source} {pace:.3g} s a step{costs}, up to {raised.max_trials} trials"
    notes.append(f"budget: {plan} more ({said})")
    return raised


def _pace(study: optuna.Study, config: StudyConfig) -> float | None:
    """Seconds a training step takes: the range test's measure, or, for a study stored without it,
    its trials' wall time over their steps (their own costs included); None without either."""
    if stored := config.finder.get("step_seconds"):
        return float(stored)
    steps, seconds = 0, 0.0
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is not None and t.datetime_complete is not None and t.user_attrs.get("steps"):
            steps += int(t.user_attrs["steps"])
            seconds += (t.datetime_complete - t.datetime_start).total_seconds()
    return seconds / steps if steps and seconds > 0 else None


def _tests_said(config: StudyConfig) -> str:
    """The range tests' steps as the compute note says them (a joined tune's test is its own)."""
    joined = int(config.finder.get("joined_steps") or 0)
    if not joined:
        return f"range test {config.test_steps()} steps"
    return f"range tests {int(config.finder.get('steps') or 0)} + {joined} steps"


def _check_same(config: StudyConfig, asked: dict[str, Any], name: str, *, out: Path | None = None) -> None:
    """A continued study must train the same thing the same way: else a clear error. Continued
    because `out` holds it, only a new ``--out`` starts another: the advice to give another
    ``--study`` had led to a second refusal (the directory holds a tune of the stored study)."""
    stored = config.to_dict()
    diffs = [f"{key}: stored {stored[key]!r}, asked {asked[key]!r}" for key in asked if asked[key] != stored[key]]
    if diffs:
        advice = "give another --study (or --out)" if out is None else f"give a new --out (not {out})"
        raise ValueError(
            f"tune: the study {name!r} was created with other settings ({'; '.join(diffs)}); "
            f"{advice} to start a new one"
        )


def _put(source: Path, target: Path) -> None:
    """Copy the best trial's weights (a file, or a ``save_pretrained`` folder) to `target`,
    replacing what an earlier finish put there: a re-run with a larger budget whose new best was a
    user's model had crashed on the folder already there (FileExistsError). Copied beside it first,
    then swapped, so that a Ctrl-C during the copy leaves the earlier weights whole."""
    partial = target.with_name(f".{target.name}.partial")  # a copy a Ctrl-C cut short, if any
    if partial.is_dir():
        shutil.rmtree(partial)
    else:
        partial.unlink(missing_ok=True)
    if source.is_dir():
        shutil.copytree(source, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    else:
        shutil.copy2(source, partial)
        partial.replace(target)


def _finish(
    study: optuna.Study,
    *,
    config: StudyConfig,
    space: Space,
    runner: TrialRunner,
    run_dir: Path,
    url: str,
    notes: list[str],
    clock: Clock,
    report: bool,
    rec: Recommendation,
) -> TuneResult:
    """The winner's weights and record into the run directory, the report, the result."""
    from lrpilot.report import read_run

    trials = summaries(study)
    completed = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    if not completed:
        raise RuntimeError(f"tune: no trial of {study.study_name!r} completed (see the trials: every one diverged?)")
    best = min(completed, key=lambda t: (t.value, t.number))
    spent = spent_steps(study) + config.test_steps()
    equivalents = spent / config.run_steps
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == best.number)
    weights = Path(str(frozen.user_attrs.get("weights", "")))
    model_path, record = None, None
    kept = study.user_attrs.get(FINAL_KEY, {})
    if kept.get("trial") == best.number and Path(kept["weights"]).exists():  # an earlier finish kept it
        model_path = Path(kept["weights"])
        record = read_run(model_path.parent / RUN_FILE)
    elif weights.exists() and (weights.parent / RUN_FILE).is_file():
        model_path = run_dir / weights.name
        if weights.resolve() != model_path.resolve():
            _put(weights, model_path)
        record = read_run(weights.parent / RUN_FILE)
        study.set_user_attr(FINAL_KEY, {"trial": best.number, "weights": str(model_path.resolve())})
    else:
        notes.append(
            f"the best trial ({best.number}) ran on another machine and its weights are not here "
            f"({weights}); its settings are in the result"
        )
    pruned = sum(1 for t in trials if t.state == "PRUNED" and t.stopped not in ("skipped", "promoted"))
    unpaid = [t for t in trials if t.number in unpaid_winners(study, config)]
    if unpaid:
        needed = (spent + config.run_steps) / config.run_steps
        names = ", ".join(f"{t.number} ({t.candidate.describe()})" for t in unpaid)
        notes.append(
            f"trial(s) {names} won the rung but the budget could not pay a full run; "
            f"re-run with --budget {math.ceil(needed * 10) / 10:g} to train the first"
        )
    notes.append(
        f"{len(completed)} {'trial' if len(completed) == 1 else 'trials'} completed, {pruned} stopped early, "
        f"of {len(trials)}; "
        f"compute {equivalents:.2f} run-equivalents ({_tests_said(config)} + "
        f"{spent_steps(study)} trial steps, {config.run_steps} steps a run); best: trial {best.number}, "
        f"{best.candidate.describe()}, val loss {best.value:.4g}"
    )
    tuned = tuned_recommendation(rec, best, trials, runner.recipe, space)
    schedule = tuned.schedule.to_string()
    report_path = None
    timings = dict(clock.timings)
    timings["total"] = clock.elapsed
    if record is not None:
        record.title = f"lrpilot tune: {runner.target.label}"
        # a new study's notes begin with the range test's already; a continued one's do not
        record.notes = list(dict.fromkeys([*config.finder.get("notes", []), *notes]))
        record.timings = timings
        record.tune = tune_dict(trials, space, best.number, equivalents, config.finder)
        if report:
            from lrpilot.report import write_report

            report_path = write_report(record, run_dir)
        else:
            record.write_json(run_dir / RUN_FILE)
    shutil.rmtree(run_dir / "trials", ignore_errors=True)
    metrics = dict(record.metrics) if record is not None else {"val_loss": float(best.value or math.nan)}
    return TuneResult(
        best=best.candidate,
        value=float(best.value or math.nan),
        metrics=metrics,
        trials=trials,
        space=space,
        run_dir=run_dir,
        model_path=model_path,
        report_path=report_path,
        run_equivalents=equivalents,
        schedule=schedule,
        study_name=study.study_name,
        storage=redact(url),
        notes=notes,
        wall_time_s=clock.elapsed,
        finder=config.finder,
        recommendation=tuned,
    )
