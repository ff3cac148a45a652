"""Golden values for every shape, worked out by hand from each schedule's published formula."""

from __future__ import annotations

import math

import pytest

from lrpilot.schedules import (
    WSD,
    Anneal,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    InverseTime,
    Join,
    Linear,
    OneCycle,
    Polynomial,
    Rewarmup,
    Schedule,
    StepDecay,
)

SQRT_HALF = math.sqrt(0.5)

GOLDEN: list[tuple[Schedule, list[tuple[float, float]]]] = [
    (Constant(peak=0.5), [(0, 0.5), (7, 0.5), (1e12, 0.5)]),
    # lrpilot warmup: (s + 1) / (W + 1) of the way, peak exactly at step W.
    (Constant(peak=1.0, warmup_steps=3), [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0), (9, 1.0)]),
    # HF / torch convention: s / W, so step 0 gets 0.
    (Constant(peak=1.0, warmup_steps=4, warmup_offset=0), [(0, 0.0), (1, 0.25), (4, 1.0)]),
    (Constant(peak=1.0, warmup_steps=4, warmup_offset=0, warmup_start=0.2), [(0, 0.2), (2, 0.6), (4, 1.0)]),
    (
        Cosine(peak=1.0, total_steps=10, warmup_steps=2),
        [(0, 1 / 3), (1, 2 / 3), (2, 1.0), (4, 0.5 + 0.5 * SQRT_HALF), (6, 0.5), (10, 0.0), (1e12, 0.0)],
    ),
    (Cosine(peak=2.0, total_steps=8, floor_ratio=0.25), [(0, 2.0), (4, 1.25), (8, 0.5), (100, 0.5)]),
    (
        Cosine(peak=1.0, total_steps=12, warmup_steps=2, hold_steps=2, floor=0.1, warmup_offset=0),
        [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.0), (4, 1.0), (8, 0.55), (12, 0.1)],
    ),
    (Linear(peak=1.0, total_steps=10), [(0, 1.0), (5, 0.5), (9, 0.1), (10, 0.0), (11, 0.0)]),
    (
        Linear(peak=1.0, total_steps=10, warmup_steps=4, floor=0.4, warmup_offset=0),
        [(2, 0.5), (4, 1.0), (7, 0.7), (10, 0.4)],
    ),
    (Polynomial(peak=1.0, total_steps=10, power=2.0), [(0, 1.0), (5, 0.25), (10, 0.0)]),
    (Polynomial(peak=1.0, total_steps=4, power=0.5, floor=0.5), [(3, 0.5 + 0.5 * 0.5), (4, 0.5)]),
    # WSD: 10 warmup (offset 0), stable to step 80, 1-sqrt decay over the last 20 steps.
    (
        WSD(peak=1.0, total_steps=100, warmup_steps=10, decay_steps=20, warmup_offset=0),
        [(5, 0.5), (10, 1.0), (79, 1.0), (80, 1.0), (85, 0.5), (100, 0.0)],
    ),
    (
        WSD(peak=1.0, total_steps=100, decay_fraction=0.2, decay_shape="linear", floor_ratio=0.1),
        [(80, 1.0), (90, 0.55), (100, 0.1)],
    ),
    (WSD(peak=1.0, total_steps=10, decay_steps=2, decay_shape="exp", floor=0.01), [(8, 1.0), (9, 0.1), (10, 0.01)]),
    (Exponential(peak=1.0, gamma=0.5), [(0, 1.0), (1, 0.5), (3, 0.125), (1e12, 0.0)]),
    (
        Exponential(peak=1.0, gamma=0.5, every=10, staircase=True, floor=0.2),
        [(9, 1.0), (10, 0.5), (25, 0.25), (30, 0.2)],
    ),
    (Exponential(peak=1.0, gamma=0.5, every=2), [(1, SQRT_HALF), (2, 0.5)]),
    (StepDecay(peak=1.0, factor=0.1, milestones=(3, 6)), [(2, 1.0), (3, 0.1), (5, 0.1), (6, 0.01), (1e9, 0.01)]),
    (StepDecay(peak=1.0, factor=0.5, every=4), [(3, 1.0), (4, 0.5), (8, 0.25), (9, 0.25)]),
    (
        StepDecay(peak=1.0, factor=0.1, milestones=(0.3, 0.6, 0.9), total_steps=100),
        [(29, 1.0), (30, 0.1), (60, 0.01), (90, 0.001)],
    ),
    (StepDecay(peak=1.0, factor=0.1, milestones=(5,), warmup_steps=2, warmup_offset=0), [(1, 0.5), (4, 1.0), (5, 0.1)]),
    (
        InverseSqrt(peak=1.0, warmup_steps=4, warmup_offset=0),
        [(2, 0.5), (4, 1.0), (8, SQRT_HALF), (16, 0.5), (20, math.sqrt(0.2))],
    ),
    (InverseSqrt(peak=1.0, timescale=1.0), [(0, 1.0), (3, 0.5)]),
    (InverseTime(peak=1.0, rate=1.0), [(0, 1.0), (1, 0.5), (3, 0.25)]),
    (InverseTime(peak=1.0, rate=0.5, every=10, staircase=True), [(9, 1.0), (10, 1 / 1.5), (20, 0.5)]),
    (CosineRestarts(peak=1.0, period=4), [(0, 1.0), (2, 0.5), (4, 1.0), (6, 0.5)]),
    (
        CosineRestarts(peak=1.0, period=2, period_mult=2, peak_decay=0.5),
        [(0, 1.0), (1, 0.5), (2, 0.5), (4, 0.25), (6, 0.25), (7, 0.125 * (1 + math.cos(math.pi / 8)))],
    ),
    (CosineRestarts(peak=1.0, period=4, total_steps=8, floor=0.1), [(2, 0.55), (4, 1.0), (8, 0.1), (9, 0.1)]),
    (Cyclic(low=1.0, high=3.0, up_steps=2), [(0, 1.0), (1, 2.0), (2, 3.0), (3, 2.0), (4, 1.0), (6, 3.0)]),
    (Cyclic(low=1.0, high=3.0, up_steps=2, mode="triangular2"), [(2, 3.0), (6, 2.0), (10, 1.5)]),
    (Cyclic(low=1.0, high=3.0, up_steps=1, down_steps=3), [(1, 3.0), (2, 3.0 - 2 / 3), (4, 1.0)]),
    (Cyclic(low=1.0, high=3.0, up_steps=2, mode="exp_range", gamma=0.5), [(2, 1.0 + 2.0 * 0.25)]),
    # torch convention: phase ends at pct * T - 1 = 2 and T - 1 = 9.
    (
        OneCycle(peak=1.0, total_steps=10, pct_start=0.3, div_factor=4.0, final_div_factor=10.0, anneal="linear"),
        [(0, 0.25), (1, 0.625), (2, 1.0), (9, 0.025)],
    ),
    (
        OneCycle(
            peak=1.0,
            total_steps=10,
            pct_start=0.5,
            div_factor=4.0,
            final_div_factor=10.0,
            anneal="linear",
            convention="optax",
        ),
        [(0, 0.25), (5, 1.0), (10, 0.025)],
    ),
    (Anneal(start=1.0, end=0.01, steps=2, shape="exp"), [(1, 0.1), (2, 0.01)]),
    (Anneal(start=0.0, end=1.0, steps=4, shape="1-sqrt"), [(3, 0.5)]),
    (Anneal(start=0.0, end=1.0, steps=4, shape="poly", power=2.0), [(2, 0.25)]),
    (
        Join(segments=(Constant(peak=1.0), Linear(peak=0.5, total_steps=4)), boundaries=(3,)),
        [(2, 1.0), (3, 0.5), (5, 0.25), (7, 0.0)],
    ),
    (Rewarmup(base=Constant(peak=1.0), at=10, steps=3), [(9, 1.0), (10, 0.25), (12, 0.75), (13, 1.0)]),
]


@pytest.mark.parametrize(("schedule", "points"), GOLDEN, ids=[s.to_string() for s, _ in GOLDEN])
def test_golden_values(schedule: Schedule, points: list[tuple[float, float]]) -> None:
    for step, expected in points:
        assert schedule(step) == pytest.approx(expected, rel=1e-12, abs=1e-15), f"step {step}"


@pytest.mark.parametrize(("schedule", "points"), GOLDEN, ids=[s.to_string() for s, _ in GOLDEN])
def test_vectorised_values_equal_scalar_calls(schedule: Schedule, points: list[tuple[float, float]]) -> None:
    steps = [step for step, _ in points] + list(range(50))
    vector = schedule.values(steps)
    for step, value in zip(steps, vector, strict=True):
        assert value == pytest.approx(schedule(step), rel=1e-14, abs=1e-300)


def test_huge_steps_are_constant_time_and_finite() -> None:
    for schedule, _ in GOLDEN:
        assert math.isfinite(schedule(10**12))
        assert math.isfinite(schedule(10**12 + 0.5))
