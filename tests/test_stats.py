"""The medians the detectors and the range test's stop read at every step: numpy's values, faster."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lrpilot._stats import median, row_medians

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(hnp.arrays(np.float64, st.integers(1, 40), elements=finite))
def test_median_is_numpys(values: np.ndarray) -> None:
    assert median(values) == float(np.median(values))


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 9)), elements=finite))
def test_row_medians_are_numpys_along_the_last_axis(values: np.ndarray) -> None:
    assert np.array_equal(row_medians(values), np.median(values, axis=-1))
