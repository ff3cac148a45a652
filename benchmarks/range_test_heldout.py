"""Would fit's range test answer closer to the best LR if it read a held-out loss instead of the training loss?

fit's range test reads the training loss of each step's batch: every batch holds other examples,
so the curve carries the batch-to-batch noise that spreads one test's answer over ±0.15–0.2
decades on the SST-2 fine-tunes (``range_test_budget.py --spread``). The same test in validation
mode (`lrpilot.integrations.torch_finder.find_lr`'s ``val_data``) reads, after every step, the mean
loss of the same few held-out batches, in eval mode: that noise is gone, and a forward pass over
them is added to every step. Variants, each fit's own range test otherwise (its ramp, stops,
recipe, precision: `lrpilot.autopilot._search.range_test` with ``for_fit=True``, the MiniLM tests in
bf16 where this CPU computes it, as fit runs them):

    train        the training loss, as fit reads it
    held-out-2   the loss of 2 held-out batches of the recipe's size after every step

The held-out batches are training examples the seed draws at random (`held_out`): on SST-2, 64 of
the 4,800 texts (a batch of the task's own stream is cut from a length-sorted group, so its texts
are alike: two of them read as a curve that never fell on sst2-lora seed 17); on digits and the
char-GPT, the first batches of another seed's stream, which are random draws already. They may
also be among the test's own batches (a test sees ~1,000 of SST-2's 4,800 texts).

Each answer is scored on the task's oracle sweep (``benchmarks/_scoring.py``): its excess loss,
and the spread (SD) and mean offset of the answers in decades from the oracle's best LR.

    nice -n 10 python benchmarks/range_test_heldout.py --tasks digits --seeds $(seq 0 19)
    nice -n 10 python benchmarks/range_test_heldout.py --tasks shakespeare --seeds $(seq 0 9)
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/range_test_heldout.py --tasks sst2-lora \
        --seeds $(seq 0 29)
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/range_test_heldout.py --tasks sst2-full \
        --seeds $(seq 0 25)
    python benchmarks/range_test_heldout.py --table-only

Results are merged into ``benchmarks/data/range_test_heldout.json`` (one entry per task, seed and
variant; those already there are skipped unless ``--refresh``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _environment import command, load_json, save_json
from _fit_test import FitTest
from _scoring import OracleCurve, score
from lrpilot.integrations import torch_finder
from lrpilot.tasks import Task
from lrpilot.tasks._sst2 import Sst2Task, _pad

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "range_test_heldout.json"
VARIANTS = {"train": 0, "held-out-2": 2}
"""Variant → held-out batches read after every step (0: the training loss)."""
OTHER_STREAM = 100_000
"""Added to the seed for the stream the held-out batches of digits and the char-GPT come from."""


def held_out(task: Task, seed: int, batches: int) -> list[Any]:
    """`batches` batches of the recipe's size of training examples drawn at random with `seed`."""
    if isinstance(task, Sst2Task):
        split = task._split(train=True)
        size = task.recipe.batch_size
        picked = np.random.default_rng(seed + 7).permutation(len(split.ids))[: batches * size].tolist()
        picked.sort(key=lambda i: len(split.ids[i]))  # little padding, as fit's own evaluations
        return [
            _pad([split.ids[i] for i in part], split.labels[part])
            for part in (picked[j : j + size] for j in range(0, len(picked), size))
        ]
    stream = task.batches(seed + OTHER_STREAM)
    return [next(stream) for _ in range(batches)]


@contextmanager
def reading(val_data: list[Any] | None) -> Iterator[None]:
    """fit's range test reads the loss of `val_data` after every step inside this block (fit has no
    held-out mode: `range_test` calls `find_lr` in fast mode, whose ``val_data`` this sets)."""
    original = torch_finder.find_lr
    if val_data is not None:
        torch_finder.find_lr = functools.partial(  # type: ignore[assignment]
            original, val_data=val_data, val_batches=len(val_data)
        )
    try:
        yield
    finally:
        torch_finder.find_lr = original


def run_variant(name: str, seed: int, variant: str) -> dict[str, Any]:
    """fit's range test on `name` for `seed`, set up as fit sets it up, reading the curve `variant` names."""
    test = FitTest.of(name, seed)
    batches = VARIANTS[variant]
    val_data = held_out(test.job, seed, batches) if batches else None
    with reading(val_data):
        search, wall = test.run(seed)
    if search.finder is None:  # fit would train at the rules' peak: scored so
        return {"peak_lr": search.peak, "from_rules": True, "notes": search.notes, "wall_time_s": wall, "steps": None}
    record = search.finder.record
    return {
        "peak_lr": search.peak,
        "from_rules": search.from_rules,
        "steps": record.steps,
        "wall_time_s": wall,
        "precision": test.amp or "fp32",
        "lrs": list(record.lrs),
        "losses": [x if math.isfinite(x) else None for x in record.losses],
        "train_losses": [x if math.isfinite(x) else None for x in record.train_losses],
    }


def table(doc: dict[str, Any]) -> str:
    """Markdown: per task and variant, the answers' excess loss on the oracle, their spread and
    offset from its best LR in decades, and the test's steps and wall time."""
    lines = [
        "| task | curve | seeds | excess loss mean (worst) | SD, decades | offset, decades | steps | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in doc["tasks"].items():
        oracle = OracleCurve.from_doc(json.loads((DATA / f"oracle_{name}.json").read_text(encoding="utf-8")))
        seeds = [seed for seed, by in runs.items() if all(v in by for v in VARIANTS)]
        for variant in VARIANTS:
            rows = [runs[seed][variant] for seed in seeds]
            if not rows:
                continue
            excess = [score(oracle, row["peak_lr"]).excess for row in rows]
            logs = [math.log10(row["peak_lr"] / oracle.lr_star) for row in rows]
            lines.append(
                f"| {name} | {variant} | {len(rows)} | {statistics.fmean(excess):.2%} ({max(excess):.2%}) | "
                f"{statistics.pstdev(logs):.3f} | {statistics.fmean(logs):+.3f} | "
                f"{statistics.median(row['steps'] or 0 for row in rows):g} | "
                f"{statistics.median(row['wall_time_s'] for row in rows):.2f} s |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "shakespeare"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--refresh", action="store_true", help="run variants already in --out again")
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}, "commands": []})
    if not args.table_only:
        torch.set_num_threads(args.threads)
        doc["commands"].append(command(["lrpilot", "torch", "numpy"]))
        for name in args.tasks:
            run_variant(name, args.seeds[0], "train")  # untimed: the first steps import parts of torch
            for seed in args.seeds:
                for variant in args.variants:
                    if variant in doc["tasks"].get(name, {}).get(str(seed), {}) and not args.refresh:
                        continue
                    row = run_variant(name, seed, variant)
                    doc["tasks"].setdefault(name, {}).setdefault(str(seed), {})[variant] = row
                    print(
                        f"  {name} seed {seed} {variant}: peak {row['peak_lr']:.3g} in {row['steps']} steps", flush=True
                    )
                    save_json(args.out, doc)
    print(table(doc))


if __name__ == "__main__":
    main()
