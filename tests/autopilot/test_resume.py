"""`RampStates`: snapshots along a real range-test ramp (the digits MLP and its AdamW), and the run
going on from the right one."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from lrpilot.autopilot._resume import WINDOW, RampStates
from lrpilot.tasks import get_task, make_optimizer
from lrpilot.tasks._base import Task


def _ramp(task: Task, states: RampStates, lrs: np.ndarray, offset: int = 0) -> list[dict[str, torch.Tensor]]:
    """Train one step per LR of the ramp (from point `offset`), capturing after each; the weights
    after every step."""
    model, optimizer = states.model, states.optimizer
    batches = task.batches(0)
    weights = []
    for point, lr in enumerate(lrs, start=offset):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad(set_to_none=True)
        task.loss(model, next(batches)).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        states.capture(point, float(lr))
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return weights


@pytest.fixture
def digits() -> Task:
    return get_task("digits")


def _states(task: Task, steps: int, decades: float) -> RampStates:
    model = task.build_model(0)
    return RampStates(model, make_optimizer(model, task.recipe, 1.0), steps=steps, decades=decades)


def test_resume_puts_back_the_last_state_at_or_below_the_peak_and_skips_the_warmup_below_it(digits: Task) -> None:
    lrs = np.geomspace(1e-5, 1e-1, 51)  # 12.5 steps a decade
    states = _states(digits, 51, 4.0)
    weights = _ramp(digits, states, lrs)
    peak = float(lrs[30] * 1.05)  # between ramp points 30 and 31
    schedule = digits.recipe.schedule(peak)
    with torch.no_grad():  # whatever the model holds now (the finder restores its start) is replaced
        for p in states.model.parameters():
            p.zero_()
    start = states.start_step(peak, schedule, digits.recipe.warmup_steps)  # asks, changes nothing
    assert all(not p.any() for p in states.model.parameters())
    weights_only = len(list(states.model.parameters())) + len(list(states.model.buffers()))
    assert all(len(snap.tensors) == weights_only for snap in states._kept)  # not Adam's moments
    resumed = states.resume(peak, schedule, digits.recipe.warmup_steps)
    assert resumed is not None
    assert (resumed.ramp_steps, resumed.ramp_lr) == (31, pytest.approx(lrs[30]))
    for name, p in states.model.named_parameters():
        assert torch.equal(p, weights[30][name])
    warmup = [float(schedule(t)) for t in range(digits.recipe.warmup_steps)]
    assert resumed.start_step == sum(lr <= lrs[30] for lr in warmup) == start
    assert 0 < resumed.start_step < digits.recipe.warmup_steps
    assert float(schedule(resumed.start_step)) > lrs[30]  # the LR goes on rising from the ramp's
    assert "after 31 ramp steps" in resumed.note()


def test_no_state_at_or_below_the_peak_or_no_step_to_save_means_a_run_from_scratch(digits: Task) -> None:
    lrs = np.geomspace(1e-5, 1e-1, 51)
    states = _states(digits, 51, 4.0)
    _ramp(digits, states, lrs)
    before = {n: p.detach().clone() for n, p in states.model.named_parameters()}
    # only the last WINDOW decades are kept: a peak under them has no state to go on from
    assert states.resume(1e-5, digits.recipe.schedule(1e-5), digits.recipe.warmup_steps) is None
    for name, p in states.model.named_parameters():
        assert torch.equal(p, before[name])
    again = _states(digits, 51, 4.0)
    _ramp(digits, again, lrs)
    peak = float(lrs[40])
    no_warmup = dataclasses.replace(digits.recipe, warmup_steps=0).schedule(peak)  # nothing to replace
    assert again.resume(peak, no_warmup, 0) is None


def test_only_the_last_window_of_the_ramp_is_kept_in_recycled_memory(digits: Task) -> None:
    states = _states(digits, 51, 4.0)
    lrs = np.geomspace(1e-5, 1e-1, 51)
    _ramp(digits, states, lrs[:1])
    first = states._kept[0].tensors
    _ramp(digits, states, lrs[1:], offset=1)
    window = math.ceil(WINDOW * 51 / 4.0)
    assert [snap.point for snap in states._kept] == list(range(51 - window, 51))
    # the first snapshot's memory went to point `window + 1` when it fell out, and on to `2 * window + 2`
    assert [snap.point for snap in states._kept if snap.tensors[0] is first[0]] == [2 * window + 2]


def test_snapshots_are_spaced_out_to_fit_the_memory_share_or_not_taken(digits: Task) -> None:
    lrs = np.geomspace(1e-5, 1e-1, 51)
    spaced = _states(digits, 51, 4.0)
    weights = sum(p.numel() * 4 for p in spaced.model.parameters())
    spaced._budget = 4 * weights + 1000  # four snapshots of the weights (not Adam's moments)
    _ramp(digits, spaced, lrs)
    window = math.ceil(WINDOW * 51 / 4.0)
    assert spaced.every == math.ceil(window / 4)
    assert len(spaced._kept) <= math.ceil(window / spaced.every)
    assert all(snap.point % spaced.every == 0 for snap in spaced._kept)
    none = _states(digits, 51, 4.0)
    none._budget = 10
    _ramp(digits, none, lrs)
    assert none.every == 0
    assert not none._kept
    assert none.resume(float(lrs[30]), digits.recipe.schedule(float(lrs[30])), digits.recipe.warmup_steps) is None


def test_a_warmup_longer_than_the_ramp_is_replaced_only_up_to_the_ramps_step_count(digits: Task) -> None:
    """A 40-step warmup and a ramp that reaches the peak in 31 steps: the run goes on from the
    last state whose LR the warmup reaches no sooner than the ramp did, not from the peak."""
    lrs = np.geomspace(1e-5, 1e-1, 51)
    states = _states(digits, 51, 4.0)
    _ramp(digits, states, lrs)
    peak = float(lrs[30] * 1.05)
    long_warmup = dataclasses.replace(digits.recipe, total_steps=1000, warmup_steps=40)
    schedule = long_warmup.schedule(peak)
    resumed = states.resume(peak, schedule, 40)
    assert resumed is not None
    assert resumed.start_step <= resumed.ramp_steps < 31
    later = float(lrs[resumed.ramp_steps])  # the next state's LR needs more warmup steps than its ramp took
    assert sum(float(schedule(t)) <= later for t in range(40)) > resumed.ramp_steps + 1
