"""`LRPilotScheduler` on real torch optimizers: closed-form LRs, per-group scales, state and resume."""

from __future__ import annotations

import io
import json
import math
import pickle
import random
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrpilot.integrations.torch import LRPilotScheduler
from lrpilot.schedules import (
    WSD,
    Constant,
    Cosine,
    Cyclic,
    Join,
    Linear,
    OneCycle,
    Rewarmup,
    Schedule,
    StepDecay,
    to_json,
)
from tests.schedules.strategies import any_schedules

SCHEDULES: list[Schedule] = [
    Cosine(peak=3e-4, total_steps=2000, warmup_steps=100, floor_ratio=0.1),
    WSD(peak=1e-3, total_steps=2000, warmup_steps=50, decay_fraction=0.2, floor=1e-5),
    OneCycle(peak=0.1, total_steps=2000, three_phase=True),
    Cyclic(low=1e-4, high=1e-2, up_steps=150, down_steps=250, mode="triangular2"),
    StepDecay(peak=0.1, factor=0.5, milestones=(0.3, 0.6, 0.9), total_steps=2000, warmup_steps=20),
    Join((Constant(peak=1e-3, warmup_steps=30), Linear(peak=1e-3, total_steps=500)), boundaries=(1200,)),
    Rewarmup(base=Cosine(peak=1e-3, total_steps=2000), at=800, steps=50),
]


def optimizer(groups: int = 1, lr: float = 1.0) -> torch.optim.Optimizer:
    """SGD over `groups` param groups of float64 params (the LRs are Python floats either way)."""
    params = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def run(scheduler: LRPilotScheduler, steps: int) -> list[list[float]]:
    """The LRs the optimizer holds for each of `steps` updates (read before the update)."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_every_step_is_the_pure_function_bit_for_bit(schedule: Schedule) -> None:
    scheduler = LRPilotScheduler(optimizer(), schedule)
    lrs = run(scheduler, 2000)
    assert [row[0] for row in lrs] == [schedule(t) for t in range(2000)]
    assert scheduler.last_epoch == 2000
    assert scheduler.get_last_lr() == [schedule(2000)]


def test_the_groups_hold_step_0_as_soon_as_it_is_built() -> None:
    schedule = Cosine(peak=1e-3, total_steps=100, warmup_steps=10)
    opt = optimizer(2)
    scheduler = LRPilotScheduler(opt, schedule)
    assert [g["lr"] for g in opt.param_groups] == [schedule(0), schedule(0)]
    assert scheduler.get_last_lr() == [schedule(0), schedule(0)]
    assert scheduler.get_lr() == [schedule(0), schedule(0)]
    assert scheduler.last_epoch == 0


def test_it_is_a_torch_lr_scheduler_with_torch_attributes() -> None:
    opt = optimizer(lr=0.5)
    scheduler = LRPilotScheduler(opt, Constant(peak=1e-3))
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    assert scheduler.optimizer is opt
    assert scheduler.base_lrs == [0.5]  # what the group held before the schedule took over


def test_outside_edits_of_the_lr_do_not_compound() -> None:
    schedule = Cosine(peak=1e-3, total_steps=200, warmup_steps=20)
    opt = optimizer()
    scheduler = LRPilotScheduler(opt, schedule)
    opt.step()
    for t in range(1, 100):
        opt.param_groups[0]["lr"] *= 10.0  # e.g. a callback that scales the LR for one step
        scheduler.step()
        assert opt.param_groups[0]["lr"] == schedule(t)


def test_torch_recursive_schedulers_do_compound_outside_edits() -> None:
    """The contrast: torch's CosineAnnealingLR reads group["lr"] back, so one edit shifts every later LR."""
    opt = optimizer(lr=1e-3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200)
    opt.step()
    cosine.step()
    opt.param_groups[0]["lr"] *= 10.0
    for _ in range(10):
        opt.step()
        cosine.step()
    assert opt.param_groups[0]["lr"] > 5 * Cosine(peak=1e-3, total_steps=200)(11)


def test_per_group_scales_multiply_the_schedule() -> None:
    schedule = Cosine(peak=2e-4, total_steps=300, warmup_steps=30)
    scales = [1.0, 16.0, 0.5]  # e.g. LoRA+ (B at 16× A) and a frozen-ish embedding group
    scheduler = LRPilotScheduler(optimizer(3), schedule, scales=scales)
    for t, row in enumerate(run(scheduler, 300)):
        assert row == [schedule(t) * s for s in scales]
    assert scheduler.scales == (1.0, 16.0, 0.5)


def test_one_schedule_per_group() -> None:
    a = Cosine(peak=1e-3, total_steps=300, warmup_steps=30)
    b = Linear(peak=5e-4, total_steps=300)
    scheduler = LRPilotScheduler(optimizer(2), [a, b], scales=[1.0, 2.0])
    for t, row in enumerate(run(scheduler, 300)):
        assert row == [a(t), b(t) * 2.0]
    assert scheduler.schedule == (a, b)
    assert scheduler.state_dict()["schedule"] == [a.to_dict(), b.to_dict()]


def test_tensor_lrs_stay_tensors() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01), foreach=False)
    schedule = Linear(peak=1e-2, total_steps=10)
    scheduler = LRPilotScheduler(opt, schedule)
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    model(torch.ones(2)).sum().backward()
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] is lr  # filled in place, as torch does for tensor LRs
    assert float(lr) == pytest.approx(schedule(1), rel=1e-6)  # float32 storage


def test_step_with_an_explicit_step_jumps_there_exactly() -> None:
    schedule = OneCycle(peak=0.1, total_steps=1000)
    scheduler = LRPilotScheduler(optimizer(), schedule)
    scheduler.step(700)
    assert scheduler.get_last_lr() == [schedule(700)]
    scheduler.step()
    assert scheduler.get_last_lr() == [schedule(701)]
    assert scheduler.lrs_at(5) == [schedule(5)]


def test_start_step_resumes_from_a_global_step_alone() -> None:
    schedule = Cosine(peak=1e-3, total_steps=500, warmup_steps=50)
    scheduler = LRPilotScheduler(optimizer(), schedule, start_step=321)
    assert [row[0] for row in run(scheduler, 100)] == [schedule(t) for t in range(321, 421)]


def test_it_pickles_with_its_optimizer() -> None:
    schedule = Cosine(peak=1e-3, total_steps=500, warmup_steps=50)
    scheduler = LRPilotScheduler(optimizer(), schedule)
    run(scheduler, 7)
    clone = pickle.loads(pickle.dumps(scheduler))
    assert clone.last_epoch == 7
    assert clone.schedule == schedule
    assert [row[0] for row in run(clone, 5)] == [schedule(t) for t in range(7, 12)]
    assert "step=7" in repr(scheduler)


def test_state_dict_is_plain_and_loads_with_weights_only() -> None:
    schedule = WSD(peak=1e-3, total_steps=1000, warmup_steps=10, floor_ratio=0.1)
    scheduler = LRPilotScheduler(optimizer(2), schedule, scales=[1.0, 4.0])
    run(scheduler, 42)
    state = scheduler.state_dict()
    assert state == {"step": 42, "schedule": schedule.to_dict(), "scales": [1.0, 4.0]}
    json.dumps(state)  # nothing but JSON types
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == state


def test_a_schedule_built_from_numpy_numbers_resumes_through_weights_only() -> None:
    """``total_steps=np.ceil(n / batch).astype(int) * epochs`` kept an ``np.int64`` in the spec,
    and ``torch.load(weights_only=True)``, which the Hugging Face Trainer resumes with, refused the
    scheduler's checkpoint."""
    import numpy as np

    schedule = Cosine(peak=np.float32(3e-4), total_steps=np.ceil(1000 / 32).astype(int) * 3, warmup_steps=np.int64(9))
    scheduler = LRPilotScheduler(optimizer(1), schedule)
    run(scheduler, 5)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    resumed = LRPilotScheduler(optimizer(1), schedule)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_load_state_dict_restores_the_step_and_the_lrs_at_once() -> None:
    schedule = Cosine(peak=1e-3, total_steps=1000, warmup_steps=100)
    source = LRPilotScheduler(optimizer(), schedule)
    run(source, 250)
    opt = optimizer()
    target = LRPilotScheduler(opt, schedule)
    target.load_state_dict(source.state_dict())
    assert target.last_epoch == 250
    assert opt.param_groups[0]["lr"] == schedule(250)  # before any step()
    assert run(target, 300) == run(source, 300)


def test_loading_a_checkpoint_of_another_schedule_warns_with_both_specs() -> None:
    """OneTrainer #1604: a schedule rebuilt with another length after resuming made the LR rise."""
    saved = Cosine(peak=1e-3, total_steps=1000, warmup_steps=100)
    rebuilt = Cosine(peak=1e-3, total_steps=2000, warmup_steps=100)
    source = LRPilotScheduler(optimizer(), saved)
    run(source, 500)
    target = LRPilotScheduler(optimizer(), rebuilt)
    with pytest.warns(UserWarning, match="saved with schedule") as caught:
        target.load_state_dict(source.state_dict())
    message = str(caught[0].message)
    assert "total_steps=1000" in message
    assert "total_steps=2000" in message
    assert target.get_last_lr() == [rebuilt(500)]  # this object's schedule is kept


@pytest.mark.parametrize(
    ("schedule", "earlier"),
    [
        (Cosine(peak=1e-3, total_steps=1000, warmup_steps=100), {"floor": 0.0, "floor_ratio": None}),
        (WSD(peak=1e-3, total_steps=1000, decay_steps=100), {"decay_steps": 100, "decay_fraction": 0.1}),
    ],
)
def test_a_checkpoint_from_an_earlier_lrpilot_of_the_same_schedule_resumes_without_a_warning(
    schedule: Schedule, earlier: dict[str, Any]
) -> None:
    """Its spec holds both floors (or both WSD decay lengths), which the spec now leaves out; the
    dicts differed, so resuming warned "saved with schedule cosine(X), but this scheduler runs
    cosine(X)", the same schedule twice."""
    source = LRPilotScheduler(optimizer(), schedule)
    run(source, 150)
    state = source.state_dict()
    state["schedule"] = state["schedule"] | earlier
    target = LRPilotScheduler(optimizer(), schedule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target.load_state_dict(state)
    assert run(target, 50) == run(source, 50)
    per_group = LRPilotScheduler(optimizer(2), [schedule, schedule])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_group.load_state_dict({"step": 7, "schedule": [state["schedule"]] * 2, "scales": [1.0, 1.0]})
    assert per_group.get_last_lr() == [schedule(7)] * 2


def test_loading_other_scales_warns() -> None:
    source = LRPilotScheduler(optimizer(2), Constant(peak=1e-3), scales=[1.0, 2.0])
    target = LRPilotScheduler(optimizer(2), Constant(peak=1e-3), scales=[1.0, 3.0])
    with pytest.warns(UserWarning, match=r"scales \[1.0, 2.0\]"):
        target.load_state_dict(source.state_dict())


def test_loading_a_torch_scheduler_state_is_a_clear_error() -> None:
    opt = optimizer()
    torch_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for _ in range(7):
        opt.step()
        torch_scheduler.step()
    scheduler = LRPilotScheduler(optimizer(), Constant(peak=1e-3))
    with pytest.raises(ValueError, match=r"'step' key.*torch scheduler's state at step 7: .*start_step=7\)"):
        scheduler.load_state_dict(torch_scheduler.state_dict())


@settings(max_examples=40, deadline=None)
@given(schedule=any_schedules(), stop=st.integers(0, 300), scale=st.floats(0.01, 100.0))
def test_resuming_from_any_step_gives_the_same_lrs_as_never_stopping(
    schedule: Schedule, stop: int, scale: float
) -> None:
    straight = LRPilotScheduler(optimizer(2), schedule, scales=[1.0, scale])
    expected = run(straight, stop + 50)[stop:]
    first = LRPilotScheduler(optimizer(2), schedule, scales=[1.0, scale])
    run(first, stop)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = LRPilotScheduler(optimizer(2), schedule, scales=[1.0, scale])
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert run(resumed, 50) == expected


CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from lrpilot.integrations.torch import LRPilotScheduler
    from lrpilot.schedules import from_json

    jobs = json.loads(sys.stdin.read())
    out = []
    for job in jobs:
        params = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]} for _ in job["scales"]]
        opt = torch.optim.SGD(params, lr=1.0)
        scheduler = LRPilotScheduler(opt, from_json(job["schedule"]), scales=job["scales"])
        scheduler.load_state_dict(torch.load(job["state"], weights_only=True))
        lrs = []
        for _ in range(job["remaining"]):
            lrs.append([g["lr"].hex() for g in opt.param_groups])
            opt.step()
            scheduler.step()
        out.append(lrs)
    print(json.dumps(out))
    """
)


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path: Path) -> None:
    """Stop at a random (seeded) step, torch.save the state, resume in a new Python process."""
    rng = random.Random(1604)
    total = 2000
    jobs, expected = [], []
    for i, schedule in enumerate(SCHEDULES):
        stop = rng.randrange(1, total)
        scales = [1.0, rng.choice([0.1, 2.0, 16.0])]
        full = run(LRPilotScheduler(optimizer(2), schedule, scales=scales), total)
        first = LRPilotScheduler(optimizer(2), schedule, scales=scales)
        run(first, stop)
        path = tmp_path / f"scheduler-{i}.pt"
        torch.save(first.state_dict(), path)
        jobs.append({"schedule": to_json(schedule), "scales": scales, "state": str(path), "remaining": total - stop})
        expected.append([[lr.hex() for lr in row] for row in full[stop:]])
    child = subprocess.run(
        [sys.executable, "-c", CHILD], input=json.dumps(jobs), capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(child.stdout) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scales": [1.0]}, r"one number per param group \(2\), got 1"),
        ({"scales": [1.0, 0.0]}, r"scales\[1\] must be a finite number > 0, got 0.0"),
        ({"scales": [1.0, -2.0]}, r"scales\[1\] must be a finite number > 0"),
        ({"scales": [1.0, math.nan]}, r"scales\[1\] must be a finite number > 0"),
        ({"scales": [math.inf, 1.0]}, r"scales\[0\] must be a finite number > 0"),
        ({"scales": 2.0}, "scales must be a list of 2 numbers"),
        ({"start_step": -1}, r"start_step must be an integer in \[0, ∞\], got -1"),
        ({"start_step": 1.5}, r"start_step must be an integer"),
    ],
)
def test_bad_arguments_name_the_parameter_the_value_and_the_range(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LRPilotScheduler(optimizer(2), Constant(peak=1e-3), **kwargs)


def test_bad_schedules_and_optimizers() -> None:
    with pytest.raises(ValueError, match=r"one schedule per param group \(2\), got 1"):
        LRPilotScheduler(optimizer(2), [Constant(peak=1e-3)])
    with pytest.raises(TypeError, match=r"lrpilot\.parse"):
        LRPilotScheduler(optimizer(), "cosine(peak=1e-3, total_steps=10)")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of them"):
        LRPilotScheduler(optimizer(), [lambda step: 1.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        LRPilotScheduler([torch.nn.Parameter(torch.zeros(1))], Constant(peak=1e-3))  # type: ignore[arg-type]
    scheduler = LRPilotScheduler(optimizer(), Constant(peak=1e-3))
    with pytest.raises(ValueError, match="epoch must be an integer"):
        scheduler.step(-3)


def test_an_optimizer_without_param_groups_is_refused_at_once() -> None:
    """It was accepted (a scheduler that set no LR, scales=[]) and failed only at the first step."""
    opt = optimizer()
    opt.param_groups.clear()  # as a wrapper that fills the groups lazily hands it over
    with pytest.raises(ValueError, match=r"the optimizer \(SGD\) has no param groups"):
        LRPilotScheduler(opt, Constant(peak=1e-3))


def test_stepping_before_the_optimizers_first_step_warns_as_torch_does() -> None:
    """The classic order bug skips step 0's LR: torch's schedulers warn, this one was silent."""
    schedule = Cosine(peak=1e-3, total_steps=100, warmup_steps=10)
    scheduler = LRPilotScheduler(optimizer(), schedule)
    with pytest.warns(UserWarning, match="before the optimizer's first step"):
        scheduler.step()
    scheduler.optimizer.step()
    scheduler.step()  # once only
    assert not scheduler.optimizer._optimizer_step_post_hooks  # type: ignore[attr-defined]  # no hook left
    right = LRPilotScheduler(optimizer(), schedule)
    copied = pickle.loads(pickle.dumps(right))  # a copy's optimizer is watched too
    for s in (right, copied):
        run(s, 3)  # optimizer.step() first: no warning (the suite turns warnings into errors)
    inner = torch.optim.lr_scheduler.SequentialLR(right.optimizer, [right], milestones=[])
    run(inner, 2)  # type: ignore[arg-type]  # SequentialLR's initial step is not the user's


def test_a_group_added_later_is_an_error_not_a_silent_skip() -> None:
    opt = optimizer()
    scheduler = LRPilotScheduler(opt, Constant(peak=1e-3))
    opt.step()
    for _ in range(4):
        scheduler.step()
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    with pytest.raises(ValueError, match=r"2 param groups but this scheduler was built for 1; .*start_step=5 "):
        scheduler.step()
    assert scheduler.last_epoch == 4  # the failed step moved nothing


def test_groups_with_different_lrs_and_no_scales_warn() -> None:
    opt = torch.optim.SGD(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4},
        ]
    )
    with pytest.warns(UserWarning, match="different LRs"):
        LRPilotScheduler(opt, Constant(peak=1e-3))


def test_without_torch_the_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; import lrpilot.integrations.torch"  # as if torch were not installed
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode != 0
    assert "pip install 'lrpilot[torch]'" in child.stderr


# --- inside torch's SequentialLR --------------------------------------------------------------------


def sequential(first: Schedule, then: Schedule, milestone: int) -> torch.optim.lr_scheduler.SequentialLR:
    opt = optimizer(lr=1e-3)
    parts = [LRPilotScheduler(opt, first), LRPilotScheduler(opt, then)]
    return torch.optim.lr_scheduler.SequentialLR(opt, parts, milestones=[milestone])


def test_two_schedulers_in_sequential_lr_run_one_then_the_other() -> None:
    """SequentialLR resets every group to its `initial_lr`: without one it raised KeyError 'initial_lr'."""
    warmup, cosine = Constant(peak=1e-3, warmup_steps=5), Cosine(peak=1e-3, total_steps=20)
    lrs = [row[0] for row in run(sequential(warmup, cosine, 5), 12)]  # type: ignore[arg-type]
    assert lrs == [warmup(t) for t in range(5)] + [cosine(t) for t in range(7)]


def test_a_torch_scheduler_after_it_in_sequential_lr_starts_from_the_optimizers_lr() -> None:
    """A torch scheduler built after it takes the groups' `initial_lr` as its base: it was the
    warmup's first LR (1.7e-4, the cosine then ran 6x too low), it is the optimizer's LR (1e-3)."""
    opt = optimizer(lr=1e-3)
    warmup = LRPilotScheduler(opt, Constant(peak=1e-3, warmup_steps=5))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    chained = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[5])
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        chained.step()
    assert lrs[5:] == pytest.approx([Cosine(peak=1e-3, total_steps=20)(t) for t in range(3)], rel=1e-12)


@pytest.mark.parametrize("cut", [3, 5, 7])
def test_sequential_lr_resumes_bit_identically_before_and_after_its_milestone(cut: int) -> None:
    """Before the milestone the later scheduler is at step -1 (torch's "not started"); loading that
    state raised 'state_dict['step'] must be an integer in [0, ∞], got -1'."""
    warmup, cosine = Constant(peak=1e-3, warmup_steps=5), Cosine(peak=1e-3, total_steps=20)
    straight = [row[0] for row in run(sequential(warmup, cosine, 5), 12)]  # type: ignore[arg-type]
    first = sequential(warmup, cosine, 5)
    head = [row[0] for row in run(first, cut)]  # type: ignore[arg-type]
    buffer = io.BytesIO()
    torch.save({"opt": first.optimizer.state_dict(), "sched": first.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = sequential(warmup, cosine, 5)
    resumed.optimizer.load_state_dict(checkpoint["opt"])
    resumed.load_state_dict(checkpoint["sched"])
    assert head + [row[0] for row in run(resumed, 12 - cut)] == straight  # type: ignore[arg-type]


def test_an_accelerate_prepared_optimizer_is_driven_and_watched() -> None:
    """accelerate's AcceleratedOptimizer subclasses Optimizer without its hooks: the order check
    watches the optimizer it wraps (hooking the wrapper raised AttributeError)."""
    accelerate = pytest.importorskip("accelerate")
    schedule = Cosine(peak=1e-3, total_steps=100, warmup_steps=10)
    prepared = accelerate.Accelerator(cpu=True).prepare_optimizer(optimizer())
    scheduler = LRPilotScheduler(prepared, schedule)
    assert [row[0] for row in run(scheduler, 5)] == [schedule(t) for t in range(5)]
    early = LRPilotScheduler(accelerate.Accelerator(cpu=True).prepare_optimizer(optimizer()), schedule)
    with pytest.warns(UserWarning, match="before the optimizer's first step"):
        early.step()
