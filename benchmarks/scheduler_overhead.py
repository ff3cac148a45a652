"""Per-step cost of `LRPilotScheduler.step()` against torch's `LambdaLR` and Hugging Face's scheduler.

Every contender runs a warmup + cosine schedule over many steps, once per optimizer step, with the
optimizer's own step left out (it is the same for all): what is measured is the scheduler's overhead.

* ``lrpilot``: `LRPilotScheduler` with ``Cosine(peak, total_steps, warmup_steps)``.
* ``LambdaLR``: ``torch.optim.lr_scheduler.LambdaLR`` with the same warmup + cosine written as a plain
  Python function (what a hand-rolled torch loop uses).
* ``HF cosine``: ``transformers.get_cosine_schedule_with_warmup`` (a LambdaLR over a ``functools.partial``).
* ``schedule(t)``: the lrpilot schedule called alone, the floor under the adapter's cost.

Each repeat runs every contender once, round robin, with the garbage collector off; the table shows
the median over repeats of the time per step, and the ratio to LambdaLR with as many param groups.

    python benchmarks/scheduler_overhead.py                 # the table
    python benchmarks/scheduler_overhead.py --json out.json # and the raw numbers
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lrpilot.integrations.torch import LRPilotScheduler
from lrpilot.schedules import Cosine

PEAK, WARMUP, FLOOR_RATIO = 3e-4, 500, 0.1


def warmup_cosine(step: int, total: int) -> float:
    """The LambdaLR multiplier: lrpilot's Cosine written by hand (linear warmup, cosine to 10 %)."""
    if step < WARMUP:
        return (step + 1) / (WARMUP + 1)
    progress = min((step - WARMUP) / (total - WARMUP), 1.0)
    return FLOOR_RATIO + (1 - FLOOR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer(groups: int) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(4))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=PEAK)


def stepper(scheduler: torch.optim.lr_scheduler.LRScheduler) -> Callable[[], None]:
    """The scheduler's step, after one optimizer step (no gradients, so a no-op) so that torch's
    schedulers do not warn about stepping before the optimizer."""
    scheduler.optimizer.step()
    return scheduler.step


def contenders(groups: int, steps: int) -> dict[str, Callable[[], Callable[[], None]]]:
    """Name → a factory that builds a fresh scheduler and returns its per-step call."""
    total = steps + 1
    schedule = Cosine(peak=PEAK, total_steps=total, warmup_steps=WARMUP, floor_ratio=FLOOR_RATIO)

    def lrpilot() -> Callable[[], None]:
        return stepper(LRPilotScheduler(optimizer(groups), schedule))

    def lambda_lr() -> Callable[[], None]:
        return stepper(torch.optim.lr_scheduler.LambdaLR(optimizer(groups), lambda s: warmup_cosine(s, total)))

    def schedule_alone() -> Callable[[], None]:
        counter = iter(range(steps + 1))

        def call() -> None:
            schedule(next(counter))

        return call

    out: dict[str, Callable[[], Callable[[], None]]] = {"lrpilot": lrpilot, "LambdaLR": lambda_lr}
    try:
        from transformers import get_cosine_schedule_with_warmup

        def hf() -> Callable[[], None]:
            return stepper(get_cosine_schedule_with_warmup(optimizer(groups), WARMUP, total))

        out["HF cosine"] = hf
    except ImportError:
        pass
    out["schedule(t)"] = schedule_alone
    return out


def time_per_step(step: Callable[[], None], steps: int) -> float:
    """Seconds per call of `step`, over `steps` calls, garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps
    finally:
        if enabled:
            gc.enable()


def measure(steps: int, repeats: int, groups: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for n in groups:
        makers = contenders(n, steps)
        times: dict[str, list[float]] = {name: [] for name in makers}
        for make in makers.values():  # one untimed warm-up round
            time_per_step(make(), min(steps, 1000))
        for _ in range(repeats):
            for name, make in makers.items():
                times[name].append(time_per_step(make(), steps))
        base = statistics.median(times["LambdaLR"])
        for name, samples in times.items():
            median = statistics.median(samples)
            rows.append(
                {
                    "groups": n,
                    "scheduler": name,
                    "median_us": median * 1e6,
                    "min_us": min(samples) * 1e6,
                    "ratio_to_lambdalr": median / base,
                    "samples_us": [s * 1e6 for s in samples],
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| param groups | scheduler | µs / step (median) | min | ÷ LambdaLR |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["groups"],
            r["scheduler"],
            f"{r['median_us']:.2f}",
            f"{r['min_us']:.2f}",
            f"{r['ratio_to_lambdalr']:.2f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    try:
        import transformers

        hf_version = transformers.__version__
    except ImportError:
        hf_version = None
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": hf_version,
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="scheduler steps per repeat (default 10 000)")
    parser.add_argument("--repeats", type=int, default=9, help="repeats per contender; the median is reported")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4], help="param group counts (default 1 4)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < 1:
        parser.error("--steps and --repeats must be ≥ 1")
    rows = measure(args.steps, args.repeats, tuple(args.groups))
    info = machine()
    print(f"{args.steps} steps × {args.repeats} repeats; {info}")
    print(table(rows))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "steps": args.steps, "repeats": args.repeats, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
