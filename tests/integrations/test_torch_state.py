"""TrainingState: capture / restore bit for bit, in memory and on disk, on success and on error."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lrpilot.integrations.torch_state import TrainingState, loader_generators
from tests.finder.tiny import assert_same, cnn, digits, loader, mlp, rng_draws, snapshot

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, lr: float = 0.05) -> None:
    x, y = digits()
    for i in range(steps):
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]).backward()
        optimizer.step()


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_restores_weights_buffers_optimizer_and_rng(storage: str, tmp_path: Path) -> None:
    model = cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    _train(model, optimizer, 3)  # non-trivial Adam moments and BatchNorm statistics
    model.eval()
    model[2].train()  # mixed flags must come back as they were
    before = snapshot(model, optimizer)
    params = list(model.parameters())
    state = TrainingState.capture(model, optimizer, storage=storage, tmp_dir=tmp_path)
    draws = rng_draws()
    state.restore()  # restoring the RNG replays the same numbers
    assert rng_draws() == draws
    model.train()
    _train(model, optimizer, 5, lr=0.5)
    state.restore()
    after_draws = rng_draws()
    state.close()
    assert_same(before, snapshot(model, optimizer))
    assert after_draws == draws
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))  # identity kept
    assert list(tmp_path.iterdir()) == []  # the disk snapshot is gone


def test_fresh_optimizer_comes_back_empty() -> None:
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with TrainingState.capture(model, optimizer):
        _train(model, optimizer, 2)
        assert len(optimizer.state) > 0
    assert len(optimizer.state) == 0
    assert optimizer.param_groups[0]["lr"] == 1e-3


def test_gradients_none_and_present() -> None:
    model = mlp()
    x, y = digits()
    nn.functional.cross_entropy(model(x[:8]), y[:8]).backward()
    model[0].bias.grad = None
    before = snapshot(model)
    with TrainingState.capture(model):
        model.zero_grad(set_to_none=False)
        nn.functional.cross_entropy(model(x[8:16]), y[8:16]).backward()
    assert_same(before, snapshot(model))


def test_restores_on_exception_and_keyboard_interrupt() -> None:
    model = cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(model, optimizer)

    def trial(exc: BaseException) -> None:
        with TrainingState.capture(model, optimizer):
            _train(model, optimizer, 2)
            raise exc

    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            trial(exc)
        assert_same(before, snapshot(model, optimizer))


def test_buffer_replaced_by_a_new_tensor_is_put_back() -> None:
    model = cnn()
    bn = model[2]
    before = snapshot(model)
    with TrainingState.capture(model):
        bn.running_mean = torch.full((8,), 7.0, dtype=torch.float64)  # different tensor, different dtype
    assert_same(before, snapshot(model))


def test_grad_scaler_state() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    with TrainingState.capture(model, optimizer, scaler=scaler):
        x, y = digits()
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(nn.functional.cross_entropy(model(x[:8]), y[:8])).backward()
            scaler.step(optimizer)
            scaler.update()
        assert scaler.get_scale() == 8192.0
    assert scaler.get_scale() == 1024.0
    assert scaler.state_dict()["_growth_tracker"] == 0


def test_loader_generator_restored() -> None:
    dl, reference = loader(seed=3), loader(seed=3)
    with TrainingState.capture(mlp(), generators=loader_generators(dl)):
        for _ in range(3):
            next(iter(dl))  # each fresh iterator draws a new permutation from the loader's generator
    assert torch.equal(next(iter(dl))[1], next(iter(reference))[1])


def test_rng_without_restoring_rng() -> None:
    model = mlp()
    state = TrainingState.capture(model)
    a = rng_draws()
    state.restore(rng=False)
    b = rng_draws()
    state.close()
    assert a != b  # the generators went on
    random.seed(0)
    np.random.seed(0)


def test_parallel_disk_snapshots_do_not_share_a_directory(tmp_path: Path) -> None:
    a = TrainingState.capture(mlp(0), storage="disk", tmp_dir=tmp_path)
    b = TrainingState.capture(mlp(1), storage="disk", tmp_dir=tmp_path)
    assert a.directory is not None
    assert b.directory is not None
    assert a.directory != b.directory
    a.close()
    assert b.directory.exists()
    b.close()
    assert list(tmp_path.iterdir()) == []


def test_bad_storage() -> None:
    with pytest.raises(ValueError, match="storage must be one of"):
        TrainingState.capture(mlp(), storage="gpu")


def test_frozen_parameters_are_not_copied_and_come_back_untouched() -> None:
    model = mlp()
    model[0].requires_grad_(False)  # a LoRA-like split: the big layer frozen, the head trained
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = snapshot(model, optimizer)
    with TrainingState.capture(model, optimizer) as state:
        head = sum(p.numel() * p.element_size() for p in model[2].parameters())
        assert state.nbytes == head  # the head's weights; a fresh AdamW has no state yet
        _train(model, optimizer, 5, lr=0.5)
    assert_same(before, snapshot(model, optimizer))
