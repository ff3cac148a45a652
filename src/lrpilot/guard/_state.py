"""`GuardState`: counters, the LR adjustment and the rollback points, immutable and JSON-able.

The LR the guard runs is ``ramp(step) × min(lr × scale, cap)``: the user's LR for the step
(from their schedule), times a scale (raised on a flat start, or lowered in ``cut_mode="scale"``),
capped at an absolute LR (``cut_mode="cap"``), times the re-warmup ramp after a rollback. It is the
`Guarded` schedule wrapped around the user's one, so it composes with any schedule and resumes
exactly from `state_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from lrpilot.detect import DetectState
from lrpilot.detect import init as detect_init
from lrpilot.detect._rules import evolve
from lrpilot.guard._config import GuardConfig
from lrpilot.schedules import Schedule
from lrpilot.schedules._base import SCALAR
from lrpilot.schedules._guarded import Guarded, guard_multiplier

__all__ = ["GuardState", "Snapshot", "init", "rebase"]


@dataclass(frozen=True)
class Snapshot:
    """A rollback point the guard knows of (the integration holds the tensors).

    Attributes:
        step: the step the snapshot resumes at (the state after the update of ``step - 1``).
        detect: the detectors' state at that point, restored with it so the windows match the
            parameters they describe.
        lr: the effective LR of the step before it (None for the initial snapshot).
        confirmed: enough healthy steps have followed it to trust it (`GuardConfig.confirm_steps`).
    """

    step: int
    detect: DetectState
    lr: float | None = None
    confirmed: bool = False

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "detect": self.detect.state_dict(), "lr": self.lr, "confirmed": self.confirmed}

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(int(data["step"]), DetectState.from_state_dict(data["detect"]), data["lr"], bool(data["confirmed"]))


@dataclass(frozen=True)
class GuardState:
    """Everything the guard remembers between steps.

    Attributes:
        config: the policy (a `GuardConfig`); the state carries it so `update` needs nothing else.
        detect: the detectors' state.
        step: the last step observed (−1 before the first).
        scale, cap, rewarm_at, rewarm_steps: the LR adjustment (see the module docstring).
        skips_in_row, skips, rollbacks, cuts, raises: counters.
        streak_start: the first step of the current run of skipped steps (where the trouble began).
        restored_at: the step whose state the weights were last restored to (a rollback's resume
            step, or where the guard began): a run of skipped steps that began there has had no
            update since that state, so rolling back to it again would change nothing.
        streak_applied: a step of the current run of skipped steps had its update applied all the
            same (`update`'s `applied`): the weights are no longer the restored state's.
        last_streak: the first step of the run of skipped steps that caused the latest rollback
            (−1: none): the same step going bad again after rewinding is the same batch, where the
            data position was restored with the snapshot, and not the LR.
        before_cut: (scale, cap) before the latest rollback's LR cut, put back if the trouble behind
            that rollback proves to be the data's (None: nothing to put back).
        gave_up: the guard has given up; every later `update` says so again.
        cooldown_until: no cut without a rollback before this step.
        healthy_run: healthy steps in a row.
        lr_peak: the highest LR the schedule asked for.
        lr_log: (step, effective LR) of the recent healthy steps, from which a cut finds the last
            stable LR.
        snapshots: the rollback points, oldest first: the confirmed one and at most one pending.
    """

    config: GuardConfig
    detect: DetectState
    step: int = -1
    scale: float = 1.0
    cap: float | None = None
    rewarm_at: int = 0
    rewarm_steps: int = 0
    skips_in_row: int = 0
    streak_start: int = -1
    restored_at: int = 0
    streak_applied: bool = False
    last_streak: int = -1
    before_cut: tuple[float, float | None] | None = None
    skips: int = 0
    rollbacks: int = 0
    cuts: int = 0
    raises: int = 0
    gave_up: bool = False
    cooldown_until: int = -1
    healthy_run: int = 0
    lr_peak: float = 0.0
    lr_log: tuple[tuple[int, float], ...] = ()
    snapshots: tuple[Snapshot, ...] = field(default_factory=tuple)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """The steps of the snapshots the guard may still roll back to; an integration frees the rest."""
        return tuple(s.step for s in self.snapshots)

    @property
    def target(self) -> Snapshot | None:
        """The snapshot a rollback goes to now: the newest confirmed one."""
        confirmed = [s for s in self.snapshots if s.confirmed]
        return confirmed[-1] if confirmed else None

    def level(self, lr: float) -> float:
        """The LR the guard allows for a schedule LR of `lr`, before any re-warmup ramp."""
        out = lr * self.scale
        return out if self.cap is None else min(out, self.cap)

    def effective_lr(self, lr: float, step: int) -> float:
        """The LR to train step `step` with, when the schedule asks for `lr`."""
        return self.level(lr) * float(guard_multiplier(step, self.rewarm_at, self.rewarm_steps, SCALAR))

    def multiplier(self, lr: float, step: int) -> float:
        """``effective_lr / lr``: what to multiply every param group's LR by (`lr`: the main group's)."""
        if lr <= 0.0:
            return self.scale * float(guard_multiplier(step, self.rewarm_at, self.rewarm_steps, SCALAR))
        return self.effective_lr(lr, step) / lr

    def schedule(self, base: Schedule) -> Guarded:
        """`base` as the guard now runs it: ``guarded(base, scale, cap, at, steps)``."""
        return Guarded(base, self.scale, self.cap, float(self.rewarm_at), float(self.rewarm_steps))

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready; `from_state_dict` rebuilds the same state bit for bit."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("config", "detect"):
                value = value.to_dict() if f.name == "config" else value.state_dict()
            elif f.name == "snapshots":
                value = [s.state_dict() for s in value]
            elif f.name == "lr_log":
                value = [list(pair) for pair in value]
            out[f.name] = value
        return out

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> GuardState:
        values = dict(data)
        config = GuardConfig.from_dict(dict(values.pop("config")))
        values["detect"] = DetectState.from_state_dict(values["detect"])
        values["snapshots"] = tuple(Snapshot.from_state_dict(s) for s in values.get("snapshots", ()))
        values["lr_log"] = tuple((int(s), float(lr)) for s, lr in values.get("lr_log", ()))
        if values.get("before_cut") is not None:
            values["before_cut"] = tuple(values["before_cut"])
        state = cls(config=config, **values)
        if not math.isfinite(state.scale) or state.scale <= 0:
            raise ValueError(f"GuardState: scale must be a finite number > 0, got {state.scale!r}")
        return state


def init(config: GuardConfig | None = None, *, step: int = 0) -> GuardState:
    """The guard before its first update; the run's state at `step` is the first (trusted) snapshot."""
    config = config or GuardConfig()
    detect = detect_init(config.detect)
    snapshots = (Snapshot(step, detect, None, True),)
    return GuardState(config=config, detect=detect, step=step - 1, restored_at=step, snapshots=snapshots)


def rebase(state: GuardState, step: int) -> GuardState:
    """After loading a checkpoint: the run's state at `step` is now the only (trusted) snapshot.

    The guard's memory (windows, counters, LR adjustment) comes back from `state_dict`; the
    snapshots it referred to lived in the old process and are gone.
    """
    return evolve(state, step=step - 1, restored_at=step, snapshots=(Snapshot(step, state.detect, None, True),))
