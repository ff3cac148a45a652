"""Forgetting-aware fine-tuning: how far a pretrained model drifts from the original, and the LR that
trades the target loss against that drift.

A higher LR fits the new task faster and moves the pretrained weights further: what the model knew
before (general text, other tasks) is what is lost. The *drift* measured here is the mean cosine
distance ``1 − cos(h₀, h)`` between the original model's and the fine-tuned model's sentence
embeddings (the last hidden states, mean-pooled over the attention mask) on a *retention set* of
texts unrelated to the task: 0 for an unchanged model, up to 2 for opposite embeddings. It works
for any Hugging Face model that returns hidden states, with or without LoRA adapters.

`tradeoff` runs short probes of the recipe at a few peaks at and below the range test's peak (a
lower LR only ever forgets less), scores each by ``val_loss + weight × drift``, and picks the best:
``weight`` 0 keeps the range test's peak; larger weights buy retention with target loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 -- the usual torch alias
from torch import nn

from lrpilot.autopilot._data import pad
from lrpilot.autopilot._hf import HfTask
from lrpilot.tasks import Recipe, make_optimizer
from lrpilot.tasks._base import evaluating, seeded
from lrpilot.tasks._device import Precision, device_of, to_device

__all__ = ["PROBE_FACTORS", "Drift", "TradeoffPoint", "load_drift", "tradeoff"]

PROBE_FACTORS = (1.0, 0.5, 0.25, 0.125)
"""The probed peaks as fractions of the range test's peak: an octave apart, down to 1/8."""
PROBE_SHARE = 0.2
"""Each probe runs the recipe compressed to this share of the run (at least 5 steps)."""
_BATCH = 64


def _embeddings(model: nn.Module, task: HfTask, ids: list[list[int]]) -> torch.Tensor:
    """Mean-pooled last hidden states, one row per text, in eval mode without gradients."""
    rows = []
    with evaluating(model):
        for start in range(0, len(ids), _BATCH):
            batch = to_device(pad(ids[start : start + _BATCH], task.pad_id, None), device_of(model))
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            states = out.hidden_states[-1]
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            rows.append((states * mask).sum(dim=1) / mask.sum(dim=1))
    return torch.cat(rows)


@dataclass(frozen=True, eq=False)
class Drift:
    """The original model's embeddings of the retention texts; calling it on a model gives the drift."""

    task: HfTask
    ids: list[list[int]]
    reference: torch.Tensor

    def __call__(self, model: nn.Module) -> float:
        now = _embeddings(model, self.task, self.ids)
        return float((1.0 - F.cosine_similarity(now, self.reference, dim=-1)).mean())


def load_drift(task: HfTask, model: nn.Module, rows: list[dict[str, Any]]) -> Drift:
    """Embed the retention texts (rows with a ``text``, as `read_rows` checked them) with the model as
    it is now: before training (LoRA adapters start as the identity)."""
    ids = task.tokenizer([str(row["text"]) for row in rows], truncation=True, max_length=task.max_length)["input_ids"]
    ids = [list(seq) for seq in ids]
    return Drift(task, ids, _embeddings(model, task, ids))


@dataclass(frozen=True)
class TradeoffPoint:
    """One probe: its peak LR, the validation loss and drift after it, and its score."""

    peak_lr: float
    val_loss: float
    drift: float
    score: float

    def line(self) -> str:
        return f"peak {self.peak_lr:.3g}: val loss {self.val_loss:.4g}, drift {self.drift:.4g}, score {self.score:.4g}"


def _probe(task: HfTask, model: nn.Module, recipe: Recipe, peak: float, seed: int, *, precision: Precision) -> None:
    """The recipe at `peak`, from the model's current state, plain AdamW with the recipe's clipping,
    in the run's `precision` (fp16 with its own loss scale)."""
    schedule = recipe.schedule(peak)
    optimizer = make_optimizer(model, recipe, peak)
    scaler = precision.scaler()
    batches = task.batches(seed)
    with seeded(seed):
        for step in range(recipe.total_steps):
            for group in optimizer.param_groups:
                group["lr"] = float(schedule(step))
            with precision.autocast():
                loss = task.loss(model, next(batches))
            if not math.isfinite(loss.item()):
                return
            optimizer.zero_grad(set_to_none=True)
            (loss if scaler is None else scaler.scale(loss)).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()


def tradeoff(
    task: HfTask,
    model: nn.Module,
    recipe: Recipe,
    peak: float,
    drift: Drift,
    *,
    weight: float,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    precision: Precision | None = None,
) -> list[TradeoffPoint]:
    """Probe `PROBE_FACTORS` × `peak`, each a `PROBE_SHARE` run from the same start (the model is
    restored after each), and score ``val_loss + weight × drift`` (a non-finite loss scores inf).
    Returns the points from the highest peak to the lowest; the best is ``min(points, key=score)``.
    `precision`: the run's (fp32 by default), for the probes and their evaluations."""
    mixed = precision or Precision()
    short = recipe.shortened(max(5, round(PROBE_SHARE * recipe.total_steps)))
    start = copy.deepcopy(model.state_dict())
    points = []
    for i, factor in enumerate(PROBE_FACTORS):
        lr = float(f"{peak * factor:.3g}")
        _probe(task, model, short, lr, seed, precision=mixed)
        with mixed.autocast():
            loss, moved = task.metrics(model).loss, drift(model)
        score = loss + weight * moved if math.isfinite(loss) and math.isfinite(moved) else math.inf
        points.append(TradeoffPoint(lr, loss, moved, score))
        model.load_state_dict(start)
        if progress is not None:
            progress(i + 1, len(PROBE_FACTORS))
    return points
