"""The LR range test on a PyTorch model: `find_lr` (the answer) and `range_test` (one curve).

::

    result = find_lr(model, optimizer, train_loader, nn.functional.cross_entropy, total_steps=10_000)
    result.peak_lr, result.band, result.max_stable_lr   # the peak of a warmup + decay recipe, for 10k steps
    schedule = result.schedule                          # Cosine(peak=..., total_steps=10_000, ...)

What it does, and why:

* **Optimizer steps, not batches.** The ramp advances once per optimizer step: with
  ``accumulation_steps=k`` each point averages k micro-batch losses (Lightning #1726, holocron #504
  advanced the LR per micro-batch), and an fp16 step that the GradScaler skips for overflow is
  retried at the same LR instead of burning a rung of the ramp.
* **Everything comes back.** Weights, buffers (BatchNorm statistics), gradients, train/eval flags,
  optimizer state and LRs, the GradScaler, and the Python / NumPy / torch / CUDA generators (and
  the loader's own generators) are restored bit for bit when the test ends, raises, or is
  interrupted; see `lrpilot.integrations.torch_state`. The snapshot lives in host memory (or, for
  states over a quarter of physical memory, in a private temp directory that is always removed),
  never as a second copy on the GPU.
* **Data.** The finder iterates *a fresh iterator* of `data` (a DataLoader or any re-iterable), so
  a loop you are in the middle of is not advanced (nor rewound: a DataLoader with persistent workers
  is iterated through a copy with workers of its own); a loader shorter than the test is cycled (each
  pass a new epoch, reshuffled as your loader does), with a `RangeTestWarning` that says how many
  batches it has and how many the test took. A plain iterator (a generator, an endless
  stream) cannot be rewound: the finder consumes batches from it, and running out is an error.
* **Batches.** ``(inputs, targets)`` with ``loss_fn(model(inputs), targets)``; a dict (Hugging Face
  style) with ``model(**batch).loss``; or anything, with your own ``step=lambda batch: loss``.
  Tensors in the batch are moved to the model's device.
* **Distributed.** Under ``torch.distributed`` each point's loss is all-reduced (mean) and the
  overflow flag max-reduced before anything is decided, so every rank records the same curve,
  stops at the same step and returns the same suggestion, even with different data per rank.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from lrpilot import _validate as check
from lrpilot.finder import (
    MODES,
    DivergenceRule,
    FinderResult,
    Probe,
    RangeTestError,
    RangeTestInterrupted,
    RangeTestMonitor,
    RangeTestRecord,
    RangeTestWarning,
    analyze,
    default_beta,
    plan_probes,
    ramp_schedule,
    recipe_schedule,
    short_candidates,
    thorough_tests,
)
from lrpilot.integrations.torch_state import STORAGES, TrainingState, loader_generators
from lrpilot.rules._horizon import CALIBRATED_STEPS, calibrated_range, stretched_to_epoch

__all__ = ["AMP_MODES", "find_lr", "range_test"]

AMP_MODES = (None, "bf16", "fp16")
"""Mixed precision: none, bf16 autocast, or fp16 autocast with a `torch.amp.GradScaler`."""

StepFn = Callable[[Any], torch.Tensor]
"""``step(batch) -> loss``: a scalar loss tensor for one (micro-)batch; the finder does the rest."""

Callback = Callable[[int, float, float], None]
"""``callback(point, lr, loss)`` after every point of the curve (for progress bars)."""

_MAX_CONSECUTIVE_SKIPS = 25
"""An fp16 test stops as non-finite after this many overflow skips in a row (the scale halves
each time, so 25 skips is a factor of 3e7: the gradients are not finite at any scale)."""

_MIN_POINTS = 5
"""Points a curve needs to be read (`lrpilot.finder.curve_features`); `num_steps` has the same floor."""

_NoSync = Callable[[], contextlib.AbstractContextManager[Any]]


def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple) and not hasattr(batch, "_fields"):
        return type(batch)(_move(v, device) for v in batch)
    return batch


def _own_loader(data: Iterable[Any]) -> Iterable[Any]:
    """`data`, or for a DataLoader with persistent workers a shallow copy with workers of its own:
    such a loader hands every ``iter()`` the same iterator, reset, so the finder's would rewind the
    epoch a loop of the user's is in the middle of (its generator is shared, and restored)."""
    if isinstance(data, DataLoader) and data.persistent_workers and data.num_workers > 0:
        own = copy.copy(data)
        own._iterator = None
        return own
    return data


class _Batches:
    """Batches from a fresh iterator of a re-iterable (cycled), or from a live iterator (consumed)."""

    def __init__(self, data: Iterable[Any], name: str) -> None:
        self.data, self.name = _own_loader(data), name
        # an iterator is its own iter(); asking a re-iterable would start (and drop) a pass: a
        # DataLoader's worker processes
        self.one_shot = isinstance(data, Iterator)
        self._it: Iterator[Any] = iter(self.data)
        self.served = 0
        self.pass_length: int | None = None
        """Batches in one pass of a re-iterable the test went past the end of (None: it did not)."""

    def __next__(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.one_shot or self.served == 0:
                what = "yielded no batches" if self.served == 0 else f"ran out after {self.served} batches"
                hint = "" if self.served == 0 else "; pass a re-iterable (a DataLoader), which the finder cycles"
                raise RangeTestError(f"range test: {self.name} {what}{hint}") from None
            if self.pass_length is None:
                self.pass_length = self.served
            self._it = iter(self.data)
            try:
                batch = next(self._it)
            except StopIteration:
                raise RangeTestError(f"range test: {self.name} yielded no batches on its second pass") from None
        self.served += 1
        return batch


class _Replay:
    """The same batches for every probe: drawn from `source` by the first probe that needs them,
    replayed (from the start) by each later one after `rewind`, so probes differ only in their LR."""

    def __init__(self, source: _Batches) -> None:
        self.source = source
        self.cache: list[Any] = []
        self.position = 0

    def rewind(self) -> None:
        self.position = 0

    def __next__(self) -> Any:
        if self.position == len(self.cache):
            self.cache.append(next(self.source))
        self.position += 1
        return self.cache[self.position - 1]


@dataclass
class _Loop:
    """One optimizer step at a given LR, the way the user's training loop would take it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    compute: Callable[[Any], torch.Tensor]
    accumulation_steps: int
    amp: str | None
    scaler: Any
    max_grad_norm: float | None
    group: Any
    ratios: list[float]

    @functools.cached_property
    def device(self) -> torch.device:
        """The model's (it stays there during a test): a walk over its parameters, asked once."""
        return next(p.device for p in self.model.parameters())

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def reduce(self, loss: float, flag: bool = False) -> tuple[float, bool]:
        """One all-reduce (SUM) per point: the mean loss across ranks, and whether any rank raised
        the flag (an AMP overflow). A NaN on any rank makes the mean NaN, so every rank stops."""
        if self.group is None:
            return loss, flag
        dist = torch.distributed
        device = self.device if dist.get_backend(self.group) == "nccl" else torch.device("cpu")
        buffer = torch.tensor([loss, float(flag)], dtype=torch.float64, device=device)
        dist.all_reduce(buffer, group=self.group)
        total, flags = buffer.tolist()
        return total / dist.get_world_size(self.group), flags > 0

    def set_lr(self, lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self.ratios, strict=True):
            group["lr"] = lr * ratio

    def step(self, lr: float, batches: _Batches | _Replay) -> tuple[float, bool]:
        """One optimizer step at `lr`: (the mean micro-batch loss, whether the scaler skipped it).

        A non-finite loss is returned without stepping."""
        self.set_lr(lr)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        k = self.accumulation_steps
        finite = True
        device = self.device
        for micro in range(k):
            batch = _move(next(batches), device)
            sync = micro == k - 1 or not hasattr(self.model, "no_sync")
            # DDP: gradients are all-reduced once per optimizer step, not per micro-batch.
            ctx = contextlib.nullcontext() if sync else cast("_NoSync", self.model.no_sync)()
            with ctx:
                with self.autocast():
                    loss = self.compute(batch)
                _check_loss(loss)
                value = float(loss.detach().float().item())
                total += value
                if not math.isfinite(value):
                    finite = False
                    break
                scaled = loss.float() / k if k > 1 else loss.float()  # a division by 1 is a node in the graph
                if self.scaler is not None:
                    scaled = self.scaler.scale(scaled)
                scaled.backward()  # type: ignore[no-untyped-call]
        mean_loss = total / k if finite else math.nan
        if finite:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            if self.scaler is not None:
                scale = float(self.scaler.get_scale())
                self.scaler.step(self.optimizer)
                self.scaler.update()
                skipped = float(self.scaler.get_scale()) < scale
            else:
                self.optimizer.step()
                skipped = False
        else:
            skipped = False
        self.optimizer.zero_grad(set_to_none=True)
        return self.reduce(mean_loss, skipped)

    def evaluate(self, batches: list[Any]) -> float:
        """Mean loss over fixed batches, in eval mode without gradients; modes restored after."""
        modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        try:
            with torch.no_grad():
                total = 0.0
                for batch in batches:
                    with self.autocast():
                        total += float(self.compute(_move(batch, self.device)).detach().float().item())
        finally:
            for m, training in modes.items():
                m.training = training
        return self.reduce(total / len(batches))[0]


def _check_loss(loss: object) -> None:
    if isinstance(loss, torch.Tensor) and loss.numel() != 1:
        raise RangeTestError(
            f"range test: the loss must be a scalar tensor, got a tensor of shape {tuple(loss.shape)}; "
            "reduce it (reduction='mean', or .mean()) as your training loop does"
        )
    if not isinstance(loss, torch.Tensor):
        hint = (
            " (return the loss tensor itself, e.g. out['loss'])"
            if isinstance(loss, Mapping | tuple)
            else " (a number has no gradient: return the tensor, not loss.item())"
            if isinstance(loss, int | float)
            else ""
        )
        raise RangeTestError(f"range test: the loss must be a scalar tensor, got {type(loss).__name__}{hint}")
    if not loss.requires_grad:
        raise RangeTestError(
            "range test: the loss does not require grad (no trainable parameter reaches it, or it was detached)"
        )


def _compute_fn(model: nn.Module, loss_fn: Callable[..., torch.Tensor] | None, step: StepFn | None) -> StepFn:
    if step is not None:
        if loss_fn is not None:
            raise ValueError("find_lr: give loss_fn or step, not both")
        return step

    def compute(batch: Any) -> torch.Tensor:
        if loss_fn is None:
            if not isinstance(batch, Mapping):
                raise RangeTestError(
                    "range test: without loss_fn the batch must be a dict for model(**batch).loss "
                    f"(Hugging Face style), got {type(batch).__name__}; pass loss_fn or step"
                )
            out = model(**batch)
            loss = out["loss"] if isinstance(out, Mapping) else getattr(out, "loss", None)
            if loss is None:
                raise RangeTestError("range test: model(**batch) returned no loss; include labels, or pass loss_fn")
            return loss  # type: ignore[no-any-return]
        if not (isinstance(batch, list | tuple) and len(batch) == 2):
            raise RangeTestError(
                f"range test: with loss_fn a batch must be (inputs, targets), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, list | tuple) else "")
                + "; use step=lambda batch: ... for other layouts"
            )
        inputs, targets = batch
        if isinstance(inputs, Mapping):
            outputs = model(**inputs)
        elif isinstance(inputs, list | tuple):
            outputs = model(*inputs)
        else:
            outputs = model(inputs)
        return loss_fn(outputs, targets)

    return compute


def _process_group(process_group: Any) -> Any:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = process_group if process_group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def _check_setup(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[float]:
    """Bad input that needs no step: returns each param group's LR relative to the largest."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"find_lr: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"find_lr: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("find_lr: the model has no trainable parameters (every parameter has requires_grad=False)")
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(
            f"find_lr: the model's parameters are on the 'meta' device ({len(meta)}, e.g. {meta[0]!r}): they hold "
            "no values to train or restore; materialise the model first (model.to_empty(device=...) and load "
            "its weights, or build it outside torch.device('meta'))"
        )
    if not any(p.requires_grad for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("find_lr: the optimizer holds no trainable parameters")
    if any("initial_lr" in g for g in optimizer.param_groups):
        raise ValueError(
            "find_lr: an LR scheduler is already attached to this optimizer (its param groups have "
            "'initial_lr'); it has captured the current LR as its base and would ignore the one found. "
            "Run the finder first, then build the scheduler (result.schedule is a ready one)"
        )
    lrs = [float(g["lr"]) for g in optimizer.param_groups]
    top = max(lrs)
    return [lr / top if top > 0 else 1.0 for lr in lrs]


@dataclass(frozen=True)
class _Settings:
    start_lr: float
    end_lr: float
    num_steps: int
    ramp: str
    beta: float
    divergence: DivergenceRule
    val_every: int


def _settings(
    *,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    ramp: str,
    beta: float | None,
    divergence: DivergenceRule | None,
    val_every: int,
    val_batches: int,
    val_mode: bool,
    repeats: int,
    mode: str,
    storage: str,
    total_steps: int | None,
    warmup_ratio: float,
    floor_ratio: float,
    decay: str,
    calibrated_steps: tuple[int, int] | None,
    probe_budget: int | None,
) -> _Settings:
    """Every argument check that needs no model, before anything runs."""
    owner = "find_lr"
    check.step_count(owner, "num_steps", num_steps, _MIN_POINTS)
    ramp_schedule(start_lr, end_lr, num_steps, ramp, owner=owner)  # "find_lr: start_lr must be < end_lr"
    check.step_count(owner, "val_batches", val_batches, 1)
    check.step_count(owner, "val_every", val_every, 1)
    check.step_count(owner, "repeats", repeats, 1)
    check.choice(owner, "mode", mode, MODES)
    check.choice(owner, "storage", storage, STORAGES)
    if total_steps is not None:
        check.step_count(owner, "total_steps", total_steps, 1)
        ratios = {"warmup_ratio": warmup_ratio, "floor_ratio": floor_ratio}
        recipe_schedule(1.0, total_steps, **ratios, decay=decay, owner=owner)
    if calibrated_steps is not None:
        calibrated_range(owner, calibrated_steps, "calibrated_steps")
    if mode == "thorough" and total_steps is None:
        raise ValueError("find_lr: mode='thorough' needs total_steps (how many range tests 10 % of your run pays for)")
    if probe_budget is not None:
        check.step_count(owner, "probe_budget", probe_budget, 84)
    points = math.ceil(num_steps / val_every)  # validated every val_every steps and at the last
    if val_mode and points < _MIN_POINTS:
        raise ValueError(
            f"find_lr: val_every={val_every} gives {points} validation point(s) over num_steps={num_steps}; the "
            f"curve needs at least {_MIN_POINTS}: val_every at most {math.ceil(num_steps / (_MIN_POINTS - 1)) - 1}"
        )
    if beta is None:
        beta = default_beta(max(1, num_steps // val_every) if val_mode else num_steps)
    check.in_range(owner, "beta", beta, 0.0, 1.0, high_open=True)
    if divergence is not None and not isinstance(divergence, DivergenceRule):
        raise TypeError(f"find_lr: divergence must be a DivergenceRule, got {type(divergence).__name__}")
    return _Settings(
        start_lr=float(start_lr),
        end_lr=float(end_lr),
        num_steps=num_steps,
        ramp=ramp,
        beta=float(beta),
        divergence=divergence or DivergenceRule(),
        val_every=val_every,
    )


def _run_curve(
    loop: _Loop, batches: _Batches, val: list[Any] | None, s: _Settings, *, seed: int | None, callback: Callback | None
) -> RangeTestRecord:
    """The ramp, step by step, until done, diverged, non-finite or interrupted."""
    schedule = ramp_schedule(s.start_lr, s.end_lr, s.num_steps, s.ramp)
    monitor = RangeTestMonitor(beta=s.beta, rule=s.divergence)
    lrs: list[float] = []
    train_losses: list[float] = []
    skipped = consecutive = 0
    reason = "completed"
    started = time.perf_counter()
    loop.model.train()  # as a training loop would; the modes are restored with the rest
    try:
        i = 0
        while i < s.num_steps:
            lr = float(schedule(i))
            loss, was_skipped = loop.step(lr, batches)
            if was_skipped and math.isfinite(loss):
                skipped += 1
                consecutive += 1
                if consecutive >= _MAX_CONSECUTIVE_SKIPS:
                    reason = "non-finite"
                    break
                continue
            consecutive = 0
            train_losses.append(loss)
            if i == 0 and not math.isfinite(loss):
                raise RangeTestError(
                    f"range test: the loss at the first step (lr={lr:.3g}) is {loss}: check the model, the data and "
                    "the loss function (a NaN before any large LR is not the learning rate's fault)"
                )
            point = loss
            if val is not None and math.isfinite(loss):
                if (i + 1) % s.val_every and i + 1 < s.num_steps:
                    i += 1
                    continue
                point = loop.evaluate(val)
            lrs.append(lr)
            stop = monitor.update(point if math.isfinite(loss) else math.nan, lr)
            if callback is not None:
                callback(len(lrs) - 1, lr, point)
            i += 1
            if stop is not None:
                reason = stop
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    n = len(lrs)
    return RangeTestRecord(
        lrs=tuple(lrs),
        losses=tuple(monitor.losses[:n]),
        smoothed=tuple(monitor.smoothed[:n]),
        steps=len(train_losses),
        num_steps=s.num_steps,
        stop_reason=reason,
        ramp=s.ramp,
        start_lr=s.start_lr,
        end_lr=s.end_lr,
        metric="train" if val is None else "val",
        beta=s.beta,
        train_losses=tuple(train_losses),
        skipped_steps=skipped,
        seed=seed,
        wall_time_s=time.perf_counter() - started,
    )


def _run_probe(
    loop: _Loop, batches: _Replay, val: list[Any] | None, *, peak: float, steps: int, recipe: dict[str, Any]
) -> Probe:
    """A complete short recipe (warmup + decay) at `peak`, scored by its final loss: the validation
    loss, or the mean training loss of the last fifth of the steps."""
    schedule = recipe_schedule(peak, steps, **recipe)
    loop.model.train()
    batches.rewind()
    losses: list[float] = []
    t = guard = 0
    while t < steps and guard < steps + _MAX_CONSECUTIVE_SKIPS:
        guard += 1
        loss, was_skipped = loop.step(float(schedule(t)), batches)
        if was_skipped and math.isfinite(loss):
            continue
        losses.append(loss)
        t += 1
        if not math.isfinite(loss):
            return Probe(peak, len(losses), math.nan, tuple(losses))
    if val is not None:
        score = loop.evaluate(val)
    else:
        tail = losses[-max(1, len(losses) // 5) :]
        score = sum(tail) / len(tail)
    return Probe(peak, len(losses), score if math.isfinite(score) else math.nan, tuple(losses))


def _prepare(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor] | None,
    step: StepFn | None,
    accumulation_steps: int,
    amp: str | None,
    scaler: Any,
    max_grad_norm: float | None,
    process_group: Any,
) -> _Loop:
    ratios = _check_setup(model, optimizer)
    if data is None or not isinstance(data, Iterable):
        raise TypeError(f"find_lr: data must be an iterable of batches (a DataLoader), got {type(data).__name__}")
    check.step_count("find_lr", "accumulation_steps", accumulation_steps, 1)
    if amp not in AMP_MODES:
        raise ValueError(f"find_lr: amp must be one of {list(AMP_MODES)}, got {amp!r}")
    if max_grad_norm is not None:
        check.positive("find_lr", "max_grad_norm", max_grad_norm)
    if amp == "fp16" and scaler is None:
        device = next(p.device for p in model.parameters())
        scaler = torch.amp.GradScaler(device.type)
    compute = _compute_fn(model, loss_fn, step)
    group = _process_group(process_group)
    return _Loop(model, optimizer, compute, accumulation_steps, amp, scaler, max_grad_norm, group, ratios)


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor] | None = None,
    **kwargs: Any,
) -> RangeTestRecord:
    """One range test, state restored afterwards: the raw curve, without a suggestion.

    Takes `find_lr`'s arguments (``repeats`` and ``mode`` excepted) and returns its record.
    """
    for name in ("repeats", "mode", "probe_budget", "total_steps", "calibrated_steps"):
        if name in kwargs:
            raise TypeError(f"range_test: {name!r} is a find_lr option")
    options = {name: p.default for name, p in inspect.signature(find_lr).parameters.items()}
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(f"range_test: unknown options {unknown}")
    options.update(kwargs, model=model, optimizer=optimizer, data=data, loss_fn=loss_fn)
    return cast(RangeTestRecord, _find(options, records_only=True))


def find_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor] | None = None,
    *,
    step: StepFn | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    ramp: str = "exp",
    accumulation_steps: int = 1,
    amp: str | None = None,
    scaler: Any = None,
    max_grad_norm: float | None = None,
    val_data: Iterable[Any] | None = None,
    val_batches: int = 4,
    val_every: int = 1,
    total_steps: int | None = None,
    warmup_ratio: float = 0.05,
    floor_ratio: float = 0.1,
    decay: str = "cosine",
    calibrated_steps: tuple[int, int] | None = CALIBRATED_STEPS,
    mode: str = "fast",
    repeats: int = 1,
    probe_budget: int | None = None,
    beta: float | None = None,
    divergence: DivergenceRule | None = None,
    storage: str = "auto",
    tmp_dir: str | None = None,
    process_group: Any = None,
    callback: Callback | None = None,
) -> FinderResult:
    """Run the LR range test on `model` and suggest the peak LR of a warmup + decay recipe.

    Args:
        model, optimizer: what you will train, as you will train it (the optimizer's type, betas
            and weight decay shape the curve). Param groups keep their LR ratios to the largest.
        data: training batches (see the module docstring for layouts and how they are consumed).
        loss_fn: ``loss_fn(model(inputs), targets)``; omit for dict batches (``model(**batch).loss``).
        step: ``step(batch) -> loss`` instead of `loss_fn`, for any other forward pass.
        start_lr, end_lr, num_steps, ramp: the ramp: `num_steps` optimizer steps (≥ 5) from
            `start_lr` to `end_lr`, ``"exp"`` (default) or ``"linear"``. The test stops early once
            the loss diverges (`divergence`) or is not finite.
        accumulation_steps: micro-batches per optimizer step.
        amp: ``"bf16"`` autocast, or ``"fp16"`` autocast with `scaler` (a `torch.amp.GradScaler`;
            one is made if None). Overflow-skipped steps are retried at the same LR.
        max_grad_norm: clip the gradient norm as your training does.
        val_data, val_batches, val_every: validation mode: the curve is the mean loss on the first
            `val_batches` batches of `val_data`, measured in eval mode every `val_every` steps.
        total_steps, warmup_ratio, floor_ratio, decay: your run, for the ready `schedule`
            (`lrpilot.finder.recipe_schedule`) and for thorough mode's range tests and probes.
        calibrated_steps: the run lengths lrpilot's rule is calibrated at (150–1000 steps, the
            built-in recipes'). For a `total_steps` outside them the peak and band are moved to
            your run's length by the horizon law (`lrpilot.rules.at_horizon`: a 10,000-step run
            gets 0.23× the peak, a shorter one more, never above the max stable LR;
            ``result.details["horizon"]`` says by how much). By default the upper end is
            stretched to one epoch of `data` when it has a length (the law's stretching side was
            measured on runs that see their data several times). None: the peak for a run of a
            calibrated length.
        mode: ``"fast"`` (one range test) or ``"thorough"`` (2 to 4 range tests on fresh batches,
            as many as 10 % of `total_steps` pays for, at least 2: `lrpilot.finder.thorough_tests`;
            needs `total_steps`), see `lrpilot.finder.analyze`.
        repeats: range tests to run (each with fresh data order); the band uses their spread. In
            thorough mode, the larger of this and `lrpilot.finder.thorough_tests`.
        probe_budget: thorough mode only, opt-in: also run short probe runs of the recipe at
            candidate peaks from the band, with this many optimizer steps for all of them together
            (at least 84; `lrpilot.finder.probe_budget` gives 10 % of `total_steps`), and take the
            peak from them (`lrpilot.finder.plan_probes`). None (the default): no probes.
        beta: EMA coefficient of the smoothed curve (default `lrpilot.finder.default_beta`).
        divergence: the stop rule (default `lrpilot.finder.DivergenceRule()`).
        storage, tmp_dir: where the state snapshot lives (`lrpilot.integrations.torch_state`).
        process_group: the group to agree in under torch.distributed (default: the world).
        callback: ``callback(point, lr, loss)`` after every point (progress bars).

    Returns:
        A `lrpilot.finder.FinderResult`.

    Raises:
        ValueError, TypeError: bad arguments (nothing is run).
        RangeTestError: the test could not produce a curve (empty data, a NaN loss at the first
            step, a loss that does not reach the trainable parameters, ...); state restored.
        RangeTestInterrupted: Ctrl-C; state restored, ``.record`` has the partial curve, ``.records``
            also the range tests completed before it (thorough mode, `repeats`).
    """
    return cast(FinderResult, _find(dict(locals()), records_only=False))


def _find(a: dict[str, Any], *, records_only: bool) -> FinderResult | RangeTestRecord:
    """`find_lr`'s work, on its arguments `a`; `range_test` stops after the first record."""
    model, optimizer, data, val_data = a["model"], a["optimizer"], a["data"], a["val_data"]
    total_steps, mode, repeats = a["total_steps"], a["mode"], a["repeats"]
    recipe = {"warmup_ratio": a["warmup_ratio"], "floor_ratio": a["floor_ratio"], "decay": a["decay"]}
    settings = _settings(
        start_lr=a["start_lr"],
        end_lr=a["end_lr"],
        num_steps=a["num_steps"],
        ramp=a["ramp"],
        beta=a["beta"],
        divergence=a["divergence"],
        val_every=a["val_every"],
        val_batches=a["val_batches"],
        val_mode=val_data is not None,
        repeats=repeats,
        mode=mode,
        storage=a["storage"],
        total_steps=total_steps,
        calibrated_steps=a["calibrated_steps"],
        probe_budget=a["probe_budget"],
        **recipe,
    )
    loop = _prepare(
        model=model,
        optimizer=optimizer,
        data=data,
        loss_fn=a["loss_fn"],
        step=a["step"],
        accumulation_steps=a["accumulation_steps"],
        amp=a["amp"],
        scaler=a["scaler"],
        max_grad_norm=a["max_grad_norm"],
        process_group=a["process_group"],
    )
    generators = loader_generators(data) + (loader_generators(val_data) if val_data is not None else [])
    started = time.perf_counter()
    state = TrainingState.capture(
        model, optimizer, scaler=loop.scaler, generators=generators, storage=a["storage"], tmp_dir=a["tmp_dir"]
    )
    try:
        val = None
        if val_data is not None:
            val_iter = _Batches(val_data, "val_data")
            val = [next(val_iter) for _ in range(a["val_batches"])]
        batches = _Batches(data, "data")
        records: list[RangeTestRecord] = []
        if mode == "thorough" and not records_only:
            repeats = max(repeats, thorough_tests(total_steps, settings.num_steps))
        for r in range(repeats):
            record = _run_curve(loop, batches, val, settings, seed=r if repeats > 1 else None, callback=a["callback"])
            state.restore(rng=False)
            if record.stop_reason == "interrupted":
                raise RangeTestInterrupted(record, tuple(records))
            if records_only:
                _warn_if_cycled(batches, record.steps + record.skipped_steps)
                return record
            records.append(record)
        probes: list[Probe] = []
        if mode == "thorough" and a["probe_budget"] is not None:
            try:
                probes = _run_probes(
                    loop,
                    batches,
                    val,
                    state,
                    records=records,
                    total_steps=total_steps,
                    budget=a["probe_budget"],
                    recipe=recipe,
                )
            except KeyboardInterrupt as exc:  # the completed tests go with it, as within them
                raise RangeTestInterrupted(records[-1], tuple(records[:-1]), probing=True) from exc
        _warn_if_cycled(
            batches,
            sum(r.steps + r.skipped_steps for r in records) + sum(p.steps for p in probes),
            _runs(len(records), len(probes)),
        )
        calibrated = _calibrated(a["calibrated_steps"], data, a["accumulation_steps"])
        try:
            result = _analyzed(records, probes=probes, total_steps=total_steps, calibrated_steps=calibrated, **recipe)
        except ValueError as exc:  # a curve without an answer in it; the records go with the error
            message = f"range test: no suggestion from this curve: {exc}{_non_finite_note(records)}"
            raise RangeTestError(message, tuple(records)) from exc
    finally:
        try:
            state.restore()
        finally:
            state.close()
    steps_used = sum(r.steps + r.skipped_steps for r in records) + sum(p.steps for p in probes)
    return replace(result, steps_used=steps_used, wall_time_s=time.perf_counter() - started)


def _analyzed(records: Sequence[RangeTestRecord], **kwargs: Any) -> FinderResult:
    """`analyze`, its warnings (a weak fall, a loss still falling at end_lr) given from the line that
    called `find_lr`: they named this module's line, where Python's default filter shows a warning
    once per line and text, so a second model's curve still falling at its end_lr, in the same
    process (a notebook), was never warned of."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RangeTestWarning)
            return analyze(records, **kwargs)
    finally:
        for w in caught:
            if issubclass(w.category, RangeTestWarning):  # from here: 1 this line, 2 _find, 3 find_lr, 4 its caller
                warnings.warn(w.message, w.category, stacklevel=4)
            else:  # another's (numpy's), from where it was raised, as if never caught
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _runs(tests: int, probes: int) -> str:
    """What drew the batches: ``the range test took``, or thorough mode's ``the 2 range tests took
    together`` (each goes on where the last one stopped: two 84-step tests were read as one
    167-step test), with its probe runs."""
    if tests == 1 and probes == 0:
        return "the range test took"
    tried = f" and {probes} probe runs" if probes else ""
    return f"the {tests} range test{'s' if tests > 1 else ''}{tried} took together"


def _warn_if_cycled(batches: _Batches, steps: int, runs: str = "the range test took") -> None:
    """A `RangeTestWarning` where the test went past the end of `data` and saw its batches again: a
    model scores lower on batches it has already trained on, so the loss the test reads as the LR
    rises falls further than on fresh ones, which can put the minimum, and the peak, high. `runs`:
    what took the batches (`_runs`)."""
    if batches.pass_length is None:
        return
    passes = batches.served / batches.pass_length
    warnings.warn(
        f"data has {batches.pass_length} batches, fewer than {runs} ({steps} optimizer steps, "
        f"{batches.served} batches): it went over them {passes:.1f} times, and a loss read on batches the model "
        "has already trained on is lower than on fresh ones, which can place the peak high; give it at least "
        f"{batches.served} batches (more data or a smaller batch) or take fewer num_steps",
        RangeTestWarning,
        stacklevel=4,
    )


def _non_finite_note(records: Sequence[RangeTestRecord]) -> str:
    """Where a curve without an answer ended on a non-finite loss, where and at which LR: a bad batch
    (a NaN input) at step 17 of 100, at lr 2e-6, otherwise read as "the range starts above every
    usable LR (lower start_lr)", which sends the user the wrong way."""
    for r in records:
        if r.stop_reason == "non-finite" and r.lrs:
            return (
                f". The test stopped at step {r.steps} of {r.num_steps} on a non-finite loss or gradient "
                f"(lr={r.lrs[-1]:.3g}) before the curve had an answer: look at the data and the model (a NaN "
                "input, log(0), an fp16 overflow) before the LR range"
            )
    return ""


def _calibrated(calibrated: tuple[int, int] | None, data: Any, accumulation_steps: int) -> tuple[int, int] | None:
    """The default calibrated range stretched to one epoch of `data` when it has a length
    (`lrpilot.rules.stretched_to_epoch`, as ``lrpilot fit`` does for a user's model)."""
    if calibrated != CALIBRATED_STEPS:
        return calibrated
    try:
        epoch = math.ceil(len(data) / accumulation_steps)
    except TypeError:  # an iterable without a length
        return calibrated
    return stretched_to_epoch(max(1, epoch))


def _run_probes(
    loop: _Loop,
    batches: _Batches,
    val: list[Any] | None,
    state: TrainingState,
    *,
    records: list[RangeTestRecord],
    total_steps: int,
    budget: int | None,
    recipe: dict[str, Any],
) -> list[Probe]:
    """Thorough mode's two stages of probes (`lrpilot.finder.plan_probes`), each from the
    snapshot, with the same batches and random draws."""
    plan = plan_probes(records, total_steps, budget_steps=budget)
    replay = _Replay(batches)
    probes: list[Probe] = []
    for peak in plan.candidates:
        state.restore()
        probes.append(_run_probe(loop, replay, val, peak=peak, steps=plan.long_steps, recipe=recipe))
    for peak in short_candidates(plan, probes):
        state.restore()
        probes.append(_run_probe(loop, replay, val, peak=peak, steps=plan.short_steps, recipe=recipe))
    return probes
