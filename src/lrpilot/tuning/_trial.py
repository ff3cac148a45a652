"""One trial of `tune`: a rung trial trains the run compressed to the rung's length (at the
candidate's LR scaled to that horizon) and reports its validation loss; a promotion (a trial that
continues a rung trial) trains the full run under the guard, as does every trial without halving.
The weights of the best full run so far are kept, every other trial's folder is removed."""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lrpilot.autopilot._pipeline import run_record
from lrpilot.autopilot._progress import Clock, Progress
from lrpilot.autopilot._target import Target
from lrpilot.autopilot._training import save_model, train_guarded
from lrpilot.tasks import Recipe, Task
from lrpilot.tasks._device import Precision, describe_device
from lrpilot.tuning._halving import continued, trial_lr
from lrpilot.tuning._space import Candidate, Space
from lrpilot.tuning._study import StudyConfig, counted, is_replacement, requeue

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
    target: Target
    job: Task
    recipe: Recipe
    trials_dir: Path
    progress: Progress
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where this process trains its trials (each worker its own: `lrpilot.tasks._device`)."""
    precision: Precision = field(default_factory=Precision)
    """In what precision its forward passes compute (each worker its own, as its device)."""
    on_trial: Callable[[int, Candidate], None] | None = None
    clock: Clock = field(default_factory=Clock)
    """The timings of the latest run (the best trial's record shows its own)."""
    queued_only: bool = False
    """Whether the next trial must be a queued one (a sampled one means another worker took it)."""
    began: float | None = None
    """When this worker began choosing its next trial (`lrpilot.tuning._engine.run_trials`, a
    `time.perf_counter` time): a trial's ``seconds`` count from there, the choice included."""

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
        model = self.precision.master(self.job.build_model(self.config.seed)).to(self.device)
        self.clock = Clock()
        trained = train_guarded(
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
            precision=self.precision,
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
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # begun: `fail_orphans` spares it
        frozen = _frozen(study, trial.number)
        if (why := _redundant(study, frozen, self.config.max_trials, queued_only=self.queued_only)) is not None:
            trial.set_user_attr("skipped", why)
            raise optuna.TrialPruned(why)
        candidate = self.space.suggest(trial)
        if self.on_trial is not None:
            self.on_trial(trial.number, candidate)
        folder = self.trials_dir / f"trial-{trial.number}"
        folder.mkdir(parents=True, exist_ok=True)
        began, self.began = self.began or time.perf_counter(), None
        try:
            rung = continued(frozen)
            if rung is not None:
                self._carry_rung(trial, _frozen(study, rung), candidate.peak_lr)
            elif self.config.prune and self.config.rungs:
                self._rung(trial, candidate, folder)
            value = self._full(trial, candidate, folder)
        except BaseException as exc:  # a rung trial, pruned, interrupted or failed: its weights are not kept
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, KeyboardInterrupt):
                requeue(study, _frozen(study, trial.number))
            elif isinstance(exc, optuna.TrialPruned):  # a rung's end, or a run that diverged
                trial.set_user_attr("seconds", time.perf_counter() - began)
            raise
        trial.set_user_attr("seconds", time.perf_counter() - began)  # what a time budget pays a trial
        return value

    def _rung(self, trial: optuna.Trial, candidate: Candidate, folder: Path) -> None:
        """A rung trial: a fresh run of the recipe compressed to the rung's length (warmup and decay
        included), at the candidate's LR scaled to that horizon; it reports its validation loss and
        ends (pruned) — `lrpilot.tuning._halving` queues the full runs of the best. A compressed run,
        unlike the first steps of the full one, has annealed: comparing LRs by the loss in the middle
        of a long run favours the highest (they descend fastest before the decay), and it pruned the
        best LR on the digits task when tried."""
        import optuna

        config = self.config
        full = candidate.recipe(self.recipe)
        rung = config.rungs[0]
        short = full.shortened(rung)
        lr = candidate.peak_lr * (full.total_steps / rung) ** config.horizon_exponent
        trained, _ = self._train(short, lr, folder, eval_at=[rung])  # one evaluation, on every example
        trial.set_user_attr("steps", len(trained.history.steps))
        trial.report(self._value(trial, trained), rung)
        trial.set_user_attr("stopped", "rung")
        raise optuna.TrialPruned(f"its {rung}-step run is in; promotions wait for the other rungs")

    def _carry_rung(self, trial: optuna.Trial, rung_trial: optuna.trial.FrozenTrial, lr: float) -> None:
        """A promotion reports its rung trial's loss at the rung (not trained again), so that the
        sampler and the report see the whole trial; one at the rungs' fitted bottom (another LR,
        `lrpilot.tuning._halving.fitted_lr`) had no rung of its own and reports none."""
        if trial_lr(rung_trial) != lr:
            return
        for step, value in rung_trial.intermediate_values.items():
            trial.report(value, step)

    def _full(self, trial: optuna.Trial, candidate: Candidate, folder: Path) -> float:
        """The full run under the guard; its final validation loss is the trial's value."""
        full = candidate.recipe(self.recipe)
        trained, model = self._train(full, candidate.peak_lr, folder)
        trial.set_user_attr("steps", len(trained.history.steps))
        trial.set_user_attr("guard_actions", len(trained.guard.get("records", [])))
        value = self._value(trial, trained)
        if "val_accuracy" in trained.final:
            trial.set_user_attr("val_accuracy", float(trained.final["val_accuracy"]))
        schedule = full.schedule(candidate.peak_lr)
        if value < _best_value(trial.study):
            path = save_model(self.job, model, folder)
            record = run_record(
                self.target,
                task=self.job,
                recommendation=self.config.recommendation,
                finder=self.config.finder.get("result"),
                schedule=schedule,
                trained=trained,
                notes=[f"trial {trial.number}: {candidate.describe()}"],
                clock=self.clock,
                device=describe_device(self.device),
                precision=self.precision.name,
            )
            record.write_json(folder / RUN_FILE)
            trial.set_user_attr("weights", str(path.resolve()))
            _drop_earlier_bests(trial.study, trial.number)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return value


def _redundant(study: optuna.Study, trial: optuna.trial.FrozenTrial, cap: int, *, queued_only: bool) -> str | None:
    """Why `trial` should not run, if it should not: it was sampled where a queued trial was meant
    (another worker took that one a moment earlier), the study already has its trials (a sampled
    trial past the cap), or another worker queued the same design point or promotion a moment
    earlier (two workers deciding at once)."""
    if not is_replacement(trial):
        if queued_only:
            return "another worker took the queued trial"
        return "the study already has its trials" if counted(study, before=trial.number) >= cap else None
    if "failed_trial" in trial.system_attrs:
        return None  # a retry stands for its failed original
    key = _queued_as(trial)
    for other in study.get_trials(deepcopy=False):
        earlier = other.number < trial.number and other.state.name != "FAIL" and not other.user_attrs.get("skipped")
        if earlier and "failed_trial" not in other.system_attrs and _queued_as(other) == key:
            return f"trial {other.number} runs the same"
    return None


def _queued_as(trial: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    """What a queued trial was queued for: a promotion of a rung trial, or a point."""
    rung = continued(trial)
    if rung is not None:
        return ("continues", rung)
    return ("point", tuple(sorted(trial.system_attrs.get("fixed_params", {}).items())))


def _drop_earlier_bests(study: optuna.Study, number: int) -> None:
    """Delete the weights of earlier best trials that this machine holds: only the best is kept."""
    for t in study.get_trials(deepcopy=False):
        weights = t.user_attrs.get("weights")
        if t.number != number and weights and Path(weights).exists():
            shutil.rmtree(Path(weights).parent, ignore_errors=True)
