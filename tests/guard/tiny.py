"""A tiny real training task for the integration tests: an MLP on scikit-learn's 8×8 digits."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _digits()
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp(seed: int = 0, hidden: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class Batches:
    """An endless, seeded stream of mini-batches whose position is a `state_dict` (the data state
    a guard snapshots and restores)."""

    def __init__(self, batch: int = 32, seed: int = 0) -> None:
        self.x, self.y = digits()
        self.batch = batch
        self.seed = seed
        self.position = 0

    def _order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        return torch.randperm(self.x.shape[0], generator=g)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        per_epoch = self.x.shape[0] // self.batch
        epoch, i = divmod(self.position, per_epoch)
        idx = self._order(epoch)[i * self.batch : (i + 1) * self.batch]
        self.position += 1
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def full_loss(model: nn.Module) -> float:
    x, y = digits()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def gradient_times(value: torch.Tensor, factor: float) -> torch.Tensor:
    """`value` as it is, its gradient × `factor`: a gradient spike whose loss does not show it."""
    return value + (factor - 1) * (value - value.detach())
