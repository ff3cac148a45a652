"""Every bad value is a ValueError that names the parameter, the valid range and the value."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from lrpilot.schedules import (
    WSD,
    Anneal,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    Join,
    Linear,
    OneCycle,
    Polynomial,
    Schedule,
    StepDecay,
    parse,
)

CASES: list[tuple[Callable[[], Schedule], tuple[str, ...]]] = [
    (lambda: Cosine(peak=0.0, total_steps=10), ("peak", "> 0", "0.0")),
    (lambda: Cosine(peak=-1e-3, total_steps=10), ("peak", "> 0", "-0.001")),
    (lambda: Cosine(peak=math.nan, total_steps=10), ("peak", "finite", "nan")),
    (lambda: Constant(peak=math.inf), ("peak", "finite", "inf")),
    (lambda: Cosine(peak=1e-3, total_steps=0), ("total_steps", "[1, ∞]", "0")),
    (lambda: Cosine(peak=1e-3, total_steps=10.5), ("total_steps", "integer", "10.5")),  # type: ignore[arg-type]
    (lambda: Cosine(peak=1e-3, total_steps=100, warmup_steps=150), ("warmup_steps", "[0, 100]", "150")),
    (lambda: Linear(peak=1e-3, total_steps=100, warmup_steps=-1), ("warmup_steps", "[0, 100]", "-1")),
    (lambda: Cosine(peak=1e-3, total_steps=100, warmup_steps=60, hold_steps=50), ("hold_steps", "[0, 40]", "50")),
    (lambda: Cosine(peak=1e-3, total_steps=100, floor=2e-3), ("floor", "peak=0.001", "0.002")),
    (lambda: Cosine(peak=1e-3, total_steps=100, floor_ratio=1.5), ("floor_ratio", "[0.0, 1.0]", "1.5")),
    (lambda: Cosine(peak=1e-3, total_steps=100, floor=1e-4, floor_ratio=0.1), ("floor", "floor_ratio", "not both")),
    (lambda: Cosine(peak=1e-3, total_steps=100, warmup_start=2e-3), ("warmup_start", "[0.0, 0.001]", "0.002")),
    (
        lambda: Cosine(peak=1e-3, total_steps=100, warmup_shape="cosin"),
        ("warmup_shape", "did you mean 'cosine'", "cosin"),
    ),
    (lambda: Polynomial(peak=1e-3, total_steps=100, power=0.0), ("power", "> 0", "0.0")),
    (lambda: Exponential(peak=1e-3, gamma=1.5), ("gamma", "(0.0, 1.0]", "1.5")),
    (lambda: Exponential(peak=1e-3, gamma=0.0), ("gamma", "(0.0, 1.0]", "0.0")),
    (lambda: StepDecay(peak=1e-3, factor=0.0, milestones=(10,)), ("factor", "(0.0, 1.0]", "0.0")),
    (lambda: StepDecay(peak=1e-3, factor=2.0, milestones=(10,)), ("factor", "(0.0, 1.0]", "2.0")),
    (lambda: StepDecay(peak=1e-3, milestones=(20, 10)), ("milestones", "increasing", "(20, 10)")),
    (lambda: StepDecay(peak=1e-3, milestones=(0.5,)), ("milestones", "total_steps", "0.5")),
    (lambda: StepDecay(peak=1e-3, milestones=(5,), warmup_steps=10), ("milestones", "warmup_steps=10", "(5,)")),
    (lambda: StepDecay(peak=1e-3, milestones=(5,), every=3), ("milestones", "every", "not both")),
    (lambda: WSD(peak=1e-3, total_steps=100, warmup_steps=95, decay_steps=10), ("decay_steps", "[1, 5]", "10")),
    (lambda: WSD(peak=1e-3, total_steps=100, decay_shape="exp"), ("decay_shape='exp'", "floor", "> 0")),
    (lambda: WSD(peak=1e-3, total_steps=100, decay_fraction=0.0), ("decay_fraction", "(0.0, 1.0]", "0.0")),
    # the decay's length from the fraction the user gave: named as that, not as a decay_steps never written
    (
        lambda: WSD(peak=1e-3, total_steps=100, warmup_steps=95),
        ("decay_fraction=0.1", "10 decay steps", "warmup_steps=95 leaves 5", "(0, 0.05]", "decay_steps in [1, 5]"),
    ),
    # a warmup as long as the run leaves no decay: was "decay_steps must be an integer in [1, 0], got 10"
    (lambda: WSD(peak=1e-3, total_steps=100, warmup_steps=100), ("warmup_steps", "[0, 99]", "100")),
    # both lengths: decay_fraction was silently ignored
    (
        lambda: WSD(peak=1e-3, total_steps=100, decay_steps=10, decay_fraction=0.5),
        ("decay_steps=10", "decay_fraction=0.5", "not both"),
    ),
    (lambda: CosineRestarts(peak=1e-3, period=0), ("period", "> 0", "0")),
    (lambda: CosineRestarts(peak=1e-3, period=10, period_mult=0.5), ("period_mult", "[1.0", "0.5")),
    (lambda: CosineRestarts(peak=1e-3, period=10, peak_decay=0.0), ("peak_decay", "(0.0, 1.0]", "0.0")),
    (lambda: Cyclic(low=1e-3, high=1e-4, up_steps=10), ("high", "low=0.001", "0.0001")),
    (
        lambda: Cyclic(low=1e-4, high=1e-3, up_steps=10, mode="triangle"),
        ("mode", "did you mean 'triangular'", "triangle"),
    ),
    (lambda: OneCycle(peak=1e-3, total_steps=100, pct_start=1.0), ("pct_start", "(0.0, 1.0)", "1.0")),
    (lambda: OneCycle(peak=1e-3, total_steps=2, pct_start=0.1), ("pct_start", "no steps", "total_steps=2")),
    (lambda: OneCycle(peak=1e-3, total_steps=100, convention="keras"), ("convention", "torch", "keras")),
    (lambda: Anneal(start=0.0, end=1.0, steps=10, shape="exp"), ("shape='exp'", "> 0", "start=0.0")),
    (lambda: Anneal(start=1.0, end=0.0, steps=0), ("steps", "> 0", "0")),
    (lambda: Join(segments=(Constant(peak=1.0),), boundaries=(5,)), ("boundar", "0 boundaries", "got 1")),
    # each bad element by its index: the messages said "boundaries[i]", "milestones[i]"
    (
        lambda: Join(segments=(Constant(peak=1.0), Constant(peak=2.0), Constant(peak=3.0)), boundaries=(5, -5)),
        ("boundaries[1] must be a finite number > 0", "-5"),
    ),
    (lambda: StepDecay(peak=1e-3, milestones=(10, 20.5)), ("milestones[1] must be an integer in [1, ∞]", "20.5")),
    # fractions with a 1.0 among them: was "milestones[i] must be an integer in [1, ∞], got 0.5"
    (
        lambda: StepDecay(peak=1e-3, milestones=(0.5, 1.0), total_steps=100),
        ("all steps (integers ≥ 1) or all fractions of total_steps in (0, 1)", "(0.5, 1.0)"),
    ),
    (
        lambda: Join(segments=(Constant(peak=1.0), Constant(peak=2.0), Constant(peak=3.0)), boundaries=(5, 5)),
        ("boundaries", "increasing", "[5.0, 5.0]"),
    ),
    (lambda: parse("cosin(peak=1e-3, total_steps=10)"), ("unknown schedule", "did you mean 'cosine'", "'cosin'")),
    (
        lambda: parse("cosine(peak=1e-3, total_step=10)"),
        ("unknown parameter", "did you mean 'total_steps'", "'total_step'"),
    ),
    (
        lambda: parse("cosine(peak=1e-3)"),
        (
            "missing",
            "total_steps",
        ),
    ),
    (lambda: parse("cosine(1e-3, 10)"), ("keyword arguments",)),
    (lambda: parse("cosine"), ("needs its parameters",)),
    (lambda: parse("cosine(peak=__import__('os'))"), ("unknown schedule '__import__'",)),
    (lambda: parse("cosine(peak=1e-3, total_steps=int('5'))"), ("unknown schedule 'int'",)),
    (lambda: parse("cosine(peak=1e-3, total_steps=x)"), ("strings need quotes", "total_steps='x'", "x unquoted")),
    (lambda: parse("cosine(peak=1e-3 * 2, total_steps=10)"), ("only numbers, quoted strings", "'0.001 * 2'")),
    (lambda: parse("wsd(peak=1e-3, total_steps=10, decay_shape=sqrt)"), ("wsd.decay_shape", "decay_shape='sqrt'")),
    (lambda: parse("cosine(peak=nan, total_steps=10)"), ("cosine: peak must be a finite number > 0, got nan",)),
    (lambda: parse("cosine(peak=1e-3, total_steps=10, floor=-inf)"), ("floor must be a finite number ≥ 0", "-inf")),
    (lambda: parse("rewarmup(base=cosine, at=5, steps=2)"), ("rewarmup.base: cosine needs its parameters",)),
    (
        lambda: Cosine(peak=1e-2, total_steps=100, warmup_steps=10, warmup_shape="exp"),
        ("cosine: warmup_shape='exp'", "warmup_start must be in (0, peak=0.01], got 0.0", "warmup_start=0.0001"),
    ),
    (lambda: parse("cosine(peak=1e-3,"), ("cannot parse",)),
    (lambda: parse({"peak": 1e-3}), ("'name' key",)),
    (lambda: parse('{"name": "cosine", "peak": 1e-3'), ("not valid JSON",)),
]


@pytest.mark.parametrize(("build", "fragments"), CASES, ids=[f[0] for _, f in CASES])
def test_bad_input_is_a_clear_value_error(build: Callable[[], Schedule], fragments: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as raised:  # noqa: PT011 - the fragments below are the match
        build()
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("step", [-1, -0.5, math.nan, math.inf])
def test_bad_steps_are_rejected(step: float) -> None:
    schedule = Cosine(peak=1e-3, total_steps=10)
    with pytest.raises(ValueError, match="step must be a finite number ≥ 0"):
        schedule(step)
    with pytest.raises(ValueError, match="steps must be finite numbers ≥ 0"):
        schedule.values([0, step])


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(ValueError, match="peak"):
        Constant(peak=True)
