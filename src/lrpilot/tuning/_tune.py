"""`tune` and `work`: the peak LR (and optionally the warmup and decay) searched with Optuna, on one
machine or many, at a few runs' cost.

`tune` starts a study (or continues one): rules and a range test give the prior, a fixed design
around the range test's peak is enqueued, and each trial first trains the user's schedule
compressed to a third of the run (successive halving's rung, where bad trials stop), then the full
run under the guard. After the design, Optuna's TPE sampler proposes the rest inside the same
interval until the budget (in run-equivalents) is spent. The best completed trial *is* the final
model (trained with the guard on, at the full length): no run is repeated. `work` joins an
existing study from any machine that reaches its storage.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lrpilot import _validate as check
from lrpilot.autopilot._budget import Budget, parse_budget, steps_for_time
from lrpilot.autopilot._hf import HfTask, recipe_from
from lrpilot.autopilot._pipeline import (
    Progress,
    _Clock,
    _fitted,
    _quiet,
    _range_test,
    _Target,
    _target,
    ramp,
)
from lrpilot.rules import Recommendation, recommend
from lrpilot.tasks import Recipe, Task, one_thread
from lrpilot.tuning._space import Candidate, Space, parse_search
from lrpilot.tuning._study import (
    CONFIG_KEY,
    StudyConfig,
    counted,
    open_storage,
    redact,
    spent_steps,
    sqlite_url,
)
from lrpilot.tuning._trial import RUN_FILE, TrialRunner

if TYPE_CHECKING:
    import optuna
    from torch import nn

__all__ = ["DB_FILE", "TrialSummary", "TuneResult", "WorkSummary", "tune", "work"]

FINAL_KEY = "lrpilot_final"
"""The study's user attribute naming the trial whose weights the run directory holds (a re-run that
finds the same winner reuses them: the trial folders are gone by then)."""
DB_FILE = "tune.db"
"""The default storage: an SQLite study in the run directory."""
REDUCTION = 3
"""Successive halving keeps the best third at its rung (Optuna's Hyperband default)."""
RUNG = 1 / 3
"""The rung: a trial first trains a run compressed to this share of the length; only the best third
of those go on to the full run. A ninth of the run was tried as a first rung and dropped: such a
run is mostly warmup and could not tell good LRs apart (digits: 0.19 vs 0.18 validation loss
for LRs whose full runs differ by 5 %)."""
HORIZON_EXPONENT = 0.3
"""A shorter run's best LR is higher: LR*(D) ∝ D^-β (Bjorck et al., "Scaling Optimal LR Across
Token Horizons", ICLR 2025). The rung's run trains at the candidate's LR × (full / rung)^β, so
that it tests the candidate's LR as it would be at the full length; β = 0.3 matches the digits
task, whose best LR moves ×1.4 between runs of 83 and 250 steps."""
FIRST_TRIAL_SHARE = RUNG + 1
"""What the first trial costs, in runs: it survives the rung (nothing to lose to yet)."""
EXTRA_TRIAL_SHARE = RUNG
"""What a later trial costs at least, in runs: its rung's run (most stop there)."""
HEARTBEAT = 10.0
"""Seconds between a running trial's heartbeats; a trial silent for three is failed and retried."""
POLL = 2.0
"""Seconds between looks at the study while other workers finish their trials."""


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the report and ``--json`` show it."""

    number: int
    state: str
    """``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING`` or ``WAITING``."""
    candidate: Candidate
    value: float | None
    """The final validation loss (completed trials)."""
    steps: int
    intermediate: dict[int, float]
    """Validation loss of the compressed run at each rung reached."""
    stopped: str | None
    """Why a pruned trial stopped: ``pruned`` (worse than the others at a rung), ``budget``,
    ``diverged``, ``skipped`` (beyond the study's trial count)."""
    retry_of: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "peak_lr": self.candidate.peak_lr,
            "warmup": self.candidate.warmup,
            "decay": self.candidate.decay,
            "value": self.value,
            "steps": self.steps,
            "intermediate": {str(k): v for k, v in self.intermediate.items()},
            "stopped": self.stopped,
            "retry_of": self.retry_of,
        }


@dataclass(frozen=True)
class TuneResult:
    """What `tune` found and trained.

    Attributes:
        best: the winning candidate (peak LR, and warmup share and decay where searched).
        value: its final validation loss; metrics: all its final metrics.
        trials: every trial of the study.
        space: the searched interval and lists.
        run_dir, model_path, report_path: where the winner's weights and the report are.
        run_equivalents: the compute spent, in full runs: the range test's steps plus every
            trial's steps, over the run length.
        schedule: the winner's schedule (an lrpilot spec string).
        study_name, storage: where the study lives (the password left out).
        notes: what the reader must know.
        wall_time_s: seconds this call took (other workers' time not included).
        finder: the range test's peak, band, steps and notes.
        recommendation: the rules' `Recommendation` with the winner in it: ``export("hf")`` (or
            ``trl``, ``axolotl``, ``torchtune``, ``llama-cpp``, ``pytorch``) writes it for your tool.
    """

    best: Candidate
    value: float
    metrics: dict[str, float]
    trials: list[TrialSummary]
    space: Space
    run_dir: Path
    model_path: Path | None
    report_path: Path | None
    run_equivalents: float
    schedule: str
    study_name: str
    storage: str
    notes: list[str]
    wall_time_s: float
    finder: dict[str, Any]
    recommendation: Recommendation

    @property
    def peak_lr(self) -> float:
        return self.best.peak_lr

    def export(self, fmt: str) -> Any:
        """The tuned settings in a tool's terms (`lrpilot.rules.FORMATS`): ``hf`` gives
        ``TrainingArguments`` kwargs, ``axolotl`` a YAML fragment, ``pytorch`` code, …"""
        from lrpilot.rules import FORMATS, to_axolotl, to_hf, to_llama_cpp, to_pytorch, to_torchtune, to_trl

        exporters = {
            "hf": to_hf,
            "trl": to_trl,
            "axolotl": to_axolotl,
            "torchtune": to_torchtune,
            "llama-cpp": to_llama_cpp,
            "pytorch": to_pytorch,
        }
        check.choice("TuneResult.export", "fmt", fmt, FORMATS)
        return exporters[fmt](self.recommendation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": {"peak_lr": self.best.peak_lr, "warmup": self.best.warmup, "decay": self.best.decay},
            "value": self.value,
            "metrics": dict(self.metrics),
            "schedule": self.schedule,
            "run_equivalents": self.run_equivalents,
            "space": self.space.to_dict(),
            "trials": [t.to_dict() for t in self.trials],
            "run_dir": str(self.run_dir),
            "model_path": None if self.model_path is None else str(self.model_path),
            "report_path": None if self.report_path is None else str(self.report_path),
            "study_name": self.study_name,
            "storage": self.storage,
            "notes": list(self.notes),
            "wall_time_s": self.wall_time_s,
            "finder": {k: v for k, v in self.finder.items() if k != "result"},
            "recommendation": self.recommendation.to_dict(),
            "hf": self._hf_or_reason(),
        }

    def _hf_or_reason(self) -> dict[str, Any]:
        """``TrainingArguments`` kwargs, or ``{"unavailable": why}`` when Hugging Face's schedulers
        cannot run the winner's schedule (a WSD with a floor, say): ``--json`` must not fail on it."""
        try:
            return cast(dict[str, Any], self.export("hf"))
        except ValueError as exc:
            return {"unavailable": str(exc)}


# --- the study ----------------------------------------------------------------------------------


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rungs(run_steps: int) -> list[int]:
    """Successive halving's rung, `RUNG` of the run (none for a run too short to compress)."""
    rung = round(run_steps * RUNG)
    return [rung] if 2 <= rung < run_steps else []


def _max_trials(budget_steps: int, run_steps: int, prune: bool) -> int:
    """The most trials the budget could start: the first costs `FIRST_TRIAL_SHARE` runs, each further
    one at least `EXTRA_TRIAL_SHARE` (one run each without pruning). The budget itself decides how
    many do start (`_more_to_do`); this caps the design queued and the sampler's trials."""
    if not prune:
        return max(1, budget_steps // run_steps)
    extra = (budget_steps - FIRST_TRIAL_SHARE * run_steps) / (EXTRA_TRIAL_SHARE * run_steps)
    return 1 + max(0, math.floor(extra + 1e-9))


def _load_study(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study | None:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=None)
    except KeyError:
        return None


def _sampler(config: StudyConfig, design: int) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():  # TPE's multivariate mode is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=design, multivariate=True)


def _pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    import optuna

    if not config.prune or not config.rungs:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=config.rungs[0], reduction_factor=config.reduction, min_early_stopping_rate=0
    )


def _attach(study: optuna.Study, config: StudyConfig) -> optuna.Study:
    """`study` with the sampler and pruner its configuration calls for (they are not stored)."""
    import optuna

    design = sum(1 for t in study.get_trials(deepcopy=False) if "fixed_params" in t.system_attrs)
    return optuna.load_study(
        study_name=study.study_name,
        storage=study._storage,  # the same storage object: its heartbeat and retry settings
        sampler=_sampler(config, max(design, 1)),
        pruner=_pruner(config),
    )


_PATHS = ("model", "data", "eval_data", "data_dir")


def _target_spec(given: dict[str, Any]) -> dict[str, Any]:
    """What to train, as stored in the study: `given` (fit's inputs) with paths made absolute."""
    return {k: str(Path(v).resolve()) if k in _PATHS and v is not None else v for k, v in given.items()}


def _build(spec: dict[str, Any]) -> _Target:
    return _target(
        spec["task"],
        model=spec["model"],
        data=spec["data"],
        eval_data=spec["eval_data"],
        task_type=spec["task_type"],
        method=spec["method"],
        data_dir=spec["data_dir"],
        batch_size=spec["batch_size"],
    )


# --- running trials -------------------------------------------------------------------------------


def _more_to_do(study: optuna.Study, config: StudyConfig) -> bool:
    """Whether this worker should start another trial: the budget can pay for its first rung (or
    nothing has completed yet), and a queued trial waits or the study has fewer than its cap.
    A rung is worth running even when a full run no longer fits: most trials stop there, and one
    that wins it is named in the result (a re-run with a larger budget trains it). Design points the
    budget cannot pay for stay queued (a re-run with a larger budget runs them)."""
    import optuna

    first = config.rungs[0] if config.rungs else config.run_steps
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if completed and spent_steps(study) + first > config.budget_steps:
        return False
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return True
    return counted(study) < config.max_trials


def _run_trials(study: optuna.Study, runner: TrialRunner) -> None:
    while _more_to_do(study, runner.config):
        study.optimize(runner, n_trials=1, catch=(), gc_after_trial=False)


def _run_until_done(study: optuna.Study, runner: TrialRunner, progress: Progress) -> None:
    """Run trials here, then wait for other workers' (taking over any a dead worker left)."""
    _run_trials(study, runner)
    while _wait_for_others(study, runner.config, progress):
        _run_trials(study, runner)


def _plan(target: _Target, run_steps: int, seed: int) -> tuple[nn.Module, Recommendation, Task, Recipe]:
    """The fresh model, the rules' recommendation for it, the task to train (a user's model gets the
    recommendation's warmup and decay, as in `lrpilot.fit`) and its recipe fitted to `run_steps`."""
    net = target.task.build_model(seed)
    batch = target.task.recipe.batch_size
    rec = recommend(net, target.method, batch_size=batch, steps=run_steps, seq_len=target.seq_len)
    job = target.task.with_recipe(recipe_from(rec, batch)) if isinstance(target.task, HfTask) else target.task
    return net, rec, job, _fitted(job.recipe, run_steps, f"{run_steps} steps")


def _runner(config: StudyConfig, trials_dir: Path, progress: Progress) -> TrialRunner:
    target = _build(config.target)
    _, _, job, recipe = _plan(target, config.run_steps, config.seed)
    return TrialRunner(config, target, job, recipe, trials_dir, progress)


def _wait_for_others(study: optuna.Study, config: StudyConfig, progress: Progress) -> bool:
    """Block until no trial is running (other workers finish theirs, or their heartbeats lapse and
    the trials are failed and queued again); then whether there is work left to do here."""
    import optuna

    while pending := study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        progress("waiting for other workers", len(pending), None, math.nan, math.nan)
        optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
        time.sleep(POLL)
    return _more_to_do(study, config)


# --- results --------------------------------------------------------------------------------------


def summaries(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of `study` as a `TrialSummary`, by number."""
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        fixed = t.system_attrs.get("fixed_params", {})
        params = {**fixed, **t.params}
        candidate = Candidate(
            float(params.get("lr", math.nan)),
            None if params.get("warmup") is None else float(params["warmup"]),
            None if params.get("decay") is None else str(params["decay"]),
        )
        stopped = t.user_attrs.get("stopped") or ("skipped" if t.user_attrs.get("skipped") else None)
        if t.state.name == "PRUNED" and stopped is None:
            stopped = "pruned"
        if t.state.name == "WAITING":
            stopped = "not run: the budget was spent"
        out.append(
            TrialSummary(
                number=t.number,
                state=t.state.name,
                candidate=candidate,
                value=t.value if t.state.name == "COMPLETE" else None,
                steps=int(t.user_attrs.get("steps", 0)),
                intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
                stopped=stopped,
                retry_of=t.system_attrs.get("failed_trial"),
            )
        )
    return out


def tune_dict(
    trials: list[TrialSummary], space: Space, best: int | None, run_equivalents: float, finder: dict[str, Any]
) -> dict[str, Any]:
    """The report's ``tune`` section (`lrpilot.report.RunRecord.tune`)."""
    return {
        "trials": [t.to_dict() for t in trials],
        "space": space.to_dict(),
        "best": best,
        "run_equivalents": run_equivalents,
        "finder_peak": finder.get("peak_lr"),
        "band": finder.get("band"),
    }


# --- tune -----------------------------------------------------------------------------------------


def _run_dir(out: str | Path | None, label: str) -> tuple[Path, bool]:
    """The run directory and whether it continues an earlier tune (it holds its ``tune.db``)."""
    from lrpilot.autopilot._pipeline import _run_dir as new_run_dir

    if out is not None and (Path(out) / DB_FILE).is_file():
        return Path(out), True
    return new_run_dir(None if out is None else Path(out), f"tune-{label}"), False


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
    directory. `study`: its name (default ``lrpilot-<task>``). Re-running with the same `out` (or
    the same `storage` and `study`) continues the study: no finished trial is repeated, and the
    range test is not run again; a larger `budget` on the re-run extends the search. `prune`:
    successive halving (each trial first trains a run a third as long, at its LR scaled to that
    length; the best third go on to the full run).
    `max_trials`: cap the trials (default: what the budget pays for). `finder_steps`: the range
    test's length, as in `lrpilot.fit`.

    Bad input (an unknown task or search name, a budget too small for one full run plus the range
    test, an unreachable or malformed storage URL, a study created with other settings) raises
    ValueError before any training.
    """
    progress = progress or _quiet
    clock = _Clock()
    _quiet_optuna()
    names = _checked(seed=seed, search=search, max_trials=max_trials, finder_steps=finder_steps, heartbeat=heartbeat)
    plan = _parse_budget(budget)
    given = {"task": task, "model": model, "data": data, "eval_data": eval_data, "task_type": task_type}
    spec = _target_spec({**given, "method": method, "data_dir": data_dir, "batch_size": batch_size})
    target = _build(spec)
    run_steps = steps if steps is not None else target.steps
    check.step_count("tune", "steps", run_steps, 1)
    net, rec, job, recipe = _plan(target, run_steps, seed)
    ramp_steps = ramp(rec, finder_steps)[2]
    first = FIRST_TRIAL_SHARE if prune else 1.0
    smallest = first + ramp_steps / run_steps
    if isinstance(plan, float) and plan < smallest:
        raise ValueError(
            f"tune: a budget of {plan:g} runs cannot pay for the range test (up to {ramp_steps} steps) and "
            f"the first trial ({first:.2f} runs of {run_steps} steps); give at least {smallest:.2f}"
        )
    run_dir, resuming = _run_dir(out, target.label)
    url = storage if storage is not None else sqlite_url(run_dir / DB_FILE)
    name = study or f"lrpilot-{target.label}"
    if storage is None:
        run_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(url, heartbeat=heartbeat)
    existing = _load_study(store, name)
    if resuming and existing is None:
        raise ValueError(f"tune: {run_dir} holds a {DB_FILE} without the study {name!r}; give --study")
    run_dir.mkdir(parents=True, exist_ok=True)
    if existing is not None and CONFIG_KEY in existing.user_attrs:
        config = StudyConfig.from_dict(existing.user_attrs[CONFIG_KEY])
        asked = {"target": spec, "seed": seed, "run_steps": run_steps, "search": list(names), "prune": prune}
        _check_same(config, asked, name)
        optuna_study = existing
        notes = [f"continued the study {name!r} ({len(existing.trials)} trials so far)"]
        config = _raise_budget(existing, config, plan, max_trials=max_trials, recipe=recipe, notes=notes)
    else:
        setup = _Setup(target, job, spec, recipe, rec, seed, names, prune, max_trials, finder_steps)
        config, peak = _search_prior(setup, net, plan, clock, progress)
        optuna_study = _create(store, name, config, peak, recipe)
        notes = list(config.finder["notes"])
    space = Space.from_dict(config.space)
    live = _attach(optuna_study, config)
    runner = _runner(config, run_dir / "trials", progress)
    runner.on_trial = lambda number, cand: progress(f"trial {number} ({cand.describe()})", 0, None, math.nan, math.nan)
    with clock.phase("trials"):
        _run_until_done(live, runner, progress)
    return _finish(
        live,
        config=config,
        space=space,
        runner=runner,
        run_dir=run_dir,
        url=url,
        notes=notes,
        clock=clock,
        report=report,
        rec=rec,
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

    target: _Target
    job: Task
    spec: dict[str, Any]
    recipe: Recipe
    rec: Recommendation
    seed: int
    search: tuple[str, ...]
    prune: bool
    max_trials: int | None
    finder_steps: int | None


def _search_prior(
    setup: _Setup, net: Any, plan: float | Budget, clock: _Clock, progress: Progress
) -> tuple[StudyConfig, float]:
    """The range test on the fresh model, and the study's configuration from it and the budget."""
    recipe = setup.recipe
    run_steps = recipe.total_steps
    with clock.phase("find"):
        found = _range_test(
            setup.job, net, recipe, setup.rec, seed=setup.seed, steps=setup.finder_steps, progress=progress
        )
    finder = found.finder
    band = (found.peak, found.peak) if finder is None else finder.band
    space = Space.around(found.peak, band, recipe, setup.search)
    ramp_used = 0 if finder is None else int(finder.steps_used)
    budget_steps = _budget_steps(plan, run_steps, ramp_used, found.step_seconds, clock)
    cap = setup.max_trials if setup.max_trials is not None else _max_trials(budget_steps, run_steps, setup.prune)
    config = StudyConfig(
        target=setup.spec,
        seed=setup.seed,
        run_steps=run_steps,
        space=space.to_dict(),
        search=list(setup.search),
        rungs=_rungs(run_steps) if setup.prune else [],
        reduction=REDUCTION,
        horizon_exponent=HORIZON_EXPONENT,
        prune=setup.prune,
        budget_steps=budget_steps,
        max_trials=cap,
        finder={
            "peak_lr": found.peak,
            "band": list(band),
            "steps": ramp_used,
            "seconds": clock.timings["find"],
            "notes": found.notes,
            "result": None if finder is None else finder.to_dict(),
        },
        recommendation=setup.rec.to_dict(),
    )
    return config, found.peak


def _parse_budget(budget: float | str) -> float | Budget:
    """Run-equivalents as a float, or a time `Budget`."""
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        return check.positive("tune", "--budget", float(budget))
    text = str(budget).strip()
    try:
        return check.positive("tune", "--budget", float(text))
    except ValueError:
        pass
    plan = parse_budget(text)
    if plan is None or plan.seconds is None:
        raise ValueError(f"tune: --budget must be a number of runs (3) or a time (20m, 1h), got {budget!r}")
    return plan


def _budget_steps(
    plan: float | Budget, run_steps: int, ramp_used: int, step_seconds: float | None, clock: _Clock
) -> int:
    """The trials' share of the budget in training steps (the range test's steps taken off)."""
    if isinstance(plan, float):
        return round(plan * run_steps) - ramp_used
    if step_seconds is None or plan.seconds is None:
        raise ValueError("tune: the range test measured no step time to turn a time budget into steps; give runs")
    steps = steps_for_time(plan.seconds, clock.elapsed, step_seconds)
    if steps < run_steps:
        raise ValueError(
            f"tune: the time budget {plan} leaves {steps} steps after the range test, less than one run "
            f"({run_steps}); give more time"
        )
    return steps


def _create(
    storage: optuna.storages.RDBStorage, name: str, config: StudyConfig, peak: float, recipe: Any
) -> optuna.Study:
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
    if CONFIG_KEY in study.user_attrs:  # another coordinator created it first
        return study
    study.set_user_attr(CONFIG_KEY, config.to_dict())
    space = Space.from_dict(config.space)
    for point in space.design(peak, recipe, config.max_trials):
        study.enqueue_trial(point)
    return study


def _raise_budget(
    study: optuna.Study,
    config: StudyConfig,
    plan: float | Budget,
    *,
    max_trials: int | None,
    recipe: Recipe,
    notes: list[str],
) -> StudyConfig:
    """A continued study given a larger budget (in runs) than it was created with gets it: the
    stored budget and trial cap grow, and design points the old cap left out are queued."""
    if not isinstance(plan, float):
        return config
    wanted = round(plan * config.run_steps) - int(config.finder.get("steps", 0))
    if wanted <= config.budget_steps:
        return config
    cap = max_trials if max_trials is not None else _max_trials(wanted, config.run_steps, config.prune)
    raised = dataclasses.replace(config, budget_steps=wanted, max_trials=max(cap, config.max_trials))
    study.set_user_attr(CONFIG_KEY, raised.to_dict())
    trials = study.get_trials()
    tried = {t.params.get("lr", t.system_attrs.get("fixed_params", {}).get("lr")) for t in trials}
    space = Space.from_dict(config.space)
    for t in trials:  # a trial the old budget stopped after its rung goes first: it won its rung
        if t.user_attrs.get("stopped") == "budget":
            study.enqueue_trial(t.params, user_attrs={"continues": t.number})
    for point in space.design(float(config.finder["peak_lr"]), recipe, raised.max_trials):
        if point["lr"] not in tried:
            study.enqueue_trial(point)
    notes.append(f"budget raised to {plan:g} runs ({wanted} trial steps, up to {raised.max_trials} trials)")
    return raised


def _check_same(config: StudyConfig, asked: dict[str, Any], name: str) -> None:
    """A continued study must train the same thing the same way: else a clear error."""
    stored = config.to_dict()
    diffs = [f"{key}: stored {stored[key]!r}, asked {asked[key]!r}" for key in asked if asked[key] != stored[key]]
    if diffs:
        raise ValueError(
            f"tune: the study {name!r} was created with other settings ({'; '.join(diffs)}); "
            "give another --study (or --out) to start a new one"
        )


def _finish(
    study: optuna.Study,
    *,
    config: StudyConfig,
    space: Space,
    runner: TrialRunner,
    run_dir: Path,
    url: str,
    notes: list[str],
    clock: _Clock,
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
    spent = spent_steps(study) + int(config.finder.get("steps", 0))
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
            (shutil.copytree if weights.is_dir() else shutil.copy2)(weights, model_path)
        record = read_run(weights.parent / RUN_FILE)
        study.set_user_attr(FINAL_KEY, {"trial": best.number, "weights": str(model_path.resolve())})
    else:
        notes.append(
            f"the best trial ({best.number}) ran on another machine and its weights are not here "
            f"({weights}); its settings are in the result"
        )
    pruned = sum(1 for t in trials if t.state == "PRUNED" and t.stopped != "skipped")
    unpaid = [t for t in trials if t.stopped == "budget"]
    if unpaid:
        rerun = sum(config.rungs) + config.run_steps  # the continued trial trains its rung again, then in full
        needed = (spent_steps(study) + int(config.finder.get("steps", 0)) + rerun) / config.run_steps
        names = ", ".join(f"{t.number} ({t.candidate.describe()})" for t in unpaid)
        notes.append(
            f"trial(s) {names} passed the rung but the budget could not pay a full run; "
            f"re-run with --budget {math.ceil(needed * 10) / 10:g} to train the first"
        )
    notes.append(
        f"{len(completed)} trials completed, {pruned} stopped early, of {len(trials)}; "
        f"compute {equivalents:.2f} run-equivalents (range test {config.finder.get('steps', 0)} steps + "
        f"{spent_steps(study)} trial steps, {config.run_steps} steps a run); best: trial {best.number}, "
        f"{best.candidate.describe()}, val loss {best.value:.4g}"
    )
    tuned = _tuned(rec, best, trials, runner.recipe, space)
    schedule = tuned.schedule.to_string()
    report_path = None
    timings = dict(clock.timings)
    timings["total"] = clock.elapsed
    if record is not None:
        record.title = f"lrpilot tune: {runner.target.label}"
        record.notes = [*config.finder.get("notes", []), *notes]
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


def _tuned(
    rec: Recommendation, best: TrialSummary, trials: list[TrialSummary], recipe: Recipe, space: Space
) -> Recommendation:
    """The rules' recommendation with the search's answer in it, so that every exporter of
    `lrpilot.rules` (HF, TRL, axolotl, torchtune, llama.cpp, PyTorch) writes the tuned settings.
    Its band brackets the winner by the nearest LRs tried below and above it (all did worse)."""
    fitted = best.candidate.recipe(recipe)
    peak = best.candidate.peak_lr
    tried = sorted({t.candidate.peak_lr for t in trials if t.steps and t.number != best.number})
    low = max((lr for lr in tried if lr < peak), default=space.low)
    high = min((lr for lr in tried if lr > peak), default=space.high)
    return dataclasses.replace(
        rec,
        peak_lr=peak,
        low=low,
        high=high,
        schedule=fitted.schedule(peak),
        warmup_steps=fitted.warmup_steps,
        floor_ratio=fitted.floor_ratio,
        confidence="high",
        notes=(
            *rec.notes,
            f"tuned by lrpilot tune: trial {best.number} of {len(trials)} ({best.candidate.describe()}, "
            f"val loss {best.value:.4g}); the rules' prior was {rec.peak_lr:.3g}",
        ),
    )


# --- work -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkSummary:
    """What one worker did: the trials it ran (by number) and the study's state when it stopped."""

    study_name: str
    trials_run: list[int]
    completed: int
    total: int


def work(
    study: str,
    storage: str,
    *,
    out: str | Path | None = None,
    wait: float = 0.0,
    heartbeat: float = HEARTBEAT,
    progress: Progress | None = None,
) -> WorkSummary:
    """Join the study `study` in `storage` (started by `tune` with the same storage) and run its
    trials until none is left to run. The task, data and settings come from the study; paths in it
    must exist on this machine. A best trial's weights are written under `out` (default
    ``runs/tune-worker-<study>``). `wait`: seconds to wait for the study to appear (workers
    launched together with the machine that creates it, whose range test comes first)."""
    progress = progress or _quiet
    _quiet_optuna()
    check.positive("tune worker", "heartbeat", heartbeat)
    check.non_negative("tune worker", "--wait", wait)
    store = open_storage(storage, heartbeat=heartbeat)
    deadline = time.monotonic() + wait
    existing = _load_study(store, study)
    while (existing is None or CONFIG_KEY not in existing.user_attrs) and time.monotonic() < deadline:
        progress("waiting for the study", 0, None, math.nan, math.nan)
        time.sleep(POLL)
        existing = _load_study(store, study)
    if existing is None or CONFIG_KEY not in existing.user_attrs:
        raise ValueError(
            f"tune worker: no lrpilot study {study!r} in {redact(storage)}; start it with "
            f"`lrpilot tune --storage URL --study {study}` (that machine works on it too)"
        )
    config = StudyConfig.from_dict(existing.user_attrs[CONFIG_KEY])
    live = _attach(existing, config)
    folder = Path(out) if out is not None else Path("runs") / f"tune-worker-{study}"
    runner = _runner(config, folder / "trials", progress)
    ran: list[int] = []

    def note(number: int, candidate: Candidate) -> None:
        ran.append(number)
        progress(f"trial {number} ({candidate.describe()})", 0, None, math.nan, math.nan)

    runner.on_trial = note
    with one_thread(config.target["model"] is None):  # a trial's numbers are then the same on every worker
        _run_trials(live, runner)
    trials = summaries(live)
    return WorkSummary(study, ran, sum(1 for t in trials if t.state == "COMPLETE"), len(trials))
