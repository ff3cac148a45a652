"""`lrpilot fit --precision`: does autocasting to bf16 or fp16 change the LR fit picks, or the run?

For each built-in task and seed, ``lrpilot.fit(task, seed=..., precision=P, device=D)`` for each
precision P: the same rules, range test, guard and batches; only the forward passes' precision
differs (the range test measures its curve in it too). Reported per task: fit's peak (and the range
test's, before the horizon law) against fp32's on the same seed, the final validation loss and
accuracy seed by seed against fp32's (mean ± standard error of the ratio), the guard's actions,
and the wall time against fp32's (on a CPU a lower precision's speed depends on what the CPU has:
this machine's AMD EPYC has AVX-512 BF16 and no native fp16 arithmetic).

    nice -n 10 python benchmarks/fit_precision.py --tasks digits --seeds $(seq 0 9) --precisions fp32 bf16 fp16
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/fit_precision.py --tasks sst2-lora --seeds 0 1 2 3 \
        --precisions fp32 bf16
    python benchmarks/fit_precision.py --device cuda --tasks sst2-lora sst2-full shakespeare --out gpu.json   # a GPU
    python benchmarks/fit_precision.py --table-only

Results are merged into ``benchmarks/data/fit_precision.json`` (per device, task, seed and precision).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import lrpilot
from _environment import command, load_json, save_json
from lrpilot.tasks._device import PRECISIONS, resolve_device

OUT = Path(__file__).resolve().parent / "data" / "fit_precision.json"


def run(task: str, seed: int, precision: str, device: str) -> dict[str, Any]:
    """One fit, and what it chose, reached and cost."""
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        result = lrpilot.fit(task, seed=seed, precision=precision, device=device, out=Path(tmp) / "run", report=False)
    return {
        "peak_lr": result.peak_lr,
        "found_lr": None if result.finder is None else result.finder.peak_lr,
        "val_loss": result.metrics["val_loss"],
        "val_accuracy": result.metrics.get("val_accuracy"),
        "guard_actions": len(result.record.guard_actions),
        "wall_time_s": time.perf_counter() - started,
        "cpu_time_s": time.process_time() - cpu,
        "timings": result.record.timings,
        "device": result.record.device,
    }


def warm_up(task: str, precisions: list[str], device: str) -> None:
    """A tiny fit per precision before anything is timed: the first optimizer step imports parts of
    torch, and the first autocast region its kernels."""
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            out = Path(tmp) / precision
            lrpilot.fit(task, budget=10, finder_steps=10, precision=precision, device=device, out=out, report=False)


def _paired(rows: list[dict[str, Any]], precision: str, field: str) -> str:
    """``mean ± s.e.`` of the ratio of `field` to fp32's on the same seeds."""
    ratios = [row[precision][field] / row["fp32"][field] - 1 for row in rows]
    if len(ratios) < 2:
        return f"{ratios[0]:+.2%}" if ratios else "–"
    return f"{statistics.fmean(ratios):+.2%} ± {statistics.stdev(ratios) / math.sqrt(len(ratios)):.2%}"


def _decades(rows: list[dict[str, Any]], precision: str, field: str) -> str:
    """The median and largest |log10| distance of `field` (an LR) from fp32's on the same seed."""
    gaps = [abs(math.log10(row[precision][field] / row["fp32"][field])) for row in rows if row[precision][field]]
    return f"{statistics.median(gaps):.3f} / {max(gaps):.3f}" if gaps else "–"


def table(doc: dict[str, Any]) -> str:
    header = (
        "| device, task (seeds) | precision | val loss | vs fp32, seed by seed | accuracy | "
        "peak: decades from fp32's (median / max) | range test's peak, the same | guard actions | wall time vs fp32 |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for key, seeds in doc["runs"].items():
        for precision in PRECISIONS:
            rows = [row for row in seeds.values() if precision in row and "fp32" in row]
            if not rows:
                continue
            mean = statistics.fmean(row[precision]["val_loss"] for row in rows)
            accuracy = [row[precision]["val_accuracy"] for row in rows if row[precision]["val_accuracy"] is not None]
            cells = [
                f"{key} ({len(rows)})",
                precision,
                f"{mean:.4f}",
                "–" if precision == "fp32" else _paired(rows, precision, "val_loss"),
                f"{statistics.fmean(accuracy):.4f}" if accuracy else "–",
                "–" if precision == "fp32" else _decades(rows, precision, "peak_lr"),
                "–" if precision == "fp32" else _decades(rows, precision, "found_lr"),
                str(sum(row[precision]["guard_actions"] for row in rows)),
                "–" if precision == "fp32" else _paired(rows, precision, "wall_time_s"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--device", default="cpu", help="cpu (one thread, as the other benchmarks), cuda, cuda:N")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"runs": {}, "commands": []})
    if not args.table_only:
        device = resolve_device(args.device, "fit_precision")
        if device.type == "cpu":
            torch.set_num_threads(1)
        doc["commands"].append(command(["torch", "transformers", "peft"]))
        for task in args.tasks:
            key = f"{device.type}, {task}"
            warm_up(task, args.precisions, args.device)
            for seed in args.seeds:
                row = doc["runs"].setdefault(key, {}).setdefault(str(seed), {})
                for precision in args.precisions:
                    row[precision] = run(task, seed, precision, args.device)
                    save_json(args.out, doc)
                    print(key, seed, precision, {k: row[precision][k] for k in ("peak_lr", "val_loss")}, flush=True)
    print(table(doc))


if __name__ == "__main__":
    main()
