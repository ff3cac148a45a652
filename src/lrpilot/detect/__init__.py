"""Pure detectors over a loss / grad-norm series: non-finite values, spikes, divergence, collapse to
chance, a flat start (LR too low) and oscillation. numpy only.

The guard (`lrpilot.guard`) calls `observe` once per step and acts on what it finds; the doctor
(`lrpilot.doctor`) folds the same `observe` over a log with `scan`. Same code, same answers.

>>> from lrpilot.detect import DetectConfig, scan
>>> losses = [2.0 - 0.001 * i for i in range(60)]
>>> losses[50] = 9.0
>>> [(f.kind, f.step) for f in scan(range(60), losses, config=DetectConfig(min_history=16))]
[('spike', 50)]
"""

from lrpilot.detect._config import DetectConfig
from lrpilot.detect._findings import KINDS, Finding, merge
from lrpilot.detect._rules import MAD_TO_SIGMA, detrended_lag1, robust_baseline
from lrpilot.detect._stream import (
    DetectState,
    back_at_chance,
    init,
    loss_baseline,
    observe,
    rearm_flat,
    scan,
    spike_thresholds,
)

__all__ = [
    "KINDS",
    "MAD_TO_SIGMA",
    "DetectConfig",
    "DetectState",
    "Finding",
    "back_at_chance",
    "detrended_lag1",
    "init",
    "loss_baseline",
    "merge",
    "observe",
    "rearm_flat",
    "robust_baseline",
    "scan",
    "spike_thresholds",
]
