"""fit's range test on a built-in task, set up as fit sets it up, for the benchmarks that vary it
(``range_test_heldout.py``, ``range_test_second.py``): the model, rules and recipe from tuning's
`plan_run`, the precision fit picks (`finder_precision`: a fine-tune trains its whole warmup from the
initial weights; the MiniLM tests in bf16 where this CPU computes it), and `range_test` with
``for_fit=True``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from lrpilot.autopilot._progress import quiet
from lrpilot.autopilot._search import Search, finder_precision, range_test
from lrpilot.autopilot._target import TargetSpec, resolve_target
from lrpilot.tasks import Recipe, Task
from lrpilot.tasks._device import Precision
from lrpilot.tuning._engine import plan_run


@dataclass
class FitTest:
    """What fit's range test on `name` for `seed` runs on: the fresh model, the rules' recommendation,
    the task (`job`), its fitted recipe and the test's autocast (None: fp32)."""

    model: torch.nn.Module
    rec: Any
    job: Task
    recipe: Recipe
    amp: str | None

    @classmethod
    def of(cls, name: str, seed: int) -> FitTest:
        target = resolve_target(TargetSpec(name))
        model, rec, job, recipe = plan_run(target, target.steps, seed)
        tested, _ = finder_precision(
            Precision(), model, torch.device("cpu"), chosen=False, timed=False, from_ramp=target.method == "pretraining"
        )
        return cls(model, rec, job, recipe, tested.amp)

    def run(self, seed: int) -> tuple[Search, float]:
        """The test on the batches and dropout draws of `seed`, and its wall time."""
        started = time.perf_counter()
        search = range_test(
            self.job,
            self.model,
            self.recipe,
            self.rec,
            seed=seed,
            steps=None,
            progress=quiet,
            for_fit=True,
            snapshots=False,
            amp=self.amp,
        )
        return search, time.perf_counter() - started
