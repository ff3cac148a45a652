"""Small real training problems for the finder's tests: scikit-learn's digits with an MLP, and a
tiny CNN with BatchNorm. Each builds in milliseconds and trains 100 steps in well under a second."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised 8×8 digits (1,797 × 64, float32) and labels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def loader(
    batch_size: int = 32,
    *,
    shuffle: bool = True,
    seed: int = 0,
    n: int | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DataLoader[Any]:
    """A DataLoader over digits (or `data`) with its own generator (so its shuffling state is
    observable). Passing `data` spares a subprocess the import of scikit-learn (seconds)."""
    x, y = digits() if data is None else data
    if n is not None:
        x, y = x[:n], y[:n]
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=g)


def endless(batch_size: int = 32, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A one-shot, endless iterator of shuffled batches."""
    x, y = digits()
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


def mlp(seed: int = 0, hidden: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def cnn(seed: int = 0) -> nn.Module:
    """Two conv layers with BatchNorm: running statistics and ``num_batches_tracked`` to restore."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 10),
    )


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Deep copies of everything the finder must restore, for bit-for-bit comparison."""
    out: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        out["opt_state"] = {
            k: {kk: vv.clone() if isinstance(vv, torch.Tensor) else vv for kk, vv in v.items()}
            for k, v in sd["state"].items()
        }
        out["opt_groups"] = [dict(g) for g in sd["param_groups"]]
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes, so NaN == NaN and -0.0 != 0.0: bit-for-bit, not numerically equal."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8) if t.dtype.is_floating_point else t


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Every tensor equal bit for bit (NaN-aware), every flag and hyperparameter equal."""

    def same(x: Any, y: Any, where: str) -> None:
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor), where
            assert x.dtype == y.dtype, where
            assert x.shape == y.shape, where
            assert torch.equal(_bits(x), _bits(y)), where
        elif isinstance(x, dict):
            assert isinstance(y, dict), where
            assert set(x) == set(y), f"{where}: keys {set(x)} != {set(y)}"
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list | tuple):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                same(u, v, f"{where}[{i}]")
        else:
            assert x == y, f"{where}: {x!r} != {y!r}"

    same(a, b, "state")


def rng_draws() -> tuple[float, float, float]:
    """One number from each global generator (python, numpy, torch), to compare RNG states."""
    import random

    return random.random(), float(np.random.rand()), float(torch.rand(()))
