"""`lightning_scheduler_config` in a real `lightning.Trainer` (CPU, a tiny model, a few dozen steps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrpilot.integrations.lightning import lightning_scheduler_config
from lrpilot.integrations.torch import LRPilotScheduler
from lrpilot.schedules import Cosine, Linear, Schedule

L = pytest.importorskip("lightning")
pytestmark = [
    # Lightning 2.6 calls a deprecated torch pytree API and warns about single-process data loading;
    # neither is ours to fix.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
]


class Tiny(L.LightningModule):  # type: ignore[misc]
    def __init__(self, schedule: Schedule | list[Schedule], scales: list[float] | None = None) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 8)
        self.b = torch.nn.Linear(8, 1)
        self.schedule, self.scales = schedule, scales
        self.lrs: list[list[float]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.b(torch.relu(self.a(x))).squeeze(-1), y)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])  # the LRs this update uses

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": self.a.parameters()}, {"params": self.b.parameters()}]
        optimizer = torch.optim.AdamW(groups, lr=1.0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": lightning_scheduler_config(optimizer, self.schedule, scales=self.scales),
        }


def fit(tmp_path: Path, module: Tiny, steps: int, *, save_every: int = 0, ckpt_path: str | None = None) -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1)), batch_size=16, shuffle=True, generator=g)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=bool(save_every),
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(str(tmp_path), every_n_train_steps=save_every, save_top_k=-1)]
        if save_every
        else [],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def test_the_config_is_what_configure_optimizers_expects() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    config = lightning_scheduler_config(optimizer, Cosine(peak=1e-3, total_steps=10))
    assert isinstance(config["scheduler"], LRPilotScheduler)
    assert config["interval"] == "step"  # an lrpilot schedule counts optimizer steps, not epochs
    assert config["frequency"] == 1


def test_lightning_steps_the_schedule_once_per_optimizer_step(tmp_path: Path) -> None:
    schedule = Cosine(peak=1e-2, total_steps=40, warmup_steps=5, floor_ratio=0.1)
    module = Tiny(schedule, scales=[1.0, 4.0])
    trainer = fit(tmp_path, module, steps=40)  # 40 steps run across 3 epochs of 16 batches
    assert module.lrs == [[schedule(t), schedule(t) * 4.0] for t in range(40)]
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 40


def test_per_group_schedules_in_lightning(tmp_path: Path) -> None:
    a = Cosine(peak=1e-2, total_steps=24, warmup_steps=4)
    b = Linear(peak=5e-3, total_steps=24)
    module = Tiny([a, b])
    fit(tmp_path, module, steps=24)
    assert module.lrs == [[a(t), b(t)] for t in range(24)]


# The resumed run keeps its checkpoints where the first run left them (another directory would make
# Lightning warn that it cannot reload the callback's state); Lightning warns that it is not empty.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resuming_from_a_lightning_checkpoint_continues_the_schedule(tmp_path: Path) -> None:
    schedule = Cosine(peak=1e-2, total_steps=32, warmup_steps=5)
    straight = Tiny(schedule)
    fit(tmp_path / "run", straight, steps=32, save_every=16)  # 16 batches per epoch: a checkpoint per epoch
    checkpoint = next((tmp_path / "run").glob("*step=16.ckpt"))
    resumed = Tiny(Cosine(peak=1e-2, total_steps=32, warmup_steps=5))
    fit(tmp_path / "run", resumed, steps=32, save_every=16, ckpt_path=str(checkpoint))
    assert resumed.lrs == straight.lrs[16:]  # bit for bit, from the checkpoint's step on


class Found(Tiny):
    """A module whose optimizer the range test ran on: the one ``configure_optimizers`` wraps."""

    def __init__(self, schedule: Schedule) -> None:
        super().__init__(schedule)
        self.found_with = torch.optim.AdamW(self.parameters(), lr=1.0)

    def configure_optimizers(self) -> dict[str, Any]:
        return {
            "optimizer": self.found_with,
            "lr_scheduler": lightning_scheduler_config(self.found_with, self.schedule),
        }


def test_the_finder_on_a_lightning_modules_training_step_then_lightning_trains_at_its_schedule(
    tmp_path: Path,
) -> None:
    """The README's Lightning route: `find_lr` with ``step=module.training_step`` on the module and
    its optimizer (before a scheduler is attached), everything put back, then the found schedule
    in ``configure_optimizers`` drives Lightning's run."""
    from lrpilot.integrations.torch_finder import find_lr
    from tests.finder.tiny import assert_same, snapshot

    torch.manual_seed(0)
    module = Found(Cosine(peak=1.0, total_steps=1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 4, generator=g)  # 128 batches: more than the test takes
    loader = DataLoader(TensorDataset(x, x.sum(dim=1)), batch_size=16, shuffle=True, generator=g)
    before = snapshot(module, module.found_with)
    result = find_lr(
        module, module.found_with, loader, step=lambda batch: module.training_step(batch, 0), total_steps=60
    )
    assert_same(before, snapshot(module, module.found_with))
    assert result.schedule is not None
    module.schedule = result.schedule
    fit(tmp_path, module, steps=60)
    warmup = result.schedule.to_dict()["warmup_steps"]
    assert module.lrs[warmup][0] == pytest.approx(result.peak_lr)  # the peak, reached at the end of warmup
    assert len(module.lrs) == 60


def test_without_torch_the_import_error_names_the_extra() -> None:
    """It raised "No module named 'torch.optim'", which does not say what to install."""
    code = "import sys; sys.modules['torch'] = None; import lrpilot.integrations.lightning"  # torch not installed
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode != 0
    assert "lrpilot.integrations.lightning needs torch" in child.stderr
    assert "pip install 'lrpilot[torch]'" in child.stderr
