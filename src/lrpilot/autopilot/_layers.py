"""Per-layer update/weight ratios ‖Δw‖/‖w‖ over an optimizer update.

Adam normalises each coordinate's step, so the size of an update relative to the weights it moves
is set by the learning rate, not by the gradient: ‖Δw‖/‖w‖ is the direct read-out of whether the
LR is too high for a layer (ratios near 1e-1 rewrite the layer every few steps) or too low (1e-5
and below barely move it). Karpathy's rule of thumb is about 1e-3. A ratio per *layer* shows the
embeddings or the head running hotter than the body, which a single loss curve cannot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["UpdateRatioTracker", "layer_groups", "layer_update_ratios"]

_INDEX = re.compile(r"^\d+$")


def _layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name up to the first numeric index (``blocks.3.mlp.0.weight``
    → ``blocks.3``, ``encoder.layer.5...`` → ``encoder.layer.5``), else its owning module's name
    (``head.weight`` → ``head``); a bare parameter is its own layer."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if _INDEX.match(part):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def layer_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters grouped by layer (see `_layer_of`), in the model's order. A frozen
    parameter never moves, so it would only dilute its layer's ratio.

    >>> list(layer_groups(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))))
    ['0 (Linear)', '2 (Linear)']
    """
    modules = dict(model.named_modules())
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(_label(_layer_of(name), modules), []).append(param)
    return groups


def _label(layer: str, modules: dict[str, nn.Module]) -> str:
    """A layer named only by its index in a container (``0`` in an ``nn.Sequential``) gets its type too."""
    module = modules.get(layer)
    if module is not None and _INDEX.match(layer.rsplit(".", 1)[-1]) and "." not in layer:
        return f"{layer} ({type(module).__name__})"
    return layer


def layer_update_ratios(before: dict[str, list[torch.Tensor]], groups: dict[str, list[nn.Parameter]]) -> list[float]:
    """‖w_after − w_before‖ / ‖w_before‖ for each layer of `groups` (in its order), the norms taken over
    all of the layer's tensors together; 0 for a layer whose weights were all zero before.

    All tensors go through foreach kernels at once and come back in one read, not a norm and a
    read per tensor: on a model whose whole step takes a millisecond (the digits MLP) the per-tensor
    calls were a visible share of it."""
    old = [t.detach() for ts in before.values() for t in ts]
    if not old:
        return []
    new = [p.detach() for ps in groups.values() for p in ps]
    return _ratios(torch._foreach_norm(old), torch._foreach_norm(torch._foreach_sub(new, old)), groups)


def _ratios(
    weights: Sequence[torch.Tensor], moves: Sequence[torch.Tensor], groups: dict[str, list[nn.Parameter]]
) -> list[float]:
    """Per-layer ``‖Δw‖ / ‖w‖`` from each tensor's weight and update norms (one read for all)."""
    norms = torch.stack([n.double() for n in (*weights, *moves)])
    squares = (norms * norms).tolist()
    weight_sq, move_sq = squares[: len(weights)], squares[len(weights) :]
    ratios, start = [], 0
    for params in groups.values():
        end = start + len(params)
        weight = math.sqrt(sum(weight_sq[start:end]))
        ratios.append(math.sqrt(sum(move_sq[start:end])) / weight if weight > 0 else 0.0)
        start = end
    return ratios


class UpdateRatioTracker:
    """Measures the per-layer update ratio of every `every`-th step: `before` (ahead of the
    optimizer step, or the guard's step) copies the layers' weights, `after` compares.

    Only those steps pay for the copy, into buffers kept from one measured step to the next and
    turned into the update in place: a full fine-tune copies every trainable weight each time, and
    allocating a fresh copy and a fresh difference cost more than the arithmetic on them.
    A step whose update was not applied (the guard skipped it or rolled back) is not recorded: its
    ratio says nothing about the LR.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        if every < 1:
            raise ValueError(f"UpdateRatioTracker: every must be ≥ 1, got {every}")
        self.every = every
        self.groups = layer_groups(model)
        self.names = list(self.groups)
        self.steps: list[int] = []
        self.ratios: list[list[float]] = []
        self._live = [p.detach() for ps in self.groups.values() for p in ps]
        self._old: list[torch.Tensor] | None = None
        self._step: int | None = None

    def before(self, step: int) -> None:
        """Copy the weights if `step` is one to measure."""
        self._step = None
        if step % self.every == 0 and self._live:
            if self._old is None:
                self._old = [t.clone() for t in self._live]
            else:
                torch._foreach_copy_(self._old, self._live)
            self._step = step

    def after(self, applied: bool = True) -> None:
        """Record the ratios of the step `before` copied, if its update was `applied`."""
        if self._step is None or self._old is None:
            return
        if applied:
            weights = torch._foreach_norm(self._old)
            torch._foreach_sub_(self._old, self._live)  # w_before − w_after: the update's norm, no new memory
            self.ratios.append(_ratios(weights, torch._foreach_norm(self._old), self.groups))
            self.steps.append(self._step)
        self._step = None
