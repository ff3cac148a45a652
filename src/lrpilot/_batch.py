"""How much a noise-bound window must grow at a batch smaller than the calibration suite's.

The range test's ramp and the guard's short median were both chosen on the built-in tasks, whose
smallest batch is 32 examples a step (shakespeare's and the SST-2 tasks'; digits' is 64). At a
smaller batch each loss is noisier, so both count more steps to see as many examples.
"""

from __future__ import annotations

from lrpilot import _validate as check

__all__ = ["CALIBRATED_BATCH", "MAX_BATCH_SCALE", "small_batch_scale"]

CALIBRATED_BATCH = 32
"""The smallest batch of the calibration suite."""
MAX_BATCH_SCALE = 4.0
"""`small_batch_scale` grows by at most this much (batch 8), so that below batch 8 nothing grows
further. At batch 8 itself the range test already can outgrow a short run: on 1,600 SST-2 texts
(200 steps, ``benchmarks/fit_user_path.py --batch-size 8``) it took 114–252 steps; nothing caps it
by the run."""


def small_batch_scale(owner: str, batch_size: int) -> float:
    """``CALIBRATED_BATCH / batch_size`` below that batch, at most `MAX_BATCH_SCALE`; 1 at it and above
    (`owner` names the caller in the error for a batch < 1).

    >>> small_batch_scale("doc", 64), small_batch_scale("doc", 16), small_batch_scale("doc", 1)
    (1.0, 2.0, 4.0)
    """
    batch = check.step_count(owner, "batch_size", batch_size, 1)
    return min(MAX_BATCH_SCALE, max(1.0, CALIBRATED_BATCH / batch))
