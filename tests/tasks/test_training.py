"""Short real runs of every built-in task: they build, train deterministically, and evaluate.

The SST-2 tasks load a 22.7M-parameter encoder and score 872 sentences, so their runs are marked
slow; they are skipped where SST-2 is not on disk (it is not shipped with lrpilot).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from lrpilot.tasks import Task, TrainResult, find_sst2_dir, get_task, initial_loss, initial_metrics, train
from lrpilot.tasks._digits import DigitsTask

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STEPS = 20
LR = {"digits": 3e-3, "shakespeare": 1e-2, "sst2-full": 1e-4, "sst2-lora": 1e-3}


def sst2_task(name: str) -> Task:
    pytest.importorskip("transformers")
    if name == "sst2-lora":
        pytest.importorskip("peft")
    try:
        find_sst2_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return get_task(name)


FAST = [pytest.param("digits"), pytest.param("shakespeare")]
SLOW = [pytest.param(name, marks=pytest.mark.slow) for name in ("sst2-full", "sst2-lora")]


def task_for(name: str) -> Task:
    return sst2_task(name) if name.startswith("sst2") else get_task(name)


@pytest.mark.parametrize("name", FAST + SLOW)
def test_short_run_is_deterministic(name: str) -> None:
    task = task_for(name)
    steps = STEPS if name in ("digits", "shakespeare") else 4
    first = train(task, LR[name], seed=0, steps=steps)
    again = train(task, LR[name], seed=0, steps=steps)
    other = train(task, LR[name], seed=1, steps=steps)
    assert first.train_losses == again.train_losses  # bit-identical, not approximately equal
    assert first.val_loss == again.val_loss
    assert first.train_losses != other.train_losses
    assert len(first.train_losses) == steps == first.total_steps
    assert not first.diverged
    assert first.diverged_step is None
    assert math.isfinite(first.val_loss)
    json.dumps(first.to_dict(), allow_nan=False)


@pytest.mark.parametrize("name", FAST + SLOW)
def test_training_beats_the_untrained_model(name: str) -> None:
    task = task_for(name)
    result = train(task, LR[name], seed=0, steps=STEPS)
    untrained = initial_metrics(task, seed=0)
    assert result.val_loss < untrained.loss
    assert (result.val_accuracy is None) == (untrained.accuracy is None) == (name == "shakespeare")
    if result.val_accuracy is not None and untrained.accuracy is not None:
        assert 0.0 <= untrained.accuracy <= 1.0
        assert result.val_accuracy > untrained.accuracy


@pytest.mark.parametrize("name", FAST + SLOW)
def test_batches_and_model(name: str) -> None:
    task = task_for(name)
    batch = next(task.batches(0))
    size = task.recipe.batch_size
    if name.startswith("sst2"):
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert batch["input_ids"].shape == batch["attention_mask"].shape
        assert batch["labels"].shape == (size,)
    else:
        inputs, targets = batch
        assert inputs.shape[0] == targets.shape[0] == size
    model = task.build_model(0)
    assert model.training
    loss = task.loss(model, batch)
    assert loss.ndim == 0
    assert math.isfinite(loss.item())
    assert task.evaluate(model) == task.metrics(model).loss
    assert model.training  # evaluation restores the mode


@pytest.mark.parametrize("name", FAST + SLOW)
def test_the_whole_set_and_a_subset_in_one_evaluation(name: str) -> None:
    """What fit's last evaluation scores: the whole set exactly as `metrics` does, and the subset
    its quick evaluations scored as a pass over that subset alone does (the SST-2 tasks read it off
    the same pass: other batches, so equal up to padding)."""
    task = task_for(name)
    model = task.build_model(0)
    whole, part = task.metrics_and_subset(model, 64)
    alone = task.metrics(model, 64)
    assert whole == task.metrics(model)
    assert (part.examples, alone.examples) == (64, 64)
    assert whole.examples == {"digits": 359, "shakespeare": 512, "sst2-full": 872, "sst2-lora": 872}[name]
    assert part.loss == pytest.approx(alone.loss, rel=1e-5)
    assert part.accuracy == alone.accuracy
    assert model.training


def test_initial_loss_is_chance_level() -> None:
    assert initial_loss("digits", 0) == pytest.approx(math.log(10), abs=0.1)
    assert initial_loss("shakespeare", 0) == pytest.approx(math.log(65), abs=0.3)


def test_same_seed_same_initial_weights() -> None:
    task = get_task("shakespeare")
    a, b, c = task.build_model(3), task.build_model(3), task.build_model(4)
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("digits", 1e-3, seed=5, steps=3)
    assert torch.equal(torch.rand(3), expected)


def test_callback_sees_the_recipe_schedule() -> None:
    task = get_task("digits")
    seen: list[tuple[int, float, float]] = []
    result = train(task, 1e-2, seed=0, steps=30, callback=lambda *args: seen.append(args))
    schedule = task.recipe.shortened(30).schedule(1e-2)
    assert [s for s, _, _ in seen] == list(range(30))
    assert [lr for _, lr, _ in seen] == pytest.approx([schedule(s) for s in range(30)])
    assert [loss for _, _, loss in seen] == list(result.train_losses)
    assert max(lr for _, lr, _ in seen) == pytest.approx(1e-2)


@dataclasses.dataclass(frozen=True)
class NanAt(DigitsTask):
    """The digits task, with a NaN training loss at step `at`."""

    at: int = 5
    calls: list[int] = dataclasses.field(default_factory=list)

    def loss(self, model: Any, batch: Any) -> Any:
        self.calls.append(1)
        loss = super().loss(model, batch)
        return loss * math.nan if len(self.calls) > self.at else loss


def test_divergence_stops_the_run_and_scores_l_init() -> None:
    base = get_task("digits")
    task = NanAt(name="digits-nan", description="", recipe=base.recipe, at=5)
    result = train(task, 1e-3, seed=2)
    assert isinstance(result, TrainResult)
    assert result.diverged
    assert result.diverged_step == 5
    assert len(result.train_losses) == 6
    assert math.isnan(result.train_losses[-1])
    assert result.val_loss == initial_loss(base, seed=2)
    assert result.to_dict()["train_losses"][-1] is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_huge_lr_finishes_finite_but_bad() -> None:
    """Too high an LR must lose to a good one: the right end of the oracle valley."""
    good = train("digits", 3e-3, seed=0, steps=60)
    bad = train("digits", 1.0, seed=0, steps=60)
    assert math.isfinite(bad.val_loss)
    assert bad.val_loss > good.val_loss + 1.0
