"""The LR range test, framework-free: records, ramps, smoothing, the stop rule, suggestion rules
(lrpilot's and faithful re-implementations of fastai's, Lightning's and torch-lr-finder's) and
the result. numpy only; the PyTorch runner is `lrpilot.integrations.torch_finder`.

>>> import numpy as np
>>> from lrpilot.finder import SUGGESTERS, lrpilot
>>> lrs = np.geomspace(1e-7, 10.0, 100)
>>> u = np.log10(lrs / 1e-2)
>>> losses = 2.0 - 1.5 / (1 + np.exp(-3 * (u + 1))) + np.where(u > 0, 4 * u**2, 0.0)  # falls, then blows up
>>> f"{lrpilot(lrs, losses).lr:.1e}"  # 0.35 × the smoothed minimum (8.5e-3) × 0.58 (the test learnt 68 %)
'1.7e-03'
>>> sorted(SUGGESTERS)
['fastai_minimum', 'fastai_slide', 'fastai_steep', 'fastai_valley', 'lightning', 'lrpilot', 'torch_lr_finder']
"""

from lrpilot.finder._analyze import (
    HORIZON_PRIOR,
    MODEL_ERROR,
    MODES,
    THOROUGH_TESTS,
    ProbeChoice,
    ProbePlan,
    analyze,
    choose_probe,
    plan_probes,
    probe_budget,
    short_candidates,
    thorough_tests,
)
from lrpilot.finder._baselines import (
    fastai_minimum,
    fastai_slide,
    fastai_steep,
    fastai_valley,
    lightning,
    torch_lr_finder,
)
from lrpilot.finder._curve import SETTLE, DivergenceRule, RangeTestMonitor, default_beta, ema, ramp_schedule
from lrpilot.finder._errors import RangeTestError, RangeTestInterrupted, RangeTestWarning
from lrpilot.finder._features import CLEAR_FALL, CurveFeatures, curve_features, noise_level, smooth_curve
from lrpilot.finder._record import METRICS, RAMPS, STOP_REASONS, RangeTestRecord
from lrpilot.finder._result import DECAYS, FinderResult, Probe, recipe_schedule
from lrpilot.finder._rule import (
    PEAK_FACTOR,
    PROGRESS_EXPONENT,
    PROGRESS_REF,
    curve_learnt_share,
    learnt_share,
    lrpilot,
    lrpilot_band,
    peak_factor,
    steps_per_decade,
)
from lrpilot.finder._suggestion import SuggestFn, Suggestion, as_curve

SUGGESTERS: dict[str, SuggestFn] = {
    "lrpilot": lrpilot,
    "fastai_valley": fastai_valley,
    "fastai_slide": fastai_slide,
    "fastai_steep": fastai_steep,
    "fastai_minimum": fastai_minimum,
    "lightning": lightning,
    "torch_lr_finder": torch_lr_finder,
}
"""Every suggestion rule by name; all share the signature ``(lrs, losses) -> Suggestion``."""

__all__ = [
    "CLEAR_FALL",
    "DECAYS",
    "HORIZON_PRIOR",
    "METRICS",
    "MODEL_ERROR",
    "MODES",
    "PEAK_FACTOR",
    "PROGRESS_EXPONENT",
    "PROGRESS_REF",
    "RAMPS",
    "SETTLE",
    "STOP_REASONS",
    "SUGGESTERS",
    "THOROUGH_TESTS",
    "CurveFeatures",
    "DivergenceRule",
    "FinderResult",
    "Probe",
    "ProbeChoice",
    "ProbePlan",
    "RangeTestError",
    "RangeTestInterrupted",
    "RangeTestMonitor",
    "RangeTestRecord",
    "RangeTestWarning",
    "SuggestFn",
    "Suggestion",
    "analyze",
    "as_curve",
    "choose_probe",
    "curve_features",
    "curve_learnt_share",
    "default_beta",
    "ema",
    "fastai_minimum",
    "fastai_slide",
    "fastai_steep",
    "fastai_valley",
    "learnt_share",
    "lightning",
    "lrpilot",
    "lrpilot_band",
    "noise_level",
    "peak_factor",
    "plan_probes",
    "probe_budget",
    "ramp_schedule",
    "recipe_schedule",
    "short_candidates",
    "smooth_curve",
    "steps_per_decade",
    "thorough_tests",
    "torch_lr_finder",
]
