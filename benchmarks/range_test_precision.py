"""fit's range test in fp32 and in bf16 autocast: does the cheaper precision find the same peak?

For each task and seed, fit's own range test (`lrpilot.autopilot._search.range_test`: the rules'
band, fit's ramp and settled stop, the recipe's AdamW and clipping) on the same initial model and
batches, once in fp32 and once in bf16 autocast. Reported: the peak each found (before the horizon
law), their distance in decades, the steps each took, and the bf16 test's wall time over fp32's
(one thread; the two tests of a seed run back to back, so a busy machine slows both alike). This
is what `lrpilot fit` relies on when it runs the test of a large model in bf16 where the hardware
computes it (`test_precision`): on a CPU the gain needs AVX512-BF16 or AMX (this machine's AMD
EPYC has AVX512-BF16).

    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/range_test_precision.py --tasks sst2-full \
        --seeds $(seq 0 25)
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/range_test_precision.py --tasks sst2-lora \
        --seeds $(seq 0 29)
    python benchmarks/range_test_precision.py --table-only

Results are merged into ``benchmarks/data/range_test_precision.json`` (per task, seed and precision).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from _environment import command, load_json, save_json
from _scoring import OracleCurve, score
from lrpilot.autopilot._progress import quiet
from lrpilot.autopilot._search import range_test
from lrpilot.autopilot._target import TargetSpec, resolve_target
from lrpilot.tuning._engine import plan_run

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "range_test_precision.json"
AMPS = {"fp32": None, "bf16": "bf16"}
CLOSE = 0.005
"""Decades within which two peaks count as the same answer: fit rounds a peak to 3 digits, and a
range test's answer spreads ±0.15–0.2 decades from one batch order to the next."""


def run(name: str, seed: int, precision: str) -> dict[str, Any]:
    """fit's range test of task `name` on `seed`'s fresh model, set up as fit sets it up, in `precision`."""
    target = resolve_target(TargetSpec(name))
    model, rec, job, planned = plan_run(target, target.steps, seed)  # fit's model, rules and recipe
    started = time.perf_counter()
    amp = AMPS[precision]
    # as fit tests a fine-tune (it trains its whole warmup from the initial weights: no ramp snapshots)
    search = range_test(
        job, model, planned, rec, seed=seed, steps=None, progress=quiet, for_fit=True, snapshots=False, amp=amp
    )
    return {
        "peak_lr": search.peak,
        "steps": None if search.finder is None else search.finder.steps_used,
        "wall_time_s": time.perf_counter() - started,
    }


def table(doc: dict[str, Any]) -> str:
    """Markdown: per task, the seeds, how many bf16 peaks equal fp32's (to the 3 digits fit keeps) and
    lie within `CLOSE` decades of it, the largest distance, and bf16's time over fp32's."""
    lines = [
        f"| task (seeds) | bf16 peak = fp32's | within {CLOSE} decades | largest gap (decades) | bf16 / fp32 time: "
        "median (range) |",
        "|---|---|---|---|---|",
    ]
    for task, runs in doc["runs"].items():
        rows = [row for row in runs.values() if "fp32" in row and "bf16" in row]
        if not rows:
            continue
        gaps = [abs(math.log10(row["bf16"]["peak_lr"] / row["fp32"]["peak_lr"])) for row in rows]
        times = [row["bf16"]["wall_time_s"] / row["fp32"]["wall_time_s"] for row in rows]
        same, close = sum(gap == 0 for gap in gaps), sum(gap <= CLOSE for gap in gaps)
        lines.append(
            f"| {task} ({len(rows)}) | {same} of {len(rows)} | {close} of {len(rows)} | {max(gaps):.3f} | "
            f"{statistics.median(times):.2f}× ({min(times):.2f}–{max(times):.2f}) |"
        )
    return "\n".join(lines)


def _warm(doc: dict[str, Any], task: str, seed: str) -> dict[str, Any]:
    """A `fit_vs_defaults.py` document's full-warmup runs of `task` on `seed` (empty if none)."""
    return doc["tasks"].get(f"{task}+full-warmup", {}).get("runs", {}).get(seed, {})  # type: ignore[no-any-return]


def _fit(doc: dict[str, Any], task: str, seed: str) -> dict[str, Any] | None:
    """The full-warmup fit's row of `task` on `seed` in a `fit_vs_defaults.py` document: its
    ``TASK+full-warmup`` fit, else the task's train@fit (the same run: a fine-tune's fit trains its
    whole warmup from the initial weights, at the peak its test found)."""
    warm = _warm(doc, task, seed)
    if "fit" in warm:
        return warm["fit"]  # type: ignore[no-any-return]
    return doc["tasks"].get(task, {}).get("runs", {}).get(seed, {}).get("train@fit")  # type: ignore[no-any-return]


def quality(doc: dict[str, Any], stored: dict[str, Any], reruns: list[dict[str, Any]]) -> str:
    """What the bf16 test does to fit's result, per task: fit's mean loss and its mean over grid-lr's
    (and its accuracy over grid-lr's, in points) with the fp32 test (`stored`:
    ``fit_vs_defaults.json``) and with the bf16 test, whose fits are those of `reruns`
    (``fit_vs_defaults_bf16_*.json``) where they were run again, and `stored`'s where the bf16 peak
    equals fp32's (the same run to the bit: the training does not depend on the test's precision);
    and the peaks' excess on the oracle's seed-mean curve. Seeds whose peak moved but were not run
    again are left out, and counted."""
    lines = []
    for task, runs in doc["runs"].items():
        losses: dict[str, list[float]] = {"fp32": [], "bf16": [], "grid": []}
        points: dict[str, list[float]] = {"fp32": [], "bf16": []}  # accuracy over grid-lr's, in points
        peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
        missing = 0
        for seed, row in runs.items():
            redone = next((_warm(r, task, seed)["fit"] for r in reruns if "fit" in _warm(r, task, seed)), None)
            fp32, best = _fit(stored, task, seed), stored["tasks"][task]["runs"].get(seed, {}).get("grid-lr")
            bf16 = redone if redone is not None else fp32 if row["bf16"]["peak_lr"] == row["fp32"]["peak_lr"] else None
            if fp32 is None or bf16 is None or best is None:
                missing += 1
                continue
            for name, fit in (("fp32", fp32), ("bf16", bf16)):
                losses[name].append(float(fit["val_loss"]))
                peaks[name].append(float(fit["peak_lr"]))
                if fit.get("val_accuracy") is not None and best.get("val_accuracy") is not None:
                    points[name].append(100 * (float(fit["val_accuracy"]) - float(best["val_accuracy"])))
            losses["grid"].append(float(best["val_loss"]))
        if not losses["grid"]:
            continue
        grid = statistics.fmean(losses["grid"])
        oracle_path = DATA / f"oracle_{task}.json"
        oracle = OracleCurve.from_doc(load_json(oracle_path, {})) if oracle_path.is_file() else None
        said = []
        for name in ("fp32", "bf16"):
            mean = statistics.fmean(losses[name])
            on_curve = (
                ""
                if oracle is None
                else f", its peaks {statistics.fmean(score(oracle, p).excess for p in peaks[name]):+.2%} on the "
                "oracle's curve"
            )
            accuracy = (
                f", accuracy {statistics.fmean(points[name]):+.2f} ± "
                f"{statistics.stdev(points[name]) / math.sqrt(len(points[name])):.2f} points (s.e.)"
                if len(points[name]) == len(losses[name]) > 1
                else ""
            )
            said.append(f"the {name} test {mean:.4f}, {mean / grid - 1:+.2%}{on_curve}{accuracy}")
        lines.append(
            f"{task}: fit vs grid-lr ({grid:.4f}) on {len(losses['grid'])} seeds ({missing} left out): "
            + "; ".join(said)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2-lora"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"runs": {}, "commands": []})
    if not args.table_only:
        torch.set_num_threads(1)
        doc["commands"].append(command(["torch", "transformers", "peft"]))
        for task in args.tasks:
            for precision in AMPS:  # untimed: a process's first test imports parts of torch (seconds)
                run(task, args.seeds[0], precision)
            for seed in args.seeds:
                row = doc["runs"].setdefault(task, {}).setdefault(str(seed), {})
                for precision in AMPS:
                    row[precision] = run(task, seed, precision)
                save_json(args.out, doc)
                print(task, seed, row, flush=True)
    print(table(doc))
    stored = DATA / "fit_vs_defaults.json"
    reruns = [load_json(path, {}) for path in sorted(DATA.glob("fit_vs_defaults_bf16_*.json"))]
    if stored.is_file() and reruns:
        print("\n" + quality(doc, load_json(stored, {}), reruns))


if __name__ == "__main__":
    main()
