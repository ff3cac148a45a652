"""Steps that go back: a stray row (a swapped pair, a row written twice) is said to be one, a
resumed run is a resumed run, and two runs appended into one file are said to be two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lrpilot.doctor import diagnose, read


def write_steps(path: Path, steps: list[int], loss: list[float] | None = None) -> Path:
    """A real CSV log with these steps, in this order; by default each loss is 1 + step / 1000."""
    values = loss if loss is not None else [1.0 + s / 1000 for s in steps]
    path.write_text("step,loss,lr\n" + "".join(f"{s},{v},0.001\n" for s, v in zip(steps, values, strict=True)))
    return path


def test_a_swapped_pair_is_out_of_order_not_a_resumed_run(tmp_path: Path) -> None:
    steps = list(range(500))
    steps[10], steps[11] = 11, 10
    series = read(write_steps(tmp_path / "log.csv", steps))
    assert series.steps.tolist() == list(range(500))
    assert series.resumes == ()
    assert series.notes == ("1 row(s) logged out of step order (first: step 10 after step 11); sorted by step",)


def test_a_duplicated_row_is_a_repeat_not_a_resumed_run(tmp_path: Path) -> None:
    steps = [*range(500), 100]  # the row of step 100, written again at the end
    loss = [1.0] * 500 + [7.0]
    series = read(write_steps(tmp_path / "log.csv", steps, loss))
    assert len(series) == 500
    assert series.resumes == ()
    assert series.loss[100] == 7.0  # the last value written wins, as before
    assert series.notes == (
        "1 row(s) repeat a step already logged (first: step 100 again, after step 499): kept the last value "
        "written for each",
    )


def test_scattered_strays_are_counted(tmp_path: Path) -> None:
    steps = list(range(300))
    for i in (20, 120, 220):
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    steps.insert(150, 40)  # one duplicated row mid-log
    series = read(write_steps(tmp_path / "log.csv", steps))
    assert series.resumes == ()
    assert "3 row(s) logged out of step order (first: step 20 after step 21); sorted by step" in series.notes
    assert any(n.startswith("1 row(s) repeat a step already logged (first: step 40 again") for n in series.notes)
    assert not any("resumed" in n for n in series.notes)


def test_a_resume_from_an_earlier_checkpoint_is_a_resumed_run(tmp_path: Path) -> None:
    steps = [*range(300), *range(200, 400)]
    series = read(write_steps(tmp_path / "log.csv", steps))
    assert series.resumes == (200,)
    assert series.notes == (
        "the log goes back to an earlier step and carries on 1 time(s) (first from step 299 to step 200): a resumed "
        "run; sorted by step",
        "100 repeated step(s): kept the last value written for each",
    )


def test_two_runs_appended_from_step_zero_say_what_of_the_earlier_run_was_dropped(tmp_path: Path) -> None:
    steps = [*range(250), *range(250)]
    loss = [2.0] * 250 + [1.0] * 250
    series = read(write_steps(tmp_path / "log.csv", steps, loss))
    assert series.loss.tolist() == [1.0] * 250  # the later run, as before
    assert series.resumes == ()  # not a resumed run: no fresh-warmup advice about a "resume" at step 0
    assert series.notes == (
        "the log starts again from its first step 1 time(s) (first: step 0 after step 249): runs appended into one "
        "file? Read as one run, the later rows win: 250 row(s) of the earlier run(s) were dropped; split the file "
        "to diagnose each run",
    )
    assert not any(a.action == "fresh_warmup" for a in diagnose(series).advice)


def test_a_shorter_second_run_leaves_the_earlier_runs_tail_and_says_so(tmp_path: Path) -> None:
    series = read(write_steps(tmp_path / "log.csv", [*range(1, 301), *range(1, 101)]))
    assert len(series) == 300
    (note,) = series.notes
    assert "100 row(s) of the earlier run(s) were dropped; steps 101–300 are still the earlier run's" in note


@pytest.mark.parametrize("reverse", [False, True])
def test_a_fully_shuffled_log_reads_fast_and_only_as_strays_or_resumes(tmp_path: Path, reverse: bool) -> None:
    """A pathological order is still read, sorted, and described without a traceback."""
    steps = np.arange(1, 20_001)
    steps = steps[::-1] if reverse else np.random.default_rng(0).permutation(steps)
    series = read(write_steps(tmp_path / "log.csv", steps.tolist()))
    assert series.steps.tolist() == list(range(1, 20_001))
    assert series.notes


def test_a_step_repeated_in_place_is_a_repeat_not_a_crash(tmp_path: Path) -> None:
    """Found by the fuzz test: ``step,loss / 0,0 / 0,0`` never goes back, it only repeats."""
    path = tmp_path / "run.csv"
    path.write_text("step,loss\n0,0.5\n0,0.4\n1,0.3\n", encoding="utf-8")
    series = read(path)
    assert series.steps.tolist() == [0, 1]
    assert series.loss.tolist() == [0.4, 0.3]
    assert any("1 repeated step(s)" in note or "repeat a step" in note for note in series.notes)
