"""Oracle LR sweep: the final validation loss of a task's full recipe over a dense grid of peak LRs.

For each grid LR and seed, `lrpilot.tasks.train` runs the task's fixed recipe at that peak LR;
the resulting curve (mean final validation loss vs peak LR) is the oracle an LR finder's
suggestion is scored against: regret = (L(lr) - L*) / (L_init - L*), with L* the best grid point
and L_init the untrained model's validation loss (also stored). A diverged run scores L_init.

The grid is 10**(k / points_per_decade) for integer k, so a finer grid contains the coarser one
and points already in the output file are skipped: the sweep resumes where it stopped, and can be
run in pieces or refined later (``--around-best 0.5 --points-per-decade 6``).

    nice -n 10 python benchmarks/oracle_sweep.py --task digits
    nice -n 10 python benchmarks/oracle_sweep.py --task sst2-lora --seeds 0 1 --data-dir ../shared/data
    nice -n 10 python benchmarks/oracle_sweep.py --task shakespeare --around-best 0.5 --points-per-decade 6

``--steps N`` sweeps the recipe compressed or stretched to N steps (`Recipe.shortened`: warmup in
proportion, the decay over the whole run) into ``oracle_<task>@<N>.json``: the oracle of a budget
other than the recipe's, which ``fit_vs_defaults.py --steps N`` scores fit's peaks on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the tasks need is on disk

import torch

from _environment import command, save_json
from lrpilot.tasks import Recipe, Task, get_task, initial_metrics, task_names, train

SCHEMA = 1
CURVE_POINTS = 50  # training-loss curves are stored as this many window means


def grid(lo: float, hi: float, points_per_decade: int) -> list[float]:
    """10**(k/ppd) for every integer k with lo ≤ LR ≤ hi (ends rounded to the grid)."""
    first = math.ceil(round(math.log10(lo) * points_per_decade, 6))
    last = math.floor(round(math.log10(hi) * points_per_decade, 6))
    return [10 ** (k / points_per_decade) for k in range(first, last + 1)]


def key(lr: float) -> str:
    """Grid points from different runs of the script match on this."""
    return f"{lr:.4e}"


def curve(losses: list[float | None], points: int = CURVE_POINTS) -> list[float | None]:
    """Window means of a training-loss trace (None where a window holds a non-finite loss)."""
    if not losses:
        return []
    size = max(1, math.ceil(len(losses) / points))
    out: list[float | None] = []
    for start in range(0, len(losses), size):
        window = losses[start : start + size]
        out.append(None if any(x is None for x in window) else statistics.fmean(x for x in window if x is not None))
    return out


def summarise(doc: dict[str, Any]) -> None:
    """Per-LR means over seeds, the best grid LR, and the mean L_init, written into `doc`."""
    by_lr: dict[str, list[dict[str, Any]]] = {}
    for run in doc["runs"]:
        by_lr.setdefault(key(run["peak_lr"]), []).append(run)
    rows = []
    for runs in by_lr.values():
        losses = [r["val_loss"] for r in runs]
        accuracies = [r["val_accuracy"] for r in runs if r["val_accuracy"] is not None]
        rows.append(
            {
                "peak_lr": runs[0]["peak_lr"],
                "seeds": sorted(r["seed"] for r in runs),
                "mean_val_loss": statistics.fmean(losses),
                "std_val_loss": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                "mean_val_accuracy": statistics.fmean(accuracies) if accuracies else None,
                "diverged": sum(r["diverged"] for r in runs),
                "mean_wall_time_s": statistics.fmean(r["wall_time_s"] for r in runs),
            }
        )
    rows.sort(key=lambda row: row["peak_lr"])
    doc["summary"] = rows
    complete = [row for row in rows if len(row["seeds"]) == len(doc["seeds"])] or rows
    doc["best"] = min(complete, key=lambda row: row["mean_val_loss"]) if complete else None
    inits = [v["loss"] for v in doc["initial"].values()]
    doc["l_init_mean"] = statistics.fmean(inits) if inits else None


def load(path: Path, task: Task, recipe: Recipe, seeds: list[int]) -> dict[str, Any]:
    if path.exists():
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc["task"] != task.name or doc["recipe"] != recipe.to_dict():
            sys.exit(
                f"{path} holds a sweep of {doc['task']} with recipe {doc['recipe']}; not resuming it "
                f"with {task.name} {recipe.to_dict()}: move it away or pass another --out"
            )
        doc["seeds"] = sorted(set(doc["seeds"]) | set(seeds))
        return doc
    return {
        "schema": SCHEMA,
        "task": task.name,
        "description": task.description,
        "recipe": recipe.to_dict(),
        "seeds": sorted(seeds),
        "score": "final validation loss after the full recipe; a diverged run scores L_init of its seed",
        "initial": {},
        "runs": [],
        "commands": [],
    }


def save(path: Path, doc: dict[str, Any]) -> None:
    summarise(doc)
    save_json(path, doc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--points-per-decade", type=int, default=3)
    parser.add_argument("--lo", type=float, default=1e-6)
    parser.add_argument("--hi", type=float, default=1.0)
    parser.add_argument(
        "--around-best",
        type=float,
        metavar="DECADES",
        help="instead of --lo/--hi: the best grid LR in --out times 10**(±DECADES)",
    )
    parser.add_argument("--steps", type=int, help="the recipe compressed or stretched to this many steps")
    parser.add_argument("--out", type=Path, help="default: benchmarks/data/oracle_<task>[@<steps>].json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data-dir", help="SST-2 folder for the sst2 tasks (default: $LRPILOT_SST2_DIR or ../shared/data)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)

    torch.set_num_threads(args.threads)
    task = get_task(args.task, data_dir=args.data_dir) if args.data_dir else get_task(args.task)
    recipe = task.recipe if args.steps is None else task.recipe.shortened(args.steps)
    name = task.name if args.steps is None else f"{task.name}@{args.steps}"
    out: Path = args.out or Path(__file__).parent / "data" / f"oracle_{name}.json"
    doc = load(out, task, recipe, args.seeds)
    lo, hi = args.lo, args.hi
    if args.around_best is not None:
        summarise(doc)
        if not doc["best"]:
            sys.exit(f"--around-best needs a finished coarse sweep in {out}")
        best = doc["best"]["peak_lr"]
        lo, hi = best * 10**-args.around_best, best * 10**args.around_best
    lrs = grid(lo, hi, args.points_per_decade)
    packages = ("lrpilot", "torch", "numpy", "scikit-learn", "transformers", "peft")
    doc["commands"].append(command(packages, argv, grid=[lo, hi, args.points_per_decade]))
    done = {(key(r["peak_lr"]), r["seed"]) for r in doc["runs"]}
    todo = [(lr, seed) for lr in lrs for seed in args.seeds if (key(lr), seed) not in done]
    print(f"{name}: {len(lrs)} LRs x {len(args.seeds)} seeds, {len(todo)} runs to do -> {out}", flush=True)
    for seed in args.seeds:
        if str(seed) not in doc["initial"]:
            init = initial_metrics(task, seed)
            doc["initial"][str(seed)] = {"loss": init.loss, "accuracy": init.accuracy}
            print(f"  L_init seed {seed}: {init.loss:.4f}", flush=True)
    save(out, doc)
    started = time.perf_counter()
    for i, (lr, seed) in enumerate(todo, 1):
        result = train(task, lr, seed, steps=args.steps)
        run = result.to_dict()
        run["train_loss_curve"] = curve(run.pop("train_losses"))
        run["final_train_loss"] = result.train_losses[-1] if math.isfinite(result.train_losses[-1]) else None
        doc["runs"].append(run)
        save(out, doc)
        acc = "" if result.val_accuracy is None else f" acc {result.val_accuracy:.3f}"
        flag = f" DIVERGED at step {result.diverged_step}" if result.diverged else ""
        print(
            f"  [{i}/{len(todo)}] lr {lr:.3e} seed {seed}: val {result.val_loss:.4f}{acc}{flag} "
            f"({result.wall_time_s:.1f} s, {time.perf_counter() - started:.0f} s so far)",
            flush=True,
        )
    best = doc["best"]
    if best:
        print(f"best: lr {best['peak_lr']:.3e} mean val {best['mean_val_loss']:.4f}; L_init {doc['l_init_mean']:.4f}")
    doc["commands"][-1]["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save(out, doc)


if __name__ == "__main__":
    main()
