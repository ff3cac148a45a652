"""The study's storage: opening one database from several processes at once."""

from __future__ import annotations

import threading
from pathlib import Path

from lrpilot.tuning._study import open_storage, sqlite_url


def test_tunes_started_together_on_one_new_storage_all_open_it(tmp_path: Path) -> None:
    """Two `lrpilot tune --storage sqlite:///x.db --study s` started at once: one failed with
    "cannot open the storage …: table studies already exists" (Optuna creates its tables after
    looking for them, optuna/optuna#4621). Threads race the same way, every time, on a new file."""
    url = sqlite_url(tmp_path / "shared.db")
    start = threading.Barrier(4)
    errors: list[Exception] = []

    def open_it() -> None:
        start.wait()
        try:
            open_storage(url, heartbeat=10.0)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
