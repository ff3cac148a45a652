"""The horizon law: an LR found for one run length, scaled to another."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrpilot.rules import CALIBRATED_STEPS, HORIZON_EXPONENT, Horizon, at_horizon, horizon_factor


def test_a_third_of_the_length_doubles_the_lr_as_measured_on_the_builtin_tasks() -> None:
    assert horizon_factor(50, calibrated=(150, 150)) == pytest.approx(2.0, abs=0.01)  # benchmarks/rung_horizon.py
    assert horizon_factor(1000, calibrated=(250, 250)) == pytest.approx(4**-HORIZON_EXPONENT)


def test_inside_the_calibrated_range_nothing_moves_and_outside_it_scales_from_the_nearest_end() -> None:
    low, high = CALIBRATED_STEPS
    assert horizon_factor(low) == horizon_factor(high) == horizon_factor((low + high) // 2) == 1.0
    assert horizon_factor(low // 3) == pytest.approx(3**HORIZON_EXPONENT, rel=0.02)  # 150 // 3 = 50
    assert horizon_factor(high * 4) == pytest.approx(4**-HORIZON_EXPONENT)


def test_a_run_shorter_than_a_third_keeps_the_third_length_factor_the_law_was_measured_at() -> None:
    third = horizon_factor(50)
    assert horizon_factor(30) == horizon_factor(5) == horizon_factor(1) == third  # not 2.76 at a fifth, 4.3 at a tenth
    assert horizon_factor(1000, calibrated=(5000, 5000)) == third
    assert horizon_factor(5000, calibrated=(1000, 1000)) == pytest.approx(5**-HORIZON_EXPONENT)  # stretched: no hold
    short = at_horizon(2e-3, 30)
    assert short.lr == pytest.approx(2e-3 * third)
    assert short.note() == (
        f"horizon: the range test's peak 0.002 is for a run of 150 steps; this one has 30, so × 2.00 (best LR ∝ "
        f"steps^-{HORIZON_EXPONENT}, as for a third of its length, the shortest run the law was measured on) → 0.004"
    )
    assert "shortest run" not in at_horizon(2e-3, 50).note()


@given(st.integers(1, 10**7), st.integers(1, 10**7), st.integers(1, 10**4), st.integers(0, 10**4))
def test_a_longer_run_never_gets_a_higher_lr(a: int, b: int, low: int, width: int) -> None:
    short, long = sorted((a, b))
    calibrated = (low, low + width)
    assert horizon_factor(long, calibrated) <= horizon_factor(short, calibrated)
    assert (horizon_factor(short, calibrated) == 1.0) == (low <= short <= low + width)


@pytest.mark.parametrize(
    ("steps", "calibrated", "message"),
    [
        (0, (150, 1000), r"steps must be an integer in \[1, ∞\], got 0"),
        (2.5, (150, 1000), r"steps must be an integer in \[1, ∞\], got 2.5"),
        (100, (0, 10), r"calibrated\[0\] must be an integer in \[1, ∞\], got 0"),
        (100, (200, 100), r"calibrated\[1\] must be an integer in \[200, ∞\], got 100"),
    ],
)
def test_bad_input_names_the_value_and_the_valid_range(
    steps: object, calibrated: tuple[int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        horizon_factor(steps, calibrated)  # type: ignore[arg-type]


def test_at_horizon_moves_a_peak_and_says_how() -> None:
    long = at_horizon(2e-3, 4000)
    assert long == Horizon(found=2e-3, lr=2e-3 * horizon_factor(4000), factor=horizon_factor(4000),
                           reference_steps=1000, steps=4000, capped=False)  # fmt: skip
    assert long.to_dict() == {
        "found": 2e-3,
        "factor": long.factor,
        "reference_steps": 1000,
        "steps": 4000,
        "capped": False,
    }
    assert long.note() == (
        f"horizon: the range test's peak 0.002 is for a run of 1000 steps; this one has 4000, "
        f"so × 0.42 (best LR ∝ steps^-{HORIZON_EXPONENT}) → 0.000835"
    )


def test_at_horizon_raises_a_short_runs_peak_only_up_to_the_ceiling() -> None:
    assert at_horizon(1e-3, 50, ceiling=5e-3).lr == pytest.approx(1e-3 * horizon_factor(50))  # 2x, under it
    held = at_horizon(1e-3, 50, ceiling=1.5e-3)
    assert (held.lr, held.capped) == (1.5e-3, True)
    assert "capped at the test's max stable LR" in held.note()
    assert at_horizon(1e-3, 5000, ceiling=1e-4).lr == pytest.approx(1e-3 * horizon_factor(5000))  # lowering: no cap


def test_at_horizon_bad_input() -> None:
    with pytest.raises(ValueError, match=r"at_horizon: peak must be a finite number > 0, got 0"):
        at_horizon(0.0, 100)
    with pytest.raises(ValueError, match=r"at_horizon: calibrated must be \(low, high\) run lengths in steps"):
        at_horizon(1e-3, 100, (150,))  # type: ignore[arg-type]
