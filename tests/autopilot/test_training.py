"""fit's guarded run (`lrpilot.autopilot._training.train_guarded`): what it repeats exactly."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lrpilot.autopilot._progress import Clock, quiet
from lrpilot.autopilot._training import _evaluate, _guard_config, _score_stopped, after_run, train_guarded
from lrpilot.schedules import Cosine
from lrpilot.tasks import get_task
from lrpilot.tasks._base import seeded
from lrpilot.tasks._device import Precision
from lrpilot.tasks._digits import DigitsTask

NAN_CALLS = range(3, 7)
"""The loss calls that return NaN: three skips, then a rollback to the only confirmed snapshot, the first."""


@dataclasses.dataclass(frozen=True)
class _DropoutDigits(DigitsTask):
    """digits' MLP with dropout (its draws come from torch's global generator), whose loss is NaN on
    the calls in `NAN_CALLS`."""

    calls: list[int] = dataclasses.field(default_factory=list)

    def build_model(self, seed: int) -> nn.Module:
        with seeded(seed):
            return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        loss = super().loss(model, batch)
        return loss * math.nan if len(self.calls) in NAN_CALLS else loss


def _guarded(tmp_path: Path, caller_seed: int) -> tuple[torch.Tensor, list[str]]:
    digits = get_task("digits")
    task = _DropoutDigits(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    model = task.build_model(0)
    run_dir = tmp_path / str(caller_seed)
    run_dir.mkdir()
    torch.manual_seed(caller_seed)  # the caller's generator, which torch seeds at random per process
    trained = train_guarded(
        task,
        model,
        task.recipe,
        Cosine(peak=1e-2, total_steps=40, warmup_steps=4),
        seed=0,
        run_dir=run_dir,
        progress=quiet,
        callback=None,
        clock=Clock(),
    )
    actions = [record["action"] for record in trained.guard["records"]]
    return torch.cat([p.detach().flatten() for p in model.parameters()]), actions


def test_a_rollback_to_the_first_snapshot_repeats_whatever_the_callers_generator(tmp_path: Path) -> None:
    """The first snapshot is taken in the seeded block: a rollback to it restores the generator the
    run started from, so a fit rolled back there ends the same in any process."""
    weights, actions = _guarded(tmp_path, caller_seed=1)
    assert actions[:4] == ["skip", "skip", "skip", "rollback"]
    again, _ = _guarded(tmp_path, caller_seed=2)
    assert torch.equal(weights, again)


def test_the_guard_reads_a_short_median_over_as_many_examples_at_any_batch() -> None:
    """fit's guard is fitted to the recipe's batch: 4× the losses in its short median at batch 8,
    the calibrated 8 at digits' 64."""
    digits = get_task("digits")
    small = dataclasses.replace(digits, recipe=dataclasses.replace(digits.recipe, batch_size=8))
    for task, expected in ((small, (32, 44)), (digits, (8, 20))):
        config = _guard_config(task, 200)
        assert (config.detect.div_short, config.confirm_steps) == expected


def _run(
    task: DigitsTask,
    tmp_path: Path,
    name: str,
    *,
    read_every: int = 1,
    peak: float = 3e-3,
    precision: str = "fp32",
    callback: Any = None,
    state: Any = None,
) -> tuple[Any, nn.Module]:
    model = task.build_model(0)
    run_dir = tmp_path / name
    run_dir.mkdir()
    steps = task.recipe.total_steps
    trained = train_guarded(
        task,
        model,
        task.recipe,
        Cosine(peak=peak, total_steps=steps, warmup_steps=steps // 10),
        seed=0,
        run_dir=run_dir,
        progress=quiet,
        callback=callback,
        clock=Clock(),
        read_every=read_every,
        precision=Precision(precision, "cpu"),
        state=state,
    )
    return trained, model


def test_verdicts_read_every_five_steps_train_as_verdicts_read_every_step(tmp_path: Path) -> None:
    """On a GPU the guard reads its verdicts every few steps (the host never waits for the device);
    a run it takes no action in is then the run it judges step by step, to the bit: the same
    weights, the same logged losses, the evaluations at the same steps, the same layer ratios."""
    digits = get_task("digits")
    task = dataclasses.replace(digits, recipe=dataclasses.replace(digits.recipe, total_steps=60))
    assert isinstance(task, DigitsTask)
    every, model = _run(task, tmp_path, "every", read_every=1)
    delayed, model_delayed = _run(task, tmp_path, "delayed", read_every=5)
    assert every.guard["records"] == delayed.guard["records"] == []
    for a, b in zip(model.parameters(), model_delayed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert delayed.history.loss == every.history.loss
    assert len(delayed.history.loss) == 60
    assert delayed.history.eval_steps == every.history.eval_steps == [15, 30, 45, 60]
    assert delayed.final == every.final
    assert delayed.layers.steps == every.layers.steps
    assert delayed.layers.ratios == every.layers.ratios


@pytest.mark.parametrize(("read_every", "precision"), [(5, "fp32"), (5, "fp16"), (1, "fp16"), (1, "bf16")])
def test_a_rollback_read_late_trains_on_from_its_snapshot_and_evaluates_every_checkpoint(
    tmp_path: Path, read_every: int, precision: str
) -> None:
    """NaN losses in the first window, read five steps late: the poisoned update (a NaN gradient times
    the device's 0 is still NaN) is undone by a rollback when the verdicts arrive, the run trains on
    to its last step, and each evaluation comes once, after every verdict before it was read. The
    same in mixed precision, read at once or late (fp16: the loss scale the guard unscales)."""
    digits = get_task("digits")
    task = _DropoutDigits(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    trained, model = _run(task, tmp_path, "nan", read_every=read_every, peak=1e-2, precision=precision)
    actions = [record["action"] for record in trained.guard["records"]]
    assert "rollback" in actions
    assert trained.status == "finished"
    assert trained.history.eval_steps == [10, 20, 30, 40]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(trained.final["val_loss"])
    assert trained.final["val_accuracy"] > 0.5
    assert len(trained.history.loss) >= 40  # the replayed steps are logged too


@dataclasses.dataclass(frozen=True)
class _BrokenDigits(DigitsTask):
    """digits whose training loss turns NaN for good after its 12th call (its evaluation does not):
    the guard skips, rolls back, and gives up."""

    calls: list[int] = dataclasses.field(default_factory=list)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        loss = super().loss(model, batch)
        return loss * math.nan if len(self.calls) > 12 else loss


def test_a_run_the_guard_gave_up_on_reports_the_metrics_of_the_state_it_saves(tmp_path: Path) -> None:
    digits = get_task("digits")
    task = _BrokenDigits(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    trained, model = _run(task, tmp_path, "broken", read_every=1, peak=1e-2)
    assert trained.status == "gave_up"
    step = trained.history.eval_steps[-1]
    assert trained.notes[-1].startswith("the guard gave up at step ")
    gave_up = trained.guard["records"][-1]
    assert gave_up["action"] == "give_up"
    # it said 'the guard gave up at step 48: gave up at step 51: ...', the restored step first
    assert trained.notes[-1].count("gave up at step") == 1
    assert trained.notes[-1].startswith(f"the guard gave up at step {gave_up['step']}: ")
    # the weights went back to a state before step 10's evaluation, which goes with the weights it
    # scored: not 'the model got worse after step 10 ... a budget near 10 steps (where it was best)',
    # which blamed the run's length
    assert trained.history.eval_steps == [step]
    assert step < 10
    assert not any(note.startswith("the model got worse") for note in after_run(trained))
    assert trained.notes[-1].endswith(
        f"; the metrics are of the saved weights at step {step}, scored as a finished run's are"
    )
    scored = task.metrics(model)
    assert trained.final == pytest.approx({"val_loss": scored.loss, "val_accuracy": scored.accuracy}, rel=1e-6)


@dataclasses.dataclass(frozen=True)
class _BrokenPasses(DigitsTask):
    """digits whose training loss is NaN from the 12th step of a pass on (a pass begins where the
    weights are the initial ones: a rollback to the first snapshot), in its first `passes` passes:
    each pass trains past the evaluation after step 10 before the guard rolls it back."""

    passes: float = math.inf
    seen: dict[str, Any] = dataclasses.field(default_factory=dict)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        first = self.seen.setdefault("initial", weights.clone())
        if torch.equal(weights, first):
            self.seen["pass"], self.seen["step"] = self.seen.get("pass", 0) + 1, 0
        self.seen["step"] += 1
        loss = super().loss(model, batch)
        return loss * math.nan if self.seen["step"] > 12 and self.seen["pass"] <= self.passes else loss


@pytest.mark.parametrize("read_every", [1, 5])
def test_a_guard_that_gives_up_keeps_one_evaluation_per_step_and_says_so_once(tmp_path: Path, read_every: int) -> None:
    """Both passes trained past step 10's evaluation: the first was rolled back to step 0, the second
    went bad at the same step and was skipped on until the guard gave up, restoring step 0 (eight
    rollbacks, one a pass, until 2026-12). The curve held ``10, 10, …, 10`` (each of a pass it
    abandoned) and then the restored state's, and the note said "The last good state (step 0) is
    restored; its last good state was saved". A rollback now drops the evaluations of the weights it
    undid."""
    digits = get_task("digits")
    task = _BrokenPasses(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    trained, model = _run(task, tmp_path, "broken", read_every=read_every, peak=1e-2)
    assert trained.status == "gave_up"
    rollbacks = [r for r in trained.guard["records"] if r["action"] == "rollback"]
    assert [r["rollback_to"] for r in rollbacks] == [0]
    assert trained.guard["records"][-1]["rollback_to"] == 0
    assert trained.history.eval_steps == [0]  # the restored weights' score, once
    assert trained.layers.steps == []  # every update measured was undone
    assert len(trained.history.eval_loss) == len(trained.history.eval_metrics["accuracy"]) == 1
    assert trained.final["val_loss"] == pytest.approx(task.metrics(model).loss, rel=1e-6)
    assert trained.notes[-1].count("last good state") == 1
    said = "The last good state (step 0) is restored; the metrics are of the saved weights at step 0"
    assert said in trained.notes[-1]


def test_a_run_the_guard_gave_up_on_says_the_steps_of_the_weights_it_saved(tmp_path: Path) -> None:
    """Its report's header and fit's summary counted one past the last step logged: the step the
    guard gave up at, not the steps in the weights it went back to and saved (nor the steps judged)."""
    from lrpilot.report import RunRecord, write_report

    digits = get_task("digits")
    task = _BrokenPasses(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    trained, _ = _run(task, tmp_path, "broken", peak=1e-2)
    gave_up = trained.guard["records"][-1]
    assert (trained.status, gave_up["action"], trained.guard["step"]) == ("gave_up", "give_up", 0)
    assert trained.history.steps[-1] == gave_up["step"] > 10  # the last step logged: where it gave up
    record = RunRecord(
        title="broken digits",
        task="digits",
        total_steps=40,
        history=trained.history,
        guard_actions=trained.guard["records"],
        status=trained.status,
    )
    judged = len(trained.history.steps)
    assert record.steps_said() == (
        f"0 of 40 (the guard gave up at step {gave_up['step']} and went back to step 0; {judged} steps judged, the "
        "rollbacks' replays included)"
    )
    page = (write_report(record, tmp_path / "report")).read_text(encoding="utf-8")
    assert "· 0 of 40 steps" in page
    assert f"{gave_up['step'] + 1} of 40" not in page


def test_a_rollback_over_an_evaluation_keeps_the_one_of_the_pass_that_went_on(tmp_path: Path) -> None:
    """Rolled back from step 15 to 0 once, the run evaluated step 10 on both passes and kept both:
    two points at step 10, the first of weights it had undone; and the update ratios of both passes."""
    digits = get_task("digits")
    task = _BrokenPasses(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40), passes=1)
    trained, _ = _run(task, tmp_path, "once", peak=1e-2)
    assert trained.status == "finished"
    assert [r["action"] for r in trained.guard["records"]].count("rollback") == 1
    assert trained.history.eval_steps == [10, 20, 30, 40]
    assert len(trained.history.eval_loss) == len(trained.history.eval_metrics["accuracy"]) == 4
    assert trained.layers.steps == sorted(set(trained.layers.steps))  # the ratios of the pass that went on
    assert len(trained.layers.ratios) == len(trained.layers.steps)


def test_a_stop_just_after_a_checkpoints_evaluation_scores_those_weights_once(tmp_path: Path) -> None:
    """Evaluated at step 10 (the quick examples), stopped before step 11's update: the saved weights'
    evaluation (all the examples) replaces that one in the curve rather than repeating its step."""
    digits = get_task("digits")
    model = digits.build_model(0)
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    _evaluate(digits, model, None, 5, last=False, evals=evals, precision=Precision())
    _evaluate(digits, model, None, 10, last=False, evals=evals, precision=Precision())
    note = _score_stopped(digits, model, None, evals, 10, 40, Clock(), quiet, precision=Precision())
    assert note == "the metrics are of the saved weights at step 10, scored as a finished run's are"
    assert evals["eval_steps"] == [5, 10]
    assert len(evals["eval_loss"]) == len(evals["metrics"]["accuracy"]) == 2
    assert evals["final"]["examples"] == 359
    assert evals["reported"]["val_loss"] == pytest.approx(digits.metrics(model).loss, rel=1e-6)


def _logits_scaled(scale: float) -> tuple[Any, nn.Module]:
    """digits and its MLP with the output layer's weights ×`scale`: logits of ~1e5 and more, past
    fp16's largest number (65504), where fp32 computes a large but finite loss."""
    digits = get_task("digits")
    model = digits.build_model(0)
    last = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(scale)
    return digits, model


def test_a_final_evaluation_that_overflows_in_fp16_is_scored_again_in_fp32() -> None:
    digits, model = _logits_scaled(1e6)
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    assert _evaluate(digits, model, None, 5, last=False, evals=evals, precision=Precision("fp16")) == []
    assert math.isnan(evals["eval_loss"][0])  # an evaluation along the way is kept as it came
    note = _evaluate(digits, model, None, 10, last=True, evals=evals, precision=Precision("fp16"))
    fp32 = digits.metrics(model).loss
    assert math.isfinite(fp32)
    assert note == [f"the final evaluation's loss was NaN in fp16 (an overflow); scored again in fp32: {fp32:.4g}"]
    assert evals["reported"]["val_loss"] == pytest.approx(fp32, rel=1e-6)
    assert evals["eval_steps"] == [5, 10]  # once, in fp32


def test_a_final_evaluation_that_stays_nan_says_the_weights_are_unusable() -> None:
    digits, model = _logits_scaled(math.nan)
    evals: dict[str, Any] = {"eval_steps": [], "eval_loss": [], "metrics": {}}
    for precision in (Precision(), Precision("fp16")):
        (note,) = _evaluate(digits, model, None, 10, last=True, evals=evals, precision=precision)
        assert note.startswith("the final evaluation's loss is NaN: the saved weights give non-finite outputs")
    assert evals["eval_steps"] == [10, 10]


@dataclasses.dataclass(frozen=True)
class _NanThenCtrlC(DigitsTask):
    """digits whose loss is NaN on its 13th and 14th calls, and whose 15th is the user's Ctrl-C: with
    verdicts read every five steps (a GPU's), those NaN steps' verdicts are still on their way."""

    calls: list[int] = dataclasses.field(default_factory=list)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        if len(self.calls) == 15:
            raise KeyboardInterrupt
        loss = super().loss(model, batch)
        return loss * math.nan if len(self.calls) in (13, 14) else loss


def test_a_ctrl_c_reads_the_verdicts_on_their_way_before_it_saves_the_weights(tmp_path: Path) -> None:
    """The poisoned updates of the NaN steps are undone by the rollback their verdicts call for, read
    before the interrupted weights are scored and saved (left unread, the saved model was NaN)."""
    digits = get_task("digits")
    task = _NanThenCtrlC(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    trained, model = _run(task, tmp_path, "ctrl-c", read_every=5, peak=1e-2)
    assert trained.status == "interrupted"
    assert trained.notes[0] == (
        "interrupted by the user at step 14 of 40, with a non-finite update in the weights; the guard's last good "
        "snapshot (step 0) was saved (a run restored so cannot be resumed); the metrics are of the saved weights at "
        "step 0, scored as a finished run's are"
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(trained.final["val_loss"])


@dataclasses.dataclass(frozen=True)
class _DropoutStopped(DigitsTask):
    """digits' MLP with dropout whose loss call `stop_at` raises KeyboardInterrupt (a Ctrl-C in the
    middle of a step's forward pass, after its batch was drawn)."""

    stop_at: int = 0
    calls: list[int] = dataclasses.field(default_factory=list)

    def build_model(self, seed: int) -> nn.Module:
        with seeded(seed):
            return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        loss = super().loss(model, batch)  # the dropout mask is drawn before the interrupt
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return loss


@pytest.mark.parametrize(("stop_at", "between"), [(1, False), (17, False), (30, False), (17, True), (21, True)])
def test_a_run_stopped_inside_a_forward_pass_or_between_steps_resumes_as_it_would_have_gone_on(
    tmp_path: Path, stop_at: int, between: bool
) -> None:
    """Stopped inside a forward pass, its state is the step's start: resumed, the step draws its
    batch and its dropout mask again. Stopped between steps (the callback after step `stop_at` − 1,
    at 21 just after an evaluation), the generators are read where the stop found them, inside
    the run's seeded block (read after it, they were the caller's). Either way the run ends with
    the weights of a run never stopped."""
    digits = get_task("digits")
    recipe = dataclasses.replace(digits.recipe, total_steps=40)

    def stop(step: int, lr: float, loss: float) -> None:
        if between and step == stop_at - 1:
            raise KeyboardInterrupt

    def run(task: DigitsTask, name: str, state: Any = None) -> tuple[Any, nn.Module]:
        return _run(task, tmp_path, name, callback=stop if name == "stopped" else None, state=state)

    whole, model = run(_DropoutStopped(digits.name, digits.description, recipe), "whole")
    in_forward = 0 if between else stop_at
    stopped, _ = run(_DropoutStopped(digits.name, digits.description, recipe, stop_at=in_forward), "stopped")
    assert stopped.status == "interrupted"
    assert stopped.state is not None
    done = stop_at if between else stop_at - 1  # the callback comes after its step; a forward pass before
    assert (stopped.state.step, stopped.state.position) == (done, done)
    resumed, again = run(_DropoutStopped(digits.name, digits.description, recipe), "resumed", stopped.state)
    assert resumed.status == "finished"
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history.loss == whole.history.loss
    assert resumed.history.eval_steps == whole.history.eval_steps == [10, 20, 30, 40]


@dataclasses.dataclass(frozen=True)
class _NanAfterResume(DigitsTask):
    """digits whose loss is NaN on calls 31–34 (three skips, then a rollback) and, with `stop_at`,
    raises KeyboardInterrupt on that call; a resumed run's task counts on from `done` calls."""

    stop_at: int = 0
    done: int = 0
    calls: list[int] = dataclasses.field(default_factory=list)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        call = self.done + len(self.calls)
        if call == self.stop_at:
            raise KeyboardInterrupt
        loss = super().loss(model, batch)
        return loss * math.nan if 31 <= call <= 34 else loss


def test_a_rollback_after_a_resume_goes_where_the_run_never_stopped_would(tmp_path: Path) -> None:
    """Stopped at step 28, resumed; NaN at steps 30–33 roll the run back to a snapshot taken before
    the stop (its snapshots were saved with the guard's memory): the same rollback target and
    final weights as the run never stopped (with only the resume point to go back to, it differed)."""
    digits = get_task("digits")
    recipe = dataclasses.replace(digits.recipe, total_steps=60)

    def run(task: DigitsTask, name: str, state: Any = None) -> tuple[Any, nn.Module]:
        return _run(task, tmp_path, name, state=state)

    task = _NanAfterResume(digits.name, digits.description, recipe)
    whole, model = run(task, "whole")
    rollbacks = [r for r in whole.guard["records"] if r["action"] == "rollback"]
    assert len(rollbacks) == 1
    assert rollbacks[0]["rollback_to"] < 28  # a snapshot from before the stop
    stopped, _ = run(_NanAfterResume(digits.name, digits.description, recipe, stop_at=29), "stopped")
    assert stopped.state is not None
    assert stopped.state.step == 28
    resumed, again = run(_NanAfterResume(digits.name, digits.description, recipe, done=28), "resumed", stopped.state)
    assert [r for r in resumed.guard["records"] if r["action"] == "rollback"] == rollbacks
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert np.array_equal(resumed.history.loss, whole.history.loss, equal_nan=True)  # the NaN steps too
