"""fit's CPU time against one plain training run on `digits`, where its per-step bookkeeping shows.

For each seed: ``lrpilot.fit("digits", seed=..., report=False, device="cpu")`` (rules, range test,
guarded training, evaluations, model saved), then ``lrpilot.tasks.train`` at fit's peak (the run
fit's cost is compared with), each timed in CPU time (``time.process_time``) on one thread, after
two warm-up pairs (imports, first calls). One JSON line a seed: both times and fit's own ``find``
and ``train`` phase timings (`lrpilot.report.RunRecord.timings`).

Two versions are compared by running this script in alternating processes, each with its own
``PYTHONPATH`` (a single fit is ~0.3 s, and a shared machine moves it by ±15 %), then ``--summary``:

    for r in $(seq 12); do
      PYTHONPATH=/path/to/before/src python benchmarks/fit_overhead.py --seeds 0-9 >> before.jsonl
      PYTHONPATH=src python benchmarks/fit_overhead.py --seeds 0-9 >> after.jsonl
    done
    python benchmarks/fit_overhead.py --summary before.jsonl after.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lrpilot
from lrpilot.tasks import get_task, train


def timed(seed: int) -> dict[str, float]:
    """One fit and one plain run at its peak, in CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        result = lrpilot.fit("digits", seed=seed, out=Path(tmp) / "run", report=False, device="cpu")
        fit = time.process_time() - start
    start = time.process_time()
    train(get_task("digits"), result.peak_lr, seed)
    plain = time.process_time() - start
    timings = result.record.timings
    return {"seed": seed, "fit": fit, "plain": plain, "find": timings["find"], "train": timings["train"]}


def summary(paths: list[Path]) -> None:
    """Medians of each file's rows: fit / plain, and the times."""
    for path in paths:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        ratio = statistics.median(r["fit"] / r["plain"] for r in rows)
        medians = {k: statistics.median(r[k] for r in rows) for k in ("fit", "plain", "find", "train")}
        times = "  ".join(f"{k} {value:.4f} s" for k, value in medians.items())
        print(f"{path}: {len(rows)} fits, fit / plain {ratio:.3f}  (medians: {times})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="a range FIRST-LAST")
    parser.add_argument("--summary", nargs="+", type=Path, help="summarise these JSON-lines files instead")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    first, last = (int(s) for s in args.seeds.split("-"))
    torch.set_num_threads(1)
    for seed in (100, 101):  # warm-up
        timed(seed)
    for seed in range(first, last + 1):
        print(json.dumps(timed(seed)), flush=True)


if __name__ == "__main__":
    main()
