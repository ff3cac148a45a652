"""Snapshot and restore everything a trial run touches, bit for bit: `TrainingState`.

An LR range test (or any throw-away trial: probes, a quick sanity run) changes the model's weights
and buffers (BatchNorm running statistics), the optimizer's state and hyperparameters, a
GradScaler's scale and the global random generators. Existing finders restore some of this, only
when the user remembers to call ``reset()`` (torch-lr-finder #11), or not at all for the RNG and
the scaler; their in-memory cache deep-copies the state *on the GPU* (a second copy of parameters
and Adam moments) and their temp files collide between parallel runs (fastai #3240).

`TrainingState.capture` copies the state to host memory (CPU tensors; pinned, asynchronous copies
from CUDA) or, for states too large for that, to files in a private ``tempfile.mkdtemp`` directory
that no other run shares. `restore` writes every value back *into the existing tensors*
(``copy_``), so parameter identity (what the optimizer and any hooks hold), dtypes and devices are
unchanged; `close` deletes the files. Used as a context manager it restores and closes on exit,
also when the block raises or is interrupted::

    with TrainingState.capture(model, optimizer, scaler=scaler):
        ...                              # anything; the state comes back afterwards

What is covered: every parameter and buffer (by name, tied weights once) and their ``.grad``, each
module's train/eval flag, the optimizer's per-parameter state and every param-group entry other
than ``params`` (the LR included), a `torch.amp.GradScaler`, the Python, NumPy (legacy global),
torch CPU and CUDA generators, and extra `torch.Generator` objects you pass (a DataLoader's).
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from lrpilot import _validate as check

__all__ = ["STORAGES", "TrainingState", "loader_generators", "rng_state", "set_rng_state"]

STORAGES = ("auto", "memory", "disk")
"""Where a snapshot lives: host memory, a private temp directory, or chosen by size (``auto``:
disk when the tensors exceed a quarter of the machine's physical memory)."""


def rng_state() -> dict[str, Any]:
    """The global random states: Python, NumPy's legacy global generator, torch CPU, and every
    CUDA device's when CUDA has been initialised (reading it never initialises CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def loader_generators(loader: object) -> list[torch.Generator]:
    """The `torch.Generator` objects a DataLoader draws its shuffling from (its own, its sampler's,
    its batch sampler's sampler's), so a trial that iterates the loader can put them back."""
    found: list[torch.Generator] = []
    candidates = [
        loader,
        getattr(loader, "sampler", None),
        getattr(loader, "batch_sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ]
    for obj in candidates:
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not other for other in found):
            found.append(g)
    return found


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of `t` (pinned and asynchronous from CUDA; the caller synchronises)."""
    t = t.detach()
    if t.device.type == "cuda":
        out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
        return out.copy_(t, non_blocking=True)
    return t.to("cpu", copy=True)


def _host_tree(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return _host_copy(obj)
    if isinstance(obj, dict):
        return {k: _host_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_host_tree(v) for v in obj)
    return copy.deepcopy(obj)


def _put_back(current: Any, saved: Any) -> Any:
    """`saved` written into `current` in place when both are tensors of the same shape, dtype and
    device; otherwise a fresh copy of `saved` on `current`'s device (or as saved)."""
    if isinstance(saved, torch.Tensor):
        if (
            isinstance(current, torch.Tensor)
            and current.shape == saved.shape
            and current.dtype == saved.dtype
            and not current.is_inference()
        ):
            with torch.no_grad():
                current.copy_(saved)
            return current
        device = current.device if isinstance(current, torch.Tensor) else saved.device
        return saved.to(device, copy=True)
    return copy.deepcopy(saved)


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    return 0


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


@dataclass
class TrainingState:
    """A restorable snapshot; build it with `capture`.

    Attributes:
        model, optimizer, scaler, generators: what was captured (kept by reference).
        directory: the private temp directory of a disk snapshot, None in memory; removed by `close`.
        nbytes: bytes of tensor data in the snapshot.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    scaler: Any
    generators: list[torch.Generator]
    directory: Path | None
    nbytes: int
    _tensors: dict[str, Any] = field(repr=False)
    _small: dict[str, Any] = field(repr=False)

    @classmethod
    def capture(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        scaler: Any = None,
        generators: Iterable[torch.Generator] = (),
        storage: str = "auto",
        tmp_dir: str | os.PathLike[str] | None = None,
    ) -> TrainingState:
        """Copy the state now.

        Args:
            model: its trainable parameters, buffers, gradients and train/eval flags are captured.
            optimizer: its state and param groups (LR, betas, ...) are captured.
            scaler: a `torch.amp.GradScaler` (anything with ``state_dict``/``load_state_dict``).
            generators: extra `torch.Generator` objects (see `loader_generators`).
            storage: one of `STORAGES`.
            tmp_dir: where the private directory of a disk snapshot is created (default: the
                system's temp directory, ``$TMPDIR``).
        """
        check.choice("TrainingState.capture", "storage", storage, STORAGES)
        tensors: dict[str, Any] = {
            # frozen parameters (requires_grad False) do not change in training: not copied, so a
            # LoRA model's snapshot is its adapter (gradients are kept for all: usually None)
            "params": {n: _host_copy(p) for n, p in model.named_parameters() if p.requires_grad},
            "grads": {n: None if p.grad is None else _host_copy(p.grad) for n, p in model.named_parameters()},
            "buffers": {n: _host_copy(b) for n, b in model.named_buffers()},
            "optimizer": None,
        }
        small: dict[str, Any] = {
            "training": {n: m.training for n, m in model.named_modules()},
            "rng": rng_state(),
            "generators": [g.get_state() for g in generators],
            "scaler": None,
            "scaler_per_optimizer": None,
        }
        if optimizer is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            tensors["optimizer"] = [_host_tree(optimizer.state.get(p, {})) for p in params]
            small["groups"] = [
                copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in optimizer.param_groups
            ]
        if scaler is not None:
            small["scaler"] = copy.deepcopy(scaler.state_dict())
            per_opt = getattr(scaler, "_per_optimizer_states", None)
            if per_opt is not None:
                small["scaler_per_optimizer"] = copy.deepcopy(dict(per_opt))
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            torch.cuda.synchronize()  # the pinned copies are asynchronous
        nbytes = _nbytes(tensors)
        directory = None
        if storage == "disk" or (storage == "auto" and nbytes > _physical_memory() // 4):
            directory = Path(tempfile.mkdtemp(prefix="lrpilot-state-", dir=tmp_dir))
            try:
                torch.save(tensors, directory / "state.pt")
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            tensors = {}
        return cls(model, optimizer, scaler, list(generators), directory, nbytes, tensors, small)

    def _load_tensors(self) -> dict[str, Any]:
        if self.directory is None:
            return self._tensors
        loaded: dict[str, Any] = torch.load(self.directory / "state.pt", map_location="cpu", weights_only=True)
        return loaded

    def restore(self, *, rng: bool = True) -> None:
        """Write the captured state back (may be called any number of times).

        Args:
            rng: also restore the random generators; a runner that repeats a trial and wants a
                fresh data order each time restores them only at the end.
        """
        tensors = self._load_tensors()
        params = dict(self.model.named_parameters())
        missing = sorted(set(tensors["params"]) - set(params))
        if missing:
            raise RuntimeError(f"TrainingState.restore: the model no longer has parameters {missing[:5]}")
        for name, saved in tensors["params"].items():
            p = params[name]
            if p.shape != saved.shape:
                raise RuntimeError(
                    f"TrainingState.restore: parameter {name!r} changed shape "
                    f"from {tuple(saved.shape)} to {tuple(p.shape)}"
                )
            with torch.no_grad():
                p.copy_(saved)
            grad = tensors["grads"][name]
            p.grad = None if grad is None else _put_back(p.grad, grad)
        modules = dict(self.model.named_modules())
        for name, saved in tensors["buffers"].items():
            owner_name, _, attr = name.rpartition(".")
            module = modules[owner_name]
            module._buffers[attr] = _put_back(module._buffers.get(attr), saved)
        for name, training in self._small["training"].items():
            if name in modules:
                modules[name].training = training
        if self.optimizer is not None:
            self._restore_optimizer(self.optimizer, tensors["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(copy.deepcopy(self._small["scaler"]))
            if self._small["scaler_per_optimizer"] is not None:
                per_opt = self.scaler._per_optimizer_states
                per_opt.clear()
                per_opt.update(copy.deepcopy(self._small["scaler_per_optimizer"]))
        for g, state in zip(self.generators, self._small["generators"], strict=True):
            g.set_state(state)
        if rng:
            set_rng_state(self._small["rng"])

    def _restore_optimizer(self, optimizer: torch.optim.Optimizer, saved_state: list[dict[str, Any]]) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if len(params) != len(saved_state):
            raise RuntimeError("TrainingState.restore: the optimizer's parameter list changed since the snapshot")
        for p, saved in zip(params, saved_state, strict=True):
            if not saved:
                optimizer.state.pop(p, None)
                continue
            current = optimizer.state.get(p, {})
            optimizer.state[p] = {k: _put_back(current.get(k), v) for k, v in saved.items()}
        for group, saved_group in zip(optimizer.param_groups, self._small["groups"], strict=True):
            for key in [k for k in group if k != "params" and k not in saved_group]:
                del group[key]
            for key, value in saved_group.items():
                group[key] = _put_back(group.get(key), value)

    def close(self) -> None:
        """Delete the snapshot's files (disk storage) and drop its tensors."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._tensors = {}

    def __enter__(self) -> TrainingState:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.restore()
        finally:
            self.close()
