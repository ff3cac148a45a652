"""Exact, composable learning-rate schedules: pure functions of the optimizer step.

>>> from lrpilot.schedules import Cosine
>>> sched = Cosine(peak=3e-4, total_steps=1000, warmup_steps=100, floor_ratio=0.1)
>>> round(sched(0), 8), sched(100), round(sched(1000), 8)
(2.97e-06, 0.0003, 3e-05)
"""

from lrpilot.schedules._base import Schedule, registry
from lrpilot.schedules._guarded import Guarded
from lrpilot.schedules._lint import LintWarning, lint
from lrpilot.schedules._primitives import SHAPES, Anneal, Join, Rewarmup
from lrpilot.schedules._recipes import (
    WSD,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    InverseTime,
    Linear,
    OneCycle,
    Polynomial,
    StepDecay,
)
from lrpilot.schedules._spec import from_dict, from_json, from_string, parse, to_dict, to_json, to_string
from lrpilot.schedules._summary import KeyPoint, key_points

__all__ = [
    "SHAPES",
    "WSD",
    "Anneal",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "Guarded",
    "InverseSqrt",
    "InverseTime",
    "Join",
    "KeyPoint",
    "Linear",
    "LintWarning",
    "OneCycle",
    "Polynomial",
    "Rewarmup",
    "Schedule",
    "StepDecay",
    "from_dict",
    "from_json",
    "from_string",
    "key_points",
    "lint",
    "parse",
    "registry",
    "to_dict",
    "to_json",
    "to_string",
]
