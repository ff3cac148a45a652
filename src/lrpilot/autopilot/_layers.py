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
    new = [p.detach() for ps in groups.values() for p in ps]
    if not old:
        return []
    deltas = torch._foreach_sub(new, old)
    norms = torch.stack([n.double() for n in (*torch._foreach_norm(old), *torch._foreach_norm(deltas))])
    squares = (norms * norms).tolist()
    weights, moves = squares[: len(old)], squares[len(old) :]
    ratios, start = [], 0
    for params in groups.values():
        end = start + len(params)
        weight = math.sqrt(sum(weights[start:end]))
        ratios.append(math.sqrt(sum(moves[start:end])) / weight if weight > 0 else 0.0)
        start = end
    return ratios


class UpdateRatioTracker:
    """Measures the per-layer update ratio of every `every`-th step: `before` (ahead of the
    optimizer step, or the guard's step) copies the layers' weights, `after` compares.

    Only those steps pay for the copy. A step whose update was not applied (the guard skipped it or
    rolled back) is not recorded: its ratio says nothing about the LR.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        if every < 1:
            raise ValueError(f"UpdateRatioTracker: every must be ≥ 1, got {every}")
        self.every = every
        self.groups = layer_groups(model)
        self.names = list(self.groups)
        self.steps: list[int] = []
        self.ratios: list[list[float]] = []
        self._before: dict[str, list[torch.Tensor]] | None = None
        self._step = -1

    def before(self, step: int) -> None:
        """Copy the weights if `step` is one to measure."""
        self._before = None
        if step % self.every == 0 and self.groups:
            with torch.no_grad():
                self._before = {k: [p.detach().clone() for p in ps] for k, ps in self.groups.items()}
            self._step = step

    def after(self, applied: bool = True) -> None:
        """Record the ratios of the step `before` copied, if its update was `applied`."""
        if self._before is None:
            return
        if applied:
            with torch.no_grad():
                self.ratios.append(layer_update_ratios(self._before, self.groups))
            self.steps.append(self._step)
        self._before = None
