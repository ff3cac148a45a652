"""Built-in training tasks with fixed recipes, for scoring learning-rate suggestions.

Each task is real data, available offline, with a fixed training recipe (AdamW, batch size,
steps, warmup, decay, clipping); only the peak LR and the seed vary. `train` runs the full
recipe at a peak LR and reports the final validation loss, the score an LR finder is judged by
against the best LR of a dense sweep (``benchmarks/oracle_sweep.py``).

=========== ========================================================= =========
name        what                                                      full run*
=========== ========================================================= =========
digits      MLP on scikit-learn's 8x8 digits                          ~0.3 s
shakespeare char-level GPT (0.11M params) on tiny shakespeare         ~27 s
sst2-full   full fine-tuning of all-MiniLM-L6-v2 on SST-2             ~65 s
sst2-lora   LoRA r=8 on all-MiniLM-L6-v2 on SST-2                     ~50 s
=========== ========================================================= =========

\\* one CPU thread of an otherwise idle machine, model loading and evaluation included.

Tiny shakespeare (public domain) ships in the package. The ``sst2-*`` tasks need SST-2 on disk
(``get_task(name, data_dir=...)`` or ``$LRPILOT_SST2_DIR``): its licence is unstated, so it is
not shipped.

>>> from lrpilot.tasks import get_task, train
>>> result = train(get_task("digits"), peak_lr=3e-3, seed=0, steps=20)
>>> result.total_steps, result.diverged
(20, False)
"""

from lrpilot._optional import require

require("torch", "torch", "lrpilot.tasks")

from lrpilot.tasks._base import Batch, Metrics, Task, one_thread  # noqa: E402 -- after the torch check on purpose
from lrpilot.tasks._recipe import DECAYS, Recipe  # noqa: E402
from lrpilot.tasks._registry import TASKS, get_task, task_names  # noqa: E402
from lrpilot.tasks._shakespeare import corpus  # noqa: E402
from lrpilot.tasks._sst2 import SST2_ENV, find_sst2_dir  # noqa: E402
from lrpilot.tasks._train import (  # noqa: E402
    StepCallback,
    TrainResult,
    initial_loss,
    initial_metrics,
    make_optimizer,
    train,
)

__all__ = [
    "DECAYS",
    "SST2_ENV",
    "TASKS",
    "Batch",
    "Metrics",
    "Recipe",
    "StepCallback",
    "Task",
    "TrainResult",
    "corpus",
    "find_sst2_dir",
    "get_task",
    "initial_loss",
    "initial_metrics",
    "make_optimizer",
    "one_thread",
    "task_names",
    "train",
]
