"""lrpilot schedules ⇄ Hugging Face ``TrainingArguments`` scheduler settings, exactly.

Two ways to use an lrpilot schedule with ``transformers.Trainer``:

1. Any schedule, through the torch adapter: ``Trainer(..., optimizers=(optimizer,
   LRPilotScheduler(optimizer, schedule)))``. Checkpoints and ``resume_from_checkpoint`` work as
   for any torch scheduler.
2. A schedule that one of Hugging Face's own ``lr_scheduler_type`` values draws exactly, as plain
   arguments: ``TrainingArguments(output_dir, **to_training_args(schedule))``. Useful where only the
   arguments can be set (a config file, a launcher).

Hugging Face's warmups start from 0 (``lr * s / W``; WSD from ``min_lr_ratio * lr``), which is
lrpilot's ``warmup_offset=0``; lrpilot's default ``warmup_offset=1`` has no Hugging Face counterpart,
and `to_training_args` says so rather than hand back a slightly different schedule. The other way,
`from_training_args` and `from_hf_scheduler` rebuild the schedule a Trainer would run, to plot,
lint or move it elsewhere.

Neither direction imports transformers: both are plain mappings of numbers.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

from lrpilot.schedules import (
    WSD,
    Anneal,
    Constant,
    Cosine,
    CosineRestarts,
    InverseSqrt,
    Linear,
    Polynomial,
    Schedule,
)
from lrpilot.schedules._recipes import _Decay, _Warmup

__all__ = ["from_hf_scheduler", "from_training_args", "to_training_args"]

_HF_SHAPES = ("linear", "cosine", "1-sqrt")  # warmup_type / decay_type of HF's warmup_stable_decay
_ADVICE = (
    "use the exact torch adapter instead: Trainer(optimizers=(optimizer, "
    "lrpilot.integrations.torch.LRPilotScheduler(optimizer, schedule)))"
)


class _NotExpressibleError(ValueError):
    pass


def to_training_args(schedule: Schedule) -> dict[str, Any]:
    """``TrainingArguments`` keyword arguments under which the Trainer runs exactly `schedule`.

    Returns ``learning_rate`` (the peak), ``lr_scheduler_type``, ``lr_scheduler_kwargs``,
    ``warmup_steps`` and, for schedules with an end, ``max_steps`` (Hugging Face takes the
    scheduler's length from the Trainer's ``max_steps``). Mapped: `Constant` (``constant``,
    ``constant_with_warmup``), `Linear` (``linear``; ``polynomial`` with ``power=1`` when it has a
    floor), `Cosine` (``cosine``, ``cosine_with_min_lr``), `Polynomial` (``polynomial``),
    `InverseSqrt` (``inverse_sqrt``), `CosineRestarts` with equal cycles (``cosine_with_restarts``),
    and `WSD`, or a `Cosine`/`Linear` with a hold (``warmup_stable_decay``). The values agree with
    Hugging Face's at every step the Trainer takes, to float64 rounding.

    Raises:
        ValueError: the schedule has no exact Hugging Face counterpart; the message says why
            (often lrpilot's default ``warmup_offset=1``) and points to `LRPilotScheduler`.

    >>> from lrpilot.schedules import Cosine
    >>> args = to_training_args(Cosine(peak=3e-4, total_steps=1000, warmup_steps=50, warmup_offset=0))
    >>> args["lr_scheduler_type"], args["warmup_steps"], args["max_steps"]
    ('cosine', 50, 1000)
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"to_training_args: schedule must be an lrpilot Schedule, got {type(schedule).__name__}")
    try:
        return _to_args(schedule)
    except _NotExpressibleError as exc:
        message = f"to_training_args: {schedule!r} has no exact Hugging Face scheduler: {exc}; {_ADVICE}"
        raise ValueError(message) from None


def from_hf_scheduler(
    name: str,
    *,
    learning_rate: float,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: Mapping[str, Any] | None = None,
) -> Schedule:
    """The lrpilot schedule equal to ``transformers.get_scheduler(name, ...)`` on an optimizer with LR
    `learning_rate` (the arguments of ``get_scheduler``, plus that LR).

    Every type that is a function of the step is mapped: ``constant``, ``constant_with_warmup``,
    ``linear``, ``cosine`` (``num_cycles=0.5``), ``cosine_with_min_lr``, ``cosine_warmup_with_min_lr``,
    ``polynomial``, ``inverse_sqrt``, ``cosine_with_restarts``, ``warmup_stable_decay``. Values agree
    with Hugging Face's, to float64 rounding, at every step the Trainer takes (``0 .. num_training_steps - 1``).
    Past the end some Hugging Face types rise again (a cosine with ``progress > 1``); lrpilot's stay
    at the floor.

    Raises:
        ValueError: an unknown or metric-driven type (``reduce_lr_on_plateau``, ``greedy``), a
            missing ``num_training_steps`` where the type needs it, or settings with no lrpilot shape.

    >>> from_hf_scheduler("linear", learning_rate=1e-3, num_warmup_steps=10, num_training_steps=100)
    Linear(peak=0.001, total_steps=100, warmup_steps=10, warmup_offset=0)
    """
    kind = str(getattr(name, "value", name))
    kwargs = dict(scheduler_specific_kwargs or {})
    peak = float(learning_rate)
    w = 0 if num_warmup_steps is None else int(num_warmup_steps)
    warm: dict[str, Any] = {"warmup_steps": w, "warmup_offset": 0.0} if w else {}
    where = f"from_hf_scheduler({kind!r})"

    def total() -> int:
        if num_training_steps is None:
            raise ValueError(f"{where}: needs num_training_steps (the Trainer's max_steps)")
        return int(num_training_steps)

    def take(key: str, default: Any) -> Any:
        return kwargs.pop(key, default)

    def done(schedule: Schedule) -> Schedule:
        if kwargs:
            raise ValueError(f"{where}: unknown scheduler_specific_kwargs {sorted(kwargs)}")
        return schedule

    def half_cosine() -> None:
        cycles = float(take("num_cycles", 0.5))
        if cycles != 0.5:
            raise ValueError(
                f"{where}: num_cycles={cycles!r} makes the LR rise again after a half cosine; only 0.5 "
                "(a decay to the floor) has an lrpilot shape"
            )

    if kind == "constant":
        kwargs.clear()  # get_scheduler ignores them for this type
        return Constant(peak)
    if kind == "constant_with_warmup":
        return done(Constant(peak, **warm))
    if kind == "linear":
        return done(Linear(peak, total(), **warm))
    if kind == "cosine":
        half_cosine()
        return done(Cosine(peak, total(), **warm))
    if kind == "cosine_with_min_lr":
        half_cosine()
        floor, ratio = _hf_floor(where, take("min_lr", None), take("min_lr_rate", None))
        return done(Cosine(peak, total(), floor=floor, floor_ratio=ratio, **warm))
    if kind == "cosine_warmup_with_min_lr":
        half_cosine()
        floor, ratio = _hf_floor(where, take("min_lr", None), take("min_lr_rate", None))
        rate = take("warmup_lr_rate", None)
        return done(_cosine_warmup_with_min_lr(where, peak, w, total(), rate=rate, floor=floor, floor_ratio=ratio))
    if kind == "polynomial":
        power = float(take("power", 1.0))
        return done(Polynomial(peak, total(), power=power, floor=float(take("lr_end", 1e-7)), **warm))
    if kind == "inverse_sqrt":
        timescale = take("timescale", None)
        return done(InverseSqrt(peak, timescale=None if timescale is None else float(timescale), **warm))
    if kind == "cosine_with_restarts":
        n, cycles = total(), float(take("num_cycles", 1))
        if not (cycles > 0 and n > w):
            raise ValueError(f"{where}: needs num_cycles > 0 and num_training_steps > num_warmup_steps")
        late = _late_restarts(n - w, cycles)
        if late:
            steps = [w + round(k * (n - w) / cycles) for k in late]
            warnings.warn(
                f"{where}: with num_cycles={cycles:g} over {n - w} steps, float rounding in Hugging Face's formula "
                f"gives an LR of 0 instead of the peak at step(s) {steps} (the first step of cycle(s) {late}); the "
                "lrpilot schedule restarts on time, so it differs from Hugging Face's at those steps",
                UserWarning,
                stacklevel=2,
            )
        return done(CosineRestarts(peak, period=(n - w) / cycles, total_steps=n, **warm))
    if kind == "warmup_stable_decay":
        return done(_wsd_from_hf(where, peak, w, num_training_steps, kwargs))
    if kind in ("reduce_lr_on_plateau", "greedy"):
        raise ValueError(f"{where}: this scheduler follows a metric, not the step; it has no schedule to rebuild")
    raise ValueError(f"{where}: unknown Hugging Face scheduler type")


def from_training_args(args: Any, *, num_training_steps: int | None = None) -> Schedule:
    """The lrpilot schedule a ``transformers.Trainer`` runs under `args`.

    Args:
        args: a ``TrainingArguments``, or a dict with the same keys (``learning_rate``,
            ``lr_scheduler_type``, ``lr_scheduler_kwargs``, ``warmup_steps``, ``warmup_ratio``,
            ``max_steps``); missing keys take Hugging Face's defaults.
        num_training_steps: the run's length when ``max_steps`` is not set (the Trainer derives it
            from epochs × optimizer steps per epoch).

    Warmup follows Hugging Face: ``warmup_steps ≥ 1`` is a count, ``0 < warmup_steps < 1`` a fraction
    of the run (transformers 5), else ``ceil(warmup_ratio * steps)`` (transformers 4).

    >>> args = {"learning_rate": 2e-5, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "max_steps": 500}
    >>> from_training_args(args)
    Cosine(peak=2e-05, total_steps=500, warmup_steps=50, warmup_offset=0)
    """

    def get(key: str, default: Any) -> Any:
        if isinstance(args, Mapping):
            return args.get(key, default)
        return getattr(args, key, default)

    steps = num_training_steps
    if steps is None:
        max_steps = get("max_steps", -1)
        steps = int(max_steps) if max_steps is not None and max_steps > 0 else None
    warmup = float(get("warmup_steps", 0) or 0)
    ratio = float(get("warmup_ratio", 0.0) or 0.0)
    if warmup >= 1:
        w = int(warmup)
    elif warmup > 0 or ratio > 0:
        if steps is None:
            raise ValueError("from_training_args: a warmup given as a ratio needs max_steps or num_training_steps")
        w = math.ceil(steps * (warmup if warmup > 0 else ratio))
    else:
        w = 0
    kwargs = get("lr_scheduler_kwargs", None) or {}
    if isinstance(kwargs, str):  # TrainingArguments accepts it as a JSON string from the command line
        kwargs = json.loads(kwargs)
    kind = get("lr_scheduler_type", "linear")
    if steps is None and _needs_length(str(getattr(kind, "value", kind)), kwargs):
        raise ValueError(
            f"from_training_args: lr_scheduler_type={str(getattr(kind, 'value', kind))!r} needs the run's length: "
            "max_steps > 0 in the arguments, or num_training_steps= (the optimizer steps the Trainer takes over "
            "num_train_epochs: ceil(num_train_epochs × ceil(batches per epoch / gradient_accumulation_steps)), "
            "trainer.state.max_steps once training has begun)"
        )
    return from_hf_scheduler(
        kind,
        learning_rate=float(get("learning_rate", 5e-5)),
        num_warmup_steps=w,
        num_training_steps=steps,
        scheduler_specific_kwargs=kwargs,
    )


def _needs_length(kind: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether Hugging Face's scheduler `kind` takes its length from the Trainer's step count."""
    if kind in ("constant", "constant_with_warmup", "inverse_sqrt"):
        return False
    if kind == "warmup_stable_decay":
        return "num_stable_steps" not in kwargs
    return kind in _LENGTHY


_LENGTHY = ("linear", "cosine", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "polynomial", "cosine_with_restarts")


# --- lrpilot → Hugging Face ---------------------------------------------------------------------


def _to_args(s: Schedule) -> dict[str, Any]:
    if isinstance(s, Constant):
        _linear_warmup_from(s, 0.0)
        kind = "constant_with_warmup" if s.warmup_steps else "constant"
        return _args(s.peak, kind, {}, s.warmup_steps)
    if isinstance(s, InverseSqrt):
        _no_floor(s.min_lr)
        _linear_warmup_from(s, 0.0)
        kwargs = {} if s.timescale is None else {"timescale": s.timescale}
        return _args(s.peak, "inverse_sqrt", kwargs, s.warmup_steps)
    if isinstance(s, CosineRestarts):
        return _restarts_args(s)
    if isinstance(s, _Decay):
        return _decay_args(s)
    raise _NotExpressibleError(f"Hugging Face has no {s.name!r} scheduler")


def _args(peak: float, kind: str, kwargs: dict[str, Any], warmup: int, total: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "learning_rate": float(peak),
        "lr_scheduler_type": kind,
        "lr_scheduler_kwargs": kwargs,
        "warmup_steps": int(warmup),
    }
    if total is not None:
        out["max_steps"] = int(total)
    return out


def _decay_args(s: _Decay) -> dict[str, Any]:
    peak, total, w, floor = float(s.peak), int(s.total_steps), s.warmup_steps, s.min_lr
    decay = s._decay  # the Anneal after warmup and hold; None when the body is the peak for ever
    if decay is None:  # all warmup and hold: the floor is never reached
        _linear_warmup_from(s, 0.0)
        return _args(peak, "constant_with_warmup" if w else "constant", {}, w, total)
    shape = decay.shape
    if isinstance(s, Polynomial) and s._hold == 0:
        _linear_warmup_from(s, 0.0)
        return _args(peak, "polynomial", {"lr_end": _lr_end(peak, floor), "power": float(s.power)}, w, total)
    if s._hold == 0 and s.warmup_shape == "linear" and (w == 0 or s.warmup_start == 0.0):
        _linear_warmup_from(s, 0.0)
        if shape == "linear":
            if floor == 0.0:
                return _args(peak, "linear", {}, w, total)
            return _args(peak, "polynomial", {"lr_end": _lr_end(peak, floor), "power": 1.0}, w, total)
        if shape == "cosine":
            if floor == 0.0:
                return _args(peak, "cosine", {}, w, total)
            kwargs = {"min_lr_rate": s.floor_ratio} if s.floor_ratio is not None else {"min_lr": floor}
            return _args(peak, "cosine_with_min_lr", kwargs, w, total)
    return _wsd_args(s, decay)


def _wsd_args(s: _Decay, decay: Anneal) -> dict[str, Any]:
    """Warmup from the floor, a hold at the peak and a linear / cosine / 1-sqrt decay to the floor:
    Hugging Face's ``warmup_stable_decay``, whose one ``min_lr_ratio`` is both ends."""
    peak, w = float(s.peak), s.warmup_steps
    if decay.shape not in _HF_SHAPES:
        raise _NotExpressibleError(f"Hugging Face decays only with {list(_HF_SHAPES)}, not {decay.shape!r}")
    ratio = s.floor_ratio if s.floor_ratio is not None else s.min_lr / peak
    if w:
        if s.warmup_offset != 0:
            raise _NotExpressibleError(_OFFSET)
        if s.warmup_shape not in _HF_SHAPES:
            raise _NotExpressibleError(f"Hugging Face warms up only with {list(_HF_SHAPES)}, not {s.warmup_shape!r}")
        if s.warmup_start != s.min_lr:
            raise _NotExpressibleError(
                f"Hugging Face's warmup_stable_decay warms up from its floor (min_lr_ratio × lr = {s.min_lr!r}), "
                f"not from warmup_start={s.warmup_start!r}"
            )
    kwargs = {
        "num_decay_steps": int(decay.steps),
        "warmup_type": s.warmup_shape,
        "decay_type": decay.shape,
        "min_lr_ratio": float(ratio),
    }
    return _args(peak, "warmup_stable_decay", kwargs, w, int(s.total_steps))


def _restarts_args(s: CosineRestarts) -> dict[str, Any]:
    if s.total_steps is None:
        raise _NotExpressibleError("Hugging Face's cosine_with_restarts needs total_steps (it ends at 0)")
    if s.period_mult != 1.0 or s.peak_decay != 1.0:
        raise _NotExpressibleError("Hugging Face's cosine_with_restarts has equal cycles (period_mult=1, peak_decay=1)")
    _no_floor(s.min_lr)
    _linear_warmup_from(s, 0.0)
    span = s.total_steps - s.warmup_steps
    cycles = round(span / s.period)
    if cycles < 1 or cycles * s.period != span or s.period != int(s.period):
        raise _NotExpressibleError(
            f"Hugging Face's cosine_with_restarts splits total_steps - warmup_steps = {span} into num_cycles equal "
            f"cycles; period={s.period!r} must be an integer that divides it"
        )
    late = _late_restarts(span, cycles)
    if late:
        raise _NotExpressibleError(
            f"with num_cycles={cycles}, float rounding in Hugging Face's formula gives an LR of 0 instead of the "
            f"peak at the first step of cycle(s) {late}"
        )
    return _args(float(s.peak), "cosine_with_restarts", {"num_cycles": cycles}, s.warmup_steps, int(s.total_steps))


def _late_restarts(span: float, cycles: float) -> list[int]:
    """The restarts at which Hugging Face's ``cosine_with_restarts`` gives an LR of 0, not the peak.

    It finds the position in the cycle as ``(num_cycles * progress) % 1`` with ``progress = t / span``.
    Where restart k falls on a step t (``k * span / num_cycles`` an integer) and rounding leaves
    ``fl(num_cycles * fl(t / span))`` just below k, the position is ~1 instead of 0: that step gets
    the end of the previous cycle (0) instead of the peak (e.g. ``num_cycles=22``, k = 15), a glitch
    no lrpilot shape states.
    """
    late = []
    for k in range(1, math.ceil(cycles)):
        t = k * span / cycles
        if t == int(t) and cycles * (t / span) < k:
            late.append(k)
    return late


_OFFSET = (
    "Hugging Face's warmups start at 0 (lr × s / W, lrpilot's warmup_offset=0) while this schedule uses "
    "warmup_offset=1 (lr × (s + 1) / (W + 1)); rebuild it with warmup_offset=0 to use Hugging Face's scheduler"
)


def _linear_warmup_from(s: _Warmup, start: float) -> None:
    if not s.warmup_steps:
        return
    if s.warmup_offset != 0:
        raise _NotExpressibleError(_OFFSET)
    if s.warmup_shape != "linear":
        raise _NotExpressibleError(
            f"this Hugging Face scheduler warms up linearly, not with {s.warmup_shape!r} "
            "(warmup_stable_decay has cosine and 1-sqrt warmups, but from its floor)"
        )
    if s.warmup_start != start:
        raise _NotExpressibleError(f"Hugging Face's warmup starts at {start!r}, not warmup_start={s.warmup_start!r}")


def _no_floor(floor: float) -> None:
    if floor:
        raise _NotExpressibleError(
            f"this Hugging Face scheduler has no floor (min LR), and this schedule's is {floor!r}"
        )


def _lr_end(peak: float, floor: float) -> float:
    if not floor < peak:
        raise _NotExpressibleError(f"Hugging Face's polynomial needs lr_end < learning_rate, got floor={floor!r}")
    return float(floor)


# --- Hugging Face → lrpilot ---------------------------------------------------------------------


def _hf_floor(where: str, min_lr: Any, min_lr_rate: Any) -> tuple[float, float | None]:
    """(floor, floor_ratio) from Hugging Face's absolute `min_lr` or relative `min_lr_rate`."""
    if min_lr is not None and min_lr_rate is not None:
        raise ValueError(f"{where}: give min_lr or min_lr_rate, not both (as Hugging Face requires)")
    if min_lr is not None:
        return float(min_lr), None
    if min_lr_rate is not None:
        return 0.0, float(min_lr_rate)
    raise ValueError(f"{where}: needs min_lr or min_lr_rate in scheduler_specific_kwargs (as Hugging Face requires)")


def _cosine_warmup_with_min_lr(
    where: str, peak: float, w: int, n: int, *, rate: Any, floor: float, floor_ratio: float | None
) -> Schedule:
    """``cosine_warmup_with_min_lr`` reaches the peak at step W - 1 and the floor at step N - 1: an
    lrpilot cosine of N - 1 steps whose warmup has W - 1 steps (``(s + 1) / W`` is ``warmup_offset=1``;
    with ``warmup_lr_rate`` it is ``rate + (1 - rate) * s / (W - 1)``, ``warmup_offset=0``)."""
    if rate is None:
        if w == 0:  # no step at the peak: the decay is already (s + 1) / N of the way at step s
            end = floor if floor_ratio is None else floor_ratio * peak
            return Anneal(peak, end, n - 1, "cosine", offset=1.0)
        return Cosine(peak, n - 1, warmup_steps=w - 1, warmup_offset=1.0, floor=floor, floor_ratio=floor_ratio)
    if w < 2:
        raise ValueError(f"{where}: warmup_lr_rate needs num_warmup_steps ≥ 2 to have an lrpilot shape")
    return Cosine(
        peak,
        n - 1,
        warmup_steps=w - 1,
        warmup_start=float(rate) * peak,
        warmup_offset=0.0,
        floor=floor,
        floor_ratio=floor_ratio,
    )


def _wsd_from_hf(where: str, peak: float, w: int, n: int | None, kwargs: dict[str, Any]) -> Schedule:
    if "num_decay_steps" not in kwargs:
        raise ValueError(f"{where}: needs num_decay_steps in scheduler_specific_kwargs")
    decay = int(kwargs.pop("num_decay_steps"))
    stable = kwargs.pop("num_stable_steps", None)
    if stable is None:  # Hugging Face: the stable phase is what the run leaves
        if n is None:
            raise ValueError(f"{where}: needs num_training_steps or num_stable_steps")
        stable = n - w - decay
    if int(stable) < 0:
        raise ValueError(f"{where}: num_warmup_steps + num_decay_steps exceed num_training_steps")
    warmup_type = kwargs.pop("warmup_type", "linear")
    decay_type = kwargs.pop("decay_type", "cosine")
    ratio = float(kwargs.pop("min_lr_ratio", 0.0))
    cycles = float(kwargs.pop("num_cycles", 0.5))
    if cycles != 0.5:
        raise ValueError(f"{where}: num_cycles={cycles!r} makes the decay rise again; only 0.5 has an lrpilot shape")
    for key, value in (("warmup_type", warmup_type), ("decay_type", decay_type)):
        if value not in _HF_SHAPES:
            raise ValueError(f"{where}: {key} must be one of {list(_HF_SHAPES)}, got {value!r}")
    warm: dict[str, Any] = {}
    if w:
        warm = {"warmup_steps": w, "warmup_shape": warmup_type, "warmup_start": ratio * peak, "warmup_offset": 0.0}
    return WSD(peak, w + int(stable) + decay, decay_steps=decay, decay_shape=decay_type, floor_ratio=ratio, **warm)
