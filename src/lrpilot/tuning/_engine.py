"""The search machinery `tune` and `work` share: the study's sampler, rebuilding what to train
from the stored configuration, and the loop that runs trials until the budget is spent (waiting
for, and taking over from, other workers). What runs next is `lrpilot.tuning._halving`'s call."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lrpilot.autopilot._progress import Progress
from lrpilot.autopilot._target import Target, TargetSpec, build_model, planned, resolve_target
from lrpilot.rules import Recommendation
from lrpilot.tasks import Recipe, Task
from lrpilot.tasks._device import Precision
from lrpilot.tuning._halving import Move, next_move
from lrpilot.tuning._study import StudyConfig, current, fail_orphans
from lrpilot.tuning._trial import TrialRunner

if TYPE_CHECKING:
    import optuna
    from torch import nn


__all__ = [
    "FIRST_TRIAL_SHARE",
    "POLL",
    "REDUCTION",
    "attach",
    "build_target",
    "load_study",
    "make_runner",
    "plan_run",
    "quiet_optuna",
    "run_trials",
    "run_until_done",
    "rungs_for",
    "target_spec",
]

REDUCTION = 3
"""Successive halving trains the best third of the rungs in full (Optuna's Hyperband default)."""
RUNG = 1 / 3
"""The rung: a trial first trains a run compressed to this share of the length, at the candidate's
LR × (full / rung)^`lrpilot.rules.HORIZON_EXPONENT` (the horizon law, `lrpilot.rules.horizon_factor`), so that
it tests the candidate's LR as it would be at the full length; only the best third
of those go on to the full run. A ninth of the run was tried as a first rung and dropped: such a
run is mostly warmup and could not tell good LRs apart (digits: 0.19 vs 0.18 validation loss
for LRs whose full runs differ by 5 %)."""
FIRST_TRIAL_SHARE = RUNG + 1
"""The least a search costs, in runs: one rung trial and its full run."""
POLL = 2.0
"""Seconds between looks at the study while other workers finish their trials."""


# --- the study ----------------------------------------------------------------------------------


def quiet_optuna() -> None:
    """Optuna's warnings only, and not its "Trial N failed ... Traceback" for a trial that raised:
    trials run with ``catch=()``, so the exception reaches tune's caller, which reports it (the CLI
    says "interrupted" on Ctrl-C, where Optuna's warning had printed a KeyboardInterrupt's traceback)."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna.study._optimize").setLevel(logging.ERROR)


def rungs_for(run_steps: int) -> list[int]:
    """Successive halving's rung, `RUNG` of the run (none for a run too short to compress)."""
    rung = round(run_steps * RUNG)
    return [rung] if 2 <= rung < run_steps else []


def load_study(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study | None:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=None)
    except KeyError:
        return None


def attach(study: optuna.Study, config: StudyConfig) -> optuna.Study:
    """`study` with the sampler its configuration calls for (samplers are not stored): TPE, whose
    model starts once the design's trials are in (they are queued, not sampled). No Optuna pruner:
    the rungs are trials of their own, promoted by `lrpilot.tuning._halving`."""
    import optuna

    with warnings.catch_warnings():  # TPE's multivariate mode is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=config.seed, n_startup_trials=max(1, len(config.design)), multivariate=True
        )
    return optuna.load_study(
        study_name=study.study_name,
        storage=study._storage,  # the same storage object: its heartbeat and retry settings
        sampler=sampler,
    )


_PATHS = ("model", "data", "eval_data", "data_dir")


def target_spec(given: dict[str, Any]) -> dict[str, Any]:
    """What to train, as stored in the study: `given` (fit's inputs) with paths made absolute."""
    return {k: str(Path(v).resolve()) if k in _PATHS and v is not None else v for k, v in given.items()}


def build_target(spec: dict[str, Any], owner: str = "fit") -> Target:
    """What `target_spec` stored, rebuilt (the model and data loaded on this machine); its errors
    name `owner`."""
    return resolve_target(TargetSpec.of(spec, owner))


# --- running trials -------------------------------------------------------------------------------


def run_trials(study: optuna.Study, runner: TrialRunner) -> None:
    """Run trials here while there is one to run without waiting for another worker (each trial's
    time, `TrialRunner.began`, counted from choosing it)."""
    while True:
        runner.began = time.perf_counter()
        runner.config = current(study, runner.config)
        move = next_move(study, runner.config)
        if move not in (Move.RUN, Move.SAMPLE):
            return
        runner.queued_only = move is Move.RUN  # another worker may take the queued trial first
        study.optimize(runner, n_trials=1, catch=(), gc_after_trial=False)


def run_until_done(study: optuna.Study, runner: TrialRunner, progress: Progress) -> None:
    """Run trials here, then wait for other workers' (taking over any a dead worker left)."""
    run_trials(study, runner)
    while wait_for_others(study, runner.config, progress):
        run_trials(study, runner)


def plan_run(
    target: Target,
    run_steps: int,
    seed: int,
    device: torch.device | None = None,
    precision: Precision | None = None,
    *,
    owner: str = "fit",
) -> tuple[nn.Module, Recommendation, Task, Recipe]:
    """The fresh model (on `device`, the CPU by default, its trainable weights float32:
    `lrpilot.autopilot._target.build_model`), the rules' recommendation for it, the task to train (a
    user's model gets the recommendation's warmup and decay) and its recipe fitted to `run_steps` (a
    length too short for a warmup: an error naming `owner`): `lrpilot.autopilot._target.planned`, as
    `lrpilot.fit` plans its run."""
    net = build_model(target, seed, device, precision)
    rec, job, recipe = planned(target, net, run_steps, f"{run_steps} steps", owner=owner)
    return net, rec, job, recipe


def make_runner(
    config: StudyConfig,
    trials_dir: Path,
    progress: Progress,
    device: torch.device | None = None,
    precision: Precision | None = None,
) -> TrialRunner:
    """The objective this process runs the study's trials with, training on `device` (the CPU by
    default) in `precision` (fp32 by default)."""
    target = build_target(config.target)
    _, _, job, recipe = plan_run(target, config.run_steps, config.seed)
    where, mixed = device or torch.device("cpu"), precision or Precision()
    return TrialRunner(config, target, job, recipe, trials_dir, progress, device=where, precision=mixed)


def wait_for_others(study: optuna.Study, config: StudyConfig, progress: Progress) -> bool:
    """Block until no trial is running (other workers finish theirs, or their heartbeats lapse and
    the trials are failed and queued again) and the study says what comes next; then whether there
    is work left to do here.

    The decision is a second look at the study: a worker may have queued and started a trial (a
    promotion, typically) between the two, and then the answer is to wait again, not that the study
    is done (a coordinator that took it for done finished before the study's only full run did).
    A trial a stopped worker took but never began has no heartbeat to lapse: `fail_orphans`."""
    import optuna

    unbegun: dict[int, float] = {}
    while True:
        while pending := study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            progress("waiting for other workers", len(pending), None, math.nan, math.nan)
            with warnings.catch_warnings():  # flagged experimental: printed at a worker that waited
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
            fail_orphans(study, unbegun)  # taken by a worker stopped before it began them: no heartbeat
            time.sleep(POLL)
        move = next_move(study, config := current(study, config))
        if move is not Move.WAIT:
            return move in (Move.RUN, Move.SAMPLE)
