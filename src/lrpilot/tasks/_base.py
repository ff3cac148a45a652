"""What a built-in task is: a model, an endless stream of training batches, a loss and a fixed
validation set, all determined by a seed, plus the fixed `Recipe` to train them with."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import nn

from lrpilot.tasks._recipe import Recipe

__all__ = ["Answers", "Batch", "Metrics", "SubsetTally", "Task", "one_thread", "spread"]

Batch: TypeAlias = Any
"""One training batch: ``(inputs, targets)`` tensors, or a dict of tensors for the Hugging Face tasks."""


class Metrics(NamedTuple):
    """Validation metrics: mean loss per example (or per token), accuracy where it applies, how
    many validation examples were scored (None: not said), and for a classifier the largest share
    of them it gave one answer (1.0: one class whatever the input, a collapsed model)."""

    loss: float
    accuracy: float | None
    examples: int | None = None
    top_share: float | None = None


class Answers:
    """How often a classifier gave each answer over an evaluation's batches (`Metrics.top_share`)."""

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> torch.Tensor:
        """Count a batch's answers; returns them."""
        predicted = logits.argmax(dim=-1)
        counts = torch.bincount(predicted.reshape(-1), minlength=logits.shape[-1])
        self.counts = counts if self.counts is None else self.counts + counts
        return predicted

    def top_share(self) -> float | None:
        """The most frequent answer's share of all answers (None before any)."""
        if self.counts is None or int(self.counts.sum()) == 0:
            return None
        return int(self.counts.max()) / int(self.counts.sum())


@dataclass(frozen=True)
class Task(ABC):
    """A built-in benchmark task.

    Everything a run depends on besides the peak LR is fixed here or derived from the seed: the
    model's initial weights (`build_model`), the order of training batches (`batches`) and any
    dropout (seeded by `lrpilot.tasks.train`). The validation set is the same for every seed.
    """

    name: str
    description: str
    recipe: Recipe

    @abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """A fresh model in training mode, its initial weights fixed by `seed`.

        The caller's random state is left untouched (weights are drawn under `torch.random.fork_rng`).
        """

    @abstractmethod
    def batches(self, seed: int) -> Iterator[Batch]:
        """An endless iterator of training batches of ``recipe.batch_size`` examples, in an order fixed by `seed`."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The scalar training loss (mean cross-entropy) of `model` on `batch`, on the model's device
        (the batch, built on the host, is moved there: `lrpilot.tasks._device.to_device`)."""

    @abstractmethod
    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        """Validation loss and accuracy on the fixed held-out set (in eval mode, without gradients,
        on the model's device).

        `limit`: score only that many examples, spread evenly over the set (`spread`) — a cheap
        reading for evaluations in the middle of a run; None scores them all. The model's
        training/eval mode is restored afterwards.
        """

    def metrics_and_subset(self, model: nn.Module, limit: int) -> tuple[Metrics, Metrics]:
        """The whole validation set's metrics, and those of the `limit` examples `metrics(model,
        limit)` scores: a run's last evaluation, comparable both with the whole-set figure it
        reports and with the quick evaluations before it. Two passes here; a task whose evaluation
        is costly reads both off one (the SST-2 tasks, a user's model)."""
        return self.metrics(model), self.metrics(model, limit)

    @property
    def epoch_batches(self) -> int | None:
        """Distinct batches `batches` draws before it starts over (each pass reshuffled), or None for
        a stream that never comes round (random windows of a corpus): what says whether a range test
        went over the same batches more than once."""
        return None

    @property
    def classes(self) -> int | None:
        """How many classes (a language model: characters or tokens) the loss is a cross-entropy
        over, None when unknown: the loss of a model that predicts nothing is then ln(classes),
        which the guard's detectors read as chance (`lrpilot.detect.DetectConfig.for_classes`)."""
        return None

    @property
    def chance_loss(self) -> float | None:
        """The loss of a model that has learned nothing from its inputs, which the guard reads a
        collapse against: ln(`classes`) here (None when unknown); a user's classifier has the
        entropy of its training labels' frequencies (`lrpilot.detect.DetectConfig.for_label_counts`)."""
        return None if self.classes is None else math.log(self.classes)

    def evaluate(self, model: nn.Module) -> float:
        """The mean validation loss on the fixed held-out set: the number a run is scored by."""
        return self.metrics(model).loss


class SubsetTally:
    """A subset's metrics read off an evaluation pass over a larger set, from the same logits: its
    examples' summed loss (over tokens, for a language model), the count it is a mean over, and
    hits. What `Task.metrics_and_subset` needs to score a run's last evaluation twice in one pass."""

    def __init__(self, subset: Iterable[int]) -> None:
        self.members = frozenset(subset)
        self.loss, self.count, self.correct = 0.0, 0, 0
        self.classified = False
        self.answers = Answers()

    def _mask(self, index: Sequence[int], device: torch.device) -> torch.Tensor | None:
        mine = torch.tensor([i in self.members for i in index], dtype=torch.bool, device=device)
        return mine if bool(mine.any()) else None

    def add_classified(self, index: Sequence[int], logits: torch.Tensor, labels: torch.Tensor) -> None:
        """A batch of a classifier: `index` the examples' positions in the set."""
        self.classified = True
        mine = self._mask(index, logits.device)
        if mine is not None:
            self.loss += torch.nn.functional.cross_entropy(logits[mine], labels[mine], reduction="sum").item()
            self.count += int(mine.sum())
            self.correct += int((self.answers.add(logits[mine]) == labels[mine]).sum())

    def add_tokens(self, index: Sequence[int], logits: torch.Tensor, labels: torch.Tensor) -> None:
        """A batch of a causal language model: each position predicts the next token; -100 is ignored."""
        mine = self._mask(index, logits.device)
        if mine is not None:
            targets = labels[mine, 1:]
            predicted = logits[mine, :-1].float().reshape(-1, logits.shape[-1])
            cross_entropy = torch.nn.functional.cross_entropy
            self.loss += cross_entropy(predicted, targets.reshape(-1), ignore_index=-100, reduction="sum").item()
            self.count += int((targets != -100).sum())

    def metrics(self) -> Metrics:
        """Mean loss per example (or token), accuracy for a classifier, and the subset's size."""
        loss = self.loss / self.count if self.count else math.nan
        accuracy = self.correct / self.count if self.classified and self.count else None
        return Metrics(loss, accuracy, len(self.members), self.answers.top_share())


def spread(n: int, limit: int | None) -> list[int]:
    """Indices of `limit` of `n` examples, evenly spaced from the first to the last (all of them
    when `limit` is None or not below `n`): a fixed, representative subset, the same every call.

    >>> spread(10, 4)
    [0, 3, 6, 9]
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"spread: limit must be at least 1, got {limit}")
    return [round(i * (n - 1) / max(limit - 1, 1)) for i in range(limit)]


@contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Torch on one thread inside the block (when `enabled`), the caller's count restored after.

    The built-in tasks run so: they are small, a second thread only contends, and their numbers are
    then the same on every machine (a study's workers, the benchmarks). A user's model keeps
    torch's default (``enabled=False``)."""
    with torch_threads(1 if enabled else None):
        yield


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Torch on `count` CPU threads inside the block (None: as it is), the caller's count restored
    after. A sum split over another number of threads rounds otherwise, so a run that must repeat
    another to the bit (a resumed fit) runs on as many as it did."""
    threads = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's generators with `seed` inside the block (the GPUs' too: dropout on a GPU draws
    from theirs) and restore the caller's state after."""
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []  # type: ignore[no-untyped-call]
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside the block; the model's previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def epoch_order(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Index batches over `n` examples, reshuffled every epoch by a generator seeded with `seed`;
    the last incomplete batch of an epoch is dropped so every step sees `batch_size` examples."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
