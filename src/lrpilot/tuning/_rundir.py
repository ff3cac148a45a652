"""Where `tune` works: its run directory, and which study a directory that already holds a tune
continues.

A tune's run directory is marked by `MARK_FILE` (the study's name and storage), written as soon as
the study exists, so that the same command with the same ``--out`` continues the study whether it
lives in the directory's own `DB_FILE` or in a ``--storage`` elsewhere (the study's own database
is not in the directory then). A directory that holds anything else is refused: nothing of the
user's is overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrpilot.autopilot._pipeline import check_not_under_a_file, claimed, stamped_run_dir
from lrpilot.tuning._study import absolute_url, redact, sqlite_url

__all__ = ["DB_FILE", "MARK_FILE", "Place", "has_studies", "place", "write_mark"]

DB_FILE = "tune.db"
"""The default storage: an SQLite study in the run directory."""
MARK_FILE = "tune.json"
"""What marks a run directory as a tune's: ``{"study": name, "storage": url or null}`` (null: the
directory's own `DB_FILE`; a password in the URL is never written)."""


@dataclass(frozen=True)
class Place:
    """The run directory, the study's storage URL and name, and whether the directory holds an
    earlier tune of it (`marked`: by `MARK_FILE`; else by a `DB_FILE` alone, as tunes before the
    mark left it)."""

    run_dir: Path
    url: str
    name: str
    resuming: bool
    marked: bool = False

    @property
    def default_storage(self) -> bool:
        """Whether the study lives in the run directory's own `DB_FILE`."""
        return self.url == sqlite_url(self.run_dir / DB_FILE)


def place(out: str | Path | None, storage: str | None, study: str | None, label: str) -> Place:
    """Where a tune of `label` works: `out` when it is new or empty (without it, a new
    ``runs/tune-<label>-<time>``, made here so that no other tune takes it), or `out` holding an
    earlier tune, whose study it continues (the recorded study and storage are used where `study`
    and `storage` are not given). A ValueError names `out` when it is a file or under one, holds
    something else, or holds another study."""
    name = study or f"lrpilot-{label}"
    storage = None if storage is None else absolute_url(storage)
    if out is None:  # made now: two tunes started in the same second had shared one stamped folder
        run_dir = claimed(stamped_run_dir("tune", label))
        return Place(run_dir, storage or sqlite_url(run_dir / DB_FILE), name, resuming=False)
    run_dir = Path(out)
    check_not_under_a_file("tune", run_dir)
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return Place(run_dir, storage or sqlite_url(run_dir / DB_FILE), name, resuming=False)
    if not run_dir.is_dir():
        raise ValueError(f"tune: --out {run_dir} is a file; give a new or empty directory, or an earlier tune's")
    mark = _read_mark(run_dir)
    if mark is None:
        raise ValueError(
            f"tune: --out {run_dir} is a directory that is not empty and holds no earlier tune (no {MARK_FILE} "
            f"or {DB_FILE}); give a new or empty directory, or an earlier tune's to continue it (nothing is "
            "overwritten)"
        )
    return _continued(run_dir, mark, storage, study, name)


def _continued(run_dir: Path, mark: dict[str, Any], storage: str | None, study: str | None, name: str) -> Place:
    """`run_dir` holding an earlier tune (`mark`): its study, in its storage; a `storage` or
    `study` given that names another is refused (the directory would mix two studies' results)."""
    own = sqlite_url(run_dir / DB_FILE)
    # None: the directory's own database; an older mark's relative SQLite path is read from here
    recorded = absolute_url(mark["storage"]) if mark.get("storage") else None
    shown = recorded or own
    if storage is not None and redact(storage) != shown and not (recorded is None and storage == own):
        raise ValueError(
            f"tune: --out {run_dir} holds a tune of the study in {redact(shown)}, not in --storage "
            f"{redact(storage)}; give that storage (or none) to continue it, or a new --out"
        )
    if storage is None and recorded is not None and "***@" in recorded:
        raise ValueError(
            f"tune: --out {run_dir} holds a tune of the study in {recorded}; give --storage with its "
            "password to continue it (the password is not written down)"
        )
    recorded_name = mark.get("study")
    if study is not None and recorded_name is not None and study != recorded_name:
        raise ValueError(
            f"tune: --out {run_dir} holds a tune of the study {recorded_name!r}, not {study!r}; give "
            f"--study {recorded_name} (or none) to continue it, or a new --out"
        )
    url = storage if storage is not None else (recorded or own)
    return Place(run_dir, url, recorded_name or name, resuming=True, marked=mark["from"] == MARK_FILE)


def _read_mark(run_dir: Path) -> dict[str, Any] | None:
    """What `run_dir` says about the tune it holds: its `MARK_FILE`, or (a tune from before the
    mark) its own `DB_FILE`; None when it holds no tune. A mark that is not a JSON object with a
    study name is refused: the directory is not ours to reuse."""
    path = run_dir / MARK_FILE
    if not path.is_file():
        return {"from": DB_FILE} if (run_dir / DB_FILE).is_file() else None
    try:
        mark = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"tune: --out {run_dir} has a {MARK_FILE} that cannot be read ({exc})") from exc
    if not isinstance(mark, dict) or not isinstance(mark.get("study"), str):
        raise ValueError(f"tune: --out {run_dir} has a {MARK_FILE} without a study name; give a new --out")
    if not isinstance(mark.get("storage"), str | None):
        raise ValueError(f"tune: --out {run_dir} has a {MARK_FILE} whose storage is not a URL; give a new --out")
    return {**mark, "from": MARK_FILE}


def write_mark(where: Place) -> None:
    """Mark the run directory as this study's (see `MARK_FILE`), so that a re-run continues it."""
    where.run_dir.mkdir(parents=True, exist_ok=True)
    storage = None if where.default_storage else redact(where.url)
    text = json.dumps({"study": where.name, "storage": storage}, indent=2) + "\n"
    (where.run_dir / MARK_FILE).write_text(text, encoding="utf-8")


def has_studies(storage: Any) -> bool:
    """Whether `storage` (an Optuna storage) holds any study: a `DB_FILE` left by a tune stopped
    during its range test holds none, and the re-run then starts afresh."""
    return bool(storage.get_all_studies())
