"""`lrpilot.tune` on the digits task with its default SQLite study: the search, its budget, the
model and report it leaves, continuing a study, Ctrl-C, and bad input before any work."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from lrpilot.autopilot._search import MIN_TIMED_STEPS
from lrpilot.tuning import DB_FILE, Space, tune
from lrpilot.tuning._engine import FIRST_TRIAL_SHARE
from lrpilot.tuning._halving import fitted_lr
from lrpilot.tuning._space import DESIGN, parse_search

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STEPS = 90
"""Runs of 90 digits steps: a second or so each on one thread."""


def _study(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="lrpilot-digits", storage=f"sqlite:///{run_dir / DB_FILE}")


def test_tune_searches_around_the_range_test_and_keeps_the_best_run(tmp_path: Path) -> None:
    result = tune("digits", steps=STEPS, budget=3.0, out=tmp_path / "run")
    finder_peak = result.finder["peak_lr"]
    lrs = [t.candidate.peak_lr for t in result.trials]
    # the design comes first, in order: the range test's peak, then ×½, ×2, ...
    assert lrs[0] == pytest.approx(finder_peak, rel=1e-2)
    assert lrs[1] == pytest.approx(finder_peak * DESIGN[1], rel=1e-2)
    assert all(result.space.low <= lr <= result.space.high for lr in lrs)
    completed = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.value == min(t.value for t in completed if t.value is not None)
    assert result.metrics["val_loss"] == pytest.approx(result.value)
    # synchronous halving: every rung trial ran before any full run, and the best rung was promoted
    rungs = [t for t in result.trials if t.continues is None and t.steps]
    promotions = [t for t in result.trials if t.continues is not None]
    assert all(t.steps == STEPS // 3 and set(t.intermediate) == {STEPS // 3} for t in rungs)
    assert len(rungs) >= 3
    assert len(promotions) == 1
    assert min(t.number for t in promotions) > max(t.number for t in rungs)
    best_rung = min(rungs, key=lambda t: t.intermediate[STEPS // 3])
    assert promotions[0].continues == best_rung.number
    assert best_rung.stopped == "promoted"
    assert best_rung.promoted_to == promotions[0].number
    # the full run trains at the bottom of the parabola through the rungs, where there is one
    scores = {t.candidate.peak_lr: t.intermediate.get(STEPS // 3, math.inf) for t in rungs}
    fitted = fitted_lr(scores, result.space.low, result.space.high)
    assert promotions[0].fitted == (fitted is not None)
    if fitted is None:
        assert promotions[0].candidate == best_rung.candidate
        assert promotions[0].intermediate == best_rung.intermediate  # carried over, not trained again
    else:
        assert promotions[0].candidate.peak_lr == fitted
        assert promotions[0].intermediate == {}  # no rung ran at that LR
    assert {t.stopped for t in rungs if t is not best_rung} <= {"pruned", "diverged"}
    # the budget (range test included) holds
    spent = result.finder["steps"] + sum(t.steps for t in result.trials)
    assert result.run_equivalents == pytest.approx(spent / STEPS)
    assert result.run_equivalents <= 3.0 + 1e-9
    # the winner's weights are the run's model: loading them reproduces its validation loss
    from lrpilot.tasks import get_task

    task = get_task("digits")
    model = task.build_model(0)
    assert result.model_path is not None
    model.load_state_dict(torch.load(result.model_path, weights_only=True))
    assert task.metrics(model).loss == pytest.approx(result.value, rel=1e-6)
    assert result.report_path is not None
    assert result.report_path.is_file()
    assert not (result.run_dir / "trials").exists()  # the losers' folders are gone
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["device"].startswith("cuda:" if torch.cuda.is_available() else "cpu (")  # auto: where it trained


def test_a_trials_outcome_says_what_happened_to_it() -> None:
    """Optuna calls a rung trial PRUNED whether it lost at the rung or won and went on to its full
    run: `outcome` (what the CLI's table shows) tells them apart, from `stopped`."""
    from lrpilot.tuning import Candidate, TrialSummary

    def trial(state: str, stopped: str | None, **kwargs: Any) -> TrialSummary:
        rung = {} if kwargs.pop("full", False) else {30: 0.2}
        return TrialSummary(3, state, Candidate(1e-3), None, 30, rung, stopped, None, **kwargs)

    assert trial("PRUNED", "promoted", promoted_to=8).outcome == "promoted to #8"
    assert trial("PRUNED", "pruned").outcome == "pruned at its 30-step rung"
    assert trial("PRUNED", "budget").outcome == "won its 30-step rung; the budget could not pay its full run"
    assert trial("PRUNED", "diverged", full=True).outcome == "diverged after 30 steps"
    assert trial("COMPLETE", None, full=True, continues=3).outcome == "finished: full run of #3"
    assert trial("COMPLETE", None, full=True, continues=3, fitted=True).outcome.endswith("at the rungs' fitted LR")
    assert trial("COMPLETE", None, full=True).outcome == "finished"  # without halving
    assert trial("FAIL", None).outcome == "failed (queued again)"
    retry = dataclasses.replace(trial("COMPLETE", None, full=True), retry_of=1)
    assert retry.outcome == "finished (retry of #1)"
    assert trial("WAITING", "not run: the budget was spent").outcome == "not run: the budget was spent"
    assert trial("PRUNED", "pruned").to_dict()["outcome"] == "pruned at its 30-step rung"


def test_a_rerun_continues_the_study_without_repeating_anything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    notes = json.loads((out / "run.json").read_text(encoding="utf-8"))["notes"]
    assert sum(note.startswith("range test peak") for note in notes) == 1  # a new study's record said it twice
    again = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    notes = json.loads((out / "run.json").read_text(encoding="utf-8"))["notes"]
    assert sum(note.startswith("range test peak") for note in notes) == 1
    assert any("continued the study" in note for note in again.notes)
    assert [t.to_dict() for t in again.trials] == [t.to_dict() for t in first.trials]
    assert again.best == first.best
    assert again.value == first.value
    assert again.model_path == first.model_path  # the winner's weights, kept from the first finish
    assert not any("another machine" in note for note in again.notes)


def test_ctrl_c_loses_no_finished_trial_and_the_rerun_finishes_the_interrupted_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[str] = []

    def interrupt_second_trial(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase.startswith("trial "):
            seen.append(phase)
        if len(seen) == 2 and phase == "train" and done == 10:
            raise KeyboardInterrupt

    optuna_log = logging.getLogger("optuna")  # Optuna's own handler, not propagated to the root
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    optuna_log.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            tune("digits", steps=STEPS, budget=5.0, max_trials=3, prune=False, out=out, progress=interrupt_second_trial)
    finally:
        optuna_log.removeHandler(handler)
    # Optuna's "Trial 1 failed ... KeyboardInterrupt" warning printed a traceback above the CLI's "interrupted"
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    states = {t.number: t.state.name for t in _study(out).get_trials()}
    assert states[0] == "COMPLETE"
    assert states[1] == "FAIL"
    result = tune("digits", steps=STEPS, budget=5.0, max_trials=3, prune=False, out=out, report=False)
    trials = result.trials
    retry = next(t for t in trials if t.retry_of == 1)
    assert retry.state == "COMPLETE"
    assert retry.candidate == next(t for t in trials if t.number == 1).candidate
    finished = [t.candidate.peak_lr for t in trials if t.state == "COMPLETE"]
    assert len(finished) == len(set(finished)) == 3  # every design point once: none lost, none twice
    # the first trial was not re-run: its value is the one stored before the interruption
    assert next(t for t in trials if t.number == 0).value == pytest.approx(trials[0].value)


def test_a_trial_a_stopped_worker_took_but_never_began_is_retried_not_waited_for(tmp_path: Path) -> None:
    """Ctrl-C (or a kill) between Optuna taking a queued trial and the objective beginning it left
    the trial running without a heartbeat, which Optuna's stale-trial check skips: every re-run
    then waited for it ("waiting for other workers") for ever. The re-run runs in a process of its
    own, so that the old behaviour fails by its timeout instead of hanging the tests."""
    out = tmp_path / "run"
    first = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    study = _study(out)  # no heartbeats, as the stopped worker left its trial
    point = first.trials[1].candidate.peak_lr
    study.enqueue_trial({"lr": point})
    orphan = study.ask()  # taken from the queue, running, never begun
    command = ["tune", "--task", "digits", "--steps", str(STEPS), "--out", str(out), "--heartbeat", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "lrpilot", *command],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    trials = {t.number: t for t in _study(out).get_trials()}
    assert trials[orphan.number].state.name == "FAIL"
    retry = next(t for t in trials.values() if t.system_attrs.get("failed_trial") == orphan.number)
    assert retry.params == {"lr": point}  # the point it was queued for, not a new sample
    assert retry.state.name in ("PRUNED", "COMPLETE")


def test_a_run_budget_replaces_the_time_budget_of_a_stopped_study(tmp_path: Path) -> None:
    """A time budget is stored as its time in steps at the range test's pace, which only its
    deadline held the study to; a study stopped early and re-run with --budget 3 (runs) dropped the
    deadline and kept those steps: it trained until they were spent (107 runs' worth, not 3)."""
    out = tmp_path / "run"
    seen: list[str] = []

    def stop_in_the_second_trial(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase.startswith("trial "):
            seen.append(phase)
        if len(seen) == 2 and phase == "train" and done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune("digits", steps=STEPS, budget="5s", out=out, progress=stop_in_the_second_trial)
    result = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    assert any(note.startswith("budget: 3 runs in place of the time budget") for note in result.notes)
    assert result.run_equivalents <= 3.0 + 1e-9
    assert any(t.state == "COMPLETE" for t in result.trials)


def test_searching_warmup_and_decay_uses_the_recipe_first(tmp_path: Path) -> None:
    # seed 0: the peak wins the design's rungs, as on most seeds of this 90-step run, so the LR is
    # bracketed after three rungs (where ×2 wins, the line search goes on past it for the whole budget)
    result = tune(
        "digits", steps=STEPS, budget=3.0, seed=0, search="lr,warmup,decay", out=tmp_path / "run", report=False
    )
    first = result.trials[0].candidate
    assert first.decay == "cosine"
    assert first.warmup == pytest.approx(0.1)
    assert result.space.decays == ("cosine", "linear", "wsd")
    assert 0.1 in result.space.warmups
    assert math.isfinite(result.value)
    # once the LR is bracketed the sampler proposes, warmup and decay included
    assert any(t.candidate.warmup != first.warmup or t.candidate.decay != first.decay for t in result.trials)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"search": "lr,momentum"}, "--search must be one of"),
        ({"budget": 1.2}, "cannot pay for the range test"),
        ({"budget": "soon"}, "--budget must be"),
        ({"storage": "postgresql://nobody:secret@127.0.0.1:1/none"}, "cannot open the storage"),
        ({"storage": "not a url"}, "must be a database URL"),
        ({"max_trials": 0}, "max_trials"),
        ({"device": "tpu"}, "tune: --device 'tpu' is not a device"),
        ({"precision": "fp64"}, "tune: --precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as caught:
        tune("digits", steps=STEPS, out=out, **kwargs)
    assert "secret" not in str(caught.value)  # a storage password never shows
    assert not (out / "trials").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "model"}, r"^tune: --model needs --data FILE"),  # checked before anything loads
        ({"task": "digits", "steps": 3, "budget": 100.0}, r"^tune: the budget \(3 steps\) is too small for a warmup"),
    ],
)
def test_fits_checks_of_what_to_train_name_tune_as_tune_runs_them(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    """The checks of what to train are fit's, run by tune with itself as their owner
    (`TargetSpec.owner`, `plan_run`'s): they had said "fit: …" and a layer around them rewrote the
    prefix into "tune: …", raising a copy chained to fit's error."""
    with pytest.raises(ValueError, match=message) as caught:
        tune(**kwargs, out=tmp_path / "run")
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert not (tmp_path / "run").exists()


def test_a_study_with_other_settings_is_not_continued(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    with pytest.raises(ValueError, match=r"created with other settings.*seed.*give a new --out \(not .*run\)"):
        tune("digits", steps=STEPS, budget=3.0, out=out, seed=1)
    with pytest.raises(ValueError, match=r"created with other settings.*search"):
        tune("digits", steps=STEPS, budget=3.0, out=out, search="lr,decay")
    # the advice had been "give another --study", which this --out refuses in turn
    with pytest.raises(ValueError, match=r"holds a tune of the study 'lrpilot-digits', not 'other'"):
        tune("digits", steps=STEPS, budget=3.0, out=out, seed=1, study="other")
    # a study named by --storage and --study, with a new --out: another --study starts a new one
    storage = f"sqlite:///{out / DB_FILE}"
    with pytest.raises(ValueError, match=r"created with other settings.*seed.*give another --study \(or --out\)"):
        tune("digits", steps=STEPS, budget=3.0, out=tmp_path / "new", seed=1, storage=storage)


def test_space_covers_the_band_and_16x_around_the_peak() -> None:
    from lrpilot.tasks import get_task

    recipe = get_task("digits").recipe
    space = Space.around(1e-3, (5e-4, 2e-3), recipe, ("lr",))
    assert (space.low, space.high) == (2.5e-4, 4e-3)
    wide = Space.around(1e-3, (1e-5, 1e-1), recipe, ("lr",))
    assert (wide.low, wide.high) == (1e-5, 1e-1)
    assert [p["lr"] for p in space.design(1e-3, recipe)] == [1e-3, 5e-4, 2e-3]
    assert parse_search("decay") == ("lr", "decay")
    assert FIRST_TRIAL_SHARE > 1


def test_a_larger_budget_on_a_rerun_extends_the_search(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    ran = [t for t in first.trials if t.steps]
    more = tune("digits", steps=STEPS, budget=5.0, out=out, report=False)
    assert any("budget raised to 5 runs" in note for note in more.notes)
    assert len([t for t in more.trials if t.steps]) > len(ran)
    assert more.run_equivalents <= 5.0 + 1e-9
    assert more.value <= first.value  # the earlier trials are still there; the best can only improve
    lrs = [t.candidate.peak_lr for t in more.trials if t.state == "COMPLETE"]
    assert len(lrs) == len(set(lrs))


def test_one_more_run_of_budget_trains_the_next_best_rung_in_full(tmp_path: Path) -> None:
    """3.2 runs pay five 30-step rungs and one full run (240 of 248 trial steps); a sixth rung would
    earn a second full run (360). A raise to 3.25 pays neither that nor a full run: nothing runs,
    and the notes say what would. 4.2 pays a full run: the second-best rung trains in full."""
    out = tmp_path / "run"
    first = tune("digits", steps=STEPS, budget=3.2, out=out, report=False)
    assert [t.continues is not None for t in first.trials].count(True) == 1
    small = tune("digits", steps=STEPS, budget=3.25, out=out, report=False)
    assert [t.to_dict() for t in small.trials] == [t.to_dict() for t in first.trials]
    (why,) = [note for note in small.notes if "runs no further trial" in note]
    assert "the next trial needs 90" in why
    assert why.endswith("give --budget 4.2 or more")  # (240 + 90 + 40 range test steps) / 90 = 4.11
    more = tune("digits", steps=STEPS, budget=4.2, out=out, report=False)
    assert not any("runs no further trial" in note for note in more.notes)
    assert more.run_equivalents == pytest.approx(first.run_equivalents + 1.0)  # one full run more
    full = [t for t in more.trials if t.continues is not None]
    assert len(full) == 2
    assert all(t.state == "COMPLETE" and t.steps == STEPS for t in full)
    rungs = sorted((t for t in more.trials if t.continues is None), key=lambda t: t.intermediate[STEPS // 3])
    assert [t.continues for t in full] == [rungs[0].number, rungs[1].number]  # the two best rungs
    assert more.value <= first.value


def test_a_rerun_with_the_same_out_continues_a_study_stored_elsewhere(tmp_path: Path) -> None:
    """With --storage the study is not in the run directory: its tune.json names it, so the same
    command (or the same --out alone) continues it, and a raised budget runs more trials."""
    from lrpilot.tuning._rundir import MARK_FILE
    from lrpilot.tuning._study import sqlite_url

    out, url = tmp_path / "run", sqlite_url(tmp_path / "elsewhere" / "studies.db")
    (tmp_path / "elsewhere").mkdir()
    first = tune("digits", steps=STEPS, budget=3.0, storage=url, out=out, report=False)
    assert not (out / DB_FILE).exists()
    assert json.loads((out / MARK_FILE).read_text(encoding="utf-8")) == {"study": "lrpilot-digits", "storage": url}
    again = tune("digits", steps=STEPS, budget=4.0, storage=url, out=out, report=False)
    assert any("continued the study 'lrpilot-digits'" in note for note in again.notes)
    assert len(again.trials) > len(first.trials)
    assert again.run_equivalents > first.run_equivalents
    alone = tune("digits", steps=STEPS, budget=4.0, out=out, report=False)  # the storage read from tune.json
    assert alone.storage == url
    assert [t.to_dict() for t in alone.trials] == [t.to_dict() for t in again.trials]


def test_an_out_holding_something_else_is_refused_before_any_work(tmp_path: Path) -> None:
    """A non-empty --out continues only its own study: other files, another study name or another
    storage are refused (naming tune, the directory and what would continue it), nothing written."""
    from lrpilot.tuning._study import sqlite_url

    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("keep", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^tune: --out .*other is a directory that is not empty and holds no"):
        tune("digits", steps=STEPS, out=other)
    assert [p.name for p in other.iterdir()] == ["index.html"]
    (tmp_path / "file").write_text("keep", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^tune: --out .*file is a file"):
        tune("digits", steps=STEPS, out=tmp_path / "file")
    out = tmp_path / "run"
    tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match=r"holds a tune of the study 'lrpilot-digits', not 'mine'; give --study"):
        tune("digits", steps=STEPS, study="mine", out=out)
    with pytest.raises(ValueError, match=r"not in --storage sqlite:///.*x\.db; give that storage \(or none\)"):
        tune("digits", steps=STEPS, storage=sqlite_url(tmp_path / "x.db"), out=out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (tmp_path / "x.db").exists()


def test_tunes_started_in_the_same_second_get_folders_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out a tune's folder is stamped to the second; chosen but not made, two tunes
    started side by side had both chosen one folder and written their studies and models into it."""
    from lrpilot.tuning._rundir import place

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20261202-150000")  # one second for both
    first, second = place(None, None, None, "digits"), place(None, None, None, "digits")
    assert first.run_dir != second.run_dir
    assert [first.run_dir.is_dir(), second.run_dir.name] == [True, "tune-digits-20261202-150000-2"]
    assert first.url != second.url  # each its own study database


def test_a_tune_db_without_a_study_starts_afresh(tmp_path: Path) -> None:
    """Stopped during its range test, a tune leaves a tune.db with no study in it and no tune.json:
    the same command starts the study then (no error asking for a --study that never existed)."""
    from lrpilot.tuning._study import open_storage, sqlite_url

    out = tmp_path / "run"
    out.mkdir()
    open_storage(sqlite_url(out / DB_FILE), heartbeat=10.0)  # creates the empty database
    result = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    assert not any("continued" in note for note in result.notes)
    assert result.trials


@pytest.mark.parametrize(
    ("seed", "design_winner", "next_point"),
    [
        (10, 2.0, 4.0),  # ×2 wins the design's rungs: the line search goes past it
        (14, 0.5, 0.25),  # ×½ wins: past it, downwards
        (0, 1.0, 0.707),  # the peak wins, ×½ is the better neighbour: halve that gap (×1/√2)
    ],
)
def test_the_line_search_follows_the_design_rungs(
    tmp_path: Path, seed: int, design_winner: float, next_point: float
) -> None:
    result = tune("digits", steps=STEPS, budget=3.0, seed=seed, out=tmp_path / "run", report=False)
    peak = result.finder["peak_lr"]
    rungs = [t for t in result.trials if t.continues is None and t.steps]
    factors = [t.candidate.peak_lr / peak for t in rungs]
    losses = {round(f, 1): t.intermediate[STEPS // 3] for f, t in zip(factors, rungs, strict=True)}  # 3-digit LRs
    assert list(losses)[:3] == [1.0, 0.5, 2.0]
    assert min((1.0, 0.5, 2.0), key=lambda f: losses[f]) == design_winner
    assert factors[3] == pytest.approx(next_point, rel=1e-2)


def test_a_time_budget_becomes_steps_at_the_range_tests_pace(tmp_path: Path) -> None:
    result = tune("digits", steps=STEPS, budget="15s", out=tmp_path / "run", report=False)
    assert result.run_equivalents > 1.0  # a digits step costs milliseconds: 15 s pays for several runs
    assert result.wall_time_s < 25  # and the search stops when it is spent (plus the last trial's end)
    with pytest.raises(ValueError, match="less than the first trial's"):
        tune("digits", budget="0.05s", out=tmp_path / "short")


def _warm_up(tmp_path: Path) -> None:
    """A tune in this process first: torch's one-off costs (its compiler's import on the first
    optimizer step, seconds) would otherwise fall in a short time budget's range test."""
    tune("digits", steps=STEPS, budget=3.0, out=tmp_path / "warm-up", report=False)


def test_a_time_budget_counts_each_trials_own_costs(tmp_path: Path) -> None:
    """A 30-step digits rung costs as much again as its steps in building the model, evaluating and
    the study's database. Counted at the range test's step time alone, a 10 s budget planned rungs
    for twice the time they took: they ran until the deadline, which left 6 of their winners
    without a full run and trained one, after it. Each trial's measured costs now count: the rungs
    stop while their full runs still fit. How many winners go unpaid here depends on how steady the
    machine's step times are (2 of ~20 on a CI machine whose other test worker was busy), so the plan
    itself is pinned by `test_halving.test_a_time_budget_counts_each_trials_measured_overhead`; this
    run checks what holds under any load: every trial measured its cost, a full run completed, and
    the deadline held."""
    _warm_up(tmp_path)
    result = tune("digits", steps=STEPS, budget="10s", out=tmp_path / "run", report=False)
    full_runs = [t.number for t in result.trials if t.state == "COMPLETE"]
    assert full_runs, [(t.number, t.state, t.stopped) for t in result.trials]
    assert result.wall_time_s < 15  # the deadline holds: no trial starts after it once a full run is in
    trained = [t for t in _study(tmp_path / "run").trials if t.user_attrs.get("steps")]
    assert trained
    assert all(t.user_attrs["seconds"] > 0 for t in trained)  # what each trial cost, as measured


def test_a_time_budget_rerun_counts_the_extra_steps_at_the_range_tests_step_time(tmp_path: Path) -> None:
    """Re-run with more time, a study counted it at the range test's whole phase over its steps
    (its setup, and in a fresh process torch's one-off first step: `lrpilot tune --budget 10s` on
    digits said "92 trial steps", 83 ms a step where a step takes 1.4 ms), and the full runs that
    rung winners were owed came on top (1750 steps trained). The time is now counted at the step
    time the range test measured, and what the re-run trains comes out of it."""
    out = tmp_path / "run"
    _warm_up(tmp_path)
    first = tune("digits", steps=STEPS, budget="3s", out=out, report=False)
    pace = first.finder["step_seconds"]
    again = tune("digits", steps=STEPS, budget="5s", out=out, report=False)
    note = next(n for n in again.notes if n.startswith("budget: 5 s more"))
    said = re.match(r"budget: 5 s more \((\d+) trial steps at the range test's ([0-9.e-]+) s a step", note)
    assert said is not None, note
    extra = int(said[1])
    assert float(said[2]) == pytest.approx(pace, rel=1e-2)
    # at least 2 of the 5 s at that pace: the re-run's own loading comes off, and the old pace was ~60x slower
    assert extra >= 2 / pace
    trained = sum(t.steps for t in again.trials) - sum(t.steps for t in first.trials)
    assert 0 < trained <= extra
    # a study stored before the step time was: its trials' time a step (their own costs included)
    from lrpilot.tuning._study import CONFIG_KEY

    study = _study(out)
    stored = study.user_attrs[CONFIG_KEY]
    study.set_user_attr(
        CONFIG_KEY, {**stored, "finder": {k: v for k, v in stored["finder"].items() if k != "step_seconds"}}
    )
    older = tune("digits", steps=STEPS, budget="3s", out=out, report=False)
    assert any(re.match(r"budget: 3 s more \(\d+ trial steps at its trials' ", n) for n in older.notes), older.notes


def test_a_slow_range_test_stops_at_half_a_time_budget_and_says_what_time_to_give(tmp_path: Path) -> None:
    """A 2-minute budget on a model with slow steps had spent both minutes in the range test (tune
    gave it no deadline, as fit does) before saying the budget left 0 steps. Steps made slow here:
    the progress callback sleeps 50 ms in each of the test's ~80 steps."""
    tested: list[float] = []

    def slow(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase == "range test":
            tested.append(lr)
            time.sleep(0.05)

    with pytest.raises(ValueError, match=r"less than the first trial's \d+ .*; give at least \d+s") as error:
        tune("digits", steps=STEPS, budget="2s", out=tmp_path / "run", report=False, progress=slow)
    # stopped at the deadline, a second in, once MIN_TIMED_STEPS had measured the pace (the last one
    # stops it before its progress is shown); 50 ms steps make at most 20 in that second
    assert MIN_TIMED_STEPS - 1 <= len(tested) < 25, len(tested)  # 40 without the deadline
    assert "s a step" in str(error.value)


def test_a_range_test_run_again_from_lower_still_leaves_the_smallest_budget_its_first_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smallest runs budget is checked against the range test's planned steps; a test that
    started too high runs again from 100× lower (more steps) and would leave the first trial unpaid.
    The ramp's start is judged too high here whatever the curve (`too_high`); the retry is real."""
    from lrpilot.autopilot import _search

    monkeypatch.setattr(_search, "too_high", lambda records: "judged too high by the test")
    smallest = FIRST_TRIAL_SHARE + 40 / STEPS  # a ramp of 40 steps is fine enough to be run again
    result = tune("digits", steps=STEPS, budget=smallest, finder_steps=40, out=tmp_path / "run", report=False)
    assert result.finder["steps"] > 40  # both tests' steps
    assert any("runs anyway" in note for note in result.finder["notes"])
    full_runs = [t for t in result.trials if t.steps == STEPS and t.state == "COMPLETE"]
    assert len(full_runs) == 1  # a result, not an empty study
    assert result.run_equivalents > smallest


# peft 0.21 calls a name transformers 5 deprecates when it loads an adapter (lrpilot's own calls filter it)
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_users_hugging_face_model_with_lora(tmp_path: Path) -> None:
    from tests.autopilot.conftest import minilm_dir, sst2_rows, write_rows

    rows = sst2_rows(120)
    train = write_rows(tmp_path / "train.csv", rows[:100])
    evaluation = write_rows(tmp_path / "eval.csv", rows[100:])
    steps = 9
    result = tune(
        model=minilm_dir(),
        data=train,
        eval_data=evaluation,
        method="lora",
        batch_size=8,
        steps=steps,
        finder_steps=12,
        budget=4.0,
        out=tmp_path / "run",
    )
    assert result.model_path is not None
    assert result.model_path.name == "adapter"  # the winner's LoRA adapter, save_pretrained
    assert (result.model_path / "adapter_config.json").is_file()
    assert result.recommendation.setup.method == "lora"
    # the user's model trains the recommendation's schedule (as in fit), fitted to the run
    assert result.export("hf")["max_steps"] == steps
    assert result.run_equivalents <= 4.0 + 1e-9
    assert result.report_path is not None


def test_a_larger_budget_whose_new_best_is_a_users_model_replaces_the_kept_folder(tmp_path: Path) -> None:
    """A user's model is kept as a ``save_pretrained`` folder; a re-run with a larger budget whose
    best is a new trial crashed at its very end (FileExistsError: the first finish's folder was
    there), every re-run alike, with the new winner's weights never kept."""
    from tests.autopilot.conftest import sst2_rows, tiny_bert_dir, write_rows

    rows = sst2_rows(120)
    common: dict[str, Any] = {
        "model": tiny_bert_dir(tmp_path / "bert"),
        "data": write_rows(tmp_path / "train.csv", rows[:100]),
        "eval_data": write_rows(tmp_path / "eval.csv", rows[100:]),
        "batch_size": 8,
        "steps": 9,
        "finder_steps": 12,
        "out": tmp_path / "run",
        "report": False,
    }
    first = tune(**common, budget=4.0)
    assert first.model_path is not None
    assert first.model_path.is_dir()
    kept = {f.name: f.read_bytes() for f in first.model_path.iterdir()}
    again = tune(**common, budget=8.0)
    best = min((t for t in again.trials if t.state == "COMPLETE"), key=lambda t: t.value or math.inf)
    first_best = min((t for t in first.trials if t.state == "COMPLETE"), key=lambda t: t.value or math.inf)
    assert best.number != first_best.number  # what this test is about: a new winner
    assert again.model_path == first.model_path
    assert again.model_path is not None
    now = {f.name: f.read_bytes() for f in again.model_path.iterdir()}
    assert now.keys() == kept.keys()
    assert now != kept  # the new winner's weights, not the first's
    assert json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))["metrics"]["val_loss"] == again.value
    assert not list((tmp_path / "run").glob(".*partial"))


def test_json_survives_a_winner_hugging_face_cannot_schedule(tmp_path: Path) -> None:
    from lrpilot.tuning import Candidate

    result = tune("digits", steps=STEPS, budget=3.0, out=tmp_path / "run", report=False)
    wsd = dataclasses.replace(
        result, recommendation=_tuned_as(result, Candidate(result.best.peak_lr, 0.1, "wsd")), best=result.best
    )
    payload = wsd.to_dict()
    assert "unavailable" in payload["hf"]  # HF's warmup_stable_decay warms up from its floor, not from 0
    assert "warmup_stable_decay" in payload["hf"]["unavailable"]


def _tuned_as(result: Any, candidate: Any) -> Any:
    from lrpilot.tasks import get_task
    from lrpilot.tuning._result import TrialSummary, tuned_recommendation

    best = TrialSummary(0, "COMPLETE", candidate, result.value, STEPS, {}, None, None)
    recipe = get_task("digits").recipe.shortened(STEPS)
    return tuned_recommendation(result.recommendation, best, [best], recipe, result.space)


def test_a_time_budget_rerun_is_more_time_and_a_run_budget_rerun_drops_the_deadline(tmp_path: Path) -> None:
    """A study created with a time budget stores its deadline; re-run with `--budget 5s` it gets a
    new one and five more seconds of steps, and re-run with a budget in runs it has none (a past
    deadline would have stopped every new trial)."""
    import optuna

    from lrpilot.tuning._study import StudyConfig, sqlite_url
    from lrpilot.tuning._tune import CONFIG_KEY, DB_FILE

    out = tmp_path / "run"
    first = tune("digits", steps=STEPS, budget="3s", out=out, report=False)

    def stored() -> StudyConfig:
        study = optuna.load_study(study_name="lrpilot-digits", storage=sqlite_url(out / DB_FILE))
        return StudyConfig.from_dict(study.user_attrs[CONFIG_KEY])

    before = stored()
    assert before.deadline is not None
    again = tune("digits", steps=STEPS, budget="5s", out=out, report=False)
    assert any(note.startswith("budget: 5 s more") for note in again.notes)
    after = stored()
    assert after.deadline is not None
    assert after.deadline > before.deadline
    assert after.budget_steps > before.budget_steps
    assert len(again.trials) > len(first.trials)
    runs = tune("digits", steps=STEPS, budget=float(len(again.trials)), out=out, report=False)
    assert stored().deadline is None
    assert len(runs.trials) >= len(again.trials)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tune_trains_its_trials_on_the_gpu(tmp_path: Path) -> None:
    result = tune("digits", steps=STEPS, budget=3.0, device="cuda", out=tmp_path / "run", report=False)
    assert math.isfinite(result.value)
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["device"].startswith("cuda:0 (")


def test_a_chat_at_a_length_limit_is_stored_for_the_workers(tmp_path: Path) -> None:
    """tune takes a causal LM's chat data and --max-length as fit does, and the study keeps both, so a
    worker on another machine reads the data as this one did."""
    import json

    import optuna

    from lrpilot.tuning._engine import build_target
    from lrpilot.tuning._study import CONFIG_KEY, StudyConfig, sqlite_url
    from lrpilot.tuning._tune import DB_FILE
    from tests.autopilot.conftest import save_chat_lm

    chat = [{"role": "user", "content": "Who art thou?"}, {"role": "assistant", "content": "A poor player."}]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"dialogue": chat}) + "\n" for _ in range(30)), encoding="utf-8")
    out = tmp_path / "run"
    common = {"data": data, "task_type": "causal-lm", "columns": {"messages": "dialogue"}, "max_length": 32}
    tune(model=save_chat_lm(tmp_path / "model"), **common, steps=6, finder_steps=12, budget=4.0, out=out, report=False)
    study = optuna.load_study(study_name="lrpilot-model", storage=sqlite_url(out / DB_FILE))
    spec = StudyConfig.from_dict(study.user_attrs[CONFIG_KEY]).target
    assert (spec["columns"], spec["max_length"]) == ({"messages": "dialogue"}, 32)
    task = build_target(spec).task
    assert (task.lm_format, task.max_length) == ("messages", 32)  # type: ignore[attr-defined]


def test_a_worker_waiting_for_anothers_trial_prints_no_optuna_warning(tmp_path: Path) -> None:
    """A second `lrpilot tune` on a shared study, waiting for the other's trial, printed Optuna's
    "ExperimentalWarning: optuna.storages._heartbeat.fail_stale_trials is experimental" to stderr."""
    from lrpilot.tuning._engine import wait_for_others
    from lrpilot.tuning._study import CONFIG_KEY, StudyConfig

    out = tmp_path / "run"
    tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    study = _study(out)
    config = StudyConfig.from_dict(study.user_attrs[CONFIG_KEY])
    other = study.ask()  # another worker's trial, running

    def the_other_finishes(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        study.tell(other, state=optuna.trial.TrialState.FAIL)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert wait_for_others(study, config, the_other_finishes) is False  # the study was done
    assert [str(w.message) for w in caught] == []


def test_a_tune_started_beside_another_takes_the_study_it_created(tmp_path: Path) -> None:
    """Two tunes on one `--storage` and `--study`, started together: each ran its range test, the
    first created the study, and the second worked in it with its own settings (its own seed here:
    its design queued into the other's study), where a re-run would have refused them."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    tune("digits", steps=STEPS, budget=3.0, seed=1, storage=other, study="s", out=tmp_path / "first", report=False)
    settings = optuna.load_study(study_name="s", storage=other).user_attrs

    def the_other_creates_it(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if not optuna.get_all_study_names(shared):  # during this tune's range test
            study = optuna.create_study(study_name="s", storage=shared, direction="minimize")
            for key, value in settings.items():
                study.set_user_attr(key, value)

    with pytest.raises(ValueError, match=r"'s' was created with other settings \(seed: stored 1, asked 0\)"):
        tune(
            "digits",
            steps=STEPS,
            budget=3.0,
            storage=shared,
            study="s",
            out=tmp_path / "second",
            progress=the_other_creates_it,
        )
    assert optuna.load_study(study_name="s", storage=shared).trials == []


def _joined(tmp_path: Path, budget: float | str) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """A tune that finds, after its range test, the study another tune given the same `budget`
    created meanwhile (settings copied from a real one, a time budget's deadline moved to now):
    the creator's settings, the joiner's result and the study's settings after it."""
    from lrpilot.tuning._study import CONFIG_KEY

    shared, other = f"sqlite:///{tmp_path / 'shared.db'}", f"sqlite:///{tmp_path / 'other.db'}"
    _warm_up(tmp_path)
    tune("digits", steps=STEPS, budget=budget, storage=other, study="s", out=tmp_path / "first", report=False)
    created = optuna.load_study(study_name="s", storage=other).user_attrs[CONFIG_KEY]

    def the_other_creates_it(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase == "range test" and done == 1:  # once, during this tune's range test
            study = optuna.create_study(study_name="s", storage=shared, direction="minimize")
            late = created["deadline"] is not None
            study.set_user_attr(CONFIG_KEY, {**created, "deadline": time.time() + 3 if late else None})

    result = tune(
        "digits",
        steps=STEPS,
        budget=budget,
        storage=shared,
        study="s",
        out=tmp_path / "second",
        report=False,
        progress=the_other_creates_it,
    )
    assert any("joined the study 's'" in note for note in result.notes)
    return created, result, optuna.load_study(study_name="s", storage=shared).user_attrs[CONFIG_KEY]


def test_a_tune_that_joins_anothers_study_counts_its_range_test_in_the_budget(tmp_path: Path) -> None:
    """Two tunes given `--budget 3` on one `--storage` and `--study`, started together, each ran a
    40-step range test; the one that joined the other's study counted only the other's, in its
    budget and in its compute note (both said 2.82 run-equivalents: 2.98 were spent)."""
    created, result, joined = _joined(tmp_path, 3.0)
    tests = result.finder["steps"]
    assert tests > 0
    assert joined["budget_steps"] == created["budget_steps"] - tests  # the trials pay for both tests
    trained = sum(t.steps for t in result.trials)
    assert result.run_equivalents == pytest.approx((trained + 2 * tests) / STEPS)
    assert trained + 2 * tests <= 3 * STEPS
    assert any(f"range tests {tests} + {tests} steps" in note for note in result.notes)


def test_a_tune_that_joins_anothers_study_counts_its_time_at_the_range_tests_step_time(tmp_path: Path) -> None:
    """Two tunes given `--budget 5s`, started together: the one that joined set the study's budget
    to its own time at the range test phase's pace (its setup included), a fraction of the steps
    that time pays (735 steps became 570 here, and on a fresh process's 83 ms a digits step, 92).
    Its time, from its start (its range test's taken off), now pays the range test's step time's
    steps, and its test counts in the study's compute."""
    created, result, joined = _joined(tmp_path, "5s")
    note = next(n for n in result.notes if n.startswith("budget: 5 s more"))
    said = re.match(r"budget: 5 s more \((\d+) trial steps at the range test's ([0-9.e-]+) s a step", note)
    assert said is not None, note
    assert float(said[2]) == pytest.approx(created["finder"]["step_seconds"], rel=1e-2)  # the study's
    assert joined["budget_steps"] == int(said[1]) >= 2 / created["finder"]["step_seconds"]  # 2 of its 5 s, at least
    assert result.finder["joined_steps"] == result.finder["steps"] > 0


def test_a_tune_decides_by_the_settings_a_tune_that_joined_it_stored(tmp_path: Path) -> None:
    """The tune that created a study kept the settings it had stored: beside one that joined it
    and counted its own range test against the budget, it still decided by its own budget, and its
    note said "range test 40 steps" and 2.82 run-equivalents, where the joiner's said 2.98. A
    join is written into the study here as the first trial starts, as the joiner would."""
    from lrpilot.tuning._study import CONFIG_KEY

    out = tmp_path / "run"
    joined: list[int] = []

    def a_tune_joins(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        if phase.startswith("trial") and not joined:
            study = _study(out)
            stored = study.user_attrs[CONFIG_KEY]
            joined.append(tests := stored["finder"]["steps"])
            finder = {**stored["finder"], "joined_steps": tests}
            study.set_user_attr(
                CONFIG_KEY, {**stored, "finder": finder, "budget_steps": stored["budget_steps"] - tests}
            )

    result = tune("digits", steps=STEPS, budget=3.0, out=out, report=False, progress=a_tune_joins)
    tests, trained = joined[0], sum(t.steps for t in result.trials)
    assert trained + 2 * tests <= 3 * STEPS  # a fourth rung fitted its own budget, not the joined one
    assert result.run_equivalents == pytest.approx((trained + 2 * tests) / STEPS)
    assert any(f"range tests {tests} + {tests} steps" in note for note in result.notes)


def test_a_study_in_a_relative_sqlite_file_continues_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tune --storage sqlite:///studies.db --out RUN` marked RUN with that relative URL: the same
    `--out` run again from another folder opened a new, empty studies.db there and refused RUN."""
    first_folder, other_folder = tmp_path / "a", tmp_path / "b"
    first_folder.mkdir()
    other_folder.mkdir()
    out = tmp_path / "run"
    monkeypatch.chdir(first_folder)
    first = tune("digits", steps=STEPS, budget=3.0, storage="sqlite:///studies.db", out=out, report=False)
    monkeypatch.chdir(other_folder)
    again = tune("digits", steps=STEPS, budget=3.0, out=out, report=False)
    assert any("continued the study" in note for note in again.notes)
    assert again.value == first.value
    assert list(other_folder.iterdir()) == []


def test_a_worker_on_a_missing_sqlite_file_says_so_and_creates_none(tmp_path: Path) -> None:
    """A mistyped path had opened, and so created, an empty database beside the real one."""
    from lrpilot.tuning import work

    missing = tmp_path / "tnue.db"
    with pytest.raises(ValueError, match=r"tune worker: no database file .*tnue.db .*give --wait SECONDS"):
        work("s", f"sqlite:///{missing}")
    assert not missing.exists()


def test_a_worker_waits_for_the_sqlite_file_and_then_for_its_study(tmp_path: Path) -> None:
    """Workers launched beside the machine that starts the study wait for its file too, not only for
    the study in it: here the file appears (the study never does), and the worker, past the file, says
    the study is missing."""
    from lrpilot.tuning import work

    file = tmp_path / "tune.db"
    seen: list[str] = []

    def the_file_appears(phase: str, done: int, total: int | None, lr: float, loss: float) -> None:
        seen.append(phase)
        if len(seen) == 1:
            optuna.create_study(study_name="other", storage=f"sqlite:///{file}")

    with pytest.raises(ValueError, match=r"tune worker: no lrpilot study 's' in sqlite:///"):
        work("s", f"sqlite:///{file}", wait=3.0, progress=the_file_appears)
    assert file.exists()
    assert seen[0] == "waiting for the study"
