"""Under torch.distributed every rank sees the same curve and takes the same decisions.

Two CPU processes (gloo), each with *different* data: the losses are all-reduced before the
smoothing, the stop rule and the suggestion, so both ranks must return identical records and
results, and both must get their state back. One spawn runs every case (starting two Python
processes that import torch is most of this test's time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from lrpilot.finder import DivergenceRule
from lrpilot.integrations.torch_finder import find_lr
from tests.finder.tiny import digits

ACCUMULATION = (1, 2)


def _worker(rank: int, world: int, store: str, out: str, xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    from tests.finder.tiny import assert_same, loader, mlp, snapshot

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(mlp(seed=0))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        before = snapshot(model, optimizer)
        data = loader(batch_size=16, seed=100 + rank, data=xy)  # a different shuffle on each rank
        alone = dist.new_group([rank])  # a group of one: this rank's own curve
        report: dict[str, Any] = {}
        for k in ACCUMULATION:
            kwargs: dict[str, Any] = {"num_steps": 60, "accumulation_steps": k}
            result = find_lr(model, optimizer, data, torch.nn.functional.cross_entropy, total_steps=1000, **kwargs)
            assert_same(before, snapshot(model, optimizer))
            # DDP all-reduces the gradients over every rank whatever the finder's group: the local tests must
            # take the same steps on both, so they ramp below any blow-up and never stop early
            # (with its own batch order a rank's curve had stopped first: a collective mismatch, SIGABRT)
            local = find_lr(
                model,
                optimizer,
                data,
                torch.nn.functional.cross_entropy,
                process_group=alone,
                end_lr=1e-3,
                divergence=DivergenceRule(rise=1e9, clear_fall=math.inf),
                **kwargs,
            )
            report[str(k)] = {"result": result.to_dict(), "local": local.record.to_dict()}
        Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_different_data_agree(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path), digits()), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for k in ACCUMULATION:
        a, b = (r[str(k)]["result"] for r in reports)
        for key in ("peak_lr", "band", "max_stable_lr", "schedule", "method", "steps_used"):
            assert a[key] == b[key], (k, key)
        for key in ("lrs", "losses", "smoothed", "steps", "stop_reason", "train_losses"):
            assert a["records"][0][key] == b["records"][0][key], (k, key)
        # Each rank's own curve differs (different data); the shared one is their mean (exactly at the
        # first point, where the weights are the same; to 1e-5 at the next two, at LRs near 1e-7).
        own = [r[str(k)]["local"]["train_losses"] for r in reports]
        assert own[0][:5] != own[1][:5]
        expected = [(x + y) / 2 for x, y in zip(own[0][:3], own[1][:3], strict=True)]
        assert a["records"][0]["train_losses"][:3] == pytest.approx(expected, rel=1e-5)
