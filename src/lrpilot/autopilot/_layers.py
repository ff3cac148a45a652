"""Per-layer update/weight ratios ‖Δw‖/‖w‖ over an optimizer update.

Adam normalises each coordinate's step, so the size of an update relative to the weights it moves
is set by the learning rate, not by the gradient: ‖Δw‖/‖w‖ is the direct read-out of whether the
LR is too high for a layer (ratios near 1e-1 rewrite the layer every few steps) or too low (1e-5
and below barely move it). Karpathy's rule of thumb is about 1e-3. A ratio per *layer* shows the
embeddings or the head running hotter than the body, which a single loss curve cannot.

A LoRA-adapted layer is measured on the weight it computes with, ``W_eff = W0 + scale · B A``:
‖ΔW_eff‖/‖W_eff‖ (`LoraWeight`). The adapter's own A and B would read as far too high at any LR,
since B starts at zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LoraWeight", "UpdateRatioTracker", "layer_groups", "layer_update_ratios", "lora_norms", "lora_weights"]

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
    owners = [i for i, ps in enumerate(groups.values()) for _ in ps]
    moves = torch._foreach_norm(torch._foreach_sub(new, old))
    return _ratios(torch._foreach_norm(old), moves, owners, len(groups))


def _ratios(
    weights: Sequence[torch.Tensor],
    moves: Sequence[torch.Tensor],
    owners: Sequence[int],
    groups: int,
    squares: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
) -> list[float]:
    """Per-layer ``‖Δw‖ / ‖w‖`` over the layers' pieces, read in one go: the norms of each plain
    tensor's weight and update (`weights`, `moves`), then each adapted weight's squared ones
    (`squares`: ``(‖W_eff‖², ‖ΔW_eff‖²)``); `owners` gives each piece's layer, plain tensors first."""
    parts = []
    if weights:
        parts.append(torch.stack([*weights, *moves]).double().square())  # one cast: the norms' values exactly
    if squares:
        parts.append(torch.stack([t.to(parts[0].device if parts else t.device) for pair in squares for t in pair]))
    if not parts:
        return [0.0] * groups
    values = torch.cat(parts).tolist()
    plain = len(weights)
    weight_sq, move_sq = [0.0] * groups, [0.0] * groups
    pieces = [(w, m) for w, m in zip(values[:plain], values[plain : 2 * plain], strict=True)]
    pieces += [(values[k], values[k + 1]) for k in range(2 * plain, len(values), 2)]
    for owner, (weight, move) in zip(owners, pieces, strict=True):
        weight_sq[owner] += weight
        move_sq[owner] += move
    return [math.sqrt(m) / math.sqrt(w) if w > 0 else 0.0 for w, m in zip(weight_sq, move_sq, strict=True)]


@dataclass(frozen=True)
class LoraWeight:
    """One LoRA-adapted weight, whose effective value is ``W_eff = W0 + scale · B A`` (peft's Linear,
    GPT-2's Conv1D with ``fan_in_fan_out``). Its adapter's own ratio says nothing about the LR: B
    starts at zero, so ‖ΔB‖/‖B‖ is huge at any LR (every layer of every LoRA fit read "50× too
    high"). The rule of thumb is about the weight the layer computes with, so that is what is measured.

    Attributes:
        a, b: the adapter's trainable ``A`` (r × in) and ``B`` (out × r).
        module: the adapted module (its ``scaling`` is read at each measurement: peft can change it).
        adapter: the adapter's name in the module.
        base: the frozen ``W0`` as (out × in) (a transposed view for ``fan_in_fan_out``).
    """

    a: nn.Parameter
    b: nn.Parameter
    module: nn.Module
    adapter: str
    base: torch.Tensor

    @property
    def scale(self) -> float:
        """The adapter's scaling (``alpha / r``, or peft's rsLoRA variant)."""
        return float(self.module.scaling[self.adapter])  # type: ignore[index]


def lora_weights(model: nn.Module) -> list[LoraWeight]:
    """Every active LoRA adapter of a linear weight in `model` (peft's layers, found by their
    attributes so that peft need not be installed), in the model's order; DoRA, embedding and
    convolution adapters are left out (their effective weight is not ``W0 + scale · B A``), and
    their parameters are then measured as they are."""
    found = []
    for module in model.modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict):
            continue
        dora = getattr(module, "use_dora", {})
        for adapter in getattr(module, "active_adapters", ()):
            if adapter not in lora_a or adapter not in lora_b or dora.get(adapter, False):
                continue
            a, b = getattr(lora_a[adapter], "weight", None), getattr(lora_b[adapter], "weight", None)
            if not isinstance(a, nn.Parameter) or not isinstance(b, nn.Parameter):
                continue
            base = _effective_base(module, a, b)
            if base is not None:
                found.append(LoraWeight(a, b, module, adapter, base))
    return found


def _effective_base(module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """The module's frozen base weight as (out × in) to match ``B A``, or None where it is not a
    plain matrix of that shape (a quantised base, a convolution) or the adapter is frozen."""
    get_base = getattr(module, "get_base_layer", None)
    base = getattr(get_base() if callable(get_base) else None, "weight", None)
    if not isinstance(base, torch.Tensor) or base.dim() != 2 or a.dim() != 2 or b.dim() != 2:
        return None
    if not (a.requires_grad and b.requires_grad):
        return None
    base = base.detach()
    if getattr(module, "fan_in_fan_out", False):
        base = base.T
    return base if tuple(base.shape) == (b.shape[0], a.shape[1]) and hasattr(module, "scaling") else None


def lora_norms(
    lora: LoraWeight, old_a: torch.Tensor, old_b: torch.Tensor, base_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``‖W_eff‖²`` before an update and ``‖ΔW_eff‖²`` over it, as 0-d float64 tensors, from the
    adapter's weights before (`old_a`, `old_b`) and now, and ``‖W0‖²`` (`base_sq`, fixed).

    Neither (out × in) matrix is formed: with ``ΔW_eff = scale · (dB A' + B dA)`` (dB = B' − B,
    dA = A' − A, exactly B'A' − BA) its norm is that of a product ``U V`` of an (out × 2r) and a
    (2r × in) matrix, ``Σ (UᵀU) ⊙ (V Vᵀ)`` over 2r × 2r Gram matrices; taken from the differences,
    it does not cancel as ‖B'A'‖² + ‖BA‖² − 2⟨B'A', BA⟩ would. ``‖W0 + scale · BA‖²`` expands the
    same way, its cross term ``⟨W0, BA⟩ = Σ (Bᵀ W0) ⊙ A``, one (r × in) product."""
    scale = lora.scale
    a, b = old_a.double(), old_b.double()
    new_a, new_b = lora.a.detach().double(), lora.b.detach().double()
    u = torch.cat([new_b - b, b], dim=1)
    v = torch.cat([new_a, new_a - a], dim=0)
    move_sq = scale * scale * ((u.T @ u) * (v @ v.T)).sum()
    cross = ((old_b.T.float() @ lora.base.float()).double() * a).sum()  # no copy of an fp32 base
    weight_sq = base_sq + 2 * scale * cross + scale * scale * ((b.T @ b) * (a @ a.T)).sum()
    return weight_sq, move_sq


class UpdateRatioTracker:
    """Measures the per-layer update ratio of every `every`-th step: `before` (ahead of the
    optimizer step, or the guard's step) copies the layers' weights, `after` compares.

    Only those steps pay for the copy, into buffers kept from one measured step to the next and
    turned into the update in place: a full fine-tune copies every trainable weight each time, and
    allocating a fresh copy and a fresh difference cost more than the arithmetic on them.
    A step whose update was not applied (the guard skipped it or rolled back) is not recorded: its
    ratio says nothing about the LR. A LoRA-adapted weight counts in its layer as its effective
    weight (`lora_norms`); `adapted` names the layers that hold one.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        if every < 1:
            raise ValueError(f"UpdateRatioTracker: every must be ≥ 1, got {every}")
        self.every = every
        self.groups = layer_groups(model)
        self.names = list(self.groups)
        self.steps: list[int] = []
        self.ratios: list[list[float]] = []
        owner = {id(p): i for i, ps in enumerate(self.groups.values()) for p in ps}
        self._lora = [w for w in lora_weights(model) if id(w.a) in owner and id(w.b) in owner]
        adapted = {id(t) for w in self._lora for t in (w.a, w.b)}
        plain = [p for ps in self.groups.values() for p in ps if id(p) not in adapted]
        self._live = [p.detach() for p in plain]
        self._lora_live = [t.detach() for w in self._lora for t in (w.a, w.b)]
        self._owners = [owner[id(p)] for p in plain] + [owner[id(w.a)] for w in self._lora]
        self._base_sq = [torch.linalg.vector_norm(w.base.float()).double().square() for w in self._lora]
        self.adapted = [self.names[i] for i in sorted({owner[id(w.a)] for w in self._lora})]
        self._old: list[torch.Tensor] | None = None
        self._lora_old: list[torch.Tensor] | None = None
        self._step: int | None = None

    def before(self, step: int) -> None:
        """Copy the weights if `step` is one to measure."""
        self._step = None
        if step % self.every == 0 and (self._live or self._lora_live):
            self._old = _copied(self._old, self._live)
            self._lora_old = _copied(self._lora_old, self._lora_live)
            self._step = step

    def after(self, applied: bool = True) -> None:
        """Record the ratios of the step `before` copied, if its update was `applied`."""
        if self._step is None or self._old is None or self._lora_old is None:
            return
        if applied:
            old = self._lora_old
            squares = [
                lora_norms(w, old[2 * k], old[2 * k + 1], base)
                for k, (w, base) in enumerate(zip(self._lora, self._base_sq, strict=True))
            ]
            weights: list[torch.Tensor] = []
            moves: list[torch.Tensor] = []
            if self._old:
                weights = list(torch._foreach_norm(self._old))
                torch._foreach_sub_(self._old, self._live)  # w_before − w_after: the update's norm, no new memory
                moves = list(torch._foreach_norm(self._old))
            self.ratios.append(_ratios(weights, moves, self._owners, len(self.names), squares))
            self.steps.append(self._step)
        self._step = None


def _copied(buffers: list[torch.Tensor] | None, live: list[torch.Tensor]) -> list[torch.Tensor]:
    """`live` copied into `buffers` (made on the first call, reused after)."""
    if buffers is None:
        return [t.clone() for t in live]
    if live:
        torch._foreach_copy_(buffers, live)
    return buffers
