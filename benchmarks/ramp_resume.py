"""What fit's run should take over from its range test's ramp: the weights alone, or Adam's moments too?

fit's range test trains the model it measures; the run goes on from a snapshot along the ramp
instead of warming up again (`lrpilot.autopilot._resume`). Each seed's fit runs three ways, with the
same range test, peak, guard, batches and dropout draws:

    fresh      the ramp's weights, a fresh optimizer (what fit does)
    moments    the ramp's weights and Adam's moments at that snapshot (what fit did before ac1970a)
    scratch    nothing from the ramp: the whole warmup from the initial weights

and the final validation losses are compared seed by seed (mean of the ratio to ``scratch``, with
its standard error; each cell says over how many seeds). ``moments`` is rebuilt here from fit's
own code: every snapshot also keeps a copy of the optimizer's state, which the resume puts back and
the run then trains with.

    nice -n 10 python benchmarks/ramp_resume.py --task digits --seeds $(seq 0 99)
    nice -n 10 python benchmarks/ramp_resume.py --task digits --steps 100 --seeds $(seq 0 39)
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/ramp_resume.py --task sst2-lora --seeds $(seq 0 9)
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/ramp_resume.py --task sst2-full --seeds $(seq 10 19) \
        --variants fresh scratch   # fit as it is against nothing from the ramp
    python benchmarks/ramp_resume.py --table-only

Results are merged into ``benchmarks/data/ramp_resume.json`` (per task and budget, seed and variant).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import lrpilot
from _environment import command, load_json, save_json
from lrpilot.autopilot import _resume, _training

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "ramp_resume.json"
VARIANTS = ("fresh", "moments", "scratch")


@contextmanager
def _variant(name: str) -> Iterator[None]:
    """fit as it is (``fresh``), with the ramp's Adam moments handed on (``moments``), or with
    nothing from the ramp (``scratch``)."""
    states, make = _resume.RampStates, _training.make_optimizer
    capture, resume = states.capture, states.resume
    handed: list[Any] = []

    def capture_moments(self: Any, point: int, lr: float) -> None:
        capture(self, point, lr)
        if self._kept and self._kept[-1].point == point:  # a snapshot was taken here
            self._kept[-1].moments = copy.deepcopy(self.optimizer.state_dict()["state"])

    def resume_moments(self: Any, peak: float, schedule: Any, warmup_steps: int) -> Any:
        chosen = self._choose(peak, schedule, warmup_steps)
        resumed = resume(self, peak, schedule, warmup_steps)
        if resumed is not None and chosen is not None:
            state = self.optimizer.state_dict()
            state["state"] = chosen[0].moments
            self.optimizer.load_state_dict(state)
            handed.append(self.optimizer)
        return resumed

    def optimizer_of_the_ramp(model: Any, recipe: Any, lr: float) -> Any:
        return handed.pop() if handed else make(model, recipe, lr)

    def nothing(self: Any, peak: float, schedule: Any, warmup_steps: int) -> None:
        self._kept.clear()

    try:
        if name == "moments":
            states.capture, states.resume = capture_moments, resume_moments  # type: ignore[method-assign]
            _training.make_optimizer = optimizer_of_the_ramp
        elif name == "scratch":
            states.resume = nothing  # type: ignore[assignment,method-assign]
        yield
    finally:
        states.capture, states.resume, _training.make_optimizer = capture, resume, make  # type: ignore[method-assign]


def run(task: str, seed: int, variant: str, steps: int | None) -> dict[str, Any]:
    with _variant(variant), tempfile.TemporaryDirectory() as tmp:
        result = lrpilot.fit(task, seed=seed, budget=steps, out=Path(tmp) / "run", report=False, device="cpu")
    return {
        "val_loss": result.metrics["val_loss"],
        "peak_lr": result.peak_lr,
        "resumed": result.record.resumed,
        "guard_actions": len(result.record.guard_actions),
    }


def table(doc: dict[str, Any]) -> str:
    lines = ["| task | fresh vs scratch | moments vs scratch | fresh vs moments |", "|---|---|---|---|"]

    def ratio(rows: list[dict[str, Any]], a: str, b: str) -> str:
        values = [row[a]["val_loss"] / row[b]["val_loss"] - 1 for row in rows]
        error = statistics.pstdev(values) / math.sqrt(len(values))
        return f"{statistics.fmean(values):+.2%} ± {error:.2%}"

    def cell(seeds: dict[str, Any], a: str, b: str) -> str:
        rows = [row for row in seeds.values() if a in row and b in row]
        return f"{ratio(rows, a, b)} ({len(rows)})" if rows else "–"

    for key, seeds in doc["tasks"].items():
        pairs = (("fresh", "scratch"), ("moments", "scratch"), ("fresh", "moments"))
        lines.append(f"| {key} | " + " | ".join(cell(seeds, a, b) for a, b in pairs) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--steps", type=int, default=None, help="fit's budget in steps (default: the recipe's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}, "commands": []})
    if not args.table_only:
        torch.set_num_threads(args.threads)
        key = args.task if args.steps is None else f"{args.task}@{args.steps}"
        doc["commands"].append(command(["torch", "transformers", "peft"]))
        for seed in args.seeds:
            row = doc["tasks"].setdefault(key, {}).setdefault(str(seed), {})
            row.update({variant: run(args.task, seed, variant, args.steps) for variant in args.variants})
            save_json(args.out, doc)
            print(key, seed, {v: round(r["val_loss"], 4) for v, r in row.items()}, flush=True)
    print(table(doc))


if __name__ == "__main__":
    main()
