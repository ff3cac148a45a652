"""The autopilot: ``lrpilot.fit(...)`` / ``lrpilot fit`` picks, schedules and watches the learning
rate of a whole training run, and explains it in a report.

::

    import lrpilot
    result = lrpilot.fit("digits")                                   # a built-in task
    result = lrpilot.fit(model="my-bert/", data="train.csv", method="lora", budget="5m")
    result.peak_lr, result.metrics, result.run_dir                    # runs/fit-.../index.html

See `fit` for the pipeline. ``lrpilot.fit`` is this package's `fit`, imported on first use so that
``import lrpilot`` stays free of torch.
"""

from lrpilot._optional import require

require("torch", "torch", "lrpilot.fit")

from lrpilot.autopilot._budget import Budget, parse_budget  # noqa: E402 -- after the torch check on purpose
from lrpilot.autopilot._layers import UpdateRatioTracker, layer_groups, layer_update_ratios  # noqa: E402
from lrpilot.autopilot._pipeline import AUDIT_FILE, MODEL_FILE, FitResult, SavingInterrupted, fit  # noqa: E402
from lrpilot.autopilot._pooled import PooledClassifier, load_classifier  # noqa: E402
from lrpilot.autopilot._target import DEFAULT_TASK  # noqa: E402

__all__ = [
    "AUDIT_FILE",
    "DEFAULT_TASK",
    "MODEL_FILE",
    "Budget",
    "FitResult",
    "PooledClassifier",
    "SavingInterrupted",
    "UpdateRatioTracker",
    "fit",
    "layer_groups",
    "layer_update_ratios",
    "load_classifier",
    "parse_budget",
]
