"""One torch thread for the finder's tests: they share 2 cores, where a second thread per process
only contends (a 100-step range test on a tiny MLP goes from 0.1 s to 5 s under load)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
