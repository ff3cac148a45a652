"""`update(state, *, loss, grad_norm, lr, step) -> (Action, state)`: the guard's decision for one step.

The policy, most urgent first (a pure state machine in the manner of optax's `apply_if_finite` and
`reduce_on_plateau`: counters, patience, cooldown, a give-up threshold):

1. non-finite loss or gradient, or a spike → **skip** the update; after `max_skips` in a row the
   parameters or the LR are the problem → step 2.
2. divergence, collapse, or too many bad steps → **roll back** to the last confirmed snapshot and
   **cut** the LR (× `cut_factor` of the last stable LR), re-warming up; after `max_rollbacks`, or
   when the LR would fall below `min_lr_ratio` of the schedule's peak → **give up** with a report.
3. oscillation → **cut** the LR without a rollback (nothing broke yet), then a cooldown.
4. a flat start (not a collapse) → **raise** the LR × `raise_factor` if `raise_on_flat`, else warn.
5. otherwise continue, and offer a snapshot every `snapshot_every` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lrpilot.detect import Finding, back_at_chance, observe, rearm_flat
from lrpilot.detect._rules import evolve
from lrpilot.guard._state import GuardState, Snapshot

__all__ = ["ACTIONS", "Action", "update"]

ACTIONS = ("continue", "warn", "skip", "cut", "raise", "rollback", "give_up")

SKIP_ON = 2
"""A run of bad steps the LR did not cause (`_not_the_lr`) is skipped on, without a rollback, until
it is this many times as long as the one that calls for a rollback (`max_skips` + 1): a stretch of
corrupt batches is short, and one longer than that is more than the batches (every batch gives NaN:
the loss function, an overflow, a bug). Not the rollbacks' budget: on a 40-step run, the steps 8
rollbacks would have replayed were the rest of it, which then "finished" with 28 of its steps skipped."""


@dataclass(frozen=True)
class Action:
    """The guard's decision for one step, and the audit record of it.

    Attributes:
        kind: one of `ACTIONS`. ``continue`` and ``warn`` apply the update (``warn``: a finding
            worth a line in the audit log, no action); ``skip`` does not apply it; ``cut`` and
            ``raise`` apply it and change the LR from the next step; ``rollback`` restores the
            snapshot that resumes at `rollback_to`; ``give_up`` restores it too and stops.
        step: the step judged.
        snapshot: take a snapshot of the state after this step's update (it resumes at ``step + 1``).
        rollback_to: for ``rollback`` and ``give_up``, the step of the snapshot to restore.
        findings: what the detectors saw at this step.
        lr_before, lr_after: the effective LR of this step, and the level the guard now allows for
            the same schedule LR (before the re-warmup ramp).
        reason: one or two sentences for a person.
    """

    kind: str
    step: int
    snapshot: bool = False
    rollback_to: int | None = None
    findings: tuple[Finding, ...] = ()
    lr_before: float | None = None
    lr_after: float | None = None
    reason: str = ""

    @property
    def applies_update(self) -> bool:
        """Whether this step's update should be applied."""
        return self.kind in ("continue", "warn", "cut", "raise")

    def record(self) -> dict[str, Any]:
        """The audit record: one JSON-ready dict (a line of the guard's JSONL log)."""
        main = self.findings[0] if self.findings else None
        return {
            "step": self.step,
            "action": self.kind,
            "detector": main.kind if main else None,
            "metric": main.metric if main else None,
            "evidence": main.to_dict()["evidence"] if main else {},
            "lr_before": self.lr_before,
            "lr_after": self.lr_after,
            "rollback_to": self.rollback_to,
            "reason": self.reason,
            "findings": [f.to_dict() for f in self.findings],
        }


def update(
    state: GuardState, *, loss: float, grad_norm: float | None = None, lr: float, step: int, applied: bool = False
) -> tuple[Action, GuardState]:
    """Judge step `step` (its loss, its gradient norm if known, and the LR the schedule asked for).

    `grad_norm` is the norm of the gradient the update applies: after clipping, where the run
    clips (`TorchGuard`'s `max_grad_norm` and the trainer callbacks pass that one). A spike is
    skipped to keep an outsized update out of the weights, and a clipped gradient makes none.
    `applied`: the step's update is in the weights whatever the verdict (read after the update, or a
    NaN gradient masked by ×0, which stays NaN), so a skip of it keeps nothing out.
    """
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"guard.update: lr must be a finite number ≥ 0, got {lr!r}")
    lr = float(lr)
    c = state.config
    if state.gave_up:
        return Action("give_up", step, reason="the guard gave up earlier; restore and stop"), state
    findings, detect = observe(state.detect, step=step, loss=loss, grad_norm=grad_norm)
    found = sorted(findings, key=lambda f: _URGENCY.index(f.kind))
    kinds = {f.kind for f in found}
    eff = state.effective_lr(lr, step)
    s = evolve(state, detect=detect, step=step, lr_peak=max(state.lr_peak, lr))

    if kinds & {"non_finite", "spike"}:
        return _bad_step(s, tuple(found), lr, eff, applied=applied)
    if kinds & {"divergence", "collapse"}:
        return _rollback(s, tuple(found), lr, eff, found[0].message)

    kind, reason = "continue", ""
    if "oscillation" in kinds:
        osc = next(f for f in found if f.kind == "oscillation")
        if c.on_oscillation == "cut" and step >= s.cooldown_until:
            level = c.cut_factor * s.level(lr)
            s = _set_level(s, level, lr)
            s = evolve(s, cuts=s.cuts + 1, cooldown_until=step + c.cooldown)
            kind, reason = "cut", f"{osc.message}: the LR is too high, cut to {level:.3g}"
        else:
            kind, reason = "warn", osc.message
    elif "flat_start" in kinds:
        flat = next(f for f in found if f.kind == "flat_start")
        if c.raise_on_flat and s.raises < c.max_raises:
            s = evolve(
                s,
                scale=s.scale * c.raise_factor,
                cap=None if s.cap is None else s.cap * c.raise_factor,
                raises=s.raises + 1,
                detect=rearm_flat(s.detect, step + 1),
            )
            kind, reason = "raise", f"{flat.message}: the LR is too low, raised ×{c.raise_factor:g}"
        else:
            kind, reason = "warn", f"{flat.message}: the LR looks too low (try ×3–5)"
    s = _healthy(s, step, eff)
    # A new snapshot only once the previous one is confirmed: replacing an unconfirmed one every
    # `snapshot_every` < `confirm_steps` steps would leave the rollback target forever behind.
    pending = any(not snap.confirmed for snap in s.snapshots)
    snapshot = (step + 1) % c.snapshot_every == 0 and kind == "continue" and not pending
    if snapshot:
        fresh = Snapshot(step + 1, s.detect, eff, c.confirm_steps == 0)
        s = evolve(s, snapshots=(*_trusted(s), fresh))
    action = Action(kind, step, snapshot, None, tuple(found), eff, s.level(lr), reason)
    return action, s


_URGENCY = ("non_finite", "spike", "collapse", "divergence", "oscillation", "flat_start")


def _trusted(s: GuardState) -> tuple[Snapshot, ...]:
    """The snapshots minus an unconfirmed one: trouble before confirmation means it may hold the damage."""
    target = s.target
    return () if target is None else (target,)


def _healthy(s: GuardState, step: int, eff: float) -> GuardState:
    """Book a healthy step: counters, the LR log, and confirmation of a pending snapshot — not while
    the loss sits back at chance after the model had learned (`lrpilot.detect.back_at_chance`): a
    collapse can look steady for longer than `confirm_steps`, and confirming a snapshot of it would
    leave the rollback nothing better to go back to."""
    c = s.config
    run = s.healthy_run + 1
    log = (*s.lr_log[-(c.detect.window - 1) :], (step, eff))
    snaps = s.snapshots
    due = snaps and not snaps[-1].confirmed and step + 1 - snaps[-1].step >= c.confirm_steps
    if due and not back_at_chance(s.detect):
        snaps = (evolve(snaps[-1], confirmed=True),)  # the older confirmed one is no longer needed
    return evolve(s, skips_in_row=0, healthy_run=run, lr_log=log, snapshots=snaps)


def _set_level(s: GuardState, level: float, lr: float, *, jumped: bool = False) -> GuardState:
    """Make `level` the LR allowed at a schedule LR of `lr`: a cap, a new scale, or both (see
    `GuardConfig.cut_mode`; `jumped`: the LR had risen well above the last stable one)."""
    mode = s.config.cut_mode
    if mode == "auto":
        mode = "both" if jumped else "cap"
    scale = level / lr if lr > 0 else s.scale * s.config.cut_factor
    if mode == "cap":
        return evolve(s, cap=level)
    if mode == "scale":
        return evolve(s, scale=scale)
    return evolve(s, scale=scale, cap=level)


def _bad_step(
    s: GuardState, found: tuple[Finding, ...], lr: float, eff: float, *, applied: bool
) -> tuple[Action, GuardState]:
    """A non-finite or spiking step: skip it; roll back after `max_skips` in a row, unless the LR is
    not their cause (`_not_the_lr`): then skip on, put back the LR the latest rollback cut for them
    (its cut kept, a corrupt stretch of four batches left the rest of the run at half its LR), and give
    up once they outlast `SKIP_ON`."""
    c = s.config
    step = s.step
    streak = s.streak_start if s.skips_in_row else step
    tainted = applied or (s.skips_in_row > 0 and s.streak_applied)
    blamed = _not_the_lr(s, streak)
    what = f"steps {streak}–{step} bad in a row, {blamed} (last: {found[0].message})"
    if s.skips_in_row >= c.max_skips and (not blamed or tainted):
        if blamed and streak != s.restored_at:  # the same batches again, and skips cannot keep them out
            return _give_up(s, found, eff, what, s.level(lr), streak=streak, applied=True)
        why = f"{s.skips_in_row + 1} bad steps in a row (last: {found[0].message})"
        return _rollback(s, found, lr, eff, why)
    if blamed and s.skips_in_row + 1 > SKIP_ON * (c.max_skips + 1):
        return _give_up(s, found, eff, what, s.level(lr), streak=streak)
    s = evolve(s, skips_in_row=s.skips_in_row + 1, streak_start=streak, streak_applied=tainted, skips=s.skips + 1)
    s = evolve(s, healthy_run=0, snapshots=_trusted(s))
    reason = f"skipped the update of step {step}: {found[0].message}"
    if blamed and s.skips_in_row > c.max_skips:
        reason += f"; steps {streak}–{step} bad in a row, {blamed}: skipped on without a rollback"
    if blamed and s.before_cut is not None:
        s = evolve(s, scale=s.before_cut[0], cap=s.before_cut[1], before_cut=None)
        reason += f"; the latest rollback's LR cut undone, to {s.level(lr):.3g} (the data's trouble, not the LR's)"
    after = s.effective_lr(lr, step)
    return Action("skip", step, findings=found, lr_before=eff, lr_after=after, reason=reason), s


def _not_the_lr(s: GuardState, streak: int) -> str:
    """Why a run of skipped steps that began at `streak` is not the LR's doing ("" where it may be):
    it began at the state a rollback would restore (no update since, so a rollback would restore
    the very weights that gave these values, and no LR entered them), or at the step where the run
    of skipped steps behind the latest rollback began (rewound, that step's batch is the same one
    where the data position comes back with the snapshot). Rolling back for it replayed the same
    trouble until `max_rollbacks` ran out, cutting the LR each time: a corrupt stretch of four
    batches gave up after eight rollbacks with the LR at 1/256 (`tests/integrations/test_torch_guard.py`)."""
    if streak == s.restored_at:
        began = "" if s.rollbacks else ", where the guard began"
        return (
            f"all since the state restored at step {streak}{began}, before any update: a rollback would restore "
            "that same state, and no LR entered them"
        )
    if s.config.rewind and s.rollbacks and streak == s.last_streak:
        return (
            f"from step {streak} as before the latest rollback: the batches of those steps (the same ones where the "
            "data position is restored with the snapshot), not the LR"
        )
    return ""


def _stable_lr(s: GuardState, onset: int, fallback: float) -> float:
    """The highest effective LR among healthy steps at least `settle_steps` before `onset`."""
    limit = onset - s.config.settle_steps
    before = [lr for step, lr in s.lr_log if step <= limit]
    return max(before) if before else fallback


def _rollback(s: GuardState, found: tuple[Finding, ...], lr: float, eff: float, why: str) -> tuple[Action, GuardState]:
    c = s.config
    target = s.target
    step = s.step
    onset = min(int(f.start if f.start is not None else f.step) for f in found)
    if s.skips_in_row:
        onset = min(onset, s.streak_start)
    current = s.level(lr)
    stable = _stable_lr(s, onset, current)
    level = c.cut_factor * min(stable, current)
    if target is None or s.rollbacks >= c.max_rollbacks or level < c.min_lr_ratio * s.lr_peak:
        return _give_up(s, found, eff, why, level)
    resume = target.step if c.rewind else step + 1
    before_cut = (s.scale, s.cap)
    s = _set_level(s, level, lr, jumped=current > stable / c.cut_factor)
    s = evolve(
        s,
        before_cut=before_cut,
        detect=target.detect,
        step=target.step - 1 if c.rewind else step,
        restored_at=resume,
        last_streak=s.streak_start if s.skips_in_row else -1,
        rewarm_at=resume,
        rewarm_steps=c.rewarmup_steps,
        rollbacks=s.rollbacks + 1,
        cuts=s.cuts + 1,
        skips_in_row=0,
        healthy_run=0,
        lr_log=tuple(p for p in s.lr_log if p[0] < target.step) if c.rewind else s.lr_log,
        snapshots=(target,),
    )
    warm = f", re-warming up over {c.rewarmup_steps} steps" if c.rewarmup_steps else ""
    reason = f"{why}; rolled back to step {target.step}, LR cut to {level:.3g}{warm}"
    return Action("rollback", step, False, target.step, found, eff, level, reason), s


def _give_up(
    s: GuardState,
    found: tuple[Finding, ...],
    eff: float,
    why: str,
    level: float,
    *,
    streak: int | None = None,
    applied: bool = False,
) -> tuple[Action, GuardState]:
    """Give up, restoring the rollback target: `why` says what went wrong. `streak`: the first step of
    a run of bad steps the LR did not cause (`_not_the_lr`), skipped on for longer than `SKIP_ON`
    allows, or (`applied`) whose updates went into the weights although skipped, so that neither
    skipping them nor replaying them after a rollback keeps them out."""
    c = s.config
    target = s.target
    where = f"step {s.step}" if streak is None else f"steps {streak}–{s.step}"
    if applied:
        cause = (
            "their updates went into the weights although skipped (a verdict read after the update, or a NaN "
            "gradient masked by ×0 in a non-fused optimizer: fused=True skips exactly), so skipping cannot keep them "
            "out, and a rollback replays them. The LR is not what is wrong"
        )
    elif streak is not None:
        cause = (
            f"more than {SKIP_ON} × the {c.max_skips + 1} that call for a rollback (max_skips={c.max_skips}), longer "
            "than a stretch of bad batches. The LR is not what is wrong"
        )
    elif target is None:
        cause = "no snapshot to roll back to. Cutting the LR has not fixed it"
    elif s.rollbacks >= c.max_rollbacks:
        cause = f"{s.rollbacks} rollbacks did not help (max_rollbacks={c.max_rollbacks})"
        cause += ". Cutting the LR has not fixed it"
    else:
        cause = (
            f"the LR would fall to {level:.3g}, below {c.min_lr_ratio:g} × the schedule's peak {s.lr_peak:.3g}. "
            "Cutting the LR has not fixed it"
        )
    reason = (
        f"gave up at step {s.step}: {why}; {cause}, so look elsewhere: the data {'around' if streak is None else 'of'} "
        f"{where}, the loss function, mixed-precision overflow, or a bug. "
        f"The last good state (step {target.step if target else '?'}) is restored."
    )
    s = evolve(s, gave_up=True)
    return Action("give_up", s.step, False, target.step if target else None, found, eff, level, reason), s
