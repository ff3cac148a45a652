"""`lightning_scheduler_config`: an lrpilot schedule in Lightning's ``configure_optimizers``.

Lightning steps a scheduler once per epoch unless told otherwise, while an lrpilot schedule counts
optimizer steps; the config returned here says ``interval="step"`` so that the two agree (epoch
versus step is a classic pitfall: torch examples step per epoch, OneCycle and CyclicLR per batch).

The config is a plain dict around `LRPilotScheduler`, so this module needs torch but not Lightning
itself, and works with ``lightning`` and ``pytorch_lightning`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lrpilot._optional import require

require("torch", "torch", "lrpilot.integrations.lightning")

from torch.optim import Optimizer  # noqa: E402 -- after the torch check on purpose

from lrpilot.integrations.torch import LRPilotScheduler  # noqa: E402
from lrpilot.schedules import Schedule  # noqa: E402

__all__ = ["lightning_scheduler_config"]


def lightning_scheduler_config(
    optimizer: Optimizer,
    schedule: Schedule | Sequence[Schedule],
    *,
    scales: Sequence[float] | None = None,
) -> dict[str, Any]:
    """``{"scheduler": LRPilotScheduler(...), "interval": "step", "frequency": 1}`` for ``configure_optimizers``.

    Args:
        optimizer: the optimizer `configure_optimizers` returns.
        schedule: one lrpilot schedule, or one per param group (see `LRPilotScheduler`).
        scales: per-group multipliers of the schedule (see `LRPilotScheduler`).

    Example::

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.parameters(), lr=1.0)  # overwritten by the schedule
            schedule = Cosine(peak=3e-4, total_steps=self.trainer.max_steps, warmup_steps=200)
            return {"optimizer": optimizer, "lr_scheduler": lightning_scheduler_config(optimizer, schedule)}
    """
    return {"scheduler": LRPilotScheduler(optimizer, schedule, scales=scales), "interval": "step", "frequency": 1}
