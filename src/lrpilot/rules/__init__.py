"""Scale it: a starting LR before any training, from published rules, each with its source.

``recommend(params, method, ...) -> Recommendation``: a peak LR with a band, a schedule, a warmup,
a floor, the LoRA+ option for LoRA, a confidence, and the `Reason` for each (rule, what it did,
source). `horizon_factor` scales an LR found for one run length to another (`HORIZON_EXPONENT`).
`RULES` is the table of every rule (``lrpilot recommend --rules``). The exporters turn a
recommendation into the settings of Hugging Face, TRL / Unsloth, axolotl, torchtune, llama.cpp or
plain PyTorch, each with the optimizer asked for (`OPTIMIZER_NAMES`). Part of the core: no torch,
no framework, nothing imported on use.

The recommendation is also the finder's prior: ``rec.range`` is the band to search and
``rec.check(lr)`` says whether a found LR agrees with it.

>>> rec = recommend("135M", "lora", batch_size=32, steps=1000)
>>> rec.peak_lr, rec.range, rec.confidence
(0.000462, (0.000154, 0.00139), 'medium')
>>> rec.check(3e-3).verdict
'above'
"""

from lrpilot.rules._exports import (
    FORMATS,
    export_notes,
    to_axolotl,
    to_hf,
    to_llama_cpp,
    to_pytorch,
    to_torchtune,
    to_trl,
    torchtune_blockers,
)
from lrpilot.rules._horizon import (
    CALIBRATED_STEPS,
    HORIZON_EXPONENT,
    Horizon,
    at_horizon,
    horizon_factor,
    stretched_to_epoch,
)
from lrpilot.rules._optimizers import OPTIMIZER_NAMES, OPTIMIZERS, Optimizer
from lrpilot.rules._recommend import (
    BAND_FACTOR,
    DECAYS,
    LORA_PLUS_RATIO,
    METHODS,
    PriorCheck,
    Reason,
    Recommendation,
    Setup,
    parse_count,
    recommend,
)
from lrpilot.rules._table import RULES, Rule

__all__ = [
    "BAND_FACTOR",
    "CALIBRATED_STEPS",
    "DECAYS",
    "FORMATS",
    "HORIZON_EXPONENT",
    "LORA_PLUS_RATIO",
    "METHODS",
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "RULES",
    "Horizon",
    "Optimizer",
    "PriorCheck",
    "Reason",
    "Recommendation",
    "Rule",
    "Setup",
    "at_horizon",
    "export_notes",
    "horizon_factor",
    "parse_count",
    "recommend",
    "stretched_to_epoch",
    "to_axolotl",
    "to_hf",
    "to_llama_cpp",
    "to_pytorch",
    "to_torchtune",
    "to_trl",
    "torchtune_blockers",
]
