"""The configuration a trainer's guard callback runs with: the user's, or one fitted to the run.

A callback sits inside a trainer that already knows what `GuardConfig.for_run` needs — how many
optimizer steps the run has and how many examples each one averages over — so it does not make the
user say it again. Without a configuration it asks the trainer at the start of training; with one,
it takes it as given. `TrainerGuardBase` is what the Hugging Face and Lightning callbacks share.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrpilot import _validate as check
from lrpilot.detect import DetectConfig
from lrpilot.guard import Action, GuardConfig

if TYPE_CHECKING:
    import torch

    from lrpilot.integrations.torch_guard import TorchGuard

__all__ = ["TrainerGuardBase", "callback_config", "checked_hints"]


def checked_hints(
    owner: str,
    config: GuardConfig | None,
    batch_size: int | None,
    classes: int | None,
    label_counts: Sequence[int] | None,
) -> tuple[int | None, float | None]:
    """The batch and the chance level a callback was told, checked at construction (a bad value
    named now, not when training starts): ln(`classes`), or the entropy of the training labels'
    `label_counts` (`DetectConfig.for_label_counts`: unbalanced labels). Refused beside a `config`,
    which already says what they would change, and `classes` beside `label_counts`."""
    if config is not None and (batch_size is not None or classes is not None or label_counts is not None):
        raise ValueError(
            f"{owner}: give config or batch_size/classes/label_counts, not both "
            "(the config is used as given: GuardConfig.for_run(total_steps, batch_size=B, "
            "detect=DetectConfig.for_classes(C)) fits one yourself)"
        )
    if classes is not None and label_counts is not None:
        raise ValueError(f"{owner}: give classes or label_counts, not both (the counts say how many classes)")
    if batch_size is not None:
        batch_size = check.step_count(owner, "batch_size", batch_size, 1)
    if label_counts is not None:
        return batch_size, DetectConfig.for_label_counts(label_counts).chance_loss
    return batch_size, None if classes is None else math.log(check.step_count(owner, "classes", classes, 2))


def callback_config(
    config: GuardConfig | None, *, total_steps: float | None, batch_size: int | None, chance_loss: float | None
) -> GuardConfig:
    """`config` as given, or `GuardConfig.for_run` fitted to what the trainer knows: the run's length
    in optimizer steps (None or not a positive finite count: unknown, the defaults' step counts,
    sized for long runs), the examples one judged loss averages over, all ranks and accumulated
    micro-batches included (None: unknown, the detectors as calibrated at 32 and more), and a
    classifier's chance level (so that a loss back at it after the model had learned is a collapse
    to roll back). ``rewind`` is off either way: the trainer owns the step."""
    if config is None:
        detect = DetectConfig(chance_loss=chance_loss)
        config = GuardConfig.for_run(_known_length(total_steps), batch_size=batch_size, detect=detect)
    return replace(config, rewind=False)


def _known_length(total_steps: float | None) -> int | None:
    """A trainer's step count when it is one (Lightning reports an endless run as inf or -1)."""
    if total_steps is None or not math.isfinite(total_steps) or total_steps < 1:
        return None
    return int(total_steps)


class TrainerGuardBase:
    """What the Hugging Face and Lightning guard callbacks share: the configuration they were given
    (or fit when training begins, `callback_config`), the hints for fitting it, the guard once
    training has begun, and its report. Their own class docstrings say what each argument means.
    It comes first among a callback's bases and hands on to the framework's own constructor."""

    def __init__(
        self,
        config: GuardConfig | None = None,
        *,
        batch_size: int | None = None,
        classes: int | None = None,
        label_counts: Sequence[int] | None = None,
        audit: str | Path | None = None,
        snapshot_to: str | Path = "cpu",
    ) -> None:
        self._batch_size, self._chance = checked_hints("GuardCallback", config, batch_size, classes, label_counts)
        self._given = config
        self.config = None if config is None else replace(config, rewind=False)
        self.audit_path = audit
        self.snapshot_to = snapshot_to
        self.guard: TorchGuard | None = None
        self.non_finite = 0
        self._losses: list[torch.Tensor] = []
        self._lr_block: Any = None
        self._action: Action | None = None
        self._saved: dict[str, Any] | None = None
        super().__init__()

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the guard (JSON-ready): its memory (`TorchGuard.state_dict`:
        the LR it cut or raised, its counters, the detectors' windows) and the non-finite steps it
        saw; what it was given to resume from before training begins, else {}."""
        if self.guard is None:
            return dict(self._saved or {})
        return {**self.guard.state_dict(), "non_finite": self.non_finite}

    def _resume(self, step: int) -> None:
        """Once the guard is built: take back the memory a checkpoint kept (`checkpoint_state`), at
        the trainer's `step`. Without it a resumed run forgot a cut: the LR went back up to the one
        that had blown up, and the detectors judged from an empty baseline."""
        saved, self._saved = self._saved, None
        if not saved or self.guard is None:
            return
        self.guard.load_state_dict({**saved, "step": step})
        self.config = self.guard.config
        self.non_finite = int(saved.get("non_finite", 0))

    def _gave_up(self, action: Action, step: int) -> Action:
        """The guard gave up at the trainer's `step` (and restored its last good state): say so, as a
        RuntimeWarning with its reason. The callbacks stop the trainer, which had ended its run early
        without a word; only `report()` or the audit log said why."""
        restored = "" if action.rollback_to is None else f", with the weights of its step {action.rollback_to}"
        warnings.warn(
            f"GuardCallback: training stops at step {step}{restored}: the guard {action.reason}",
            RuntimeWarning,
            stacklevel=3,
        )
        return action

    def report(self) -> dict[str, Any]:
        """What the guard did (see `TorchGuard.report`), plus the non-finite steps it saw."""
        if self.guard is None:
            return {"non_finite": 0, "records": []}
        return {**self.guard.report(), "non_finite": self.non_finite}
