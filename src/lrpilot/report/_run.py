"""What a training run leaves behind for its report: `RunRecord`, plain data with a JSON round-trip.

The record is the boundary between training (``lrpilot fit``, or anyone's loop) and explaining
(`lrpilot.report.write_report`): everything the report draws is in it, and a ``run.json`` written
today re-renders tomorrow (``lrpilot report RUN_DIR``). numpy only; nothing here imports torch or
matplotlib. JSON has no NaN, so non-finite numbers are written as ``null`` and read back as NaN.

The records keep the lists they are given (a training loop may build a `TrainingHistory` first and
append to its lists as it goes); they check that the columns line up when built and again when
written, and numpy numbers are turned into plain ones only on the way to JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lrpilot import _validate as check
from lrpilot.finder import FinderResult, Probe, RangeTestRecord
from lrpilot.schedules import from_dict as schedule_from_dict

__all__ = ["STATUSES", "LayerStats", "RunRecord", "TrainingHistory", "finder_from_dict", "json_safe", "read_run"]

STATUSES = ("finished", "interrupted", "gave_up", "failed")
"""How a run ended: it ran every step; the user stopped it (the model so far was kept); the guard
gave up on it (restored its last good snapshot and stopped); or it raised."""


def _floats(values: Iterable[float | None]) -> list[float]:
    """Plain Python floats (numpy arrays and scalars accepted); None, as JSON writes NaN, is NaN."""
    return [math.nan if v is None else float(v) for v in values]


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def json_safe(value: Any) -> Any:
    """`value` as strict JSON (no NaN), recursively: numpy numbers and arrays become Python ones and
    every non-finite float becomes None."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _json_float(float(value))
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _same_length(owner: str, **columns: Sequence[Any]) -> None:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{owner}: {', '.join(lengths)} must have the same length, got {lengths}")


@dataclass
class TrainingHistory:
    """The train loss and LR over a run, and the evaluations made during it.

    Attributes:
        steps: the optimizer steps at which train loss and LR were logged (a guard rollback sends
            the step back, so they may repeat).
        loss: the train loss at each of `steps` (NaN for a non-finite step).
        lr: the LR applied at each of `steps`.
        eval_steps: the steps after which the model was evaluated.
        eval_loss: the evaluation loss at each of `eval_steps`.
        eval_metrics: other evaluation metrics by name (e.g. ``{"accuracy": [...]}``), each aligned
            with `eval_steps`.
        eval_examples: the validation examples each evaluation of the curve scored, the same ones
            every time (None: not said).
        final_eval: where the run's last evaluation also scored a larger set (the whole validation
            set, whose figures the run reports): those figures (``val_loss``, ``val_accuracy``, ...)
            and its ``examples``; empty otherwise.
    """

    steps: list[int]
    loss: list[float]
    lr: list[float]
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_examples: int | None = None
    final_eval: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError unless every column lines up with its steps."""
        _same_length("TrainingHistory", steps=self.steps, loss=self.loss, lr=self.lr)
        _same_length("TrainingHistory", eval_steps=self.eval_steps, eval_loss=self.eval_loss)
        for name, values in self.eval_metrics.items():
            _same_length("TrainingHistory", eval_steps=self.eval_steps, **{f"eval_metrics[{name!r}]": values})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None)."""
        self.check()
        return json_safe({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """The inverse of `to_dict` (None numbers come back as NaN); unknown keys are an error."""
        check.known_keys("TrainingHistory.from_dict", data, (f.name for f in fields(cls)))
        return cls(
            steps=list(data["steps"]),
            loss=_floats(data["loss"]),
            lr=_floats(data["lr"]),
            eval_steps=list(data.get("eval_steps", [])),
            eval_loss=_floats(data.get("eval_loss", [])),
            eval_metrics={k: _floats(v) for k, v in data.get("eval_metrics", {}).items()},
            eval_examples=data.get("eval_examples"),
            final_eval={k: float("nan") if v is None else float(v) for k, v in data.get("final_eval", {}).items()},
        )


@dataclass
class LayerStats:
    """Adam's per-layer effective step: the size of each layer's update relative to its weights.

    Attributes:
        names: the parameter (or layer) names.
        steps: the optimizer steps at which the ratios were measured.
        ratios: ``ratios[i][j] = ‖Δw_j‖ / ‖w_j‖`` over the update made at ``steps[i]``.
        adapted: the layers (of `names`) holding LoRA-adapted weights, whose ratio is that of their
            effective weights ``W0 + scale · B A`` (`lrpilot.autopilot.UpdateRatioTracker`), not of the
            adapters' own A and B (B starts at zero, so theirs reads as far too high at any LR).
    """

    names: list[str]
    steps: list[int]
    ratios: list[list[float]]
    adapted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError unless there is a row per step and a ratio per name in every row."""
        _same_length("LayerStats", steps=self.steps, ratios=self.ratios)
        for i, row in enumerate(self.ratios):
            _same_length("LayerStats", names=self.names, **{f"ratios[{i}]": row})
        unknown = [name for name in self.adapted if name not in self.names]
        if unknown:
            raise ValueError(f"LayerStats: adapted names layers not in names: {unknown}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite ratios become None)."""
        self.check()
        out = {"names": [str(n) for n in self.names], "steps": self.steps, "ratios": self.ratios}
        return json_safe({**out, "adapted": [str(n) for n in self.adapted]})  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerStats:
        """The inverse of `to_dict` (None ratios come back as NaN); unknown keys are an error."""
        check.known_keys("LayerStats.from_dict", data, (f.name for f in fields(cls)))
        ratios = [_floats(r) for r in data["ratios"]]
        return cls(list(data["names"]), list(data["steps"]), ratios, list(data.get("adapted", [])))


@dataclass
class RunRecord:
    """Everything a run's report shows: what was chosen and why, what happened, how it ended.

    Attributes:
        title: the report's heading.
        task: a built-in task's name, or a description of the user's model and data.
        total_steps: the run's planned length in optimizer steps.
        history: the loss and LR over the run (`TrainingHistory`).
        schedule: the LR schedule trained with, as an lrpilot spec string
            (``lrpilot.schedules.parse`` rebuilds it), or None.
        recommendation: ``Recommendation.to_dict()`` of the rules' prior, or None.
        finder: ``FinderResult.to_dict()`` of the range test, or None.
        guard_actions: the guard's audit records (``Action.record()`` dicts), in order.
        layer_stats: Adam's per-layer update / weight ratios (`LayerStats`), or None.
        metrics: the final metrics by name (e.g. ``{"val_loss": 0.31, "val_accuracy": 0.92}``).
        timings: seconds spent per phase (e.g. ``{"recommend": 0.01, "find": 3.2, "train": 41.0}``).
        notes: what the reader must know (an interruption, the prior and the finder disagreeing, ...).
        status: one of `STATUSES`.
        tune: for a run `lrpilot.tune` chose, its search: ``trials`` (each with its peak LR, state,
            final and rung losses, steps and why it stopped), ``space``, ``best`` (the trial
            number), ``run_equivalents``, and the range test's ``finder_peak`` and ``band``;
            None otherwise.
        tradeoff: for a fit with a forgetting weight, its probes: ``weight`` (w in
            ``score = val_loss + w × drift``), ``probe_share`` (each probe's share of the run),
            ``points`` (``peak_lr``, ``val_loss``, ``drift``, ``score`` each, highest LR first) and
            ``chosen`` (the peak trained with); None otherwise.
        resumed: for a fit that went on from its range test's ramp: ``ramp_steps``, ``ramp_lr``
            and ``start_step`` (the first step trained; the ramp stood for the ones before,
            `lrpilot.autopilot._resume`); None otherwise.
        resumes: where an interrupted fit went on (``lrpilot fit --resume``), in order: ``step``
            (the steps done when it stopped, the first trained after it) and ``logged`` (the
            entries of `history` by then: a rollback repeats steps, so the one after them is where
            it went on); the report marks each on the training figure. Empty for a run never resumed.
        horizon: where the range test's peak was scaled to the run's length
            (`lrpilot.rules.horizon_factor`): ``found`` (the test's peak), ``factor``,
            ``reference_steps`` (the length its rule is calibrated at), ``steps`` (the run's),
            ``capped`` (held at the test's max stable LR); None where the peak was not scaled.
        classes: the task's classes (a classifier) or vocabulary (a language model), whose log is
            the chance level a loss collapses back to (`lrpilot doctor` reads it); None if unknown.
        chance_loss: the chance level the guard judged a collapse against, where it is not
            ln(`classes`): a classifier's unbalanced training labels' entropy
            (`lrpilot.detect.DetectConfig.for_label_counts`); `lrpilot doctor` reads it too.
        batch_size: the examples of each training step, to which the guard fitted its short median
            (`lrpilot.detect.DetectConfig.scaled_to_batch`; `lrpilot doctor` reads it); None if unknown.
        device: where the run trained (``cpu (2 threads)``, ``cuda:0 (NVIDIA H200)``); None if unknown.
        precision: its forward passes' (``fp32``, ``bf16`` or ``fp16`` autocast); None if unknown.
    """

    title: str
    task: str
    total_steps: int
    history: TrainingHistory
    schedule: str | None = None
    recommendation: dict[str, Any] | None = None
    finder: dict[str, Any] | None = None
    guard_actions: list[dict[str, Any]] = field(default_factory=list)
    layer_stats: LayerStats | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "finished"
    tune: dict[str, Any] | None = None
    tradeoff: dict[str, Any] | None = None
    resumed: dict[str, Any] | None = None
    resumes: list[dict[str, int]] = field(default_factory=list)
    horizon: dict[str, Any] | None = None
    classes: int | None = None
    batch_size: int | None = None
    chance_loss: float | None = None
    device: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        owner = "RunRecord"
        self.total_steps = check.step_count(owner, "total_steps", self.total_steps, 0)
        if self.classes is not None:
            self.classes = check.step_count(owner, "classes", self.classes, 2)
        if self.chance_loss is not None:
            self.chance_loss = check.positive(owner, "chance_loss", self.chance_loss)
        if self.batch_size is not None:
            self.batch_size = check.step_count(owner, "batch_size", self.batch_size, 1)
        check.choice(owner, "status", self.status, STATUSES)
        for at in self.resumes:
            if not (isinstance(at, Mapping) and {"step", "logged"} <= set(at)):
                raise ValueError(f"{owner}: each of resumes must be a dict with 'step' and 'logged', got {at!r}")
            check.step_count(owner, "resumes' step", at["step"], 0)
            check.step_count(owner, "resumes' logged", at["logged"], 0)
        if not isinstance(self.history, TrainingHistory):
            raise ValueError(f"{owner}: history must be a TrainingHistory, got {type(self.history).__name__}")
        if self.layer_stats is not None and not isinstance(self.layer_stats, LayerStats):
            raise ValueError(
                f"{owner}: layer_stats must be a LayerStats or None, got {type(self.layer_stats).__name__}"
            )

    def steps_saved(self) -> int:
        """The steps in the weights the run saved: where its guard gave up, those of the state it went
        back to (its give-up record's ``rollback_to``), else one past the last step logged (steps are
        logged by the index of their update, 0 first). The last step logged of a run given up on is
        where it gave up, after which the weights went back: a digits fit whose loss turned NaN for
        good said "28 of 200" steps, of weights that had 24, after judging 77 (a rollback replays
        steps)."""
        give_up = self._give_up()
        if give_up is not None and give_up.get("rollback_to") is not None:
            return int(give_up["rollback_to"])
        steps = self.history.steps
        return int(steps[-1]) + 1 if len(steps) else 0

    def steps_said(self) -> str:
        """``"24 of 200"``: the steps in the weights saved, of those planned; for a run the guard gave up
        on, the step it gave up at, and the steps it judged where rollbacks replayed some."""
        said = f"{self.steps_saved():,} of {self.total_steps:,}"
        give_up = self._give_up()
        if give_up is None:
            return said
        replays = any(a.get("action") == "rollback" for a in self.guard_actions)
        judged = f"; {len(self.history.steps):,} steps judged, the rollbacks' replays included" if replays else ""
        back = f"the guard gave up at step {int(give_up['step']):,} and went back to step {self.steps_saved():,}"
        return f"{said} ({back}{judged})"

    def _give_up(self) -> dict[str, Any] | None:
        """The guard's give-up record, for a run it gave up on (None for one stopped otherwise)."""
        if self.status != "gave_up":
            return None
        return next((a for a in reversed(self.guard_actions) if a.get("action") == "give_up"), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: strict JSON (``json.dumps(..., allow_nan=False)`` accepts it)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["history"] = self.history.to_dict()
        out["layer_stats"] = None if self.layer_stats is None else self.layer_stats.to_dict()
        return json_safe(out)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """The inverse of `to_dict` (None numbers come back as NaN); unknown keys are an error."""
        check.known_keys("RunRecord.from_dict", data, (f.name for f in fields(cls)))
        kwargs = dict(data)
        kwargs["history"] = TrainingHistory.from_dict(data["history"])
        if kwargs.get("layer_stats") is not None:
            kwargs["layer_stats"] = LayerStats.from_dict(kwargs["layer_stats"])
        for name in ("metrics", "timings"):
            kwargs[name] = {k: _floats([v])[0] for k, v in kwargs.get(name, {}).items()}
        return cls(**kwargs)

    def write_json(self, path: str | Path) -> Path:
        """Write `to_dict` as strict JSON to `path` and return it."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return out


def read_run(path: str | Path) -> RunRecord:
    """The `RunRecord` in a ``run.json`` file, or in the ``run.json`` of a report directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise FileNotFoundError(f"read_run: no such file: {p} (expected a run.json or a directory holding one)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"read_run: {p} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"read_run: {p} must hold a JSON object, got {type(data).__name__}")
    if "history" not in data:  # another of lrpilot's JSON outputs: say what it is, not its unknown keys
        find = " (`lrpilot find --json`'s answer; `lrpilot find --plot FILE.png` draws it)"
        found = find if "records" in data else ""
        raise ValueError(
            f"read_run: {p} is not a run record{found}; give the run.json that fit or write_report writes, "
            "or its folder"
        )
    try:
        return RunRecord.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"read_run: {p} is not a run record ({exc})") from None


def finder_from_dict(data: Mapping[str, Any]) -> FinderResult:
    """The `FinderResult` that ``FinderResult.to_dict()`` wrote, for plotting it again."""
    probes = tuple(
        Probe(
            peak_lr=p["peak_lr"],
            steps=p["steps"],
            score=_floats([p["score"]])[0],
            losses=tuple(_floats(p.get("losses", ()))),
        )
        for p in data.get("probes", ())
    )
    schedule = data.get("schedule")
    low, high = _floats(data["band"])
    return FinderResult(
        peak_lr=float(data["peak_lr"]),
        band=(low, high),
        max_stable_lr=float(data["max_stable_lr"]),
        schedule=None if schedule is None else schedule_from_dict(schedule),
        method=str(data["method"]),
        records=tuple(RangeTestRecord.from_dict(r) for r in data["records"]),
        probes=probes,
        steps_used=int(data.get("steps_used", 0)),
        wall_time_s=float(data.get("wall_time_s", 0.0)),
        details=dict(data.get("details", {})),
    )
