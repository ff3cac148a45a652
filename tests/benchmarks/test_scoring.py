"""The scoring helpers of ``benchmarks/finder_regret.py`` (``benchmarks/_scoring.py``)."""

from __future__ import annotations

import math

import pytest
from benchmarks._scoring import OracleCurve, score, summarise

CURVE = OracleCurve(lrs=(1e-4, 1e-3, 1e-2, 1e-1), losses=(2.0, 1.0, 0.5, 3.0), l_init=2.5)


def test_landmarks() -> None:
    assert CURVE.l_star == 0.5
    assert CURVE.lr_star == 1e-2
    assert CURVE.coverage == (1e-4, 1e-1)


def test_interpolation_is_linear_in_log_lr() -> None:
    assert CURVE.loss(1e-3) == pytest.approx(1.0)  # grid points are exact
    assert CURVE.loss(10**-2.5) == pytest.approx(0.75)  # half-way in log10(lr)
    assert CURVE.loss(10**-1.75) == pytest.approx(0.5 + 0.25 * 2.5)


def test_clamped_outside_the_grid() -> None:
    assert CURVE.loss(1e-9) == 2.0
    assert CURVE.loss(10.0) == 3.0


def test_score_at_the_optimum_is_zero() -> None:
    s = score(CURVE, 1e-2)
    assert (s.regret, s.excess, s.log_ratio) == (0.0, 0.0, 0.0)
    assert not s.failed


def test_score_normalises_by_l_init() -> None:
    s = score(CURVE, 1e-3)
    assert s.regret == pytest.approx((1.0 - 0.5) / (2.5 - 0.5))
    assert s.excess == pytest.approx(1.0)
    assert s.log_ratio == pytest.approx(1.0)


def test_no_answer_scores_l_init() -> None:
    for lr in (None, math.nan, 0.0, -1.0, math.inf):
        s = score(CURVE, lr)
        assert s.failed
        assert s.regret == pytest.approx(1.0)
        assert s.excess == pytest.approx(2.5 / 0.5 - 1.0)


def test_summarise() -> None:
    out = summarise([score(CURVE, 1e-2), score(CURVE, 1e-3), score(CURVE, None)])
    assert out["n"] == 3
    assert out["mean_regret"] == pytest.approx((0.0 + 0.25 + 1.0) / 3)
    assert out["worst_regret"] == pytest.approx(1.0)
    assert out["mean_log_ratio"] == pytest.approx(0.5)  # the failure has no ratio
    assert out["failures"] == 1
    with pytest.raises(ValueError, match="no scores"):
        summarise([])


def test_from_doc_keeps_complete_rows() -> None:
    doc = {
        "seeds": [0, 1],
        "l_init_mean": 2.5,
        "summary": [
            {"peak_lr": 1e-2, "seeds": [0, 1], "mean_val_loss": 0.5},
            {"peak_lr": 1e-3, "seeds": [0, 1], "mean_val_loss": 1.0},
            {"peak_lr": 1e-1, "seeds": [0], "mean_val_loss": 0.1},  # one seed so far: left out
        ],
    }
    curve = OracleCurve.from_doc(doc)
    assert curve.lrs == (1e-3, 1e-2)
    assert curve.losses == (1.0, 0.5)
    assert not curve.complete


def test_rejects_bad_curves() -> None:
    with pytest.raises(ValueError, match="increasing"):
        OracleCurve(lrs=(1e-2, 1e-3), losses=(1.0, 2.0), l_init=3.0)
    with pytest.raises(ValueError, match="l_init"):
        OracleCurve(lrs=(1e-3, 1e-2), losses=(1.0, 2.0), l_init=0.5)
    with pytest.raises(ValueError, match="positive"):
        CURVE.loss(0.0)
