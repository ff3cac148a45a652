"""`LRPilotScheduler`: an lrpilot schedule driving a torch optimizer, in closed form.

torch's schedulers compute each LR from the previous one (``get_lr`` reads ``group["lr"]``), so an
outside edit of ``group["lr"]`` compounds, rounding drifts over long runs, and resuming depends on
every bit of state being restored (pytorch #162591, OneTrainer #1604). This scheduler instead writes
``schedule(step) * scale`` into every param group, from the step alone, each time it steps; nanoGPT's
loop does the same by hand. It subclasses ``torch.optim.lr_scheduler.LRScheduler`` so that Hugging
Face ``Trainer(optimizers=...)`` and Lightning's ``configure_optimizers`` accept it as is.

>>> import torch
>>> from lrpilot.schedules import Cosine
>>> model = torch.nn.Linear(2, 1)
>>> optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)  # the LR here is overwritten
>>> scheduler = LRPilotScheduler(optimizer, Cosine(peak=1e-3, total_steps=100, warmup_steps=10))
>>> optimizer.param_groups[0]["lr"] == Cosine(peak=1e-3, total_steps=100, warmup_steps=10)(0)
True
>>> optimizer.step(); scheduler.step()
>>> scheduler.last_epoch, scheduler.get_last_lr() == [Cosine(peak=1e-3, total_steps=100, warmup_steps=10)(1)]
(1, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

from lrpilot._optional import require

require("torch", "torch", "lrpilot.integrations.torch")

import torch  # noqa: E402 -- after the torch check on purpose
from torch.optim import Optimizer  # noqa: E402
from torch.optim.lr_scheduler import LRScheduler  # noqa: E402

from lrpilot import _validate as check  # noqa: E402
from lrpilot.schedules import Schedule, from_dict  # noqa: E402
from lrpilot.schedules._base import SCALAR  # noqa: E402

__all__ = ["LRPilotScheduler"]

_OWNER = "LRPilotScheduler"


class LRPilotScheduler(LRScheduler):
    """Set every param group's LR to ``schedule(step) * scales[i]`` (absolute, closed form).

    The groups hold ``schedule(0)`` as soon as the scheduler is built, so the first optimizer step
    uses step 0; each `step()` moves to the next step and overwrites every group's LR again. Edits
    made to ``group["lr"]`` between steps therefore last one step and never compound. The base
    class's ``step()`` machinery (its context managers and per-group lambdas) is bypassed: one
    schedule evaluation per step, whatever the number of groups. Its check of the call order is
    kept: a first `step()` before the optimizer's first ``step()`` warns, as torch's schedulers do.

    Args:
        optimizer: the torch optimizer whose param groups this scheduler drives.
        schedule: one lrpilot schedule for every group, or a list with one schedule per group.
        scales: per-group multipliers of the schedule (e.g. LoRA+'s B/A ratio, layer-wise decay);
            positive and finite, one per param group; 1.0 for every group when omitted.
        start_step: the step to start at; resuming from a global step alone needs nothing else,
            since the schedule holds no state.

    Raises:
        ValueError: an optimizer with no param groups, a count of schedules or scales that differs
            from the number of param groups, a scale that is not a finite number > 0, a negative or
            non-integer `start_step`.
        TypeError: an `optimizer` that is not a torch optimizer, a `schedule` that is not a schedule.

    With Hugging Face ``accelerate``: ``Accelerator.prepare(scheduler)`` steps a scheduler once per
    *process* on every optimizer step (unless ``split_batches=True``), which would run this schedule
    ``num_processes`` times too fast; pass ``step_scheduler_with_optimizer=False`` to the
    Accelerator so that each `step()` advances one step. ``transformers.Trainer`` does not prepare
    the scheduler (except under DeepSpeed) and steps it once per optimizer step.

    Example::

        scheduler = LRPilotScheduler(optimizer, Cosine(peak=3e-4, total_steps=10_000, warmup_steps=500))
        for batch in loader:
            loss(batch).backward()
            optimizer.step()
            scheduler.step()
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Schedule | Sequence[Schedule],
        *,
        scales: Sequence[float] | None = None,
        start_step: int = 0,
    ) -> None:
        # LRScheduler.__init__ is not called on purpose: it wraps `optimizer.step` to police the call
        # order and runs one step through the machinery this class replaces. What other code reads
        # (optimizer, base_lrs, last_epoch, _step_count, _last_lr, and each group's `initial_lr`,
        # which SequentialLR resets the LRs to and which a torch scheduler built next takes as its
        # base) is set here with the same meaning.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{_OWNER}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if not groups:  # else a scheduler that sets nothing, found out only at the first step()
            raise ValueError(
                f"{_OWNER}: the optimizer ({type(optimizer).__name__}) has no param groups; build the "
                "scheduler once the optimizer holds its parameters (after add_param_group())"
            )
        self._schedules, self._shared = _schedules(schedule, len(groups))
        self._scales = _scales(scales, len(groups))
        if scales is None and self._shared is not None:
            _warn_if_group_lrs_differ(groups)
        for group in groups:  # the optimizer's own LR, as torch's schedulers record it
            lr = group["lr"]
            group.setdefault("initial_lr", lr.clone() if isinstance(lr, torch.Tensor) else lr)
        self.base_lrs: list[float | torch.Tensor] = [_as_float(g["initial_lr"]) for g in groups]
        self.last_epoch = check.step_count(_OWNER, "start_step", start_step)
        self._step_count = 1
        self._watch_optimizer()
        self._apply(self.last_epoch)

    @property
    def schedule(self) -> Schedule | tuple[Schedule, ...]:
        """The schedule shared by every group, or the tuple of per-group schedules."""
        return self._shared if self._shared is not None else self._schedules

    @property
    def scales(self) -> tuple[float, ...]:
        """The per-group multipliers of the schedule."""
        return self._scales

    def step(self, epoch: int | None = None) -> None:
        """Move to the next step (or to step `epoch`, exactly: every LR is a closed form) and set the LRs.

        Call it after ``optimizer.step()``, once per optimizer step.
        """
        t = self.last_epoch + 1 if epoch is None else check.step_count(_OWNER, "epoch", epoch)
        if self._step_count == 1:  # the first step() since it was built, as torch checks it
            hook = self.__dict__.pop("_step_hook", None)
            if hook is not None:
                hook.remove()
            if epoch is None and not _stepped(self.optimizer):
                warnings.warn(
                    f"{_OWNER}.step() was called before the optimizer's first step(), so the LR of step "
                    f"{self.last_epoch} was never used; call optimizer.step() first, then scheduler.step()",
                    UserWarning,
                    stacklevel=2,
                )
        self._apply(t)  # first: a step that fails (a group added since) leaves the step where it was
        self.last_epoch = t
        self._step_count += 1

    def lrs_at(self, step: int) -> list[float]:
        """The LR of every param group at optimizer step `step` (what `step` would set)."""
        return self._lrs(check.step_count(_OWNER, "step", step))

    def get_lr(self) -> list[float | torch.Tensor]:
        """The LRs at the current step, in closed form (torch's hook; `get_last_lr` is the usual call)."""
        return list(self._lrs(self.last_epoch))

    def get_last_lr(self) -> list[float | torch.Tensor]:
        """The LRs this scheduler last set, one per param group, as Python floats (tensor LRs included)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Plain types only (``torch.load(weights_only=True)`` reads it): the step, the schedule's
        spec (`lrpilot.schedules.to_dict`; a list of specs for per-group schedules) and the scales."""
        return {"step": self.last_epoch, "schedule": self._spec(), "scales": list(self._scales)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step and set the LRs at once (no need to wait for the next `step()`).

        A step of -1 is torch's "not started": ``SequentialLR`` holds its later schedulers there
        until their milestone, so their saved state is restored without touching the LRs.

        The schedule and scales stay those this object was built with. If the checkpoint recorded
        different ones, a `UserWarning` names both: a schedule rebuilt with another length or peak
        silently changes the LR after resuming (OneTrainer #1604).
        """
        if not isinstance(state_dict, Mapping) or "step" not in state_dict:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            hint = ""
            if isinstance(state_dict, Mapping) and isinstance(state_dict.get("last_epoch"), int):
                n = state_dict["last_epoch"]  # a torch scheduler's state: its step counts the same way
                hint = f"; this is a torch scheduler's state at step {n}: build LRPilotScheduler(..., start_step={n})"
            raise ValueError(
                f"{_OWNER}.load_state_dict: expected the dict of LRPilotScheduler.state_dict() with a 'step' key, "
                f"got {keys}{hint}"
            )
        step = check.step_count(_OWNER, "state_dict['step']", state_dict["step"], low=-1)
        saved = state_dict.get("schedule")
        if saved is not None and not self._runs(saved):
            warnings.warn(
                f"{_OWNER}.load_state_dict: the checkpoint was saved with schedule {_describe(saved)}, but this "
                f"scheduler runs {_describe(self._spec())}; resuming at step {step} with the latter. A schedule "
                "rebuilt with another length or peak changes the LR after a resume; rebuild it from the "
                "checkpoint (lrpilot.schedules.from_dict(state_dict['schedule'])) unless that is what you want.",
                UserWarning,
                stacklevel=2,
            )
        saved_scales = state_dict.get("scales")
        if saved_scales is not None and [float(s) for s in saved_scales] != list(self._scales):
            warnings.warn(
                f"{_OWNER}.load_state_dict: the checkpoint was saved with scales {list(saved_scales)}, but this "
                f"scheduler uses {list(self._scales)}; resuming at step {step} with the latter.",
                UserWarning,
                stacklevel=2,
            )
        self.last_epoch = step
        self._step_count = step + 1
        if step >= 0:  # -1: not started, a later scheduler of a SequentialLR before its milestone
            self._apply(step)

    def __getstate__(self) -> dict[str, Any]:
        """The hook handle stays behind: a copy's optimizer is a copy, without the hook."""
        return {k: v for k, v in self.__dict__.items() if k != "_step_hook"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._step_count <= 1:  # its first step() is still to come: watch the copied optimizer
            self._watch_optimizer()

    def __repr__(self) -> str:
        shown = self._shared if self._shared is not None else list(self._schedules)
        return f"{_OWNER}({shown!r}, step={self.last_epoch}, scales={list(self._scales)})"

    def _watch_optimizer(self) -> None:
        inner = _innermost(self.optimizer)
        if inner is not None:  # else no optimizer to watch: no warning either
            self._step_hook = inner.register_step_post_hook(_note_optimizer_step)

    def _lrs(self, t: int) -> list[float]:
        shared = self._shared
        if shared is not None:
            lr = float(shared._evaluate(t, SCALAR))
            return [lr * s for s in self._scales]
        return [float(sch._evaluate(t, SCALAR)) * s for sch, s in zip(self._schedules, self._scales, strict=True)]

    def _apply(self, t: int) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self._scales):
            raise ValueError(
                f"{_OWNER}: the optimizer has {len(groups)} param groups but this scheduler was built for "
                f"{len(self._scales)}; build a new scheduler after add_param_group(), with one scale (or "
                f"schedule) per group and start_step={t} to go on from this step"
            )
        lrs = self._lrs(t)
        for group, lr in zip(groups, lrs, strict=True):
            current = group["lr"]
            if isinstance(current, torch.Tensor):  # tensor LRs (capturable / fused optimizers) stay tensors
                current.fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = cast("list[float | torch.Tensor]", lrs)

    def _runs(self, saved: object) -> bool:
        """Whether the spec `saved` is this scheduler's schedule. Compared as schedules, not dicts: a
        spec an earlier lrpilot wrote holds fields that are now left out (both floors, both WSD decay
        lengths), so the same schedule read as another and its resume warned of a change."""
        if saved == self._spec():
            return True
        try:
            if isinstance(saved, list):
                return self._shared is None and [from_dict(s) for s in saved] == list(self._schedules)
            return isinstance(saved, Mapping) and self._shared is not None and from_dict(saved) == self._shared
        except (ValueError, TypeError):  # not a spec this lrpilot reads: a different schedule
            return False

    def _spec(self) -> dict[str, Any] | list[dict[str, Any]]:
        if self._shared is not None:
            return self._shared.to_dict()
        return [s.to_dict() for s in self._schedules]


def _note_optimizer_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """A step post-hook: marks the optimizer as torch's schedulers do by wrapping its `step`, so that
    a `step()` of the scheduler before the optimizer's first one (the LR of step 0 skipped) warns."""
    optimizer._opt_called = True  # type: ignore[attr-defined]


def _innermost(optimizer: Optimizer) -> Optimizer | None:
    """The torch optimizer that really steps: wrappers such as accelerate's ``AcceleratedOptimizer``
    subclass `Optimizer` without its hooks and step the optimizer they hold (``.optimizer``)."""
    seen: Any = optimizer
    for _ in range(8):
        if hasattr(seen, "_optimizer_step_post_hooks"):
            return cast("Optimizer", seen)
        seen = getattr(seen, "optimizer", None)
        if not isinstance(seen, Optimizer):
            return None
    return None


def _stepped(optimizer: Optimizer) -> bool:
    """Whether `optimizer` (or the one it wraps) has stepped: marked by our hook or by torch's own
    schedulers, which wrap ``optimizer.step`` and set the same ``_opt_called``; True when unknown."""
    inner = _innermost(optimizer)
    if inner is None:
        return True
    return bool(getattr(optimizer, "_opt_called", False) or getattr(inner, "_opt_called", False))


def _schedules(schedule: object, n_groups: int) -> tuple[tuple[Schedule, ...], Schedule | None]:
    if isinstance(schedule, Schedule):
        return (schedule,) * n_groups, schedule
    if isinstance(schedule, list | tuple):
        if not all(isinstance(s, Schedule) for s in schedule):
            raise TypeError(f"{_OWNER}: schedule must be an lrpilot Schedule or a list of them, got {schedule!r}")
        if len(schedule) != n_groups:
            raise ValueError(
                f"{_OWNER}: schedule must hold one schedule per param group ({n_groups}), got {len(schedule)}"
            )
        return tuple(schedule), None
    raise TypeError(
        f"{_OWNER}: schedule must be an lrpilot Schedule or a list of them, got {type(schedule).__name__} "
        "(parse a spec string or dict with lrpilot.parse)"
    )


def _scales(scales: Sequence[float] | None, n_groups: int) -> tuple[float, ...]:
    if scales is None:
        return (1.0,) * n_groups
    try:
        values = list(scales)
    except TypeError:
        raise ValueError(
            f"{_OWNER}: scales must be a list of {n_groups} numbers (one per param group), got {scales!r}"
        ) from None
    if len(values) != n_groups:
        raise ValueError(
            f"{_OWNER}: scales must hold one number per param group ({n_groups}), got {len(values)}: {values}"
        )
    return tuple(check.positive(_OWNER, f"scales[{i}]", s) for i, s in enumerate(values))


def _as_float(lr: Any) -> float:
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def _warn_if_group_lrs_differ(groups: list[dict[str, Any]]) -> None:
    """Several groups with different LRs and no scales: all would silently get the same LR
    (DeepSpeed PRs #7969/#8171 fixed that very collapse), so say how to keep their ratios."""
    lrs = [_as_float(g["lr"]) for g in groups]
    if len(set(lrs)) > 1 and all(math.isfinite(lr) and lr > 0 for lr in lrs):
        warnings.warn(
            f"{_OWNER}: the param groups have different LRs {lrs} but scales=None, so every group follows "
            f"the same schedule; pass scales=[lr / {lrs[0]!r} for lr in group_lrs] to keep their ratios, "
            "or scales=[1.0] * n to silence this warning",
            UserWarning,
            stacklevel=3,
        )


def _describe(spec: object) -> str:
    """The short form of a spec for messages; the raw value when it is not a valid spec."""
    try:
        if isinstance(spec, list):
            return "[" + ", ".join(from_dict(s).to_string() for s in spec) + "]"
        if isinstance(spec, Mapping):
            return from_dict(spec).to_string()
    except (ValueError, TypeError):
        pass
    return repr(spec)
