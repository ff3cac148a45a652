"""Where and how a model trains: the device a user names (or the best this machine has), batches
moved to the model's device where a task's loss and metrics read them, and the precision of its
forward passes.

A task's batches and validation sets are built on the host, the same on every machine (their order
and contents are fixed by a seed); its `Task.loss` and `Task.metrics` move what they read to the
device of the model they are given. So any caller that moves a model — fit, tune, the range test —
trains it where it lies, and nothing else needs to know where that is.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEVICE_CHOICES",
    "PRECISIONS",
    "Precision",
    "describe_device",
    "device_of",
    "native_bf16",
    "resolve_device",
    "resolve_precision",
    "to_device",
]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
"""What ``--device`` accepts, for its help and its errors."""


def resolve_device(name: str | None, owner: str = "fit") -> torch.device:
    """`name` as a torch device: None or ``"auto"`` is the first CUDA GPU when torch sees one, else
    the CPU; ``"cpu"``, ``"cuda"`` (the current GPU) and ``"cuda:N"`` are checked against this
    machine, so a wrong name fails before a weight is loaded, naming what it may be.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name is None or name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{owner}: --device {name!r} is not a device; give {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"{owner}: --device {name!r}: lrpilot trains on the CPU or a CUDA GPU; give {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(
            f"{owner}: --device {name!r}: torch {torch.__version__} ({build}) sees no CUDA GPU on this machine; "
            "give --device cpu (or auto, which uses a GPU where there is one)"
        )
    count = torch.cuda.device_count()
    if ":" not in name:  # the current GPU, by number, so that the record says which
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= count:
        raise ValueError(
            f"{owner}: --device {name!r} is out of range: this machine has {count} CUDA GPU(s), "
            f"cuda:0 to cuda:{count - 1}"
        )
    return device


def describe_device(device: torch.device) -> str:
    """``cpu (4 threads)`` or ``cuda:0 (NVIDIA H200)``: where a run trained, for its record."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads > 1 else ''})"


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model without either."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def to_device(batch: Any, device: torch.device) -> Any:
    """`batch` with every tensor in it (a tensor, or tuples, lists and dicts of them) on `device`;
    a tensor already there is the same object, so on the CPU this costs nothing."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matrix products in hardware, so that autocasting to bf16
    saves time: a CUDA GPU from Ampere on, a CPU with AVX512-BF16 or AMX. Elsewhere torch emulates
    bf16, which is slower than fp32 (the CPU checks are torch's private ones, absent before torch
    2.1: then False)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


PRECISIONS = ("fp32", "bf16", "fp16")
"""What ``--precision`` accepts: full precision, or the forward passes autocast to bf16 or fp16."""


@dataclass(frozen=True)
class Precision:
    """How a run's forward passes compute: in fp32, or autocast to bf16 or fp16 on its device (the
    weights, Adam's moments and the losses stay fp32: torch's autocast runs the matrix products in
    the lower precision and the softmax and cross-entropy in fp32). fp16's narrow range needs a
    loss scale (`scaler`), which `TorchGuard` unscales before it judges a gradient."""

    name: str = "fp32"
    device_type: str = "cpu"

    @property
    def amp(self) -> str | None:
        """The range test's ``amp`` (`lrpilot.integrations.torch_finder.find_lr`): None for fp32."""
        return None if self.name == "fp32" else self.name

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward passes' context: nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.name == "bf16" else torch.float16)

    def master(self, model: nn.Module) -> nn.Module:
        """`model` with float32 weights to train: every trainable parameter (AdamW's small updates
        round away in bf16 weights: an update under ~1/256 of a weight is lost), and in fp32 the
        frozen ones too (an fp32 forward pass cannot multiply them with fp32 activations); under
        bf16 or fp16 autocast a frozen half-precision weight stays as stored (a LoRA fine-tune's
        base, nearly all of its memory). In place; returned for chaining."""
        if self.name == "fp32":
            return model.float()
        for param in model.parameters():
            if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
                param.data = param.data.float()
        return model

    def scaler(self) -> Any:
        """A fresh `torch.amp.GradScaler` for fp16, None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def resolve_precision(name: str | None, device: torch.device, owner: str = "fit") -> Precision:
    """`name` (None: fp32) checked for `device`: a GPU without bf16 (before Ampere) is told to use fp16."""
    chosen = "fp32" if name is None else name
    if chosen not in PRECISIONS:
        raise ValueError(f"{owner}: --precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if chosen == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{owner}: --precision bf16: {torch.cuda.get_device_name(device)} does not compute in bf16; "
            "give --precision fp16 (with a loss scale) or fp32"
        )
    return Precision(chosen, device.type)
