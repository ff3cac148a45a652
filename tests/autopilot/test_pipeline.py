"""`lrpilot.fit` on the digits task, for real: the pipeline's outputs, Ctrl-C, and budgets."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import lrpilot
from lrpilot.autopilot import AUDIT_FILE, MODEL_FILE, fit
from lrpilot.autopilot._training import QUICK_EVAL
from lrpilot.report import RunRecord, read_run, write_report
from lrpilot.report.run_plots import RESUME_COLOR, draw_training
from lrpilot.rules import HORIZON_EXPONENT, horizon_factor
from lrpilot.tasks import get_task


def _weights(model: torch.nn.Module | None) -> list[torch.Tensor]:
    assert model is not None
    return [p.detach().clone() for p in model.parameters()]


def test_an_interrupted_fit_resumed_ends_as_the_uninterrupted_one_to_the_bit(tmp_path: Path) -> None:
    """Stopped after step 100 (the ramp stood for the warmup's first steps), resumed from its run
    folder and stopped again after step 180, resumed again: the same weights, losses, evaluations
    and layer ratios as a fit never stopped; the folder's model and report are the finished run's,
    and there is nothing left to resume."""
    whole = fit("digits", out=tmp_path / "whole", report=False)

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 100:
            raise KeyboardInterrupt

    stopped = fit("digits", out=tmp_path / "run", report=False, callback=stop)
    assert stopped.status == "interrupted"
    assert stopped.record.resumed == whole.record.resumed  # the ramp stood for the same warmup steps

    def stop_again(step: int, lr: float, loss: float) -> None:
        if step == 180:
            raise KeyboardInterrupt

    again = fit(resume=tmp_path / "run", report=False, callback=stop_again)  # a resumed fit stopped in turn
    assert (again.status, again.record.history.steps[-1]) == ("interrupted", 180)
    assert [at["step"] for at in again.record.resumes] == [101]
    resumed = fit(resume=tmp_path / "run", report=False)
    assert resumed.status == "finished"
    for a, b in zip(_weights(resumed.model), _weights(whole.model), strict=True):
        assert torch.equal(a, b)
    for name in ("steps", "loss", "lr", "eval_steps", "eval_loss", "eval_metrics", "final_eval"):
        assert getattr(resumed.record.history, name) == getattr(whole.record.history, name), name
    assert resumed.record.layer_stats == whole.record.layer_stats
    assert resumed.metrics == whole.metrics
    assert "resumed at step 101 of 250 (lrpilot fit --resume)" in resumed.record.notes
    assert "resumed at step 181 of 250 (lrpilot fit --resume)" in resumed.record.notes
    assert not (tmp_path / "run" / "resume.pt").exists()
    saved = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert (saved["status"], saved["metrics"]) == ("finished", pytest.approx(whole.metrics))
    with pytest.raises(ValueError, match=r"holds no resume.pt: only a fit interrupted at a step boundary"):
        fit(resume=tmp_path / "run")
    _marked_where_it_went_on(resumed.record, tmp_path / "report")


def _marked_where_it_went_on(record: RunRecord, out: Path) -> None:
    """The notes said where the run was stopped and resumed, the figure did not show it: each point
    is kept in the record (a second resume keeps the first) and drawn as a line on both panels, with
    its step written on the loss panel, and the report's page names them under the figure."""
    assert [at["step"] for at in record.resumes] == [101, 181]
    # the ramp stood for the warmup's first steps, so step 101 is not the 101st logged
    assert [record.history.steps[at["logged"]] for at in record.resumes] == [101, 181]
    plt = pytest.importorskip("matplotlib.pyplot")
    figure = draw_training(record.history, guard_actions=record.guard_actions, resumes=record.resumes)
    try:
        for ax in figure.axes:
            marks = [line for line in ax.get_lines() if line.get_color() == RESUME_COLOR]
            assert [list(line.get_xdata()) for line in marks] == [[101, 101], [181, 181]]
        texts = [text.get_text() for text in figure.axes[0].texts]
        assert {"resumed at step 101", "resumed at step 181"} <= set(texts)
    finally:
        plt.close(figure)
    page = write_report(record, out).read_text(encoding="utf-8")
    assert "resumed (<code>lrpilot fit --resume</code>) at steps 101 and 181: the dotted lines mark" in page
    assert read_run(out).resumes == record.resumes


def test_a_fit_resumed_on_another_number_of_threads_trains_on_the_fits_own(tmp_path: Path) -> None:
    """`lrpilot fit --resume` ran a built-in task, trained on one thread, on torch's default: its
    sums split otherwise, and digits ended 0.0822126716 against the uninterrupted 0.0822126791.
    The checkpoint keeps the thread count; the caller's is back after the resume."""
    caller = torch.get_num_threads()

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 100:
            raise KeyboardInterrupt

    try:
        torch.set_num_threads(1)
        whole = fit("digits", budget=300, out=tmp_path / "whole", report=False)
        assert fit("digits", budget=300, out=tmp_path / "run", report=False, callback=stop).status == "interrupted"
        torch.set_num_threads(2)
        resumed = fit(resume=tmp_path / "run", report=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)
    assert resumed.metrics == whole.metrics
    for a, b in zip(_weights(resumed.model), _weights(whole.model), strict=True):
        assert torch.equal(a, b)


def test_resume_takes_the_interrupted_fits_own_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"fit: --resume takes the interrupted fit's own settings; drop budget, seed"):
        fit(resume=tmp_path, seed=3, budget=100)
    with pytest.raises(FileNotFoundError, match=r"--resume .*missing is not a directory"):
        fit(resume=tmp_path / "missing")


def test_what_fit_trains_is_one_spec_whose_fields_fit_and_tune_take_and_a_resume_reads_back() -> None:
    """`TargetSpec` is the one list of fit's arguments that say what it trains: a resume reads back
    `TARGET_ARGUMENTS`, its fields, and fit, tune and their checks take each with the spec's default
    (the thirteen had been spelled out by hand in each signature and in a second list)."""
    import inspect

    from lrpilot.autopilot._pipeline import TARGET_ARGUMENTS, check_arguments
    from lrpilot.autopilot._target import TargetSpec
    from lrpilot.tuning import tune
    from lrpilot.tuning._tune import check_arguments as check_tune

    fields = {f.name: f.default for f in dataclasses.fields(TargetSpec) if f.name != "owner"}
    assert tuple(fields) == TARGET_ARGUMENTS
    for function in (fit, check_arguments, tune, check_tune):
        parameters = inspect.signature(function).parameters
        assert {name: parameters[name].default for name in fields} == fields, function
    stored = {"task": None, "model": "/m", "data": "/d.csv", "eval_data": None, "task_type": None, "method": "lora"}
    stored |= {"data_dir": None, "batch_size": 8, "columns": None, "max_length": None, "seed": 0, "device": None}
    # the arguments of a checkpoint saved before the LoRA options: those it lacks are their defaults
    assert TargetSpec.of(stored) == TargetSpec(model="/m", data="/d.csv", method="lora", batch_size=8)


def test_import_lrpilot_stays_numpy_only_and_fit_is_callable_lazily() -> None:
    code = "import sys, lrpilot; assert 'torch' not in sys.modules; print(callable(lrpilot.fit))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert callable(lrpilot.fit)


@contextmanager
def _ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler (it raises KeyboardInterrupt, as in a terminal), whatever the
    test runner installed, so that `signal.raise_signal` is a real Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_training_saves_a_loadable_checkpoint_and_an_interrupted_report(tmp_path: Path) -> None:
    """A real SIGINT after step 70: the weights saved are scored as a finished run's are (they had
    been left with the step-63 evaluation's figures, or none before the first)."""

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 70:
            signal.raise_signal(signal.SIGINT)

    with _ctrl_c_raises():
        result = lrpilot.fit("digits", out=tmp_path / "run", callback=stop)
    assert result.status == "interrupted"
    history = result.record.history
    assert history.steps[-1] == 70
    assert history.eval_steps == [
        63,
        71,
    ]  # the first quarter's evaluation (after 63 of 250 steps), and the saved weights'
    notes = " ".join(result.record.notes)
    assert (
        "interrupted by the user at step 71 of 250; the weights so far were saved (lrpilot fit --resume RUN_DIR goes "
        "on from there); the metrics are of the " in notes
    )
    assert "saved weights at step 71, scored as a finished run's are" in notes
    digits = get_task("digits")
    model = digits.build_model(0)
    model.load_state_dict(torch.load(result.model_path, weights_only=True))
    scored = digits.metrics(model)
    assert result.metrics == pytest.approx({"val_loss": scored.loss, "val_accuracy": scored.accuracy}, rel=1e-6)
    assert history.final_eval == {**result.metrics, "examples": 359}
    assert history.eval_loss[-1] == pytest.approx(digits.metrics(model, QUICK_EVAL).loss, rel=1e-6)
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "interrupted"
    assert run["metrics"] == pytest.approx(result.metrics)
    assert (result.run_dir / "index.html").is_file()
    assert (result.run_dir / "resume.pt").is_file()  # stopped at a step boundary: it can go on


def test_a_second_ctrl_c_during_the_evaluation_of_the_interrupted_weights_records_no_metrics(tmp_path: Path) -> None:
    stopped: list[int] = []

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 70:
            stopped.append(step)
            signal.raise_signal(signal.SIGINT)

    def again(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase == "evaluate" and stopped:  # the evaluation of the interrupted weights begins
            signal.raise_signal(signal.SIGINT)

    with _ctrl_c_raises():
        result = lrpilot.fit("digits", out=tmp_path / "run", callback=stop, progress=again)
    assert result.status == "interrupted"
    assert result.metrics == {}  # not the step-63 evaluation's figures: those are of other weights
    assert result.record.history.eval_steps == [63]
    assert result.record.history.final_eval == {}
    assert any(
        note.endswith("; a second Ctrl-C stopped their evaluation, so no final metrics were recorded")
        for note in result.record.notes
    )
    assert json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["metrics"] == {}
    assert "no final metrics recorded" in (result.run_dir / "index.html").read_text(encoding="utf-8")
    get_task("digits").build_model(0).load_state_dict(torch.load(result.model_path, weights_only=True))


def test_a_ctrl_c_inside_the_update_saves_the_weights_but_leaves_nothing_to_resume(tmp_path: Path) -> None:
    """Two real SIGINTs from inside AdamW's step 71 (torch's global pre-step hook: the user's second
    Ctrl-C landing mid-update): the first only asks for a stop at the boundary, the second stops at
    once. The weights are saved and scored, but with the step half-applied there is no boundary to
    go on from, so the folder holds no resume.pt and the notes say why."""
    armed: list[int] = []

    def arm(step: int, lr: float, loss: float) -> None:
        if step == 70:
            armed.append(step)

    def twice(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        if armed:
            armed.clear()
            signal.raise_signal(signal.SIGINT)  # deferred to the step's end ...
            signal.raise_signal(signal.SIGINT)  # ... and the second one is not

    hook = register_optimizer_step_pre_hook(twice)
    try:
        with _ctrl_c_raises():
            result = lrpilot.fit("digits", out=tmp_path / "run", callback=arm, report=False)
    finally:
        hook.remove()
    assert result.status == "interrupted"
    notes = " ".join(result.record.notes)
    assert "interrupted by the user at step 71 of 250, inside the step's update" in notes
    assert "cannot be resumed" in notes
    assert not (result.run_dir / "resume.pt").exists()
    model = get_task("digits").build_model(0)
    model.load_state_dict(torch.load(result.model_path, weights_only=True))
    assert result.metrics["val_loss"] == pytest.approx(get_task("digits").metrics(model).loss, rel=1e-6)
    with pytest.raises(ValueError, match=r"holds no resume.pt"):
        fit(resume=result.run_dir)


def test_a_step_budget_fits_the_recipe_and_the_outputs_are_complete(tmp_path: Path) -> None:
    result = fit("digits", budget=100, out=tmp_path / "run", report=False)
    assert result.status == "finished"
    assert result.schedule.to_dict()["total_steps"] == 100
    assert result.schedule.to_dict()["warmup_steps"] == 10  # the recipe's 10 %, compressed
    assert result.record.history.eval_steps == [25, 50, 75, 100]
    assert result.report_path is None
    history = result.record.history  # the curve: the same 128 of the 359 digits each time ...
    assert history.eval_examples == QUICK_EVAL
    model = get_task("digits").build_model(0)
    model.load_state_dict(torch.load(result.model_path, weights_only=True))
    assert history.eval_loss[-1] == get_task("digits").metrics(model, QUICK_EVAL).loss
    assert history.final_eval == {**result.metrics, "examples": 359}  # ... and the whole set's figures beside it
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted([AUDIT_FILE, MODEL_FILE, "run.json"])
    stats = result.record.layer_stats
    assert stats is not None
    assert stats.names == ["0 (Linear)", "2 (Linear)", "4 (Linear)"]
    assert all(0 < r < 1 for row in stats.ratios for r in row)
    used = result.finder.record.steps
    assert f"range test: {used} steps in " in " ".join(result.record.notes)
    assert f"({used / 100:.0%} of the run's 100)" in " ".join(result.record.notes)


def test_a_budget_shorter_than_the_recipe_trains_at_a_higher_peak_by_the_horizon_law(tmp_path: Path) -> None:
    """The range test's rule is calibrated on digits' 250-step recipe: 100 steps train at
    (250 / 100)^β × its peak, the recipe's own length at the peak itself."""
    short = fit("digits", budget=100, out=tmp_path / "short", report=False)
    factor = horizon_factor(100, calibrated=(250, 250))
    assert factor > 1.7
    found = float(f"{short.finder.peak_lr:.3g}")  # fit reads the test's peak to 3 digits
    assert short.peak_lr == float(f"{found * factor:.3g}")
    assert short.schedule.to_dict()["peak"] == short.peak_lr
    expected = {"found": found, "factor": factor, "reference_steps": 250, "steps": 100, "capped": False}
    assert short.record.horizon == expected
    assert any(
        note.startswith("horizon: ") and "run of 250 steps; this one has 100" in note for note in short.record.notes
    )
    full = fit("digits", out=tmp_path / "full", report=False)
    assert full.peak_lr == float(f"{full.finder.peak_lr:.3g}")
    assert not any(note.startswith("horizon: ") for note in full.record.notes)
    assert full.record.horizon is None


def test_a_very_short_budget_is_scaled_as_a_third_length_run_under_the_tests_max_stable_lr(tmp_path: Path) -> None:
    """6 of digits' 250 steps: the horizon law extrapolated would scale the peak ×10.5, past the LR
    where the test's loss turned up; it is held at a third-length run's ×2.0, the shortest the law
    was measured at, which stays under it."""
    result = fit("digits", budget=6, out=tmp_path / "run", report=False)
    horizon = result.record.horizon
    assert horizon is not None
    assert horizon["factor"] == pytest.approx(horizon_factor(83, calibrated=(250, 250))) == pytest.approx(2.0, abs=0.01)
    assert not horizon["capped"]
    assert horizon["found"] * (250 / 6) ** HORIZON_EXPONENT > result.finder.max_stable_lr > result.peak_lr
    assert result.peak_lr == float(f"{horizon['found'] * horizon['factor']:.3g}")
    assert any("the shortest run the law was measured on" in note for note in result.record.notes)


def test_the_run_goes_on_from_the_range_tests_ramp_and_repeats_exactly(tmp_path: Path) -> None:
    """The ramp stands for the warmup's first steps: the history starts where it left off, at an LR
    above the ramp's last and at most the peak, and the test stopped once its minimum settled."""
    result = fit("digits", budget=200, out=tmp_path / "a", report=False)
    resumed = result.record.resumed
    start, ramp_lr = resumed["start_step"], resumed["ramp_lr"]
    assert any(f"after {resumed['ramp_steps']} ramp steps" in note for note in result.record.notes)
    history = result.record.history
    assert 0 < start <= result.schedule.to_dict()["warmup_steps"]
    assert history.steps[0] == start
    assert history.steps[-1] == 199
    assert ramp_lr < history.lr[0] <= result.peak_lr
    assert result.finder.record.stop_reason in ("settled", "diverged")
    again = fit("digits", budget=200, out=tmp_path / "b", report=False)
    assert again.metrics == result.metrics  # snapshots, batches and dropout draws are the seed's


def test_a_budget_too_small_for_warmup_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"too small for a warmup: .* at least 6 steps"):
        fit("digits", budget=5, out=tmp_path / "run")  # 10 % of 5 rounds (to even) to no warmup step
    assert not (tmp_path / "run").exists()
    fit("digits", budget=6, finder_steps=5, out=tmp_path / "run", report=False)  # the smallest that has one


def test_a_time_budget_becomes_steps_from_the_measured_step_time(tmp_path: Path) -> None:
    result = fit("digits", budget="10s", out=tmp_path / "run", report=False, finder_steps=30)
    steps = result.record.total_steps
    assert steps > 250  # a digits step costs milliseconds: 10 s is thousands of them
    note = next(note for note in result.record.notes if "time budget 10 s" in note)
    trained = int(note.split(": ")[1].split()[0])
    start = 0 if result.record.resumed is None else result.record.resumed["start_step"]
    assert trained == steps - start == len(result.record.history.steps)  # the steps the time paid for


def test_a_failed_range_test_falls_back_to_the_rules_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lrpilot.finder import RangeTestError
    from lrpilot.integrations import torch_finder

    def fail(*args: object, **kwargs: object) -> None:
        raise RangeTestError("range test: the loss at the first step is nan")

    monkeypatch.setattr(torch_finder, "find_lr", fail)
    result = fit("digits", budget=50, out=tmp_path / "run", report=False)
    assert result.finder is None
    assert result.peak_lr == result.recommendation.peak_lr
    assert any("range test failed" in note and "rules' peak" in note for note in result.record.notes)
    assert "range test failed (the loss at the first step is nan); trained at the rules' peak" in " ".join(
        result.record.notes
    )
    assert result.status == "finished"


def test_the_default_run_directory_is_new_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrpilot.autopilot._pipeline import new_run_dir

    monkeypatch.chdir(tmp_path)
    first = new_run_dir(None, "my model/v2")
    assert first.parent == Path("runs")
    assert first.name.startswith("fit-my-model-v2-")
    first.mkdir(parents=True)
    assert new_run_dir(None, "my model/v2") != first  # same second: a suffix, never the same folder
    assert new_run_dir(tmp_path / "empty", "x") == tmp_path / "empty"


def test_a_run_directory_another_fit_made_since_it_was_chosen_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fits started in the same second (seeds launched side by side) chose one
    runs/fit-<label>-<time> while loading and both wrote into it. Here another fit's folder of
    every second since this one started appears during the range test: this fit trains in a new one."""
    monkeypatch.chdir(tmp_path)
    started = time.time()
    theirs: list[Path] = []

    def another_fit(phase: str, *_: object) -> None:
        if phase == "range test" and not theirs:
            for second in range(int(started) - 1, int(time.time()) + 1):
                folder = Path("runs") / f"fit-digits-{time.strftime('%Y%m%d-%H%M%S', time.localtime(second))}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "theirs.txt").write_text("another fit's", encoding="utf-8")
                theirs.append(folder)

    result = fit("digits", budget=30, report=False, progress=another_fit)
    assert result.run_dir not in theirs
    assert result.run_dir.name.startswith(theirs[0].name[:12])  # runs/fit-digits-…, with a suffix where taken
    for folder in theirs:
        assert [p.name for p in folder.iterdir()] == ["theirs.txt"]


def test_full_warmup_is_the_run_without_the_range_test_at_its_peak(tmp_path: Path) -> None:
    """With ``full_warmup`` nothing of the ramp reaches the run: the range test's model and RNG state
    are restored, and the run is `lrpilot.tasks.train` at fit's peak bit for bit (the guard quiet),
    where going on from the ramp trains another model."""
    from lrpilot.tasks import train

    fitted = lrpilot.fit("digits", seed=1, full_warmup=True, out=tmp_path / "full", report=False)
    assert fitted.record.resumed is None
    assert not fitted.record.guard_actions
    alone = train(get_task("digits"), fitted.peak_lr, 1)
    assert fitted.metrics["val_loss"] == alone.val_loss
    resumed = lrpilot.fit("digits", seed=1, out=tmp_path / "ramp", report=False)
    assert resumed.record.resumed is not None
    assert resumed.metrics["val_loss"] != alone.val_loss


def test_a_time_budget_in_a_fresh_process_is_not_spent_on_imports(tmp_path: Path) -> None:
    """The first optimizer built in a process imports torch's compiler (seconds); a budget read from
    the range test's mean step time trained 84 digits steps in 10 s instead of thousands, forecasting
    ~0.1 s a step for steps that cost ~0.001 s. fit now pays those imports in its load phase
    (`_first_costs`), and the forecast is held against that phase's time, measured in the same
    process under the same load: held against what the training steps then cost, it failed on a CI
    machine whose load changed between the two phases (a forecast 20x the training steps'), and a
    step-count floor failed where cold imports took most of a 10 s budget. One torch thread, because
    two threads beside a busy test worker on two cores slowed the range test's small steps ~100x."""
    code = (
        "import json, torch, lrpilot; torch.set_num_threads(1); "
        f"r = lrpilot.fit('digits', budget='15s', out={str(tmp_path / 'run')!r}, report=False, finder_steps=30); "
        "print(json.dumps([r.record.notes, r.record.timings, (r.record.finder or {}).get('steps_used')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    notes, timings, steps_used = json.loads(out.stdout.splitlines()[-1])
    if steps_used is None:  # a machine so busy that imports and the test passed half the budget: cut short
        cut = next(n for n in notes if n.startswith("range test stopped after"))
        steps_used = int(re.search(r"after (\d+) steps", cut).group(1))  # type: ignore[union-attr]
    note = next(n for n in notes if n.startswith("time budget 15 s"))
    match = re.search(r"training steps at the range test's ([0-9.e-]+) s/step", note)
    assert match is not None, note
    forecast = float(match.group(1))
    assert forecast < timings["load"] / 50, (note, timings["load"], timings["find"], steps_used)
    assert timings["find"] / steps_used < 10 * forecast, (note, timings["find"], steps_used)  # no import in it


def test_a_fit_past_its_time_budget_says_what_a_step_cost_against_the_forecast(tmp_path: Path) -> None:
    """A time budget is a forecast from the range test's steps; a callback that stalls training for
    longer than the whole budget (as a machine that gets busy would) runs the fit past it whatever the
    range test took, and the notes say by how much and what a step cost against the forecast."""
    weight = torch.zeros(1, requires_grad=True)
    weight.grad = torch.zeros(1)
    torch.optim.AdamW([weight]).step()  # a process's first optimizer step imports torch's compiler (seconds)

    def stall(step: int, lr: float, loss: float) -> None:
        if step == 1:
            time.sleep(4.5)

    result = lrpilot.fit("digits", budget="4s", out=tmp_path / "run", report=False, finder_steps=30, callback=stall)
    note = next(n for n in result.record.notes if n.startswith("time budget 4 s"))
    took = r"the fit took ([0-9.]+) s, [0-9.]+× its budget: a training step cost [0-9.e-]+ s, ([0-9.]+)×"
    match = re.search(took, note)
    assert match is not None, note
    assert float(match.group(1)) == pytest.approx(result.record.timings["total"], rel=0.01)
    assert float(match.group(2)) > 1


def test_the_record_and_the_report_say_where_the_run_trained(tmp_path: Path) -> None:
    result = fit("digits", budget=30, device="cpu", out=tmp_path / "run")
    assert result.record.device is not None
    assert result.record.device.startswith("cpu (")
    assert json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["device"] == result.record.device
    assert f"on {result.record.device}" in (result.run_dir / "index.html").read_text(encoding="utf-8")
    assert all(p.device.type == "cpu" for p in result.model.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        fit("digits", device="cuda", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_mixed_precision_trains_every_phase_in_it(tmp_path: Path) -> None:
    """bf16 and fp16 autocast (the latter with a loss scale the guard unscales) on the CPU, where torch
    has both: the range test and the run compute in it (their losses are not fp32's), and both train
    digits as well."""
    full = fit("digits", budget=60, out=tmp_path / "fp32", report=False)
    for name in ("bf16", "fp16"):
        mixed = fit("digits", budget=60, precision=name, out=tmp_path / name)
        assert mixed.status == "finished"
        assert mixed.record.precision == name
        assert mixed.finder.record.losses[:5] != full.finder.record.losses[:5]
        assert mixed.record.history.loss[-5:] != full.record.history.loss[-5:]
        assert mixed.metrics["val_accuracy"] > 0.9
        assert f"in {name}" in (mixed.run_dir / "index.html").read_text(encoding="utf-8")
    assert full.record.precision == "fp32"


def test_the_model_fit_returns_is_in_eval_mode_for_generating_and_scoring(chat_lm: Path, tmp_path: Path) -> None:
    """`FitResult.model` was handed back in training mode: a GPT-2's dropout (0.1) made two forward
    passes of the same text differ, and ``result.model.generate`` drew from a noisy model."""
    data = tmp_path / "train.jsonl"
    lines = [json.dumps({"text": f"line {i} of a short verse"}) for i in range(30)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = fit(
        model=chat_lm, data=data, task_type="causal-lm", budget=6, finder_steps=12, out=tmp_path / "run", report=False
    )
    assert result.model is not None
    assert not result.model.training
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(result.model(ids).logits, result.model(ids).logits)
