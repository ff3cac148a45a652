"""`work`: join a study another machine started and run its trials (``lrpilot tune worker``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from lrpilot import _validate as check
from lrpilot.autopilot._progress import Progress, quiet
from lrpilot.tasks import one_thread
from lrpilot.tasks._device import resolve_device, resolve_precision
from lrpilot.tuning._engine import POLL, attach, load_study, make_runner, quiet_optuna, run_until_done
from lrpilot.tuning._result import summaries
from lrpilot.tuning._space import Candidate
from lrpilot.tuning._study import (
    CONFIG_KEY,
    HEARTBEAT,
    StudyConfig,
    check_url,
    open_storage,
    redact,
    sqlite_file,
)

__all__ = ["WorkSummary", "work"]


@dataclass(frozen=True)
class WorkSummary:
    """What one worker did: the trials it ran (by number) and the study's state when it stopped."""

    study_name: str
    trials_run: list[int]
    completed: int
    total: int


def work(
    study: str,
    storage: str,
    *,
    out: str | Path | None = None,
    wait: float = 0.0,
    heartbeat: float = HEARTBEAT,
    device: str | None = None,
    precision: str | None = None,
    progress: Progress | None = None,
) -> WorkSummary:
    """Join the study `study` in `storage` (started by `tune` with the same storage) and run its
    trials until the budget is spent (waiting, where the next decision needs them, for the
    trials other workers are running). The task, data and settings come from the study; paths in it
    must exist on this machine. A best trial's weights are written under `out` (default
    ``runs/tune-worker-<study>``). `wait`: seconds to wait for the study to appear (workers
    launched together with the machine that creates it, whose range test comes first). `device`:
    where this worker trains, as in `lrpilot.fit` (``"auto"``: its GPU where it has one), and
    `precision` its forward passes' (fp32 by default)."""
    progress = progress or quiet
    quiet_optuna()
    check.positive("tune worker", "heartbeat", heartbeat)
    check.non_negative("tune worker", "--wait", wait)
    where = resolve_device(device, "tune worker")
    mixed = resolve_precision(precision, where, "tune worker")
    deadline = time.monotonic() + wait
    _await_file(storage, study, deadline, progress)
    store = open_storage(storage, heartbeat=heartbeat)
    existing = load_study(store, study)
    while (existing is None or CONFIG_KEY not in existing.user_attrs) and time.monotonic() < deadline:
        progress("waiting for the study", 0, None, math.nan, math.nan)
        time.sleep(POLL)
        existing = load_study(store, study)
    if existing is None or CONFIG_KEY not in existing.user_attrs:
        raise ValueError(
            f"tune worker: no lrpilot study {study!r} in {redact(storage)}; start it with "
            f"`lrpilot tune --storage URL --study {study}` (that machine works on it too)"
        )
    config = StudyConfig.from_dict(existing.user_attrs[CONFIG_KEY])
    live = attach(existing, config)
    folder = Path(out) if out is not None else Path("runs") / f"tune-worker-{study}"
    runner = make_runner(config, folder / "trials", progress, where, mixed)
    ran: list[int] = []

    def note(number: int, candidate: Candidate) -> None:
        ran.append(number)
        progress(f"trial {number} ({candidate.describe()})", 0, None, math.nan, math.nan)

    runner.on_trial = note
    with one_thread(config.target["model"] is None):  # a trial's numbers are then the same on every worker
        run_until_done(live, runner, progress)
    trials = summaries(live)
    return WorkSummary(study, ran, sum(1 for t in trials if t.state == "COMPLETE"), len(trials))


def _await_file(storage: str, study: str, deadline: float, progress: Progress) -> None:
    """An SQLite storage's file, waited for until `deadline`, else an error: opening a file that is
    not there creates it, and a worker given a mistyped path had left an empty database behind
    (``no lrpilot study 'x' in sqlite:///tnue.db``, and a new ``tnue.db`` beside the real one)."""
    check_url(storage)
    file = sqlite_file(storage)
    while file is not None and not file.exists() and time.monotonic() < deadline:
        progress("waiting for the study", 0, None, math.nan, math.nan)
        time.sleep(POLL)
    if file is not None and not file.exists():
        raise ValueError(
            f"tune worker: no database file {file} ({redact(storage)}); a worker joins the study "
            f"`lrpilot tune --storage URL --study {study}` started there: check the path, or give --wait SECONDS"
        )
