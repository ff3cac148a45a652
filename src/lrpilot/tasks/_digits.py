"""``digits``: a two-hidden-layer MLP on scikit-learn's 8×8 handwritten digits.

The smallest real task (1,797 images, 10 classes; the data ships inside scikit-learn): a full run
takes about a second, so it is the one to iterate on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 -- the usual torch alias
from torch import nn

from lrpilot._optional import require
from lrpilot.tasks._base import Answers, Metrics, Task, epoch_order, evaluating, seeded, spread
from lrpilot.tasks._device import device_of, to_device
from lrpilot.tasks._recipe import Recipe

__all__ = ["DigitsTask"]

_VAL_FRACTION = 0.2
_SPLIT_SEED = 0  # the split is part of the task, not of the run: it never depends on the run's seed


@cache
def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardised features (train statistics) and labels, split 80/20 by a fixed permutation."""
    datasets = require("sklearn.datasets", "dev", "the digits task")
    x, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    n_val = round(_VAL_FRACTION * len(y))
    val, train = order[:n_val], order[n_val:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # border pixels that are always blank in the training split
    x = ((x - mean) / std).astype(np.float32)
    tensor = torch.from_numpy
    return tensor(x[train]), tensor(y[train].astype(np.int64)), tensor(x[val]), tensor(y[val].astype(np.int64))


@dataclass(frozen=True)
class DigitsTask(Task):
    """MLP 64 → 128 → 128 → 10 (ReLU) trained with cross-entropy; validation: a fixed 20 % (359 images)."""

    hidden: int = 128

    def build_model(self, seed: int) -> nn.Module:
        with seeded(seed):
            return nn.Sequential(
                nn.Linear(64, self.hidden),
                nn.ReLU(),
                nn.Linear(self.hidden, self.hidden),
                nn.ReLU(),
                nn.Linear(self.hidden, 10),
            )

    @property
    def classes(self) -> int:
        return 10

    @property
    def epoch_batches(self) -> int:
        """22 at batch 64: `batches` drops an epoch's incomplete last batch (`epoch_order`)."""
        return len(_data()[1]) // self.recipe.batch_size

    def batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, _, _ = _data()
        for index in epoch_order(len(y), self.recipe.batch_size, seed):
            yield x[index], y[index]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = to_device(batch, device_of(model))
        return F.cross_entropy(model(inputs), targets)

    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        _, _, x, y = _data()
        index = torch.tensor(spread(len(y), limit))
        x, y = to_device((x[index], y[index]), device_of(model))
        with evaluating(model):
            logits = model(x)
            loss = F.cross_entropy(logits, y).item()
            answers = Answers()
            accuracy = (answers.add(logits) == y).float().mean().item()
        return Metrics(loss, accuracy, len(y), answers.top_share())


DIGITS = DigitsTask(
    name="digits",
    description="MLP (64-128-128-10) on scikit-learn's 8x8 digits; 1,438 train / 359 validation images",
    # ~11 epochs at batch 64: enough for ~97 % validation accuracy at a good LR, and short enough
    # that an LR 10x too low is still visibly under-trained. No clipping, so a too-high LR shows.
    recipe=Recipe(batch_size=64, total_steps=250, warmup_steps=25, decay="cosine", floor_ratio=0.1, weight_decay=0.01),
)
