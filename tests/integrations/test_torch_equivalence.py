"""lrpilot schedules against torch's own schedulers, every step of long runs, in float64.

Each case runs the torch scheduler and `LRPilotScheduler` side by side on float64 params. The adapter
must equal the pure function bit for bit; the pure function must equal torch's LRs within the
case's stated tolerance. torch's closed-form schedulers (CyclicLR, CosineAnnealingWarmRestarts)
match exactly. Its recursive ones (``get_lr`` reads the previous ``group["lr"]``) accumulate one
rounding per step, so they match to a tolerance that grows with the run length; each tolerance is
about 3× the largest relative error measured on these runs (torch 2.13, CPU), with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tl

from lrpilot.integrations.torch import LRPilotScheduler
from lrpilot.schedules import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    Linear,
    OneCycle,
    Polynomial,
    Schedule,
    StepDecay,
)

EPS = float(np.finfo(np.float64).eps)
PEAK = 0.1


@dataclass(frozen=True)
class Case:
    name: str
    torch_scheduler: Callable[[torch.optim.Optimizer], tl.LRScheduler]
    schedule: Schedule
    steps: int
    rtol: float
    atol: float = 0.0
    why: str = ""


CASES = [
    Case(
        "CosineAnnealingLR",
        lambda o: tl.CosineAnnealingLR(o, T_max=10_000),
        Cosine(peak=PEAK, total_steps=10_000),
        10_001,
        rtol=1e-12,
        why="torch multiplies by (1 + cos x_t) / (1 + cos x_{t-1}) every step; near T_max that ratio of two "
        "small numbers is ill-conditioned (measured 3.9e-13 at step 9962, where the LR is 1e-4 × peak)",
    ),
    Case(
        "CosineAnnealingLR eta_min",
        lambda o: tl.CosineAnnealingLR(o, T_max=10_000, eta_min=1e-4),
        Cosine(peak=PEAK, total_steps=10_000, floor=1e-4),
        10_001,
        rtol=2e-13,
        why="the same recursion, better conditioned away from 0 (measured 4.7e-14)",
    ),
    Case(
        "OneCycleLR cos",
        lambda o: tl.OneCycleLR(o, max_lr=PEAK, total_steps=10_000, cycle_momentum=False),
        OneCycle(peak=PEAK, total_steps=10_000),
        10_000,
        rtol=1e-14,
        why="closed form in torch too; only the association of end + (start - end) / 2 * (1 + cos) differs "
        "(measured 3.7e-15)",
    ),
    Case(
        "OneCycleLR cos three_phase",
        lambda o: tl.OneCycleLR(o, max_lr=PEAK, total_steps=10_000, three_phase=True, cycle_momentum=False),
        OneCycle(peak=PEAK, total_steps=10_000, three_phase=True),
        10_000,
        rtol=1e-14,
        why="as above (measured 3.7e-15)",
    ),
    Case(
        "OneCycleLR linear",
        lambda o: tl.OneCycleLR(o, max_lr=PEAK, total_steps=10_000, anneal_strategy="linear", cycle_momentum=False),
        OneCycle(peak=PEAK, total_steps=10_000, anneal="linear"),
        10_000,
        rtol=1e-14,
        atol=EPS * PEAK,
        why="torch's (end - start) * pct + start is off by up to ~1 ulp of the peak, which is a relative "
        "6e-12 at the last step (LR 4e-7 = 4e-6 × peak); lrpilot's weights make both ends exact. So: 1 ulp "
        "of the peak absolute (measured 0.62 eps × peak)",
    ),
    Case(
        "OneCycleLR linear three_phase",
        lambda o: tl.OneCycleLR(
            o,
            max_lr=PEAK,
            total_steps=7777,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            three_phase=True,
            anneal_strategy="linear",
            cycle_momentum=False,
        ),
        OneCycle(
            peak=PEAK,
            total_steps=7777,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            three_phase=True,
            anneal="linear",
        ),
        7777,
        rtol=1e-14,
        atol=EPS * PEAK,
        why="as above (measured 1.2e-14 relative, 0.62 eps × peak absolute)",
    ),
    *[
        Case(
            f"CyclicLR {mode}",
            lambda o, mode=mode: tl.CyclicLR(
                o, base_lr=1e-3, max_lr=PEAK, step_size_up=200, mode=mode, gamma=0.9995, cycle_momentum=False
            ),
            Cyclic(low=1e-3, high=PEAK, up_steps=200, mode=mode, gamma=0.9995 if mode == "exp_range" else 1.0),
            10_000,
            rtol=1e-12,
            atol=EPS * PEAK,
            why="torch computes the position in the cycle as 1 + t/total - cycle, lrpilot as "
            "(t - (cycle-1)·total)/total (exact in float32 under jit too): measured ≤ 4.9e-13 relative",
        )
        for mode in ("triangular", "triangular2", "exp_range")
    ],
    Case(
        "CyclicLR asymmetric",
        lambda o: tl.CyclicLR(o, base_lr=1e-3, max_lr=PEAK, step_size_up=150, step_size_down=350, cycle_momentum=False),
        Cyclic(low=1e-3, high=PEAK, up_steps=150, down_steps=350),
        10_000,
        rtol=1e-12,
        atol=EPS * PEAK,
        why="as above",
    ),
    Case(
        "CosineAnnealingWarmRestarts T_mult=1",
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=300, T_mult=1, eta_min=1e-4),
        CosineRestarts(peak=PEAK, period=300, floor=1e-4),
        10_000,
        rtol=0.0,
        why="torch counts T_cur in integers and evaluates the cosine in closed form: bit-identical",
    ),
    Case(
        "CosineAnnealingWarmRestarts T_mult=2",
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=50, T_mult=2, eta_min=1e-4),
        CosineRestarts(peak=PEAK, period=50, period_mult=2.0, floor=1e-4),
        10_000,
        rtol=0.0,
        why="lrpilot's closed-form cycle index lands on the same integer steps: bit-identical",
    ),
    Case(
        "StepLR",
        lambda o: tl.StepLR(o, step_size=30, gamma=0.7),
        StepDecay(peak=PEAK, factor=0.7, every=30),
        10_000,
        rtol=4e-15,
        why="torch multiplies the previous LR by gamma at each decay (one rounding each), lrpilot takes "
        "gamma ** k once (measured 1.1e-15 after 333 decays)",
    ),
    Case(
        "MultiStepLR",
        lambda o: tl.MultiStepLR(o, milestones=[1000, 2500, 4000, 7000], gamma=0.3),
        StepDecay(peak=PEAK, factor=0.3, milestones=(1000, 2500, 4000, 7000)),
        10_000,
        rtol=1e-15,
        why="one rounding per milestone, as above (measured 1.3e-16)",
    ),
    Case(
        "ExponentialLR",
        lambda o: tl.ExponentialLR(o, gamma=0.9995),
        Exponential(peak=PEAK, gamma=0.9995),
        10_000,
        rtol=2e-14,
        why="10 000 recursive multiplications by gamma; their roundings random-walk (measured 6.1e-15)",
    ),
    *[
        Case(
            f"PolynomialLR power={power}",
            lambda o, power=power: tl.PolynomialLR(o, total_iters=10_000, power=power),
            Polynomial(peak=PEAK, total_steps=10_000, power=power),
            10_001,
            rtol=rtol,
            why=f"torch multiplies by ((1 - t/T) / (1 - (t-1)/T)) ** power every step (measured {measured})",
        )
        for power, rtol, measured in ((1.0, 4e-13, "1.2e-13"), (2.0, 5e-14, "1.6e-14"), (0.5, 2e-14, "7.1e-15"))
    ],
    Case(
        "LinearLR warmup",
        lambda o: tl.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=2000),
        Constant(peak=PEAK, warmup_steps=2000, warmup_start=0.01 * PEAK, warmup_offset=0),
        5000,
        rtol=2e-14,
        why="torch multiplies by 1 + (end - start) / (T * start + (t - 1) * (end - start)) every step "
        "(measured 7.0e-15)",
    ),
    Case(
        "LinearLR decay",
        lambda o: tl.LinearLR(o, start_factor=1.0, end_factor=0.001, total_iters=10_000),
        Linear(peak=PEAK, total_steps=10_000, floor_ratio=0.001),
        10_001,
        rtol=4e-13,
        why="the same recursion over 10 000 steps down to 1e-3 × peak (measured 1.25e-13)",
    ),
]


def torch_lrs(case: Case) -> np.ndarray:
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=PEAK)
    scheduler = case.torch_scheduler(opt)
    opt.step()  # torch warns if its scheduler steps before the optimizer ever has
    out = []
    for _ in range(case.steps):
        out.append(opt.param_groups[0]["lr"])
        scheduler.step()
    return np.array(out)


def adapter_lrs(schedule: Schedule, steps: int) -> np.ndarray:
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=1.0)
    scheduler = LRPilotScheduler(opt, schedule)
    opt.step()  # it warns as torch does if it steps before the optimizer ever has
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        scheduler.step()
    return np.array(out)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_torch_at_every_step(case: Case) -> None:
    ours = np.array([case.schedule(t) for t in range(case.steps)])
    np.testing.assert_array_equal(adapter_lrs(case.schedule, case.steps), ours)  # the adapter adds nothing
    expected = torch_lrs(case)
    if case.rtol == 0.0 and case.atol == 0.0:
        np.testing.assert_array_equal(ours, expected, err_msg=case.why)
    else:
        np.testing.assert_allclose(ours, expected, rtol=case.rtol, atol=case.atol, err_msg=case.why)


def test_the_tolerances_are_tight() -> None:
    """No case may pass with a tolerance looser than float64 rounding over the run can explain."""
    for case in CASES:
        assert case.rtol <= 1e-12, case.name
        assert case.atol <= EPS * PEAK, case.name
        assert case.why, case.name
