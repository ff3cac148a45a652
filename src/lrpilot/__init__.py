"""lrpilot: take the learning rate off the list of things people must guess.

The core (schedules, lint, recommend) needs only numpy; framework adapters live in `lrpilot.integrations`
and are imported on use. ``lrpilot.fit`` (the autopilot, torch) is imported on first use, too.
"""

from typing import Any

from lrpilot._version import __version__
from lrpilot.rules import Recommendation, recommend
from lrpilot.schedules import (
    WSD,
    Anneal,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    InverseTime,
    Join,
    Linear,
    LintWarning,
    OneCycle,
    Polynomial,
    Rewarmup,
    Schedule,
    StepDecay,
    lint,
    parse,
)

__all__ = [
    "WSD",
    "Anneal",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "InverseSqrt",
    "InverseTime",
    "Join",
    "Linear",
    "LintWarning",
    "OneCycle",
    "Polynomial",
    "Recommendation",
    "Rewarmup",
    "Schedule",
    "StepDecay",
    "__version__",
    "lint",
    "parse",
    "recommend",
]


def __getattr__(name: str) -> Any:
    """``lrpilot.fit`` (`lrpilot.autopilot.fit`) and ``lrpilot.tune`` (`lrpilot.tuning.tune`) on first
    use: they need torch (and tune Optuna), which ``import lrpilot`` must not."""
    if name == "fit":
        from lrpilot.autopilot import fit

        return fit
    if name == "tune":
        from lrpilot.tuning import tune

        return tune
    raise AttributeError(f"module 'lrpilot' has no attribute {name!r}")
