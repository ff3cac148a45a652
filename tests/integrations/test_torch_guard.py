"""`TorchGuard` in real PyTorch loops (a digits MLP on CPU): skips, rollbacks, resume, snapshots, ranks."""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lrpilot.guard import GuardConfig
from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard, total_grad_norm
from lrpilot.schedules import Constant, Cosine, Schedule
from tests.guard.tiny import Batches, full_loss, gradient_times, mlp

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STEPS = 300


SCHED = Cosine(peak=3e-3, total_steps=STEPS, warmup_steps=20)

Fault = Callable[[int, torch.Tensor], torch.Tensor]


def nan_at(*batches: int) -> Fault:
    return lambda b, loss: loss * math.nan if b in batches else loss


def guarded_run(
    *,
    fault: Fault | None = None,
    steps: int = STEPS,
    schedule: Schedule = SCHED,
    fused: bool = False,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None,
    model: nn.Module | None = None,
    opt: torch.optim.Optimizer | None = None,
    guard: TorchGuard | None = None,
    restore_data: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, TorchGuard, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """`steps` guarded steps of the digits MLP (or `model`, `opt`, `data` given: the CUDA tests'),
    `fault` applied to the loss of each batch by its number; `restore_data`: the guard snapshots
    and restores the data position."""
    model = model or mlp(0)
    opt = opt or torch.optim.Adam(model.parameters(), lr=schedule(0), fused=fused or None)
    data = data or Batches(seed=1)
    guard = guard or TorchGuard(model, opt, schedule=schedule, data=data if restore_data else None, **kwargs)
    b = 0
    while guard.step_count < steps:
        assert b < 3 * steps, "the guard should not need this many batches"
        x, y = next(data)
        b += 1
        loss = nn.functional.cross_entropy(model(x), y)
        if fault is not None:
            loss = fault(b, loss)
        loss.backward()
        guard.step(loss)
    guard.flush()
    return model, guard, data


def plain_run(
    *, skip: frozenset[int] = frozenset(), fault: Fault | None = None, fused: bool = False, clip: float | None = None
) -> nn.Module:
    """The reference: the same loop without a guard; batches in `skip` have their update dropped,
    the gradients clipped by torch to `clip`."""
    model = mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0), fused=fused or None)
    data = Batches(seed=1)
    for t in range(STEPS):
        x, y = next(data)
        loss = nn.functional.cross_entropy(model(x), y)
        (fault(t + 1, loss) if fault else loss).backward()
        for g in opt.param_groups:
            g["lr"] = SCHED(t)
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        if t + 1 not in skip:
            opt.step()
        opt.zero_grad(set_to_none=True)
    return model


def same_params(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_nan_step_is_skipped_exactly_and_the_run_is_otherwise_untouched() -> None:
    assert math.isnan(full_loss(plain_run(fault=nan_at(150))))  # the fault is real
    model, guard, _ = guarded_run(fault=nan_at(150))
    assert same_params(model, plain_run(skip=frozenset({150})))
    report = guard.report()
    assert (report["skips"], report["rollbacks"]) == (1, 0)
    assert report["records"][0]["action"] == "skip"
    assert report["records"][0]["step"] == 149
    assert report["records"][0]["detector"] == "non_finite"


def test_a_clean_run_is_left_alone() -> None:
    model, guard, _ = guarded_run()
    assert same_params(model, plain_run())
    assert guard.report()["records"] == []


def test_a_hundredfold_lr_jump_is_rolled_back_and_capped_near_the_lr_before_it() -> None:
    jump = Cosine(peak=3e-3, total_steps=STEPS, warmup_steps=20)

    class Jumped(Schedule, name="test-jumped"):  # the user's schedule goes ×300 at step 150
        def _evaluate(self, t: Any, xp: Any) -> Any:
            return jump._evaluate(t, xp) * xp.where(t >= 150, 300.0, 1.0)

    model, guard, _ = guarded_run(schedule=Jumped())
    unguarded = mlp(0)
    opt = torch.optim.Adam(unguarded.parameters(), lr=1e-3)
    data = Batches(seed=1)
    for t in range(STEPS):
        x, y = next(data)
        nn.functional.cross_entropy(unguarded(x), y).backward()
        opt.param_groups[0]["lr"] = Jumped()(t)
        opt.step()
        opt.zero_grad()
    report = guard.report()
    assert report["rollbacks"] >= 1
    first = next(r for r in report["records"] if r["action"] == "rollback")
    assert first["rollback_to"] in (100, 150)
    assert first["lr_after"] <= 0.5 * 3e-3  # half the highest LR that was stable before the jump
    assert full_loss(model) < 0.6
    assert not full_loss(unguarded) < 1.0  # unguarded, the jump wrecks the run (or makes it NaN)
    assert report["schedule"].startswith("guarded(base=test-jumped(), cap=")


def test_a_short_run_is_guarded_once_a_sixth_of_it_has_passed() -> None:
    """60 steps, the LR ×300 from step 24: the defaults' detectors are still gathering their 32-loss
    baseline and let it wreck the run; `GuardConfig.for_run` judges after 16 and rolls it back."""
    short = Cosine(peak=3e-3, total_steps=60, warmup_steps=5)

    class Jumped(Schedule, name="test-short-jumped"):
        def _evaluate(self, t: Any, xp: Any) -> Any:
            return short._evaluate(t, xp) * xp.where(t >= 24, 300.0, 1.0)

    clean, _, _ = guarded_run(schedule=short, steps=60, config=GuardConfig.for_run(60))
    fitted, guard, _ = guarded_run(schedule=Jumped(), steps=60, config=GuardConfig.for_run(60))
    first = guard.report()["records"][0]
    assert (first["action"], first["detector"]) == ("skip", "spike")
    assert 24 <= first["step"] <= 27
    assert guard.report()["rollbacks"] >= 1
    assert full_loss(fitted) < 1.05 * full_loss(clean)
    wrecked, guard, _ = guarded_run(schedule=Jumped(), steps=60, config=GuardConfig())
    assert guard.report()["records"] == []
    assert full_loss(wrecked) > 1.2 * full_loss(clean)


@pytest.mark.parametrize("read_every", [1, 5])
def test_the_guard_clips_exactly_as_torch_does(read_every: int) -> None:
    """`max_grad_norm` gives torch's `clip_grad_norm_` bit for bit, whether the factor is read
    before it is applied (judged every step: a factor of 1 is skipped) or applied on the device."""
    clipped = {t for t, norm in enumerate(_grad_norms()) if norm > 0.5}
    assert 0 < len(clipped) < STEPS  # some steps are clipped, some are not
    model, guard, _ = guarded_run(max_grad_norm=0.5, read_every=read_every)
    assert same_params(model, plain_run(clip=0.5))
    assert not same_params(model, plain_run())
    assert guard.report()["records"] == []


def _grad_norms() -> list[float]:
    """The unclipped gradient norm of every step of `plain_run(clip=0.5)`."""
    model = mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0))
    data, norms = Batches(seed=1), []
    for t in range(STEPS):
        x, y = next(data)
        nn.functional.cross_entropy(model(x), y).backward()
        for g in opt.param_groups:
            g["lr"] = SCHED(t)
        norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), 0.5)))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return norms


@pytest.mark.parametrize("fused", [False, True])
def test_delayed_verdicts_read_every_k_steps(fused: bool) -> None:
    """Judged every 5 steps from a device buffer: a fused optimizer skips exactly on the device (its
    found_inf), any other optimizer zeroes the update of a spike, and a NaN is rolled back."""
    model, guard, _ = guarded_run(fault=nan_at(150), read_every=5, fused=fused)
    report = guard.report()
    assert math.isfinite(full_loss(model))
    if fused:
        reference, _, _ = guarded_run(fault=nan_at(150), fused=True)
        assert same_params(model, reference)
        assert (report["skips"], report["rollbacks"]) == (1, 0)
    else:
        assert report["rollbacks"] == 1  # NaN × 0 is NaN: the poisoned update is rolled back
    assert guard.step_count == STEPS


def test_settle_before_saving_undoes_a_nan_update_still_in_the_weights() -> None:
    """A loop stopped two steps after a NaN step (a Ctrl-C), its verdict not yet read: `settle`
    reads it and, the update being NaN × 0 = NaN in the weights, loads the last confirmed snapshot;
    on sound weights it reads the verdicts and changes nothing."""
    model, guard, _ = guarded_run(fault=nan_at(150), steps=151, read_every=5)
    assert not all(torch.isfinite(p).all() for p in model.parameters())  # what a save would have kept
    restored = guard.settle()
    assert restored is not None
    assert restored < 150
    assert guard.step_count == restored
    assert math.isfinite(full_loss(model))
    clean, clean_guard, _ = guarded_run(steps=151, read_every=5)
    weights = [p.detach().clone() for p in clean.parameters()]
    assert clean_guard.settle() is None
    assert all(torch.equal(a, b) for a, b in zip(weights, clean.parameters(), strict=True))


def test_snapshots_on_disk_are_pruned_and_removed_on_close(tmp_path: Path) -> None:
    where = tmp_path / "snaps"
    config = GuardConfig(snapshot_every=20)
    model = mlp(0)
    with TorchGuard(model, torch.optim.SGD(model.parameters(), lr=0.1), snapshot_to=where) as g:
        assert len(list(where.iterdir())) == 1
    model, guard, _ = guarded_run(fault=nan_at(100, 101, 102, 103), snapshot_to=where, config=config)
    assert guard.report()["rollbacks"] == 1
    assert 1 <= len(list(where.iterdir())) <= 2
    guard.close()
    assert not where.exists()
    assert g.step_count == 0


def test_kept_snapshots_never_share_memory() -> None:
    """Snapshot buffers are recycled from pruned snapshots, never from one still kept."""
    _, guard, _ = guarded_run(config=GuardConfig(snapshot_every=10), steps=200)
    kept = list(guard._snapshots.values())
    assert len(kept) == 2
    a, b = ({t.data_ptr() for t in snap["model"].values()} for snap in kept)
    assert not a & b


def frozen_first_layer() -> tuple[nn.Module, torch.optim.Optimizer]:
    """The MLP with its first layer frozen (a LoRA run in miniature) and Adam over the rest."""
    model = mlp(0)
    model[0].requires_grad_(False)
    return model, torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=SCHED(0))


def test_snapshots_leave_frozen_parameters_out() -> None:
    model, opt = frozen_first_layer()
    frozen = model[0].weight.detach().clone()
    _, guard, _ = guarded_run(fault=nan_at(100, 101, 102, 103), model=model, opt=opt)
    assert guard.report()["rollbacks"] == 1
    assert all(set(snap["model"]) == {"2.weight", "2.bias"} for snap in guard._snapshots.values())
    assert torch.equal(model[0].weight, frozen)
    assert math.isfinite(full_loss(model))


def test_a_parameter_unfrozen_after_the_snapshot_is_named_on_rollback() -> None:
    model, opt = frozen_first_layer()
    guard = TorchGuard(model, opt, schedule=SCHED)
    model[0].requires_grad_(True)  # unfrozen after the snapshot of step 0 (and not in the optimizer)
    with pytest.warns(RuntimeWarning, match=r"unfrozen since the snapshot.*'0.weight', '0.bias'"):
        guarded_run(fault=lambda b, loss: loss * math.nan if 10 <= b <= 13 else loss, model=model, opt=opt, guard=guard)
    assert guard.report()["records"][-1]["action"] == "rollback"


def test_the_data_position_is_restored_on_rollback() -> None:
    data = Batches(seed=1)
    positions: list[int] = []

    def fault(b: int, loss: torch.Tensor) -> torch.Tensor:
        positions.append(data.position)
        return loss * math.nan if b in (100, 101, 102, 103) else loss

    _, guard, _ = guarded_run(fault=fault, data=data, restore_data=True)
    rollback = next(r for r in guard.report()["records"] if r["action"] == "rollback")
    assert rollback["rollback_to"] == 50
    assert positions[103] == 51  # replayed from the snapshot's data position (50 batches consumed)


class Poisoned(Batches):
    """`Batches` whose batches at the data positions in `bad` hold a NaN input: corrupt data, which
    gives a NaN loss from any weights, every time it is drawn."""

    def __init__(self, bad: range, seed: int = 1) -> None:
        super().__init__(seed=seed)
        self.bad = bad

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        poisoned = self.position in self.bad
        x, y = super().__next__()
        if poisoned:
            x = x.clone()
            x[0, 0] = math.nan
        return x, y


def test_corrupt_batches_replayed_after_a_rollback_are_skipped_past() -> None:
    """Four corrupt batches in a row (positions 120-123) roll the run back to step 100, and with the
    data position restored the replay draws them again at the same steps. The guard rolled back to
    step 100 eight times, each replay the same NaN, cut the LR to 1/256 and gave up at step 100 of
    300; the same steps going bad as before the rollback are now the batches', skipped past, and the
    rollback's LR cut, which they caused, is put back (kept, the rest of the run trained at half its
    LR)."""
    data = Poisoned(range(120, 124))
    _, guard, _ = guarded_run(data=data, restore_data=True)
    report = guard.report()
    assert (report["step"], report["rollbacks"], report["cuts"], report["gave_up"]) == (300, 1, 1, False)
    skips = [r for r in report["records"] if r["action"] == "skip"]
    assert [(r["step"], r["batch"]) for r in skips] == [
        (120, 120), (121, 121), (122, 122), (120, 144), (121, 145), (122, 146), (123, 147)
    ]  # fmt: skip
    replayed = skips[3]
    assert "the latest rollback's LR cut undone" in replayed["reason"]
    assert replayed["lr_after"] > replayed["lr_before"]  # the cap lifted (the re-warmup ramp goes on)
    assert "as before the latest rollback: the batches of those steps" in report["records"][-1]["reason"]
    assert (report["lr_cap"], report["lr_scale"]) == (None, 1.0)
    assert guard.state.effective_lr(SCHED(299), 299) == SCHED(299)  # the schedule's own LR at the end
    assert data.position == 300  # one batch a step, the rewound ones drawn again


@pytest.mark.parametrize("fused", [False, True])
def test_corrupt_batches_replayed_under_delayed_verdicts(fused: bool) -> None:
    """Read every 5 steps, a non-fused optimizer's skip of a NaN step multiplies the gradient by 0,
    which stays NaN: the update goes into the weights, and only a rollback undoes it. Replayed with
    the data position, the same corrupt batches then came back after every rollback, eight times.
    Skipping past them cannot help there: the guard gives up at once, saying so (fused=True); a fused
    optimizer's skips are exact, and the run skips past them."""
    data = Poisoned(range(120, 124))
    if not fused:
        with pytest.raises(GuardGaveUpError, match=r"although skipped .* fused=True skips exactly") as info:
            guarded_run(data=data, restore_data=True, read_every=5)
        assert info.value.action.rollback_to == 100
        return
    _, guard, _ = guarded_run(data=data, restore_data=True, read_every=5, fused=True)
    report = guard.report()
    assert (report["step"], report["rollbacks"], report["gave_up"]) == (300, 1, False)


def test_corrupt_batches_at_the_restored_state_are_skipped_past_without_a_rollback() -> None:
    """The first four batches are corrupt: no update was applied since the state the guard began
    from, so rolling back to it (the data position with it) drew them again; eight rollbacks and a
    give-up at step 0. Now they are skipped, and the run trains at its LR."""
    _, guard, _ = guarded_run(data=Poisoned(range(4)), restore_data=True)
    report = guard.report()
    assert (report["step"], report["skips"], report["rollbacks"], report["cuts"]) == (300, 4, 0, 0)
    assert report["lr_cap"] is None


def test_resume_from_state_dict_is_bit_for_bit(tmp_path: Path) -> None:
    fault = nan_at(60, 200)  # by batch number over the whole run
    straight, _, _ = guarded_run(fault=fault)

    model, data = mlp(0), Batches(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0))
    _, first, _ = guarded_run(fault=fault, steps=130, model=model, opt=opt, data=data)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "data": data.state_dict()}, ckpt)
    (tmp_path / "guard.json").write_text(json.dumps(first.state_dict()))

    saved = torch.load(ckpt)  # a fresh process: new objects, the guard's state from JSON
    model2, data2 = mlp(1), Batches(seed=1)
    model2.load_state_dict(saved["model"])
    opt2 = torch.optim.Adam(model2.parameters(), lr=SCHED(0))
    opt2.load_state_dict(saved["opt"])
    data2.load_state_dict(saved["data"])
    guard2 = TorchGuard(model2, opt2, schedule=SCHED)
    guard2.load_state_dict(json.loads((tmp_path / "guard.json").read_text()))
    assert guard2.step_count == 130
    done = data2.position
    resumed, _, _ = guarded_run(
        fault=lambda b, loss: fault(b + done, loss), model=model2, opt=opt2, data=data2, guard=guard2
    )
    assert same_params(resumed, straight)
    assert guard2.report()["skips"] == 2  # the one before the checkpoint (restored) and the one after


def test_a_grad_scaler_owns_inf_gradients_and_a_torch_scheduler_is_stepped() -> None:
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    guard = TorchGuard(model, opt, scheduler=scheduler, scaler=scaler)
    data = Batches(seed=2)
    for b in range(250):
        x, y = next(data)
        loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if b == 120:  # an fp16-style overflow in the gradients only: the scaler skips it
            next(model.parameters()).grad.fill_(math.inf)  # type: ignore[union-attr]
        guard.step(loss)
    assert guard.report()["records"] == []
    assert scheduler.last_epoch == 250
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)
    assert scaler.get_scale() < 2.0**8  # it saw the overflow and backed off
    assert math.isfinite(full_loss(model))


def test_a_rollback_under_a_grad_scaler_restores_its_scale_and_training_goes_on() -> None:
    """NaN losses (an fp16 run's forward overflowing) are skipped, then rolled back: the step the guard
    unscaled is closed, so the scaler takes the next one (before, its next ``unscale_`` raised), and
    its scale is the snapshot's again (each skip had halved it, as the scaler backs off an overflow)."""
    model = mlp(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    guard = TorchGuard(model, opt, config=GuardConfig(snapshot_every=25), scaler=scaler)
    data = Batches(seed=3)
    scales: dict[str, float] = {}
    for b in range(90):
        x, y = next(data)
        loss = nn.functional.cross_entropy(model(x), y) * (math.nan if 60 <= b < 64 else 1.0)
        scaler.scale(loss).backward()
        if guard.step_count == 25:
            scales.setdefault("snapshot", scaler.get_scale())
        if b == 63:
            scales["skipped"] = scaler.get_scale()
        guard.step(loss)
        if b == 63:
            scales["rolled back"] = scaler.get_scale()
    records = guard.report()["records"]
    assert [(r["action"], r["step"]) for r in records] == [("skip", 60), ("skip", 61), ("skip", 62), ("rollback", 63)]
    assert scales["skipped"] == scales["snapshot"] / 8
    assert scales["rolled back"] == scales["snapshot"]  # step 25's: the last confirmed snapshot
    assert guard.step_count == 25 + (90 - 64)  # trained on from there
    assert math.isfinite(full_loss(model))


def test_persistent_nan_gives_up_with_a_report_and_the_last_good_state() -> None:
    config = GuardConfig(max_rollbacks=2, snapshot_every=25)
    with pytest.raises(GuardGaveUpError, match="look elsewhere") as info:
        guarded_run(fault=lambda b, loss: loss * math.nan if b >= 80 else loss, config=config)
    assert info.value.action.kind == "give_up"
    assert info.value.action.rollback_to == 50


def test_the_lr_applied_is_the_guarded_schedule() -> None:
    _, guard, _ = guarded_run(fault=nan_at(100, 101, 102, 103))
    sched = guard.effective_schedule()
    assert sched is not None
    steps = guard.history_steps
    assert guard.history_lr[-50:] == pytest.approx([sched(s) for s in steps[-50:]], rel=1e-12)


def test_a_grad_norm_given_by_the_caller_is_used() -> None:
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = TorchGuard(model, opt)
    data = Batches(seed=3)
    for i in range(60):
        x, y = next(data)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the unclipped norm, as the guard wants
        guard.step(loss, grad_norm=norm * (100 if i == 50 else 1))
    assert [(r["step"], r["action"], r["metric"]) for r in guard.report()["records"]] == [(50, "skip", "grad_norm")]


def grads_x100_at(batch: int) -> Fault:
    """One batch's gradient ×100 with its loss unchanged: a grad-norm spike alone."""
    return lambda b, loss: gradient_times(loss, 100) if b == batch else loss


@pytest.mark.parametrize(
    ("clip", "read_every", "skipped"),
    [(None, 1, True), (0.5, 1, False), (0.5, 5, False), (50.0, 1, True)],
)
def test_a_grad_norm_spike_is_judged_after_clipping(clip: float | None, read_every: int, skipped: bool) -> None:
    """The guard judges the norm of the gradient the update applies: unclipped, a ×100 gradient is
    an outsized update and is skipped; clipped to about its usual norm (0.5) it makes an ordinary
    update, applied as torch would clip it; a clip far above the usual norm (50) does not bound it."""
    fault = grads_x100_at(150)
    model, guard, _ = guarded_run(fault=fault, max_grad_norm=clip, read_every=read_every)
    actions = [(r["step"], r["action"], r["metric"]) for r in guard.report()["records"]]
    assert actions == ([(149, "skip", "grad_norm")] if skipped else [])
    reference = plain_run(fault=fault, clip=clip, skip=frozenset({150} if skipped else ()))
    assert same_params(model, reference)


def test_total_grad_norm_matches_torch() -> None:
    model = mlp(3)
    x, y = next(Batches())
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    expected = torch.nn.utils.get_total_norm(grads)
    assert torch.allclose(total_grad_norm(grads), expected)


def test_bad_arguments_are_named() -> None:
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"read_every must be an integer in \[1, ∞\], got 0"):
        TorchGuard(model, opt, read_every=0)
    with pytest.raises(ValueError, match="must be a multiple of read_every"):
        TorchGuard(model, opt, read_every=7)


# ---------------------------------------------------------------------- two ranks (gloo)
def _rank_main(rank: int, port: int, out: str, config: GuardConfig, read_every: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        model = nn.parallel.DistributedDataParallel(mlp(0))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        audit = Path(out) / f"{rank}.jsonl"
        guard = TorchGuard(model, opt, schedule=Constant(peak=3e-3), config=config, audit=audit, read_every=read_every)
        data = Batches(seed=10 + rank)
        b = 0
        while guard.step_count < 120:
            x, y = next(data)
            b += 1
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            # the fault is on rank 1 only and only in the loss it reports: without agreement rank 1
            # would skip and rank 0 would not, and the replicas would drift apart
            reported = loss * math.nan if (rank == 1 and b in (70, 71, 72, 73)) else loss
            guard.step(reported)
        guard.flush()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        torch.save(flat, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("read_every", [1, 5])
def test_two_ranks_agree_on_a_fault_seen_by_one_rank_only(tmp_path: Path, read_every: int) -> None:
    """Judged every step, or from the device buffer every 5 steps (the flags all-reduced each step,
    the buffer at each read): both ranks skip and roll back at the same steps and stay identical."""
    config = GuardConfig(snapshot_every=20)
    mp.spawn(_rank_main, args=(_free_port(), str(tmp_path), config, read_every), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert torch.equal(a, b)
    logs = [[json.loads(line) for line in (tmp_path / f"{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    strip = [[{k: v for k, v in rec.items() if k != "rank"} for rec in log] for log in logs]
    assert strip[0] == strip[1]
    assert [r["action"] for r in logs[0]] == ["skip", "skip", "skip", "rollback"]
    assert logs[0][-1]["rollback_to"] == 40  # 60 was not confirmed yet (10 healthy steps) when trouble came


def test_a_rollback_leaves_its_snapshot_as_it_was_taken() -> None:
    """torch's ``Optimizer.load_state_dict`` keeps the tensors it is given (same device and dtype):
    a rollback that handed it the snapshot's moments let the steps after it write into the snapshot,
    so a second rollback to it restored a later, mixed state (fit runs of the same seed then ended
    0.416-0.429 apart)."""
    model = mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0))
    guard = TorchGuard(model, opt, schedule=SCHED)
    held: list[set[float]] = []

    def fault(b: int, loss: torch.Tensor) -> torch.Tensor:
        if b > 104 and guard.step_count == 58 and not held:  # 8 steps after the rollback to step 50
            held.append({float(state["step"]) for state in guard._snapshots[50]["optimizer"]["state"].values()})
        return nan_at(100, 101, 102, 103)(b, loss)

    guarded_run(fault=fault, steps=110, model=model, opt=opt, guard=guard)
    assert guard.report()["rollbacks"] == 1
    assert held == [{50.0}]  # Adam's step count as the snapshot took it, not the live one (58)


def test_a_delayed_skip_the_device_could_not_make_is_recorded_as_applied() -> None:
    """In delayed mode the device flags a step against the thresholds of the last read; in the first
    window the detectors judge there are none yet, so a ×100 gradient there is applied while the
    host, reading it later, judges it a skip. The audit record used to say only "skip"; it now says
    the update was applied, and the report counts it. Once thresholds are read, the device skips."""
    model, guard, _ = guarded_run(fault=grads_x100_at(34), read_every=5)
    records = guard.report()["records"]
    assert [(r["step"], r["action"], r.get("applied")) for r in records] == [(33, "skip", True)]
    assert guard.report()["late_skips"] == 1
    assert same_params(model, plain_run(fault=grads_x100_at(34)))  # it went into the weights
    model, guard, _ = guarded_run(fault=grads_x100_at(150), read_every=5)
    records = guard.report()["records"]
    assert [(r["step"], r["action"], r.get("applied")) for r in records] == [(149, "skip", None)]
    assert guard.report()["late_skips"] == 0


def test_a_tensor_lr_stays_the_tensor_it_is() -> None:
    """A tensor LR (fused or capturable optimizers; a compiled ``optimizer.step`` that is not to be
    recompiled for every LR) was replaced by a Python float at the first step of a guard with a
    schedule; it is now written in place and holds the schedule's LR."""
    model = mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1.0), fused=True)
    lr = opt.param_groups[0]["lr"]
    guarded_run(model=model, opt=opt, steps=5)
    assert opt.param_groups[0]["lr"] is lr
    assert float(lr) == pytest.approx(SCHED(4), rel=1e-6)


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_guard_resumed_with_its_snapshots_rolls_back_where_the_run_never_stopped_would(
    tmp_path: Path, on_disk: bool
) -> None:
    """A persistent NaN from batch 156: the run never stopped rolls back to a snapshot from before
    step 140; saved at step 140 with `state_dict(snapshots=True)` (through ``torch.save``) and
    resumed in a fresh guard, the run rolls back to the same one and ends with the same weights
    (without its snapshots, only the resume point was left to go back to)."""
    fault = nan_at(*range(156, 160))
    where = {"snapshot_to": str(tmp_path / "whole")} if on_disk else {}
    whole, whole_guard, _ = guarded_run(fault=fault, **where)
    targets = [r["rollback_to"] for r in whole_guard.report()["records"] if r["action"] == "rollback"]
    assert len(targets) == 1
    assert targets[0] < 140
    model, guard, data = guarded_run(steps=140, **where)
    torch.save(
        {"model": model.state_dict(), "opt": guard.optimizer.state_dict(), "guard": guard.state_dict(snapshots=True)},
        tmp_path / "ckpt.pt",
    )
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    again = mlp(0)
    again.load_state_dict(saved["model"])
    opt = torch.optim.Adam(again.parameters(), lr=SCHED(0))
    opt.load_state_dict(saved["opt"])
    resumed = TorchGuard(again, opt, schedule=SCHED, **({"snapshot_to": str(tmp_path / "resumed")} if on_disk else {}))
    resumed.load_state_dict(saved["guard"])
    guarded_run(fault=nan_at(*range(16, 20)), model=again, opt=opt, guard=resumed, data=data)
    assert [r["rollback_to"] for r in resumed.report()["records"] if r["action"] == "rollback"] == targets
    assert same_params(whole, again)


def _batches(guard: TorchGuard, data: Batches, batches: range, fault: Fault) -> None:
    """Train on the batches numbered `batches` (by the batch drawn, replays included)."""
    for b in batches:
        x, y = next(data)
        loss = fault(b, nn.functional.cross_entropy(guard.model(x), y))
        loss.backward()
        guard.step(loss)


@pytest.mark.parametrize("save_after", [110, 160])
def test_a_guard_resumed_mid_rewarmup_or_with_a_pending_snapshot_goes_on_as_if_never_stopped(
    tmp_path: Path, save_after: int
) -> None:
    """Rolled back from step 102 to 50 and re-warming up over 50-70, saved at step 57 (batch 110);
    or at step 107 (batch 160), its snapshot of step 100 not yet confirmed. Resumed from
    ``torch.save`` in a fresh guard, the run re-warms up as it would have, confirms that snapshot,
    and rolls a second burst of NaN back to it: the same records and the same weights, bit for bit."""
    fault = nan_at(*range(100, 104), *range(190, 194))
    config = GuardConfig(snapshot_every=50)
    model, data = mlp(0), Batches(seed=1)
    whole = TorchGuard(
        model, torch.optim.Adam(model.parameters(), lr=SCHED(0)), config=config, schedule=SCHED, data=data
    )
    _batches(whole, data, range(1, 301), fault)
    records = [(r["step"], r["action"], r["rollback_to"]) for r in whole.report()["records"]]
    assert [r for r in records if r[1] == "rollback"] == [(102, "rollback", 50), (139, "rollback", 100)]

    model, data = mlp(0), Batches(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=SCHED(0))
    first = TorchGuard(model, opt, config=config, schedule=SCHED, data=data)
    _batches(first, data, range(1, save_after + 1), fault)
    pending = [s for s in first.state.snapshots if not s.confirmed]
    assert (first.step_count, [s.step for s in pending]) == ((57, []) if save_after == 110 else (107, [100]))
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "data": data.state_dict()}
    torch.save({**saved, "guard": first.state_dict(snapshots=True)}, tmp_path / "ckpt.pt")

    saved = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    again, data = mlp(1), Batches(seed=1)
    again.load_state_dict(saved["model"])
    opt = torch.optim.Adam(again.parameters(), lr=SCHED(0))
    opt.load_state_dict(saved["opt"])
    data.load_state_dict(saved["data"])
    resumed = TorchGuard(again, opt, config=config, schedule=SCHED, data=data)
    resumed.load_state_dict(saved["guard"])
    _batches(resumed, data, range(save_after + 1, 301), fault)
    after = [(r["step"], r["action"], r["rollback_to"]) for r in whole.report()["records"] if r["batch"] >= save_after]
    assert [(r["step"], r["action"], r["rollback_to"]) for r in resumed.report()["records"]] == after
    assert resumed.history_lr == whole.history_lr[save_after:]
    assert same_params(again, whole.model)
