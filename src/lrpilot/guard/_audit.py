"""The audit log: every decision other than a plain "continue", one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lrpilot.guard._policy import Action

__all__ = ["AuditLog", "summarize"]


class AuditLog:
    """Collects the guard's audit records in memory and, given a path, appends them to a JSONL file
    as they happen (flushed per line, so a run that dies still leaves its log)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, action: Action, **extra: Any) -> dict[str, Any] | None:
        """Record `action` unless it is a plain "continue"; `extra` keys (e.g. rank) are added."""
        if action.kind == "continue":
            return None
        record = {**action.record(), **extra}
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return record


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many of each action: ``{"skip": 3, "rollback": 1, ...}``."""
    out: dict[str, int] = {}
    for r in records:
        out[r["action"]] = out.get(r["action"], 0) + 1
    return out
