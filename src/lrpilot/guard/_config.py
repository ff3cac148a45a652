"""`GuardConfig`: the guard's policy (what to do about a finding), every knob checked at construction.

The detectors' thresholds live in `detect` (a `DetectConfig`), shared with the doctor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from lrpilot import _validate as check
from lrpilot.detect import DetectConfig

__all__ = ["GuardConfig"]

_OWNER = "GuardConfig"

SHORT_RUN_SHARE = 25
"""`GuardConfig.for_run`: a snapshot (and a re-warmup as long) every 1/25 of the run."""
SHORT_RUN_MIN = 5
"""... but not more often than every this many steps."""
SHORT_RUN_JUDGED = 6
"""`GuardConfig.for_run`: the detectors judge once a sixth of the run has given them a baseline ..."""
SHORT_RUN_HISTORY = 16
"""... of at least this many losses: on clean 50–60-step runs (`benchmarks/guard_faults.py --steps`)
a baseline of 8–12 grad norms put a LoRA fine-tune's early growth at z 5.4 against the spike
threshold of 6, one of 16 at 3.9 (the defaults' 32: at most 3.6 on any clean run measured)."""
CONFIRM_MARGIN = 4
"""`GuardConfig.for_run`: a snapshot is confirmed this many steps after the divergence test could
have fired on the steps that follow it (the defaults: 8 + 8 + 4 = `confirm_steps`' 20)."""


@dataclass(frozen=True)
class GuardConfig:
    """What the guard does about what the detectors find.

    Args:
        detect: the detectors' thresholds.
        max_skips: a non-finite or spiking step is skipped (its update not applied); this many in a
            row means the parameters or the LR are the problem, not one batch, and the guard rolls
            back instead. 3: short enough to react within a few steps to a real blow-up; a longer
            burst of bad batches then costs a rollback and a halved LR (on the benchmark's 5-step
            fp16 burst: 2 % of final loss on shakespeare, none on digits).
        snapshot_every: a snapshot is taken after every this many steps (absolute step numbers,
            ``(step + 1) % snapshot_every == 0``) when the run looks healthy and the previous
            snapshot is confirmed.
        confirm_steps: a snapshot becomes the rollback target only after this many healthy steps
            follow it (a too-high LR shows in the loss some steps *after* the updates that did the
            damage, so a fresh snapshot may already hold it). 20: longer than the divergence test
            needs to fire (`div_short` + `div_patience` = 16), so a slow blow-up is caught before
            the snapshot taken in its first steps is trusted (`for_run` keeps it so when a small
            batch widens `div_short`).
        cut_factor: on a rollback the LR is multiplied by this ("halve it first").
        cut_mode: how a cut to the new level L (``cut_factor`` × the last LR known to be stable)
            shapes the rest of the run. ``"cap"`` (default): the LR never exceeds L, so a run that
            blew up during warmup does not climb back above the level that broke it, and the part
            of the schedule below L is untouched. Its weak spot: a schedule that *stays* above L
            (a persistent ×100 LR bug) runs flat at L and loses its decay. ``"scale"``: the whole
            schedule × L / (the LR now): keeps the decay, but a warmup climbs past L, and steps
            replayed from before a jump run at almost no LR. ``"both"``: ``min(lr × scale, L)``.
            ``"auto"``: "both" when the LR had risen more than 1 / `cut_factor` above the last
            stable one, else "cap". On `benchmarks/guard_faults.py` (see benchmarks/README.md) the
            cap gave the best median final loss on both tasks (1.031× and 1.021× the clean run,
            against 1.047× and 1.030× for "auto") and the best result on the ×10 and ×100 faults.
        settle_steps: the "last LR known to be stable" is the highest effective LR of a healthy step
            at least this many steps before the trouble began (a ×100 LR jump is then cut back to
            half the LR before the jump, not to half of the jumped one).
        rewarmup_steps: after a cut the LR ramps from 0 back to its new level over this many steps
            (0: no re-warmup). Adam's second moments may hold the burst that caused the spike.
        max_rollbacks: give up (with a report) instead of rolling back once more after this many.
        min_lr_ratio: give up rather than cut the LR below this fraction of the highest LR the
            schedule asked for: an LR that small is not what is wrong.
        on_oscillation: ``"cut"`` the LR (without a rollback: nothing broke yet) or ``"warn"``.
        cooldown: after a cut without a rollback, no further one for this many steps.
        raise_on_flat: opt-in: multiply the LR by `raise_factor` when the start of the run is flat
            (the detectors tell a too-low LR from a collapse, where raising would be wrong).
        raise_factor: see `raise_on_flat` ("multiply by 3–5").
        max_raises: at most this many raises; each one re-arms the flat test for `flat_steps` more.
        rewind: a rollback restores the step counter to the snapshot's (the loop API) rather than
            keeping on counting (trainer callbacks, where the trainer owns the step).
    """

    detect: DetectConfig = field(default_factory=DetectConfig)
    max_skips: int = 3
    snapshot_every: int = 50
    confirm_steps: int = 20
    cut_factor: float = 0.5
    cut_mode: str = "cap"
    settle_steps: int = 8
    rewarmup_steps: int = 20
    max_rollbacks: int = 8
    min_lr_ratio: float = 1e-3
    on_oscillation: str = "cut"
    cooldown: int = 128
    raise_on_flat: bool = False
    raise_factor: float = 3.0
    max_raises: int = 2
    rewind: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.detect, DetectConfig):
            raise ValueError(f"{_OWNER}: detect must be a DetectConfig, got {self.detect!r}")
        check.step_count(_OWNER, "max_skips", self.max_skips, 0)
        check.step_count(_OWNER, "snapshot_every", self.snapshot_every, 1)
        check.step_count(_OWNER, "confirm_steps", self.confirm_steps, 0)
        check.in_range(_OWNER, "cut_factor", self.cut_factor, 0.0, 1.0, low_open=True, high_open=True)
        check.choice(_OWNER, "cut_mode", self.cut_mode, ("auto", "both", "cap", "scale"))
        check.step_count(_OWNER, "settle_steps", self.settle_steps, 0)
        check.step_count(_OWNER, "rewarmup_steps", self.rewarmup_steps, 0)
        check.step_count(_OWNER, "max_rollbacks", self.max_rollbacks, 0)
        check.in_range(_OWNER, "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, high_open=True)
        check.choice(_OWNER, "on_oscillation", self.on_oscillation, ("cut", "warn"))
        check.step_count(_OWNER, "cooldown", self.cooldown, 0)
        for name in ("raise_on_flat", "rewind"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{_OWNER}: {name} must be True or False, got {getattr(self, name)!r}")
        check.in_range(_OWNER, "raise_factor", self.raise_factor, 1.0, 100.0, low_open=True)
        check.step_count(_OWNER, "max_raises", self.max_raises, 0)

    @classmethod
    def for_run(cls, total_steps: int | None, *, batch_size: int | None = None, **overrides: Any) -> GuardConfig:
        """The defaults with the knobs counted in steps fitted to a run of `total_steps`: a snapshot
        every 4 % of it and a re-warmup as long (at least 5 steps, at most the defaults' 50 and 20,
        which are sized for runs of thousands of steps), and the detectors' warm-up
        (`DetectConfig.min_history`, of the `detect` given or the default) at most a sixth of the
        run, at least 16 losses. A 150-step fine-tune otherwise rolls back to a snapshot up to a
        third of the run old and re-warms over 13 % of it, and a 50- or 60-step one is judged only
        after its 32nd loss: an LR ×10 or ×100 at 40 % of it went through unseen and left it up to 21×
        its clean loss (`benchmarks/guard_faults.py --steps`; `SHORT_RUN_HISTORY` says why not
        fewer than 16 losses). This is the configuration that benchmark measures. `total_steps`
        None: a run of unknown length (an endless stream), the defaults' step counts.

        With `batch_size` (examples a step), the detectors' short median spans as many examples as
        at the batch they were calibrated at (`DetectConfig.scaled_to_batch`: 4× the losses at batch
        8), and a snapshot is confirmed only after the divergence test could have fired on the steps
        that follow it (`confirm_steps` ≥ `div_short` + `div_patience` + 4, which the defaults' 20
        already is).

        >>> config = GuardConfig.for_run(150)
        >>> config.snapshot_every, config.rewarmup_steps, config.detect.min_history
        (6, 6, 25)
        >>> config = GuardConfig.for_run(100_000)
        >>> config.snapshot_every, config.rewarmup_steps, config.detect.min_history
        (50, 20, 32)
        >>> config = GuardConfig.for_run(200, batch_size=8)
        >>> config.detect.div_short, config.confirm_steps
        (32, 44)
        """
        if total_steps is None:  # unknown: as a run long enough for every count to be the defaults'
            steps = cls.snapshot_every * SHORT_RUN_SHARE
        else:
            steps = check.step_count(_OWNER, "total_steps", total_steps, 1)
        every = max(SHORT_RUN_MIN, steps // SHORT_RUN_SHARE)
        detect = overrides.pop("detect", None) or DetectConfig()
        if not isinstance(detect, DetectConfig):
            raise ValueError(f"{_OWNER}: detect must be a DetectConfig, got {detect!r}")
        if batch_size is not None:
            detect = detect.scaled_to_batch(batch_size)
        history = min(detect.min_history, max(SHORT_RUN_HISTORY, steps // SHORT_RUN_JUDGED))
        fitted = {
            "snapshot_every": min(every, cls.snapshot_every),
            "rewarmup_steps": min(every, cls.rewarmup_steps),
            "confirm_steps": max(cls.confirm_steps, detect.div_short + detect.div_patience + CONFIRM_MARGIN),
            "detect": replace(detect, min_history=history),
        }
        return cls(**{**fitted, **overrides})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["detect"] = self.detect.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardConfig:
        check.known_keys(_OWNER, data, (f.name for f in fields(cls)))
        values = dict(data)
        if isinstance(values.get("detect"), dict):
            values["detect"] = DetectConfig.from_dict(values["detect"])
        return cls(**values)
