"""`DetectConfig`: every threshold the detectors use, checked once at construction.

Windows and patience counts are in *observations*: one per optimizer step online (the guard), one
per log entry offline (the doctor). Only `flat_steps` is in optimizer steps, because "flat for the
first few hundred steps" is a statement about training time, not about how often a run logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lrpilot import _validate as check
from lrpilot._batch import small_batch_scale

__all__ = ["DetectConfig"]

_OWNER = "DetectConfig"


@dataclass(frozen=True)
class DetectConfig:
    """Thresholds of the detectors (defaults chosen on `benchmarks/guard_faults.py`, see its README).

    Args:
        window: healthy values kept as the baseline (median / MAD) of the spike test. OLMo-core
            uses 128 steps for its 6σ rule; so do we.
        min_history: baseline values needed before spikes and divergence are judged (the warm-up;
            OLMo-core waits for 64 of 128). Early training moves fast, so a short warm-up judges
            against a baseline that is still falling, which only makes a spike test *less* eager.
        spike_z: a loss is a spike when it exceeds the baseline median by this many robust sigmas
            (1.4826 × MAD, floored, see `rel_floor`), on log(loss) when the losses are positive
            (see `lrpilot.detect.loss_baseline`). One-sided: a loss *below* the baseline is good
            news, never a spike.
        grad_spike_z: the same test on log(grad norm), whose spread is scale-free.
        rel_floor: the robust sigma of the loss is at least this fraction of |median| (in log space:
            at least this many log units), so a nearly constant loss (a plateau with tiny noise)
            does not turn every wiggle into a spike.
        abs_floor: absolute floor of the robust sigma (losses near 0).
        grad_floor: floor of the robust sigma of log(grad norm), i.e. a relative floor on the
            grad norm (0.25: with `grad_spike_z` = 6 a grad norm must be ≥ 4.5× its median to be a
            spike; young runs double their grad norm within tens of steps, and that is not one).
        div_short: how many recent finite losses make the short median the divergence test reads.
        div_z: divergence when the short median stays this many sigmas of step-to-step noise
            (from the MAD of first differences, which a trend does not inflate) above the lowest
            short median seen so far ...
        div_patience: ... for this many observations in a row (a sustained rise, not one bad batch).
        flat_steps: at this optimizer step the start of the run is judged: a loss that has not
            fallen by `flat_rel` of its initial level is flat ("flat for the first few hundred
            steps → LR too low").
        flat_rel: the relative drop below which the start counts as flat (5 %: from scratch, a
            healthy LR takes 30–90 % off the loss in that time and even a 100× too-low one about
            3–5 %; a fine-tune that starts near its final loss can look flat, which is why acting
            on it, `GuardConfig.raise_on_flat`, is opt-in).
        chance_loss: the loss of a model that predicts the label prior, ln(number of classes) for
            balanced classification; with it a flat or risen loss at that level reads as a
            collapse to chance. `None`: unknown (collapse is then told by a blow-up before the flat
            stretch, a loss that was lower before, or gradients that died).
        chance_tol: relative distance to `chance_loss` that counts as "at chance".
        learned_rel: with `chance_loss`, a short median this far below it (relative) shows the model
            had learned something; the short median back within `chance_tol` of chance (or above)
            for `div_patience` observations after that is a collapse, however noisy the loss (a
            50-step LoRA fine-tune fell to 0.53 and drifted back to ln 2 within 30 steps, a rise of
            under 3 sigmas of its step-to-step noise: the divergence test never fired).
        osc_window: losses the oscillation test looks at (its lag-1 autocorrelation after
            removing a linear trend; i.i.d. noise gives ≈ 0, a period-2 bounce gives −1).
        osc_corr: oscillation when that autocorrelation is below this ...
        osc_rel: ... and the bounce (std of the detrended loss) is above this fraction of |mean| ...
        osc_patience: ... for this many observations in a row.
    """

    window: int = 128
    min_history: int = 32
    spike_z: float = 6.0
    grad_spike_z: float = 6.0
    rel_floor: float = 0.01
    abs_floor: float = 1e-6
    grad_floor: float = 0.25
    div_short: int = 8
    div_z: float = 4.0
    div_patience: int = 8
    flat_steps: int = 300
    flat_rel: float = 0.05
    chance_loss: float | None = None
    chance_tol: float = 0.05
    learned_rel: float = 0.2
    osc_window: int = 64
    osc_corr: float = -0.5
    osc_rel: float = 0.02
    osc_patience: int = 8

    def __post_init__(self) -> None:
        check.step_count(_OWNER, "window", self.window, 8, 100_000)
        check.step_count(_OWNER, "min_history", self.min_history, 4, self.window)
        for name in ("spike_z", "grad_spike_z", "div_z"):
            check.in_range(_OWNER, name, getattr(self, name), 1.0, 1e6)
        check.in_range(_OWNER, "rel_floor", self.rel_floor, 0.0, 1.0)
        check.positive(_OWNER, "abs_floor", self.abs_floor)
        check.positive(_OWNER, "grad_floor", self.grad_floor)
        check.step_count(_OWNER, "div_short", self.div_short, 1, self.window)
        check.step_count(_OWNER, "div_patience", self.div_patience, 1)
        check.step_count(_OWNER, "flat_steps", self.flat_steps, 1)
        check.in_range(_OWNER, "flat_rel", self.flat_rel, 0.0, 1.0, low_open=True, high_open=True)
        if self.chance_loss is not None:
            check.positive(_OWNER, "chance_loss", self.chance_loss)
        check.in_range(_OWNER, "chance_tol", self.chance_tol, 0.0, 1.0, low_open=True, high_open=True)
        check.in_range(_OWNER, "learned_rel", self.learned_rel, self.chance_tol, 1.0, low_open=True, high_open=True)
        check.step_count(_OWNER, "osc_window", self.osc_window, 8, self.window)
        check.in_range(_OWNER, "osc_corr", self.osc_corr, -1.0, 0.0, low_open=True, high_open=True)
        check.non_negative(_OWNER, "osc_rel", self.osc_rel)
        check.step_count(_OWNER, "osc_patience", self.osc_patience, 1)

    @classmethod
    def for_classes(cls, num_classes: int | None, **overrides: Any) -> DetectConfig:
        """A config whose chance level is ln(`num_classes`) (balanced classification or a
        vocabulary); without a chance level where `num_classes` is None (unknown)."""
        if num_classes is None:
            return cls(**overrides)
        n = check.step_count(_OWNER, "num_classes", num_classes, 2)
        return cls(chance_loss=math.log(n), **overrides)

    @classmethod
    def for_label_counts(cls, counts: Sequence[int], **overrides: Any) -> DetectConfig:
        """A classifier's chance level from its training labels: the entropy of their frequencies,
        the loss of a model that answers them whatever the input (cross-entropy's best constant
        answer), which is ln(classes) for balanced labels. A model that collapses onto the majority
        class of unbalanced labels sits there, far below ln(classes): 90 % / 10 % labels give 0.325
        against ln 2 = 0.693, which would read the collapse as a model that had learned.

        >>> round(DetectConfig.for_label_counts([900, 100]).chance_loss, 3)
        0.325
        """
        owner = f"{_OWNER}.for_label_counts"
        counts = [check.step_count(owner, f"counts[{i}]", c, 0) for i, c in enumerate(counts)]
        total = sum(counts)
        if sum(c > 0 for c in counts) < 2:
            raise ValueError(f"{owner}: counts must hold at least two classes with examples, got {counts!r}")
        entropy = -sum(c / total * math.log(c / total) for c in counts if c)
        return cls(chance_loss=entropy, **overrides)

    def scaled_to_batch(self, batch_size: int) -> DetectConfig:
        """This config with its short median (`div_short`) over as many examples as at the batch
        the defaults were chosen at (`benchmarks/guard_faults.py`: 32 and 64): ``32 / batch_size``
        times as many losses below batch 32 (at most 4×, `lrpilot._batch.small_batch_scale`),
        unchanged at it and above.

        A batch of 8 texts has a noisy loss (two or three confidently wrong examples triple it), and
        a median of 8 such losses swings with it: on a LoRA fine-tune of MiniLM at batch 8
        (``benchmarks/fit_user_path.py --batch-size 8``) a lucky stretch set the lowest short median
        at 0.35 while the batch losses' median was 0.64, and eight noisy steps back near ln 2 read as
        a collapse to chance; the rollback and halved LR cost the run 11 % of its final loss. The
        window is counted in losses, so its time grows with it: a collapse is seen about
        ``div_short / 2`` steps later.

        >>> DetectConfig().scaled_to_batch(8).div_short, DetectConfig().scaled_to_batch(64).div_short
        (32, 8)
        """
        scale = small_batch_scale(_OWNER, batch_size)
        return replace(self, div_short=min(self.window, round(self.div_short * scale)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectConfig:
        check.known_keys(_OWNER, data, (f.name for f in fields(cls)))
        return cls(**data)
