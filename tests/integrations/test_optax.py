"""`to_optax` against optax's own schedules (float64, every step of long runs) and in real optax updates."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lrpilot.schedules import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    Join,
    Linear,
    OneCycle,
    Polynomial,
    Rewarmup,
    Schedule,
    StepDecay,
)

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

from lrpilot.integrations.optax import OptaxSchedule, to_optax  # noqa: E402 -- needs jax, skipped above

EPS = float(np.finfo(np.float64).eps)
P = 1e-3
N = 10_000

# Both sides of every comparison below are compiled by XLA, which rewrites x / c as x * (1 / c) and
# fuses a * b + c into FMAs; the Python path (`schedule(t)`) does neither. The two land within
# ~1.5 ulp of the peak of each other (measured ≤ 1.46 eps × peak), a large *relative* error only where
# the LR is far below the peak (e.g. 1.8e-12 relative at 1e-5 × peak). So the default tolerance is
# 2 ulp of the peak, absolute, plus 1e-14 relative.
ATOL = 2 * EPS * P
RTOL = 1e-14
# In float32 (jax's default) the same holds with float32's eps: within 2 ulp of the peak.
F32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Case:
    name: str
    reference: Callable[[Any], Any]
    schedule: Schedule
    steps: int = N + 1
    rtol: float = RTOL
    atol: float = ATOL
    why: str = "XLA's reciprocal and FMA rounding, see ATOL"


CASES = [
    Case(
        "warmup_cosine_decay_schedule",
        optax.warmup_cosine_decay_schedule(0.0, P, 500, N, end_value=1e-5),
        Cosine(peak=P, total_steps=N, warmup_steps=500, warmup_offset=0, floor=1e-5),
    ),
    Case(
        "warmup_cosine_decay_schedule init_value>0",
        optax.warmup_cosine_decay_schedule(1e-5, P, 500, N),
        Cosine(peak=P, total_steps=N, warmup_steps=500, warmup_offset=0, warmup_start=1e-5),
    ),
    Case(
        "cosine_decay_schedule",
        optax.cosine_decay_schedule(P, N, alpha=0.1),
        Cosine(peak=P, total_steps=N, floor_ratio=0.1),
    ),
    Case("linear_schedule decay", optax.linear_schedule(P, 1e-5, N), Linear(peak=P, total_steps=N, floor=1e-5)),
    Case(
        "linear_schedule transition_begin",
        optax.linear_schedule(P, 0.0, 8000, transition_begin=2000),
        Linear(peak=P, total_steps=N, hold_steps=2000),
    ),
    Case(
        "linear_schedule warmup",
        optax.linear_schedule(0.0, P, 3000),
        Constant(peak=P, warmup_steps=3000, warmup_offset=0),
    ),
    Case(
        "polynomial_schedule power=2",
        optax.polynomial_schedule(P, 1e-6, 2.0, N),
        Polynomial(peak=P, total_steps=N, power=2.0, floor=1e-6),
    ),
    Case(
        "polynomial_schedule power=3 transition_begin",
        optax.polynomial_schedule(P, 1e-6, 3.0, 7000, transition_begin=1000),
        Polynomial(peak=P, total_steps=8000, power=3.0, floor=1e-6, hold_steps=1000),
    ),
    Case(
        "polynomial_schedule power=0.5",
        optax.polynomial_schedule(P, 0.0, 0.5, N),
        Polynomial(peak=P, total_steps=N, power=0.5),
        steps=N,  # optax gives NaN at count == N under jit in float64: see the test below
        rtol=1e-12,
        atol=0.0,
        why="sqrt(1 - p) magnifies the rounding of 1 - p near the end (measured 1.8e-13 relative, 8 eps × peak)",
    ),
    Case(
        "exponential_decay",
        optax.exponential_decay(P, 100, 0.95),
        Exponential(peak=P, gamma=0.95, every=100),
        rtol=0.0,
        atol=0.0,
        why="the same init * rate ** (count / steps): bit-identical",
    ),
    Case(
        "exponential_decay end_value",
        optax.exponential_decay(P, 1, 0.999, end_value=1e-5),
        Exponential(peak=P, gamma=0.999, floor=1e-5),
        rtol=0.0,
        atol=0.0,
        why="bit-identical",
    ),
    Case(
        "exponential_decay staircase",
        optax.exponential_decay(P, 100, 0.9, staircase=True, end_value=1e-6),
        Exponential(peak=P, gamma=0.9, every=100, staircase=True, floor=1e-6),
        rtol=0.0,
        atol=0.0,
        why="bit-identical",
    ),
    Case(
        "cosine_onecycle_schedule",
        optax.cosine_onecycle_schedule(N, P),
        OneCycle(peak=P, total_steps=N, convention="optax"),
    ),
    Case(
        "cosine_onecycle_schedule custom",
        optax.cosine_onecycle_schedule(7777, P, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
        OneCycle(peak=P, total_steps=7777, pct_start=0.25, div_factor=10.0, final_div_factor=100.0, convention="optax"),
        steps=7778,
    ),
    Case(
        "join_schedules warmup, constant, cosine",
        optax.join_schedules(
            [optax.linear_schedule(0.0, P, 200), optax.constant_schedule(P), optax.cosine_decay_schedule(P, 3000, 0.1)],
            [200, 5000],
        ),
        Join(
            (
                Constant(peak=P, warmup_steps=200, warmup_offset=0),
                Constant(peak=P),
                Cosine(peak=P, total_steps=3000, floor_ratio=0.1),
            ),
            boundaries=(200, 5000),
        ),
    ),
    Case(
        "join_schedules of warmup-cosines and an exponential",
        optax.join_schedules(
            [
                optax.warmup_cosine_decay_schedule(0.0, P, 100, 3000),
                optax.warmup_cosine_decay_schedule(0.0, P / 2, 100, 3000, end_value=1e-6),
                optax.exponential_decay(P / 4, 100, 0.9),
            ],
            [3000, 6000],
        ),
        Join(
            (
                Cosine(peak=P, total_steps=3000, warmup_steps=100, warmup_offset=0),
                Cosine(peak=P / 2, total_steps=3000, warmup_steps=100, warmup_offset=0, floor=1e-6),
                Exponential(peak=P / 4, gamma=0.9, every=100),
            ),
            boundaries=(3000, 6000),
        ),
    ),
]


def jit_values(fn: Callable[[Any], Any], steps: int) -> np.ndarray:
    return np.asarray(jax.jit(jax.vmap(fn))(jnp.arange(steps)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_optax_at_every_step_in_float64(case: Case) -> None:
    with jax.enable_x64(True):
        expected = jit_values(case.reference, case.steps)
        ours = jit_values(to_optax(case.schedule), case.steps)
    assert ours.dtype == np.float64
    scalar = np.array([case.schedule(t) for t in range(case.steps)])
    np.testing.assert_allclose(ours, expected, rtol=case.rtol, atol=case.atol, err_msg=case.why)
    # and the jitted jax.numpy path agrees with the Python path as closely
    tol = {"rtol": case.rtol, "atol": case.atol} if case.rtol or case.atol else {"rtol": RTOL, "atol": ATOL}
    np.testing.assert_allclose(ours, scalar, **tol)


def test_optax_polynomial_with_a_fractional_power_is_nan_at_its_end_under_jit() -> None:
    """Why the power=0.5 case stops one step early: XLA computes optax's `1 - count / N` as
    fma(-count, 1/N, 1) = -5e-17 at count == N, and (-5e-17) ** 0.5 is NaN. lrpilot clips the
    progress at 1 before subtracting, so its last value is the floor."""
    with jax.enable_x64(True):
        theirs = jax.jit(optax.polynomial_schedule(P, 0.0, 0.5, N))(N)
        ours = jax.jit(to_optax(Polynomial(peak=P, total_steps=N, power=0.5)))(N)
    assert np.isnan(theirs)
    assert float(ours) == 0.0


def test_linear_onecycle_schedule_is_three_phase_unlike_convention_optax() -> None:
    """optax's linear_onecycle_schedule comes back down to peak / div at pct_final=0.85 before the
    final decay; the two-phase linear one-cycle is optax's piecewise_interpolate_schedule, which
    convention="optax" matches, as OneCycle's docstring says."""
    schedule = OneCycle(peak=P, total_steps=N, anneal="linear", convention="optax")
    piecewise = optax.piecewise_interpolate_schedule("linear", P / 25.0, {3000: 25.0, N: 1.0 / (25.0 * 1e4)})
    with jax.enable_x64(True):
        ours = jit_values(to_optax(schedule), N + 1)
        np.testing.assert_allclose(ours, jit_values(piecewise, N + 1), rtol=RTOL, atol=ATOL)
        three_phase = jit_values(optax.linear_onecycle_schedule(N, P), N + 1)
    assert np.max(np.abs(three_phase - ours)) > 0.1 * P


@pytest.mark.parametrize("kind", ["step_every", "staircase", "restarts"])
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_step_boundaries_under_jit_land_on_the_right_step(kind: str, x64: bool) -> None:
    period = 49 if x64 else 41  # periods whose reciprocal rounds down in that precision
    schedule = {
        "step_every": StepDecay(peak=P, factor=0.5, every=period),
        "staircase": Exponential(peak=P, gamma=0.5, every=period, staircase=True),
        "restarts": CosineRestarts(peak=P, period=period),
    }[kind]
    with jax.enable_x64(x64):
        ours = jit_values(to_optax(schedule), 3 * period)
    assert ours[period] == pytest.approx(schedule(period), rel=1e-6)


ALL_KINDS = [
    Cosine(peak=P, total_steps=1000, warmup_steps=100, floor_ratio=0.1),
    Polynomial(peak=P, total_steps=1000, power=1.5, hold_steps=100, warmup_steps=10, warmup_shape="cosine"),
    Constant(peak=P, warmup_steps=100, warmup_shape="1-sqrt"),
    InverseSqrt(peak=P, warmup_steps=100),
    StepDecay(peak=P, factor=0.5, milestones=(300, 600)),
    Cyclic(low=P / 10, high=P, up_steps=100, down_steps=300, mode="triangular2"),  # exp_range's gamma ** t is
    # 1e-5 off by t = 200 in float32 alone: 0.999 rounded to float32, raised to the 200th power
    CosineRestarts(peak=P, period=100, period_mult=2.0, peak_decay=0.8, total_steps=1000),
    OneCycle(peak=P, total_steps=1000, three_phase=True),
    Rewarmup(base=Linear(peak=P, total_steps=1000), at=400, steps=50),
]


@pytest.mark.parametrize("schedule", ALL_KINDS, ids=lambda s: s.name)
def test_every_kind_traces_under_jit_in_float32(schedule: Schedule) -> None:
    lr = to_optax(schedule)
    values = np.asarray(jax.jit(jax.vmap(lr))(jnp.arange(1000)))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, schedule.values(np.arange(1000)), rtol=F32, atol=2 * F32 * P)
    assert float(jax.jit(lr)(7)) == pytest.approx(schedule(7), rel=1e-6)
    assert float(lr(7)) == pytest.approx(schedule(7), rel=1e-6)  # eager, a plain int count


def test_a_real_optax_update_uses_the_schedule_at_every_step() -> None:
    """SGD on a loss with gradient 1: each update moves the parameter from 0 to exactly -lr(count)
    (the parameter restarts at 0 so that float32 subtraction loses nothing)."""
    schedule = Cosine(peak=0.1, total_steps=50, warmup_steps=5)
    optimizer = optax.sgd(learning_rate=to_optax(schedule))
    params = jnp.zeros(())
    state = optimizer.init(params)

    @jax.jit
    def step(params: Any, state: Any) -> tuple[Any, Any]:
        grads = jax.grad(lambda p: p)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for t in range(50):
        new, state = step(params, state)
        assert -float(new) == pytest.approx(schedule(t), rel=F32, abs=2 * F32 * 0.1)


def test_adamw_trains_and_inject_hyperparams_sees_the_schedule() -> None:
    schedule = Cosine(peak=0.1, total_steps=100, warmup_steps=10)
    optimizer = optax.inject_hyperparams(optax.adamw)(learning_rate=to_optax(schedule), weight_decay=1e-4)
    target = jnp.arange(4.0)
    params = jnp.zeros(4)
    state = optimizer.init(params)

    def loss(p: Any) -> Any:
        return jnp.sum((p - target) ** 2)

    @jax.jit
    def step(params: Any, state: Any) -> tuple[Any, Any, Any]:
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    seen = []
    for _ in range(100):
        params, state, _ = step(params, state)
        seen.append(float(state.hyperparams["learning_rate"]))
    # the LR of each update, as inject_hyperparams records it: schedule(0) for the first
    np.testing.assert_allclose(seen, [schedule(t) for t in range(100)], rtol=F32, atol=2 * F32 * 0.1)
    assert float(loss(params)) < 0.01 * float(loss(jnp.zeros(4)))
    assert optax.adamw(learning_rate=to_optax(schedule)) is not None  # the brief's form, accepted as is


def test_it_pickles_prints_and_rejects_non_schedules() -> None:
    lr = to_optax(Cosine(peak=P, total_steps=10))
    assert isinstance(lr, OptaxSchedule)
    assert pickle.loads(pickle.dumps(lr)) == lr
    assert "Cosine(peak=0.001, total_steps=10)" in repr(lr)
    with pytest.raises(TypeError, match="lrpilot Schedule"):
        to_optax(lambda count: 1e-3)  # type: ignore[arg-type]


def test_without_jax_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['jax'] = None; import lrpilot.integrations.optax"  # as if jax were not installed
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode != 0
    assert "pip install 'lrpilot[jax]'" in child.stderr


def test_past_2_to_the_24_float32_rounds_the_count_and_x64_keeps_it() -> None:
    """The documented limit: float32 holds every integer up to 2²⁴ only, so past it a milestone
    on an odd step lands a step early; under x64 each step is exact."""
    milestone = 2**24 + 1
    schedule = StepDecay(peak=P, factor=0.5, milestones=(milestone,))
    lr = to_optax(schedule)
    before = jnp.int32(milestone - 1)  # optax's count is an int32 array
    assert float(jax.jit(lr)(before)) == pytest.approx(schedule(milestone), rel=F32)  # a step early
    with jax.enable_x64(True):
        assert float(jax.jit(lr)(before)) == schedule(milestone - 1) == P
        assert float(jax.jit(lr)(jnp.int32(milestone))) == schedule(milestone)
