"""The guard's Lightning `Callback` in real `lightning.Trainer` runs (the digits MLP, CPU)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrpilot import Cosine
from lrpilot.detect import DetectConfig
from lrpilot.doctor import read
from lrpilot.guard import GuardConfig
from lrpilot.integrations.lightning import lightning_scheduler_config
from lrpilot.integrations.lightning_guard import GuardCallback
from tests.guard.tiny import digits, gradient_times, mlp

L = pytest.importorskip("lightning")
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    # Lightning 2.6 calls a deprecated torch pytree API and warns about single-process data loading;
    # neither is ours to fix.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
]


class Digits(L.LightningModule):  # type: ignore[misc]
    def __init__(self, bad: Callable[[int], bool], grads_x100: Callable[[int], bool] = lambda s: False) -> None:
        super().__init__()
        self.net = mlp(0)
        self.bad = bad
        self.grads_x100 = grads_x100

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.bad(self.global_step):
            loss = loss * math.nan
        if self.grads_x100(self.global_step):
            loss = gradient_times(loss, 100)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def fit(
    tmp_path: Path,
    bad: Callable[[int], bool],
    config: GuardConfig | None,
    module: Digits | None = None,
    *,
    callback: GuardCallback | None = None,
    batch: int = 32,
    max_steps: int = 150,
    **trainer: Any,
) -> tuple[Digits, Any]:
    """The digits MLP under Lightning for `max_steps`; a guard with `config`, or `callback` as made."""
    torch.manual_seed(0)
    x, y = digits()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    if callback is None and config is not None:
        callback = GuardCallback(config, audit=tmp_path / "audit.jsonl")
    module = module or Digits(bad)
    runner = L.Trainer(
        **trainer,
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.CSVLogger(str(tmp_path)),
        callbacks=[callback] if callback else [],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    runner.fit(module, loader)
    return module, callback


def finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_without_the_guard_one_nan_step_ruins_the_weights(tmp_path: Path) -> None:
    module, _ = fit(tmp_path, lambda s: s == 60, None)
    assert not finite(module)


def test_the_guard_skips_it_logs_it_and_the_doctor_reads_the_log(tmp_path: Path) -> None:
    module, callback = fit(tmp_path, lambda s: s == 60, GuardConfig())
    assert finite(module)
    records = callback.report()["records"]
    assert [(r["action"], r["step"], r["detector"]) for r in records] == [("skip", 60, "non_finite")]
    metrics = next(tmp_path.glob("**/metrics.csv"))
    header = metrics.read_text().splitlines()[0]
    assert "guard/skips" in header
    series = read(metrics)
    assert series.format == "lightning"
    assert series.steps[-1] == 149
    assert int(math.isnan(series.loss[series.steps.tolist().index(60)])) == 1


def test_repeated_trouble_rolls_back_and_cuts_the_lr(tmp_path: Path) -> None:
    module, callback = fit(tmp_path, lambda s: 60 <= s < 64, GuardConfig(snapshot_every=25))
    assert finite(module)
    report = callback.report()
    assert [r["action"] for r in report["records"]] == ["skip", "skip", "skip", "rollback"]
    assert report["records"][-1]["rollback_to"] == 25  # 50 was 10 steps old, not yet confirmed (20)
    assert report["lr_cap"] == pytest.approx(1.5e-3)


def test_a_hopeless_run_stops_with_the_last_good_weights_and_says_why(tmp_path: Path) -> None:
    """NaN for good from step 60: the guard gives up and the Trainer stops, which it did without a
    word (only `report()` and the audit log said why); now a RuntimeWarning gives the reason."""
    with pytest.warns(
        RuntimeWarning, match=r"GuardCallback: training stops at step \d+, with the weights of its step 25"
    ):
        module, callback = fit(tmp_path, lambda s: s >= 60, GuardConfig(snapshot_every=25, max_rollbacks=1))
    assert finite(module)
    report = callback.report()
    assert report["gave_up"] is True
    assert "look elsewhere" in report["records"][-1]["reason"]


SKIPPED = [("skip", 60, "grad_norm")]


@pytest.mark.parametrize(
    ("clipping", "actions", "judged_clip"),
    [
        ({}, SKIPPED, None),
        ({"gradient_clip_val": 0.5}, [], 0.5),
        ({"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"}, SKIPPED, None),
    ],
)
def test_a_gradient_spike_is_judged_as_lightning_clips_it(
    tmp_path: Path, clipping: dict[str, Any], actions: list[tuple[str, int, str]], judged_clip: float | None
) -> None:
    """With ``gradient_clip_val`` (by norm) the guard judges the clipped norm, the gradient the
    update applies: a ×100 gradient clipped to about the usual norm is an ordinary step. Clipping
    by value does not bound the norm, so the raw one is judged."""
    module = Digits(lambda s: False, grads_x100=lambda s: s == 60)
    _, callback = fit(tmp_path, lambda s: False, GuardConfig(), module, **clipping)
    records = callback.report()["records"]
    assert [(r["action"], r["step"], r["metric"]) for r in records] == actions
    assert callback.guard.max_grad_norm == judged_clip


def test_without_a_config_the_guard_is_fitted_to_the_run(tmp_path: Path) -> None:
    """The run's length from Lightning, the examples a step from the loader's batch × the
    accumulated batches (8 × 2: the short median reads 2× the losses), the chance level from
    ``classes``."""
    callback = GuardCallback(classes=10)
    fit(tmp_path, lambda s: False, None, callback=callback, batch=8, max_steps=40, accumulate_grad_batches=2)
    expected = GuardConfig.for_run(40, batch_size=16, detect=DetectConfig.for_classes(10))
    assert callback.config == replace(expected, rewind=False)
    assert callback.config.detect.div_short == 2 * DetectConfig().div_short


def test_without_a_fixed_batch_the_detectors_stay_as_calibrated_unless_told(tmp_path: Path) -> None:
    """A loader with a batch sampler has no ``batch_size``: the detectors keep their calibration
    unless ``batch_size=`` says it."""
    x, y = digits()
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(y))), 8, drop_last=True)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    for hint, short in [(None, DetectConfig().div_short), (8, 4 * DetectConfig().div_short)]:
        callback = GuardCallback(batch_size=hint)
        runner = L.Trainer(
            max_steps=5, accelerator="cpu", devices=1, logger=False, callbacks=[callback], enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False,
        )  # fmt: skip
        runner.fit(Digits(lambda s: False), loader)
        assert callback.config is not None
        assert callback.config.detect.div_short == short


class Scheduled(Digits):
    """Digits with a per-step LR scheduler, recording the LR each update runs at (the module's
    ``on_before_optimizer_step`` runs after the callbacks', so it sees the guard's LR)."""

    def __init__(self, scheduler: str, bad: Callable[[int], bool] = lambda s: False) -> None:
        super().__init__(bad)
        self.scheduler = scheduler
        self.lrs: list[float] = []

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=3e-3)
        if self.scheduler == "lrpilot":
            return {"optimizer": optimizer, "lr_scheduler": lightning_scheduler_config(optimizer, SCHEDULE)}
        exponential = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.97)  # reads group["lr"]
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": exponential, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


SCHEDULE = Cosine(peak=3e-3, total_steps=40, warmup_steps=5)


@pytest.mark.parametrize("scheduler", ["lrpilot", "torch"])
def test_the_guard_leaves_a_per_step_schedule_running(tmp_path: Path, scheduler: str) -> None:
    """Lightning steps a per-step scheduler after the update and before ``on_train_batch_end``.
    The guard used to put the LR it had found back there, after the scheduler: every update ran
    at the schedule's first LR (a cosine's first warmup step, 40 steps long)."""
    module = Scheduled(scheduler)
    fit(tmp_path, lambda s: False, GuardConfig(), module, max_steps=40)
    expected = [SCHEDULE(t) for t in range(40)] if scheduler == "lrpilot" else [3e-3 * 0.97**t for t in range(40)]
    assert module.lrs == pytest.approx(expected, rel=1e-12)


def test_a_skipped_step_holds_lr_zero_for_its_update_only(tmp_path: Path) -> None:
    """A skipped step's update runs at LR 0; the scheduler's LR is back for the next one (a
    chainable torch scheduler stepping from the guard's 0 would have stayed at 0)."""
    module = Scheduled("torch", bad=lambda s: s == 10)
    fit(tmp_path, lambda s: False, GuardConfig(), module, max_steps=20)
    expected = [0.0 if t == 10 else 3e-3 * 0.97**t for t in range(20)]
    assert module.lrs == pytest.approx(expected, rel=1e-12)


def test_a_rollback_leaves_the_schedule_where_the_run_is(tmp_path: Path) -> None:
    """Lightning owns the step and the scheduler, so a rollback restores weights and optimizer state
    but not the LR. The snapshot's LR used to come back with the optimizer's state: a scheduler that
    steps from the group's LR (ExponentialLR) went on from step 20's LR, 23 steps behind the run."""
    module = Scheduled("torch", bad=lambda s: 30 <= s < 34)
    _, callback = fit(tmp_path, lambda s: False, GuardConfig(snapshot_every=10), module, max_steps=45)
    assert [r["action"] for r in callback.report()["records"]] == ["skip", "skip", "skip", "rollback"]
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.get_last_lr() == pytest.approx([3e-3 * 0.97**45], rel=1e-12)
    assert 0 < module.lrs[34] < module.lrs[44] < 3e-3 * 0.97**44  # re-warmed up to the cut level, below it


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the resumed run saves elsewhere, on purpose
@pytest.mark.filterwarnings("ignore:.*your dataloader is not resumable")  # the LRs do not depend on the batches
def test_a_resumed_run_keeps_what_the_guard_did(tmp_path: Path) -> None:
    """The guard's memory goes into Lightning's checkpoint and comes back with ``ckpt_path``: the
    LR it cut at step 18 stays cut after resuming at 30. A resumed guard used to start afresh, the
    LR back at the schedule's, which had blown up, and its counters at 0."""

    def run(ckpt_path: Path | None, saved: Path) -> tuple[Scheduled, GuardCallback]:
        torch.manual_seed(0)
        x, y = digits()
        loader = DataLoader(
            TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        module, callback = (
            Scheduled("lrpilot", bad=lambda s: 15 <= s < 19),
            GuardCallback(GuardConfig(snapshot_every=5)),
        )
        saving = L.pytorch.callbacks.ModelCheckpoint(dirpath=saved, every_n_train_steps=30, save_top_k=-1)
        runner = L.Trainer(
            max_steps=40, accelerator="cpu", devices=1, logger=False, callbacks=[callback, saving],
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        runner.fit(module, loader, ckpt_path=ckpt_path)
        return module, callback

    whole, guard = run(None, tmp_path / "whole")
    resumed, resumed_guard = run(tmp_path / "whole" / "epoch=0-step=30.ckpt", tmp_path / "resumed")
    assert [(r["action"], r["step"]) for r in guard.report()["records"]][-1] == ("rollback", 18)
    assert resumed.lrs == whole.lrs[30:]
    assert resumed.lrs[0] < SCHEDULE(30)  # still cut
    report, resumed_report = guard.report(), resumed_guard.report()
    for key in ("skips", "rollbacks", "lr_cap", "non_finite"):
        assert resumed_report[key] == report[key]


class Recorded(Digits):
    """Digits recording every batch's loss by the optimizer step it counts toward."""

    def __init__(self) -> None:
        super().__init__(lambda s: False)
        self.batch_losses: dict[int, list[float]] = {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        loss = super().training_step(batch, index)
        self.batch_losses.setdefault(self.global_step, []).append(float(loss.detach()))
        return loss


def test_under_accumulation_an_epochs_short_last_step_is_judged_at_its_loss(tmp_path: Path) -> None:
    """Lightning divides every batch's loss by accumulate_grad_batches, also in an epoch's last
    step when fewer batches are left (1797 digits in batches of 450: 4 a epoch, 3 then 1): the
    guard judged that step at a third of its loss, a "low" that a classifier's guard took for
    learning (after which a loss still at chance is a collapse)."""
    module = Recorded()
    _, callback = fit(
        tmp_path,
        lambda s: False,
        None,
        module,
        callback=GuardCallback(classes=10),
        batch=450,
        max_steps=8,
        accumulate_grad_batches=3,
    )
    assert callback is not None
    assert callback.guard is not None
    assert sorted(len(v) for v in module.batch_losses.values()) == [1] * 4 + [3] * 4
    expected = [sum(v) / len(v) for _, v in sorted(module.batch_losses.items())]
    judged = list(callback.guard.state.detect.losses)
    assert judged == pytest.approx(expected, rel=1e-5)
