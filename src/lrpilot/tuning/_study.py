"""The Optuna study behind `tune`: its storage, the configuration every worker reads from it, and
the bookkeeping of trials (steps spent, which trials count, retries of failed ones).

Everything a worker needs is in the study itself (``study.user_attrs["lrpilot"]``), so a worker
on another machine needs only the study's name and the storage URL. A trial that dies with its
worker is found by Optuna's heartbeat (its ``RUNNING`` state goes stale), marked ``FAIL`` and
re-queued with the same parameters by `RetryHeartbeatStaleTrialCallback`; a trial stopped by Ctrl-C queues
its own retry before the worker exits. Either way the retry carries ``failed_trial`` (the number it
replaces), so no design point is lost and none runs twice to completion.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CONFIG_KEY",
    "HEARTBEAT",
    "SCHEMA",
    "StudyConfig",
    "absolute_url",
    "check_url",
    "counted",
    "current",
    "fail_orphans",
    "open_storage",
    "requeue",
    "spent_steps",
]

SCHEMA = 2
"""2: synchronous halving (promotions are trials of their own) and the design stored in the study."""
CONFIG_KEY = "lrpilot"
"""The study's user attribute holding `StudyConfig`."""
HEARTBEAT = 10.0
"""Seconds between a running trial's heartbeats; a trial silent for three is failed and retried."""
OPEN_ATTEMPTS = 5
"""Tries at opening a storage whose tables another process is creating (`_lost_schema_race`)."""
SCHEMA_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key value", "database is locked")
"""What SQLite's and PostgreSQL's errors say when two processes create the same tables at once."""
MAX_RETRY = 3
"""A design point whose trial failed (its worker died) is retried at most this often."""


@dataclass(frozen=True)
class StudyConfig:
    """What a study searches and how, as stored in the study.

    Attributes:
        target: what to train: ``{"task": ...}`` for a built-in task, else the model, data,
            evaluation data, task type, method and batch size of a user's model.
        seed: every trial's seed (initial weights, batch order, dropout): trials differ only in
            what is searched, so their comparison is not blurred by seed noise.
        run_steps: the length of a full run (every trial's schedule spans it).
        space: `Space.to_dict()`.
        design: the first points tried (``optuna.Study.enqueue_trial`` params), in order.
        search: what is searched (``lr`` and optionally ``warmup``, ``decay``).
        rungs: the lengths of the compressed runs a trial trains (and reports) before the full one.
        reduction: successive halving's reduction factor.
        horizon_exponent: a rung's run trains at the candidate's LR × (run_steps / rung) ** this.
        prune: whether bad trials are stopped at the rungs.
        budget_steps: training steps all trials together may spend (the range tests excluded); for
            a time budget, that time in steps at the range test's pace, of which each trial's
            measured overhead takes its share too (`lrpilot.tuning._halving.overhead_steps`).
        max_trials: trials that count: rung trials (full runs without halving), whether design
            points or sampled; promotions and retries do not.
        trials_given: `max_trials` is the user's (``--max-trials``), not what the budget pays for:
            then budget left once it is reached buys nothing more.
        finder: the range test's peak, band, steps, seconds, step time (``step_seconds``, the pace a
            time budget becomes steps at) and notes (a resumed study reuses them); ``joined_steps``:
            the range tests of tunes that joined the study while theirs ran.
        recommendation: the rules' prior (``Recommendation.to_dict()``).
        deadline: for a time budget, when it is spent (seconds since the epoch, every worker's
            clock): no trial starts after it but the one full run a result needs.
    """

    target: dict[str, Any]
    seed: int
    run_steps: int
    space: dict[str, Any]
    design: list[dict[str, Any]]
    search: list[str]
    rungs: list[int]
    reduction: int
    horizon_exponent: float
    prune: bool
    budget_steps: int
    max_trials: int
    finder: dict[str, Any]
    recommendation: dict[str, Any]
    deadline: float | None = None
    trials_given: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"tune: the study was written by another lrpilot version (schema {data.get('schema')})")
        optional = ("deadline", "trials_given")  # studies written before them have none
        values = {k: data[k] for k in cls.__dataclass_fields__ if k not in optional}
        return cls(**values, deadline=data.get("deadline"), trials_given=bool(data.get("trials_given", False)))

    def test_steps(self) -> int:
        """Steps the study's range tests took: the one that created it, and those of tunes that
        joined it during theirs (``joined_steps``), which a budget in runs pays for too."""
        return int(self.finder.get("steps") or 0) + int(self.finder.get("joined_steps") or 0)

    def late(self) -> bool:
        """Whether a time budget's deadline has passed."""
        return self.deadline is not None and time.time() >= self.deadline


def current(study: optuna.Study, config: StudyConfig) -> StudyConfig:
    """The study's settings as stored now (`config`, what this worker read, where none are): a tune
    that joined the study or re-ran it since may have changed its budget, deadline or range tests'
    steps. A worker that kept what it read at its start decided by its own budget beside a joiner
    that had counted its range test, and said so ("range test 40 steps", 2.82 run-equivalents,
    where the joiner said 2.98)."""
    stored = study.user_attrs.get(CONFIG_KEY)
    return StudyConfig.from_dict(stored) if stored else config


def redact(url: str) -> str:
    """`url` without its password (for messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def absolute_url(url: str) -> str:
    """`url` with an SQLite file's relative path made absolute (from the current folder), as the run
    directory's mark records it: a mark holding ``sqlite:///studies.db`` sent the same ``--out``,
    run again from another folder, to a new empty ``studies.db`` there, and refused it as holding
    a study that storage does not. Any other URL (or one that does not parse) as it is."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url  # `check_url` says why
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or Path(database).is_absolute():
        return url
    return parsed.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


def check_url(url: str) -> None:
    """Refuse a storage URL that cannot name a database, with nothing opened: not a URL, a database
    SQLAlchemy has no dialect for (``bad://x``) or whose driver is not installed (``mysql://``
    without MySQLdb), an SQLite file in a folder that does not exist or that is a folder itself, an
    in-memory SQLite database (`_in_memory`). `lrpilot tune` checks it before printing its plan (it
    had printed the plan, loaded the model, and then "cannot open the storage bad://x: Can't load
    plugin: sqlalchemy.dialects:bad")."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"tune: --storage must be a database URL (sqlite:///tune.db, postgresql://…), got {url!r}")
    where = f"tune: cannot open the storage {redact(url)}"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ValueError(f"{where}: {exc} (give sqlite:///tune.db or postgresql://…)") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:  # optuna had said "Failed to import DB access module ...", after the range test
        raise ValueError(f"{where}: it needs the database driver {exc.name!r}, which is not installed") from None
    if parsed.get_backend_name() != "sqlite":
        return
    if _in_memory(parsed.database, parsed.query):
        raise ValueError(
            f"{where}: an in-memory SQLite database lives in one connection, which the trials' heartbeats "
            "and other workers do not share; give a file (sqlite:///tune.db), or leave --storage out"
        )
    path = Path(str(parsed.database))
    if path.is_dir():
        raise ValueError(f"{where}: {path} is a folder; give an SQLite file (sqlite:///{path / 'tune.db'})")
    if not path.parent.is_dir():
        raise ValueError(f"{where}: its folder {path.parent} does not exist")


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite storage URL (`check_url`'s), None for a server's."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return Path(str(parsed.database)) if parsed.get_backend_name() == "sqlite" else None


def _in_memory(database: str | None, query: Mapping[str, Any]) -> bool:
    """Whether an SQLite URL's database is in memory: none (``sqlite://``, ``sqlite:///``),
    ``:memory:``, or a ``file::memory:`` / ``mode=memory`` URI. Optuna opened it and the run
    crashed after the range test, its heartbeat thread finding "no such table: trial_heartbeats"."""
    return not database or ":memory:" in database or query.get("mode") == "memory"


def open_storage(url: str, *, heartbeat: float) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at `url` (``sqlite:///…``, ``postgresql://…``) with heartbeats every
    `heartbeat` seconds (a trial silent for 3 heartbeats is failed and retried); a URL that does not
    parse or a server that cannot be reached is a ValueError naming it."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    check_url(url)
    seconds = max(1, round(heartbeat))

    def storage() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():  # heartbeats and their retry callback are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=seconds,
                grace_period=3 * seconds,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )

    try:
        for attempt in range(1, OPEN_ATTEMPTS):
            try:
                return storage()
            except Exception as exc:
                if not _lost_schema_race(exc):
                    raise
                time.sleep(0.1 * attempt)
        return storage()
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"tune: the storage {redact(url)} needs the database driver {exc.name!r} (pip install it)"
        ) from exc
    except Exception as exc:  # sqlalchemy's ArgumentError / OperationalError, optuna's errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"tune: cannot open the storage {redact(url)}: {reason}") from exc


def _lost_schema_race(exc: Exception) -> bool:
    """Whether opening a new database failed because another process was creating Optuna's tables
    in it at the same moment: Optuna checks for each table, then creates it (optuna/optuna#4621), so
    of two tunes started together on one fresh ``--storage`` one failed with "table studies already
    exists" (or the alembic version row's unique constraint). The tables are there on a second look."""
    text = str(exc)
    return any(sign in text for sign in SCHEMA_RACE)


def _steps(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs.get("steps", 0))


def spent_steps(study: optuna.Study) -> int:
    """Training steps every trial of the study has spent so far (a queued retry carries its
    original's count: not counted twice)."""
    return sum(_steps(t) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING")


def is_replacement(trial: optuna.trial.FrozenTrial) -> bool:
    """A design point or a retry: enqueued, so it runs whatever the cap."""
    return "fixed_params" in trial.system_attrs or "failed_trial" in trial.system_attrs


def counted(study: optuna.Study, before: int | None = None) -> int:
    """Trials that count toward the cap: not failed (a failure's retry counts instead), not skipped,
    not a promotion (the full run of a rung trial), and (with `before`) numbered below it."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.WAITING,
    )
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=states)
        if not t.user_attrs.get("skipped") and "continues" not in t.user_attrs and (before is None or t.number < before)
    )


def fail_orphans(study: optuna.Study, seen: dict[int, float]) -> None:
    """Fail and queue again every running trial that no worker has begun for longer than the
    storage's heartbeat grace period: one a worker took from the queue (or sampled) and was stopped
    (Ctrl-C, a kill) before its objective ran. It has no heartbeat, which Optuna's stale-trial check
    skips, so it stayed running for ever and every re-run and worker waited for it ("waiting for
    other workers") without end. A worker's objective marks its trial (``worker``) as it begins.

    `seen`: when this waiting worker first saw each unbegun trial (`time.monotonic`), kept across
    its polls: its own clock, since a trial's start time is the clock of the machine that took it."""
    import optuna

    backend = getattr(study._storage, "_backend", study._storage)  # Optuna caches an RDB storage's trials
    interval = getattr(backend, "heartbeat_interval", None)
    if interval is None:  # no heartbeats: a running trial may be alive however old
        return
    grace = getattr(backend, "grace_period", None) or 2 * interval  # Optuna's own default
    now = time.monotonic()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "worker" in trial.user_attrs or now - seen.setdefault(trial.number, now) <= grace:
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker failed it (and queued its retry) a moment earlier
        if is_replacement(trial):  # a sampled one has nothing to retry: the sampler proposes anew
            requeue(study, trial)


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a retry of `trial` (same parameters, and the rung trial it continues if it is a
    promotion) that says which trial it replaces, as Optuna's `RetryHeartbeatStaleTrialCallback`
    does for a trial whose worker died."""
    import optuna

    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    original = trial.system_attrs.get("failed_trial", trial.number)
    retry = {"failed_trial": original, "retry_history": history}
    if "fixed_params" in trial.system_attrs:  # the point it was queued for (an orphan has no params yet)
        retry["fixed_params"] = trial.system_attrs["fixed_params"]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k == "continues"},
            system_attrs=retry,
        )
    )
