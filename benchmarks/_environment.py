"""What a benchmark ran on and how it was called, stored beside its results so that a figure can be
traced to its setup; and the one way the benchmarks write their JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Python, the platform, each package's installed version ("absent" if missing) and torch's threads."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def command(packages: Iterable[str], argv: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The command line (`argv`, default this process's), its start time, anything in `extra`, and
    the versions of `packages`: an entry of a results document's ``commands``."""
    return {
        "argv": shlex.join([sys.executable, *sys.argv] if argv is None else argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "environment": versions(packages),
    }


def save_json(path: Path, doc: dict[str, Any]) -> None:
    """`doc` written to `path` through a temporary file: a run killed mid-write never leaves a
    truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_json(path: Path, empty: dict[str, Any]) -> dict[str, Any]:
    """The results document at `path`, or `empty` where there is none yet (a first run starts it)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else empty  # type: ignore[no-any-return]
