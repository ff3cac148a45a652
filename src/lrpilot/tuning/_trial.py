"""One trial of `tune`: a run compressed to the rung's length (at the candidate's LR scaled to that
horizon) whose validation loss the pruner judges, then, if it survives, the full run under the
guard; the weights of the best trial so far are kept, every other trial's folder is removed."""

from __future__ import annotations

import math
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lrpilot.autopilot._pipeline import Progress, _Clock, _record, _save, _Target, _train
from lrpilot.tasks import Recipe, Task
from lrpilot.tuning._space import Candidate, Space
from lrpilot.tuning._study import StudyConfig, counted, is_replacement, requeue, spent_steps

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialRunner"]

RUN_FILE = "run.json"


def _frozen(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _best_value(study: optuna.Study) -> float:
    import optuna

    values = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return min((v for v in values if v is not None), default=math.inf)


@dataclass
class TrialRunner:
    """The objective every worker runs: `config` from the study, the task rebuilt from it, trial
    folders under `trials_dir` (only the best trial's is kept)."""

    config: StudyConfig
    target: _Target
    job: Task
    recipe: Recipe
    trials_dir: Path
    progress: Progress
    on_trial: Callable[[int, Candidate], None] | None = None
    clock: _Clock = field(default_factory=_Clock)
    """The timings of the latest run (the best trial's record shows its own)."""

    @property
    def space(self) -> Space:
        return Space.from_dict(self.config.space)

    def _train(
        self,
        recipe: Recipe,
        peak: float,
        folder: Path,
        *,
        eval_at: list[int] | None = None,
    ) -> tuple[Any, torch.nn.Module]:
        """A fresh model (the study's seed) trained on `recipe` at `peak` under the guard."""
        model = self.job.build_model(self.config.seed)
        self.clock = _Clock()
        trained = _train(
            self.job,
            model,
            recipe,
            recipe.schedule(peak),
            seed=self.config.seed,
            run_dir=folder,
            progress=self.progress,
            callback=None,
            clock=self.clock,
            eval_at=eval_at or (),
        )
        return trained, model

    @staticmethod
    def _value(trial: optuna.Trial, trained: Any) -> float:
        """The run's final validation loss; an interrupted run re-raises Ctrl-C, a diverged one is pruned."""
        import optuna

        if trained.status == "interrupted":
            raise KeyboardInterrupt
        value = float(trained.final.get("val_loss", math.nan))
        if trained.status == "gave_up" or not math.isfinite(value):
            trial.set_user_attr("stopped", "diverged")
            raise optuna.TrialPruned("the run diverged")
        return value

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        study = trial.study
        frozen = _frozen(study, trial.number)
        if not is_replacement(frozen) and counted(study, before=trial.number) >= self.config.max_trials:
            trial.set_user_attr("skipped", "the study already has its trials")
            raise optuna.TrialPruned("the study already has its trials")
        candidate = self.space.suggest(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.on_trial is not None:
            self.on_trial(trial.number, candidate)
        folder = self.trials_dir / f"trial-{trial.number}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return self._run(trial, candidate, folder)
        except BaseException as exc:  # pruned, interrupted or failed: its weights are not kept
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, KeyboardInterrupt):
                requeue(study, _frozen(study, trial.number))
            raise

    def _run(self, trial: optuna.Trial, candidate: Candidate, folder: Path) -> float:
        """Successive halving with restarts: at each rung a fresh run of the recipe compressed to
        the rung's length (warmup and decay included), at the candidate's LR scaled to that
        horizon, reports its validation loss; a trial that survives every rung trains the
        full run, whose final loss is the trial's value. A compressed run, unlike the first steps
        of the full one, has annealed: comparing LRs by the loss in the middle of a long run
        favours the highest (they descend fastest before the decay), and it pruned the best LR on
        the digits task when tried."""
        import optuna

        config, study = self.config, trial.study
        full = candidate.recipe(self.recipe)
        rungs = [r for r in config.rungs if r < full.total_steps]
        spent = 0
        for rung in rungs:
            short = full.shortened(rung)
            lr = candidate.peak_lr * (full.total_steps / rung) ** config.horizon_exponent
            trained, _ = self._train(short, lr, folder, eval_at=[rung])  # one evaluation, on every example
            spent += len(trained.history.steps)
            trial.set_user_attr("steps", spent)
            value = self._value(trial, trained)
            trial.report(value, rung)
            if config.prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after its {rung}-step run")
            following = next((r for r in rungs if r > rung), full.total_steps)
            if spent_steps(study) + following > config.budget_steps and _best_value(study) < math.inf:
                trial.set_user_attr("stopped", "budget")
                raise optuna.TrialPruned(f"the budget is spent (after its {rung}-step run)")
        trained, model = self._train(full, candidate.peak_lr, folder)
        spent += len(trained.history.steps)
        trial.set_user_attr("steps", spent)
        trial.set_user_attr("guard_actions", len(trained.guard.get("records", [])))
        value = self._value(trial, trained)
        if "val_accuracy" in trained.final:
            trial.set_user_attr("val_accuracy", float(trained.final["val_accuracy"]))
        schedule = full.schedule(candidate.peak_lr)
        if value < _best_value(trial.study):
            path = _save(self.job, model, folder)
            record = _record(
                self.target,
                task=self.job,
                recommendation=config.recommendation,
                finder=config.finder.get("result"),
                schedule=schedule,
                trained=trained,
                notes=[f"trial {trial.number}: {candidate.describe()}"],
                clock=self.clock,
            )
            record.write_json(folder / RUN_FILE)
            trial.set_user_attr("weights", str(path.resolve()))
            _drop_earlier_bests(trial.study, trial.number)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return value


def _drop_earlier_bests(study: optuna.Study, number: int) -> None:
    """Delete the weights of earlier best trials that this machine holds: only the best is kept."""
    for t in study.get_trials(deepcopy=False):
        weights = t.user_attrs.get("weights")
        if t.number != number and weights and Path(weights).exists():
            shutil.rmtree(Path(weights).parent, ignore_errors=True)
