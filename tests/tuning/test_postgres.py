"""Many workers on one study in a real PostgreSQL server (``.ci/run`` starts one on loopback and
sets ``LRPILOT_TEST_POSTGRES_URL``): three processes share the trials, one is killed in the middle
of a trial, and the study still completes with every design point's rung run exactly once and the
best one trained in full, with the same numbers as a single process on SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

URL = os.environ.get("LRPILOT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="no PostgreSQL server (set LRPILOT_TEST_POSTGRES_URL)")

STEPS = 4500
"""Digits runs of 4500 steps (rungs of 1500, a second or two): long enough to kill a worker inside
one, and for the workers (polling for the study every 2 s) to get rungs while the others run theirs."""
SETTINGS = ["--task", "digits", "--steps", str(STEPS), "--budget", "20", "--max-trials", "3"]
"""Three rung trials (the design: the range test's peak, ×½, ×2), then the full run of the best."""
HEARTBEAT = "1"
CLI = [sys.executable, "-c", "from lrpilot.cli import main; main()"]


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as handle:  # the child keeps its own descriptor
        return subprocess.Popen([*CLI, *args], stdout=handle, stderr=subprocess.STDOUT, env=env)


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def storage() -> Iterator[optuna.storages.RDBStorage]:
    """One connection pool for the test's looks at the study (one per look would exhaust the server)."""
    assert URL is not None
    store = optuna.storages.RDBStorage(URL)
    yield store
    store.engine.dispose()


def _load(name: str, storage: optuna.storages.RDBStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def test_three_workers_share_a_study_and_survive_a_killed_one(
    tmp_path: Path, storage: optuna.storages.RDBStorage
) -> None:
    assert URL is not None
    name = f"lrpilot-test-{uuid.uuid4().hex[:8]}"
    common = ["--storage", URL, "--study", name, "--heartbeat", HEARTBEAT]
    # the workers start first and wait for the study, as on a cluster where every machine starts at once
    workers = [
        _spawn(["tune", "worker", *common, "--wait", "300", "--out", str(tmp_path / f"w{i}")], tmp_path / f"w{i}.log")
        for i in (1, 2)
    ]
    coordinator = _spawn(["tune", *SETTINGS, *common, "--out", str(tmp_path / "run"), "--json"], tmp_path / "a.log")
    processes = [*workers, coordinator]
    training: list[subprocess.Popen[bytes]] = []

    def a_worker_is_training() -> bool:
        study = _load(name, storage)
        if study is None:
            return False
        running = {t.user_attrs.get("worker", "") for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))}
        training[:] = [w for w in workers if any(who.endswith(f":{w.pid}") for who in running)]
        return bool(training)

    try:
        _wait_for(a_worker_is_training, 300, "a worker to start a trial")
        victim, survivor = training[0], next(w for w in workers if w is not training[0])
        time.sleep(0.15)  # inside its training loop
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert survivor.wait(300) == 0
        assert coordinator.wait(300) == 0, (tmp_path / "a.log").read_text()
    finally:  # a failed check leaves no process behind
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(30)

    study = _load(name, storage)
    assert study is not None
    trials = [t for t in study.get_trials() if not t.user_attrs.get("skipped")]  # skipped: a race lost, never run
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1  # the killed worker's trial, failed by a heartbeat check
    assert failed[0].user_attrs["worker"].endswith(f":{victim.pid}")
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number)
    assert retry.state != optuna.trial.TrialState.FAIL
    assert retry.params == failed[0].params
    rungs, promotions = _rungs_and_promotions(trials)
    assert len(rungs) == len(set(rungs)) == 3  # every design point's rung once: none lost, none twice
    assert len(promotions) == 1
    assert len({t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}) >= 2  # shared out

    # a single process on SQLite, same settings: the same rungs, the same winner, the same final loss
    single = subprocess.run(
        [*CLI, "tune", *SETTINGS, "--out", str(tmp_path / "single"), "--json", "--no-report"],
        capture_output=True,
        check=True,
        timeout=600,
    )
    assert single.returncode == 0
    alone = optuna.load_study(study_name="lrpilot-digits", storage=f"sqlite:///{tmp_path / 'single' / 'tune.db'}")
    assert _rungs_and_promotions(alone.get_trials()) == (rungs, promotions)


def _rungs_and_promotions(
    trials: list[optuna.trial.FrozenTrial],
) -> tuple[dict[float, float], dict[float, float]]:
    """The rung loss of every rung trial and the final loss of every promotion, by peak LR."""
    live = [t for t in trials if t.state != optuna.trial.TrialState.FAIL and not t.user_attrs.get("skipped")]
    rungs = {t.params["lr"]: t.intermediate_values[STEPS // 3] for t in live if "continues" not in t.user_attrs}
    promotions = {t.params["lr"]: t.value for t in live if "continues" in t.user_attrs}
    assert len(rungs) == sum(1 for t in live if "continues" not in t.user_attrs)  # no LR twice
    return rungs, promotions


def test_a_worker_without_a_study_is_told_how_to_start_one(tmp_path: Path) -> None:
    assert URL is not None
    done = subprocess.run(
        [*CLI, "tune", "worker", "--storage", URL, "--study", "no-such-study"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    message = done.stdout.decode() + done.stderr.decode()
    assert "no lrpilot study 'no-such-study'" in message
    assert "lrpilot:lrpilot@" not in message  # the password is not printed
