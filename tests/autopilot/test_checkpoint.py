"""An interrupted fit's checkpoint (`lrpilot.autopilot._checkpoint`): the deferred Ctrl-C and the
checks before a resume. A resume itself, end to end: ``test_pipeline.py`` and ``tests/cli/test_fit.py``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from lrpilot.autopilot._checkpoint import Checkpoint, check_unchanged, digests, stop_at_step_boundary


def test_the_first_ctrl_c_waits_for_the_step_and_the_second_stops_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's, whatever pytest installed
    try:
        with stop_at_step_boundary() as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.requested  # no KeyboardInterrupt yet: the loop stops at its next boundary
            assert "stopping after this step (Ctrl-C again to stop at once)" in capsys.readouterr().err
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_callers_own_ctrl_c_handler_is_left_alone() -> None:
    def mine(signum: int, frame: object) -> None:
        raise RuntimeError("the caller's")

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with stop_at_step_boundary() as stop, pytest.raises(RuntimeError, match="the caller's"):
            signal.raise_signal(signal.SIGINT)
        assert not stop.requested
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_resume_on_data_that_changed_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,1\nbad,0\n", encoding="utf-8")
    arguments = {"data": str(data), "eval_data": None, "retention": None}
    saved = Checkpoint(arguments, None, None, None, 1e-3, None, None, None, {}, None, files=digests(arguments))  # type: ignore[arg-type]
    assert set(saved.files) == {"data"}
    check_unchanged(saved)
    data.write_text("text,label\ngood,1\nbad,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--resume: .*train.csv \(data\) changed since the fit was interrupted"):
        check_unchanged(saved)
    data.unlink()
    with pytest.raises(ValueError, match=r"\(its SHA-256 differs, or it is gone\)"):
        check_unchanged(saved)


def test_a_folder_without_a_checkpoint_says_what_can_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"holds no resume.pt: only a fit interrupted at a step boundary"):
        Checkpoint.load(tmp_path)
    torch.save({"format": 99}, tmp_path / "resume.pt")
    with pytest.raises(ValueError, match=r"is of format 99; this lrpilot resumes format 1"):
        Checkpoint.load(tmp_path)


def test_a_ctrl_c_before_the_loop_leaves_no_empty_run_folder(tmp_path: Path) -> None:
    from lrpilot.autopilot._pipeline import made_for_training

    with pytest.raises(KeyboardInterrupt), made_for_training(tmp_path / "run"):
        raise KeyboardInterrupt
    assert not (tmp_path / "run").exists()
    (tmp_path / "given").mkdir()  # the user's own (empty) --out stays
    with pytest.raises(KeyboardInterrupt), made_for_training(tmp_path / "given"):
        raise KeyboardInterrupt
    assert (tmp_path / "given").is_dir()
    with pytest.raises(KeyboardInterrupt), made_for_training(tmp_path / "saved"):
        _interrupted_after_writing(tmp_path / "saved" / "model.pt")
    assert (tmp_path / "saved" / "model.pt").is_file()  # what was written is kept


def _interrupted_after_writing(path: Path) -> None:
    path.touch()
    raise KeyboardInterrupt


class _CtrlCWhilePickled:
    """A checkpoint field whose pickling is interrupted: a Ctrl-C that comes as ``resume.pt`` is written."""

    def __reduce__(self) -> tuple[object, ...]:
        raise KeyboardInterrupt


def test_a_ctrl_c_as_resume_pt_is_written_leaves_the_earlier_one_whole(tmp_path: Path) -> None:
    """A fit resumed and stopped again writes its resume.pt over the earlier one; a second Ctrl-C
    during that write had left a truncated file, and nothing to resume."""
    arguments = {"data": None, "eval_data": None, "retention": None}
    whole = Checkpoint(arguments, None, None, None, 1e-3, None, None, None, {}, {"step": 5})  # type: ignore[arg-type]
    whole.save(tmp_path)
    stopped = Checkpoint(arguments, None, None, None, 1e-3, None, None, None, {}, _CtrlCWhilePickled())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        stopped.save(tmp_path)
    assert Checkpoint.load(tmp_path).state == {"step": 5}
    assert [p.name for p in tmp_path.iterdir()] == ["resume.pt"]


def test_a_ctrl_c_as_a_stopped_fits_resume_pt_is_written_says_where_its_folder_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second Ctrl-C, as the first one's resume.pt was written, had been told "interrupted
    before training started: nothing was written" of a folder holding the run so far."""
    from lrpilot.autopilot import SavingInterrupted, fit

    def ctrl_c_at_step_10(step: int, *_: object) -> None:
        if step == 10:
            raise KeyboardInterrupt

    def interrupted(self: Checkpoint, run_dir: Path) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", interrupted)
    with pytest.raises(SavingInterrupted) as stopped:
        fit("digits", budget=30, out=tmp_path / "run", report=False, callback=ctrl_c_at_step_10)
    assert stopped.value.run_dir == tmp_path / "run"
