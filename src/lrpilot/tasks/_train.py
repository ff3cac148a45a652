"""One full training run of a task's recipe at a given peak LR: the unit of the oracle sweep."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from lrpilot import _validate as check
from lrpilot.tasks._base import Metrics, Task, seeded
from lrpilot.tasks._recipe import Recipe
from lrpilot.tasks._registry import get_task

__all__ = ["StepCallback", "TrainResult", "initial_loss", "initial_metrics", "make_optimizer", "train"]

StepCallback = Callable[[int, float, float], None]
"""Called after every optimizer step as ``callback(step, lr, loss)`` (``step`` is 0-based)."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one run.

    Attributes:
        task, peak_lr, seed: what was run.
        total_steps: the run's planned length (the recipe's, or ``steps=`` when given).
        val_loss: mean validation loss at the end of the run. For a diverged run this is the
            *untrained* model's validation loss (`initial_loss`): a diverged run scores as if it had
            never trained, which keeps regret curves finite and puts divergence at regret 1.
        val_accuracy: validation accuracy on the same terms, or None where the task has none.
        diverged: the training loss (or the final validation loss) was not finite.
        diverged_step: the 0-based step whose loss was not finite (or `total_steps` when only the
            final validation loss was), else None.
        train_losses: the training loss of every step taken, the non-finite one included.
        wall_time_s: seconds for the whole run, model building and evaluation included.
    """

    task: str
    peak_lr: float
    seed: int
    total_steps: int
    val_loss: float
    val_accuracy: float | None
    diverged: bool
    diverged_step: int | None
    train_losses: tuple[float, ...]
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite training losses become None)."""
        out = asdict(self)
        out["train_losses"] = [x if math.isfinite(x) else None for x in self.train_losses]
        return out


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay on matrices and embeddings (ndim ≥ 2) only,
    none on biases and normalisation gains, as Hugging Face and nanoGPT do. On a GPU the fused
    kernel: one launch per step, and the guard's skips through it are exact (`TorchGuard`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=recipe.betas, eps=recipe.eps, fused=fused or None)


def _task(task: Task | str) -> Task:
    return get_task(task) if isinstance(task, str) else task


def _seed(owner: str, seed: object) -> int:
    return check.step_count(owner, "seed", seed, 0, 2**63 - 1)


def initial_metrics(task: Task | str, seed: int = 0) -> Metrics:
    """Validation metrics of the model before any training (``L_init`` of the regret formula)."""
    task = _task(task)
    return task.metrics(task.build_model(_seed("initial_metrics", seed)))


def initial_loss(task: Task | str, seed: int = 0) -> float:
    """Validation loss of the untrained / not yet fine-tuned model with this seed's initial weights."""
    return initial_metrics(task, seed).loss


def train(
    task: Task | str,
    peak_lr: float,
    seed: int = 0,
    *,
    steps: int | None = None,
    callback: StepCallback | None = None,
) -> TrainResult:
    """Train `task`'s model with its fixed recipe at `peak_lr` and score it on the validation set.

    The LR follows ``task.recipe.schedule(peak_lr)`` (an lrpilot schedule: warmup, then decay to the
    floor over the whole run), written into every parameter group before each optimizer step.
    ``steps`` shortens the run to a complete recipe of that many steps (`Recipe.shortened`), for
    tests and cheap proxies. A non-finite training loss stops the run at once (see `TrainResult`).

    The run is deterministic given `seed` (initial weights, data order, dropout) on a fixed
    software stack and thread count, and leaves the caller's torch random state as it was.
    """
    task = _task(task)
    peak = check.positive("train", "peak_lr", peak_lr)
    seed = _seed("train", seed)
    recipe = task.recipe if steps is None else task.recipe.shortened(steps)
    schedule = recipe.schedule(peak)
    started = time.perf_counter()
    losses: list[float] = []
    diverged_step: int | None = None
    with seeded(seed):
        model = task.build_model(seed)
        optimizer = make_optimizer(model, recipe, peak)
        batches = task.batches(seed)
        for step in range(recipe.total_steps):
            lr = float(schedule(step))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = task.loss(model, next(batches))
            value = loss.item()
            losses.append(value)
            if not math.isfinite(value):
                diverged_step = step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            if callback is not None:
                callback(step, lr, value)
        final = task.metrics(model) if diverged_step is None else None
    if final is not None and not math.isfinite(final.loss):
        diverged_step, final = recipe.total_steps, None
    if final is None:
        final = initial_metrics(task, seed)
    return TrainResult(
        task=task.name,
        peak_lr=peak,
        seed=seed,
        total_steps=recipe.total_steps,
        val_loss=final.loss,
        val_accuracy=final.accuracy,
        diverged=diverged_step is not None,
        diverged_step=diverged_step,
        train_losses=tuple(losses),
        wall_time_s=time.perf_counter() - started,
    )
