"""What a benchmark ran on, stored beside its results so that a figure can be traced to its setup."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

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
