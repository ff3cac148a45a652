"""fit's guarded run (`lrpilot.autopilot._training.train_guarded`): what it repeats exactly."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from lrpilot.autopilot._progress import Clock, quiet
from lrpilot.autopilot._training import _guard_config, train_guarded
from lrpilot.schedules import Cosine
from lrpilot.tasks import get_task
from lrpilot.tasks._base import seeded
from lrpilot.tasks._digits import DigitsTask

NAN_CALLS = range(3, 7)
"""The loss calls that return NaN: three skips, then a rollback to the only confirmed snapshot, the first."""


@dataclasses.dataclass(frozen=True)
class _DropoutDigits(DigitsTask):
    """digits' MLP with dropout (its draws come from torch's global generator), whose loss is NaN on
    the calls in `NAN_CALLS`."""

    calls: list[int] = dataclasses.field(default_factory=list)

    def build_model(self, seed: int) -> nn.Module:
        with seeded(seed):
            return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls.append(1)
        loss = super().loss(model, batch)
        return loss * math.nan if len(self.calls) in NAN_CALLS else loss


def _guarded(tmp_path: Path, caller_seed: int) -> tuple[torch.Tensor, list[str]]:
    digits = get_task("digits")
    task = _DropoutDigits(digits.name, digits.description, dataclasses.replace(digits.recipe, total_steps=40))
    model = task.build_model(0)
    run_dir = tmp_path / str(caller_seed)
    run_dir.mkdir()
    torch.manual_seed(caller_seed)  # the caller's generator, which torch seeds at random per process
    trained = train_guarded(
        task,
        model,
        task.recipe,
        Cosine(peak=1e-2, total_steps=40, warmup_steps=4),
        seed=0,
        run_dir=run_dir,
        progress=quiet,
        callback=None,
        clock=Clock(),
    )
    actions = [record["action"] for record in trained.guard["records"]]
    return torch.cat([p.detach().flatten() for p in model.parameters()]), actions


def test_a_rollback_to_the_first_snapshot_repeats_whatever_the_callers_generator(tmp_path: Path) -> None:
    """The first snapshot is taken in the seeded block: a rollback to it restores the generator the
    run started from, so a fit rolled back there ends the same in any process."""
    weights, actions = _guarded(tmp_path, caller_seed=1)
    assert actions[:4] == ["skip", "skip", "skip", "rollback"]
    again, _ = _guarded(tmp_path, caller_seed=2)
    assert torch.equal(weights, again)


def test_the_guard_reads_a_short_median_over_as_many_examples_at_any_batch() -> None:
    """fit's guard is fitted to the recipe's batch: 4× the losses in its short median at batch 8,
    the calibrated 8 at digits' 64."""
    digits = get_task("digits")
    small = dataclasses.replace(digits, recipe=dataclasses.replace(digits.recipe, batch_size=8))
    for task, expected in ((small, (32, 44)), (digits, (8, 20))):
        config = _guard_config(task, 200)
        assert (config.detect.div_short, config.confirm_steps) == expected
