"""What `tune` returns: every trial as a `TrialSummary`, the `TuneResult`, and the rules'
recommendation rewritten with the winner in it (so every exporter of `lrpilot.rules` writes it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lrpilot import _validate as check
from lrpilot.rules import Recommendation
from lrpilot.tasks import Recipe
from lrpilot.tuning._halving import continued, trial_lr, unpaid_winners
from lrpilot.tuning._space import Candidate, Space
from lrpilot.tuning._study import CONFIG_KEY, StudyConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialSummary", "TuneResult", "summaries", "tune_dict", "tuned_recommendation"]


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
    """Validation loss of the compressed run at the rung (a promotion shows its rung trial's)."""
    stopped: str | None
    """Why a rung trial went no further: ``promoted`` (its full run is the trial in `promoted_to`),
    ``pruned`` (worse than the others at the rung), ``budget`` (it won the rung; the budget could
    not pay its full run); or ``diverged``, ``skipped`` (the study had its trials, or another worker
    ran the same)."""
    retry_of: int | None
    continues: int | None = None
    """For a promotion (a full run), the rung trial it continues."""
    promoted_to: int | None = None
    """For a promoted rung trial, the trial that trained it in full."""
    fitted: bool = False
    """A promotion trained at the bottom of the parabola fitted through the rungs' losses
    (`lrpilot.tuning._halving.fitted_lr`), not at its rung trial's own LR."""

    @property
    def outcome(self) -> str:
        """What happened to the trial, in words, from `stopped` and `state` (Optuna's ``PRUNED``
        covers a rung trial that won and went on to its full run as much as one that lost): e.g.
        ``promoted to #8``, ``pruned at its 30-step rung``, ``finished: full run of #3``; a retry
        says which trial it replaces."""
        words = self._what_happened()
        return words if self.retry_of is None else f"{words} (retry of #{self.retry_of})"

    def _what_happened(self) -> str:
        """`outcome` without the retry."""
        if self.state == "COMPLETE":
            if self.continues is None:
                return "finished"
            return f"finished: full run of #{self.continues}" + (" at the rungs' fitted LR" if self.fitted else "")
        rung = f"its {min(self.intermediate)}-step rung" if self.intermediate else "its rung"
        words = {
            "promoted": f"promoted to #{self.promoted_to}",
            "pruned": f"pruned at {rung}",
            "budget": f"won {rung}; the budget could not pay its full run",
            "diverged": f"diverged after {self.steps} steps",
            "skipped": "skipped (the study had its trials, or another worker ran the same)",
        }
        if self.stopped in words:
            return words[self.stopped]
        if self.stopped is not None:  # not run: the budget was spent
            return self.stopped
        return {"FAIL": "failed (queued again)", "RUNNING": "running"}.get(self.state, self.state.lower())

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "outcome": self.outcome,
            "peak_lr": self.candidate.peak_lr,
            "warmup": self.candidate.warmup,
            "decay": self.candidate.decay,
            "value": self.value,
            "steps": self.steps,
            "intermediate": {str(k): v for k, v in self.intermediate.items()},
            "stopped": self.stopped,
            "retry_of": self.retry_of,
            "continues": self.continues,
            "promoted_to": self.promoted_to,
            "fitted": self.fitted,
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


# --- results --------------------------------------------------------------------------------------


def summaries(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of `study` as a `TrialSummary`, by number."""
    config = StudyConfig.from_dict(study.user_attrs[CONFIG_KEY])
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    promoted_to = {rung: t.number for t in trials if (rung := continued(t)) is not None and t.state.name != "FAIL"}
    unpaid = set(unpaid_winners(study, config))
    lrs = {t.number: trial_lr(t) for t in trials}
    fitted = {t.number for t in trials if (rung := continued(t)) is not None and lrs[t.number] != lrs.get(rung)}
    return [_summary(t, promoted_to.get(t.number), t.number in unpaid, t.number in fitted) for t in trials]


def _summary(t: optuna.trial.FrozenTrial, promoted_to: int | None, unpaid: bool, fitted: bool) -> TrialSummary:
    fixed = t.system_attrs.get("fixed_params", {})
    params = {**fixed, **t.params}
    candidate = Candidate(
        float(params.get("lr", math.nan)),
        None if params.get("warmup") is None else float(params["warmup"]),
        None if params.get("decay") is None else str(params["decay"]),
    )
    stopped = t.user_attrs.get("stopped") or ("skipped" if t.user_attrs.get("skipped") else None)
    if stopped == "rung":
        stopped = "promoted" if promoted_to is not None else "budget" if unpaid else "pruned"
    elif t.state.name == "PRUNED" and stopped is None:
        stopped = "pruned"
    if t.state.name == "WAITING":
        stopped = "not run: the budget was spent"
    return TrialSummary(
        number=t.number,
        state=t.state.name,
        candidate=candidate,
        value=t.value if t.state.name == "COMPLETE" else None,
        steps=int(t.user_attrs.get("steps", 0)),
        intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
        stopped=stopped,
        retry_of=t.system_attrs.get("failed_trial"),
        continues=continued(t),
        promoted_to=promoted_to,
        fitted=fitted,
    )


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


def tuned_recommendation(
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
