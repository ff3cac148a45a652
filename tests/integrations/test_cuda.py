"""The CUDA paths on a real GPU (skipped without one; CI has none): the guard's device-side flags,
asynchronous reads and pinned snapshots with no host-device sync, exact skips through a fused
optimizer's ``found_inf``, bit-for-bit rollbacks from every snapshot store, fp16 with a GradScaler;
and the range test's restore of device state. `benchmarks/guard_overhead.py --device cuda` has the
timings; these check behaviour."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lrpilot.guard import GuardConfig
from lrpilot.integrations.torch_finder import find_lr
from lrpilot.integrations.torch_guard import TorchGuard
from tests.finder.tiny import assert_same, snapshot
from tests.guard.tiny import Batches, mlp
from tests.integrations.test_torch_guard import SCHED, STEPS, Fault, guarded_run, nan_at

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def batches(seed: int = 1, n: int = 400) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`n` digits batches, copied to the GPU up front (a copy from pageable memory synchronises)."""
    return iter([(x.to(CUDA), y.to(CUDA)) for x, y in itertools.islice(Batches(seed=seed), n)])


def guarded(*, fused: bool = False, fault: Fault | None = None, **options: Any) -> tuple[nn.Module, TorchGuard]:
    """`guarded_run` (the CPU tests' loop) with the digits MLP and its batches on the GPU."""
    model = mlp(0).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0), fused=fused or None)
    model, guard, _ = guarded_run(fault=fault, model=model, opt=opt, data=batches(), **options)
    return model, guard


def plain(*, fused: bool = False, skip: frozenset[int] = frozenset()) -> nn.Module:
    """The same loop on the GPU without a guard; batches in `skip` have their update dropped."""
    model = mlp(0).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0), fused=fused or None)
    for b, (x, y) in enumerate(itertools.islice(batches(), STEPS), start=1):
        nn.functional.cross_entropy(model(x), y).backward()
        for g in opt.param_groups:
            g["lr"] = SCHED(b - 1)
        if b not in skip:
            opt.step()
        opt.zero_grad(set_to_none=True)
    return model


def finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def close(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.allclose(p, q, rtol=1e-5, atol=1e-7) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("fused", [False, True])
def test_the_guard_runs_with_no_host_device_sync(fused: bool) -> None:
    """Steps, reads every 10 and snapshots every 50 under sync debug mode "error" (which raises on
    any synchronisation), clipping on, and a loss spike skipped on the device in the window. (A
    rollback does synchronise, once, to load its snapshot: the other tests have those.)"""
    model = mlp(0).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    guard = TorchGuard(model, opt, max_grad_norm=1.0)
    assert guard.read_every == 10
    data = batches()
    try:
        for b in range(1, 161):
            if b == 21:  # past the first read: the steady state is what is checked
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            x, y = next(data)
            loss = nn.functional.cross_entropy(model(x), y)
            if b == 120:
                loss = loss * 1000  # a spike in the loss and the gradients
            loss.backward()
            guard.step(loss)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    report = guard.report()
    assert [(r["step"], r["action"]) for r in report["records"]] == [(119, "skip")]
    assert report["device_skips"] == 0  # the device's flag and the host's verdict agreed
    assert finite(model)


def test_a_fused_optimizer_skips_a_nan_step_exactly_on_the_device() -> None:
    model, guard = guarded(fault=nan_at(150), fused=True)
    reference = plain(fused=True, skip=frozenset({150}))
    assert close(model, reference)
    report = guard.report()
    assert (report["skips"], report["rollbacks"], report["device_skips"]) == (1, 0, 0)
    assert report["records"][0]["step"] == 149


def test_a_clean_guarded_run_is_the_plain_run() -> None:
    model, guard = guarded(max_grad_norm=1e6)  # clipping that never clips: the same numbers
    assert guard.report()["records"] == []
    reference = plain()
    assert close(model, reference)


@pytest.mark.parametrize("store", ["cpu", "device", "disk"])
def test_a_rollback_restores_the_snapshot_bit_for_bit(store: str, tmp_path: Path) -> None:
    """A NaN poisons a foreach Adam's update (NaN × 0 is NaN); the read at step 110 rolls back to
    the last confirmed snapshot, of step 50, taken asynchronously into pinned host memory (or on the device, or
    on disk): weights, Adam's moments and the CUDA RNG come back exactly as they were."""
    model = mlp(0).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0))
    guard = TorchGuard(model, opt, schedule=SCHED, snapshot_to=tmp_path if store == "disk" else store)
    data = batches()
    at_50: dict[str, Any] = {}
    b = 0
    while guard.state.rollbacks == 0:
        assert b < 150, "the poisoned steps should have been rolled back"
        if guard.step_count == 50 and not at_50:
            torch.cuda.synchronize()
            at_50 = snapshot(model, opt)
            at_50["cuda_rng"] = torch.cuda.get_rng_state()
        x, y = next(data)
        b += 1
        loss = nn.functional.cross_entropy(model(x), y)
        loss = loss * math.nan if 101 <= b <= 104 else loss  # steps 100-103: the snapshot of 100 is unconfirmed
        loss.backward()
        guard.step(loss)
    assert guard.step_count == 50
    after = snapshot(model, opt)
    after["cuda_rng"] = torch.cuda.get_rng_state()
    assert_same(at_50, after)
    guard.close()


def test_fp16_autocast_overflow_is_the_scalers_to_skip() -> None:
    model = mlp(0).to(CUDA)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**16)
    guard = TorchGuard(model, opt, scaler=scaler)
    data = batches()
    for b in range(250):
        x, y = next(data)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if b == 120:  # an overflow in the gradients only: the scaler skips it and backs off
            next(model.parameters()).grad.fill_(math.inf)  # type: ignore[union-attr]
        guard.step(loss)
    assert guard.report()["records"] == []
    assert scaler.get_scale() < 2.0**16
    assert finite(model)


def test_guard_config_snapshot_every_sets_the_read_interval() -> None:
    model = mlp(0).to(CUDA)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert TorchGuard(model, opt, config=GuardConfig(snapshot_every=48)).read_every == 16
    assert TorchGuard(model, opt, config=GuardConfig(snapshot_every=7)).read_every == 7


@pytest.mark.parametrize("fused", [False, True])
def test_the_range_test_restores_device_state_bit_for_bit(fused: bool) -> None:
    """foreach AdamW and the fused one fit trains with on a GPU (its step counts on the device)."""
    model = mlp(0).to(CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    data = batches()
    for _ in range(3):  # Adam moments that are not the defaults
        x, y = next(data)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    before = snapshot(model, opt)
    rng = torch.cuda.get_rng_state()
    result = find_lr(model, opt, Batches(seed=2), nn.functional.cross_entropy, num_steps=60)
    assert 1e-5 < result.peak_lr < 1.0
    assert all(p.is_cuda for p in model.parameters())
    assert_same(before, snapshot(model, opt))
    assert torch.equal(rng, torch.cuda.get_rng_state())
