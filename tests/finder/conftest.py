"""One torch thread for the finder's tests: they share 2 cores, where a second thread per process
only contends (a 100-step range test on a tiny MLP goes from 0.1 s to 5 s under load)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread: None) -> None:
    """Every test in this folder runs on one torch thread (`torch_one_thread`)."""
