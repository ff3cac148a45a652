"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """One intra-op torch thread for a module's tests (`lrpilot.tasks.one_thread`): the tests share
    2 cores, where torch's default of 2 threads per process spin-waits and tiny models run tens of
    times slower; and bit-identical results need a fixed thread count."""
    from lrpilot.tasks import one_thread

    with one_thread():
        yield
