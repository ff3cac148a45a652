"""`lrpilot fit` against the learning rates people use without a search, and against the grid's best.

For each built-in task and seed, from the same initial model and batch order:

    fit           ``lrpilot.fit(task, seed=...)``: rules, range test (from 10× below the rules' band,
                  12.5 steps a decade, stopped at divergence or once its minimum settled), the recipe
                  at the found peak, training under the guard (a fine-tune — the SST-2 tasks — with
                  its whole warmup since 8a9f51a; from scratch going on from the ramp's state in
                  place of the warmup steps it stands for), 3 quick evaluations and a full one, model
                  saved (``report=False``: the HTML report's plotting is not counted). The stored
                  ``sst2-lora`` and ``sst2-full`` fit rows are the ramp continuation, as fit ran them
                  then; ``TASK+full-warmup`` (``--full-warmup``) holds fit with the full warmup
    train@fit     ``lrpilot.tasks.train`` at fit's peak: the single training run fit's cost is
                  compared with (same recipe and batches, no search, no guard, one evaluation)
    hf-default    Hugging Face ``TrainingArguments`` defaults: 5e-5, linear decay to 0, no warmup,
                  no weight decay, clipping at 1.0
    unsloth-2e-4  Unsloth's LoRA default LR 2e-4 in the task's recipe
    fixed-1e-3    AdamW at a constant 1e-3 (no warmup, no decay), the recipe's weight decay and clipping
    schedulefree  ``schedulefree.AdamWScheduleFree`` at its defaults (lr 2.5e-3, betas (0.9, 0.999),
                  no weight decay) with the recipe's warmup and clipping, evaluated in its eval mode
    grid-lr       the oracle sweep's best peak (``benchmarks/data/oracle_<task>.json``) on this seed: the
                  sweep's own run where it has the seed, else ``train`` at that peak (a seed the
                  sweep did not choose its best on, so no selection bias)
    grid-best     the oracle sweep's best peak as the sweep scored it: its seed-mean loss and
                  accuracy over the sweep's seeds, and the wall time of one of its runs (the whole
                  grid cost that many times the number of grid points)

Reported: final validation loss and accuracy, wall time (search included for fit), fit's loss
relative to the grid's best LR on the same seeds (``grid-lr``: paired, seed by seed; a final loss
varies by several per cent between seeds at one LR, more than the 1 % target), and fit's wall time
relative to ``train@fit`` in wall time and in the process's CPU time (one thread: the CPU time is
the compute spent, and unlike the wall time it hardly moves when another job shares the machine),
beside the range test's share of it (its steps, less the warmup steps its ramp stood for, over the
run's: the part of the cost no faster code removes). The targets: within 1 % of the grid's best loss
on every task, at ≤ 1.2× the cost of one training run.

    nice -n 10 python benchmarks/fit_vs_defaults.py --tasks digits shakespeare --seeds 0
    nice -n 10 python benchmarks/fit_vs_defaults.py --tasks sst2-full sst2-lora --seeds 0   # SST-2 on disk
    nice -n 10 python benchmarks/fit_vs_defaults.py --tasks digits --seeds 0 1 2 3 4 --fit-only
    nice -n 10 python benchmarks/fit_vs_defaults.py --tasks sst2-lora --seeds 0 --steps 600   # a 4× budget

The range test's length does not grow with the run (it covers the same decades of LR), so its
share of fit's cost falls as the budget grows; ``--steps`` measures fit and train@fit on a budget
other than the recipe's (stored as ``<task>@<steps>``; no grid-lr there, and fit's peaks are scored
on ``oracle_<task>@<steps>.json`` where ``oracle_sweep.py --steps`` has swept that budget).

Results are merged into ``benchmarks/data/fit_vs_defaults.json`` (one entry per task, method and seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

import lrpilot
from _environment import load_json
from _scoring import OracleCurve, score
from lrpilot.tasks import Task, get_task, train
from lrpilot.tasks._base import seeded

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "fit_vs_defaults.json"
METHODS = ("fit", "train@fit", "grid-lr", "hf-default", "unsloth-2e-4", "fixed-1e-3", "schedulefree")


def _with_recipe(task: Task, **changes: Any) -> Task:
    return dataclasses.replace(task, recipe=dataclasses.replace(task.recipe, **changes))


def _row(loss: float, accuracy: float | None, wall: float, **extra: Any) -> dict[str, Any]:
    return {"val_loss": loss, "val_accuracy": accuracy, "wall_time_s": wall, **extra}


def run_fit(task: Task, seed: int, steps: int | None = None, full_warmup: bool | None = None) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        result = lrpilot.fit(  # on the CPU, as train@fit and the baselines, on any machine
            task.name, seed=seed, budget=steps, out=out, report=False, full_warmup=full_warmup, device="cpu"
        )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    metrics = result.metrics
    return _row(
        metrics["val_loss"],
        metrics.get("val_accuracy"),
        wall,
        cpu_time_s=cpu,
        peak_lr=result.peak_lr,
        found_lr=None if result.finder is None else float(f"{result.finder.peak_lr:.3g}"),  # before the horizon law
        range_test_steps=None if result.finder is None else result.finder.steps_used,  # a second test's too
        start_step=result.record.history.steps[0] if result.record.history.steps else 0,
        run_steps=result.record.total_steps,
        timings=result.record.timings,
        guard_actions=len(result.record.guard_actions),
        status=result.status,
    )


def run_train(task: Task, peak: float, seed: int, steps: int | None = None) -> dict[str, Any]:
    cpu = time.process_time()
    result = train(task, peak, seed, steps=steps)
    cpu = time.process_time() - cpu
    loss = result.val_loss if not result.diverged else math.nan
    return _row(loss, result.val_accuracy, result.wall_time_s, cpu_time_s=cpu, peak_lr=peak, diverged=result.diverged)


def train_steps(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    seed: int,
    after_step: Callable[[int], None] | None = None,
) -> bool:
    """The recipe's steps on the seed's batches with `optimizer` (an LR-free one brings its own LR)
    and the recipe's clipping; `after_step(step)` after each update. True if the loss went non-finite
    (training stops there)."""
    recipe = task.recipe
    batches = task.batches(seed)
    for step in range(recipe.total_steps):
        loss = task.loss(model, next(batches))
        if not math.isfinite(loss.item()):
            return True
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step(step)
    return False


def run_schedulefree(task: Task, seed: int) -> dict[str, Any]:
    """The task's model, batches, loss and evaluation, stepped by AdamWScheduleFree (train/eval modes
    switched as its README asks)."""
    import schedulefree

    recipe = task.recipe
    started = time.perf_counter()
    with seeded(seed):
        model = task.build_model(seed)
        optimizer = schedulefree.AdamWScheduleFree(model.parameters(), warmup_steps=recipe.warmup_steps)
        optimizer.train()
        diverged = train_steps(task, model, optimizer, seed)
        optimizer.eval()
        metrics = task.metrics(model)
    loss_value = math.nan if diverged else metrics.loss
    return _row(loss_value, metrics.accuracy, time.perf_counter() - started, peak_lr=0.0025, diverged=diverged)


def baselines(task: Task) -> dict[str, tuple[Task, float]]:
    """The fixed-LR methods: (the task with the method's recipe, its peak LR)."""
    return {
        "hf-default": (
            _with_recipe(
                task,
                warmup_steps=0,
                decay="linear",
                floor_ratio=0.0,
                weight_decay=0.0,
                grad_clip=1.0,
                betas=(0.9, 0.999),
            ),
            5e-5,
        ),
        "unsloth-2e-4": (task, 2e-4),
        "fixed-1e-3": (_with_recipe(task, warmup_steps=0, floor_ratio=1.0), 1e-3),
    }


def grid_best(name: str) -> dict[str, Any] | None:
    path = DATA / f"oracle_{name}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    best = doc["best"]
    grid_wall = sum(run["wall_time_s"] for run in doc["runs"]) / len(doc["seeds"])
    return _row(
        best["mean_val_loss"],
        best["mean_val_accuracy"],
        best["mean_wall_time_s"],
        peak_lr=best["peak_lr"],
        grid_points=len(doc["summary"]),
        grid_wall_time_s=grid_wall,
        seeds=doc["seeds"],
    )


def run_grid_lr(task: Task, seed: int) -> dict[str, Any] | None:
    """The oracle's best peak on `seed`: the sweep's run if it has one, else a new `train` run."""
    path = DATA / f"oracle_{task.name}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    peak = doc["best"]["peak_lr"]
    for run in doc["runs"]:
        if run["peak_lr"] == peak and run["seed"] == seed:
            loss = math.nan if run["diverged"] else run["val_loss"]
            return _row(loss, run["val_accuracy"], run["wall_time_s"], peak_lr=peak, source="oracle sweep")
    return {**run_train(task, peak, seed), "source": "train"}


def warm_up(name: str) -> None:
    """One tiny fit before anything is timed: the first optimizer step imports parts of torch (seconds),
    which would otherwise be charged to whichever method runs first."""
    with tempfile.TemporaryDirectory() as tmp:
        lrpilot.fit(name, budget=10, finder_steps=10, out=Path(tmp) / "run", report=False)


def run_task(
    name: str,
    seed: int,
    *,
    fit_only: bool = False,
    steps: int | None = None,
    grid: bool = True,
    full_warmup: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Every method on one task and seed (`fit_only`: fit, train@fit and, with `grid`, grid-lr: the
    rows fit's code changes, and the one they are compared with; `steps`: fit and train@fit on a
    budget of that many steps instead of the recipe's, nothing else; `full_warmup`: fit's option)."""
    task = get_task(name)
    out: dict[str, dict[str, Any]] = {}
    out["fit"] = run_fit(task, seed, steps, full_warmup)
    print(f"  {name} seed {seed} fit: {out['fit']['val_loss']:.4f} in {out['fit']['wall_time_s']:.1f} s", flush=True)
    out["train@fit"] = run_train(task, out["fit"]["peak_lr"], seed, steps)
    if steps is not None:
        return out
    if grid and (row := run_grid_lr(task, seed)) is not None:
        out["grid-lr"] = row
    if fit_only:
        return out
    for method, (variant, peak) in baselines(task).items():
        out[method] = run_train(variant, peak, seed)
        print(f"  {name} seed {seed} {method}: {out[method]['val_loss']:.4f}", flush=True)
    out["schedulefree"] = run_schedulefree(task, seed)
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if len(finite) == len(values) and finite else math.nan


def _oracle_excess(name: str, runs: dict[str, dict[str, Any]], seeds: list[str], key: str = "peak_lr") -> float | None:
    """fit's peaks (`key`: ``found_lr`` for the range test's own, before the horizon law) scored on
    the oracle's seed-mean curve (``benchmarks/_scoring.py``): the excess loss with the seed-to-seed
    noise of single runs averaged out. None without an oracle for `name` or a `key` on every seed."""
    path = DATA / f"oracle_{name}.json"  # TASK@STEPS: oracle_sweep.py --steps STEPS
    if not path.is_file() or any(runs[s]["fit"].get(key) is None for s in seeds):
        return None
    oracle = OracleCurve.from_doc(json.loads(path.read_text(encoding="utf-8")))
    return statistics.fmean(score(oracle, runs[s]["fit"][key]).excess for s in seeds)


def _targets(name: str, runs: dict[str, dict[str, Any]], seeds: list[str]) -> str:
    """fit against the two targets: its loss over grid-lr's on the seeds both ran (paired) and its
    peaks' excess on the oracle's curve; its wall and CPU time over train@fit's, beside the floor
    the range test sets (1 + its steps, less the run's steps its ramp stood for, / the run's)."""
    paired = [s for s in seeds if "grid-lr" in runs[s]]
    parts = []
    if (excess := _oracle_excess(name, runs, seeds)) is not None:
        parts.append(f"fit's peaks on the oracle's seed-mean curve: {excess:+.2%} over its best")
        moved = any(runs[s]["fit"].get("found_lr") not in (None, runs[s]["fit"]["peak_lr"]) for s in seeds)
        if moved and (found := _oracle_excess(name, runs, seeds, "found_lr")) is not None:
            parts.append(f"the range test's peaks before the horizon law: {found:+.2%}")
    if paired:
        fit_loss = _mean([runs[s]["fit"]["val_loss"] for s in paired])
        grid_loss = _mean([runs[s]["grid-lr"]["val_loss"] for s in paired])
        worst = max(runs[s]["fit"]["val_loss"] / runs[s]["grid-lr"]["val_loss"] - 1 for s in paired)
        parts.append(
            f"fit vs grid-lr on the same {len(paired)} seeds: {fit_loss / grid_loss - 1:+.2%} "
            f"(worst seed {worst:+.2%}; target ≤ +1 %)"
        )
        accuracies = [(runs[s]["fit"].get("val_accuracy"), runs[s]["grid-lr"].get("val_accuracy")) for s in paired]
        if all(fit is not None and grid is not None for fit, grid in accuracies):
            points = [100 * (fit - grid) for fit, grid in accuracies]
            error = statistics.stdev(points) / math.sqrt(len(points)) if len(points) > 1 else None
            spread = "" if error is None else f" ± {error:.2f} s.e."
            parts.append(f"its accuracy on them: {statistics.fmean(points):+.2f} points{spread}")
    same_peak = _mean([runs[s]["fit"]["val_loss"] for s in seeds]) / _mean(
        [runs[s]["train@fit"]["val_loss"] for s in seeds]
    )
    ratios = [runs[s]["fit"]["val_loss"] / runs[s]["train@fit"]["val_loss"] - 1 for s in seeds]
    error = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else None
    spread = "" if error is None else f" (seed by seed {statistics.fmean(ratios):+.2%} ± {error:.2%} s.e.)"
    parts.append(f"fit vs train@fit (its peak, trained from scratch): {same_peak - 1:+.2%}{spread}")
    starts = [runs[s]["fit"]["start_step"] for s in seeds if runs[s]["fit"].get("start_step")]
    if starts:
        ramp = f"the ramp stood for the first {min(starts)}–{max(starts)} steps in {len(starts)} of {len(seeds)} runs"
        parts.append(ramp)
    ratio = _mean([runs[s]["fit"]["wall_time_s"] / runs[s]["train@fit"]["wall_time_s"] for s in seeds])
    timed = [s for s in seeds if "cpu_time_s" in runs[s]["fit"] and "cpu_time_s" in runs[s]["train@fit"]]
    cpu = _mean([runs[s]["fit"]["cpu_time_s"] / runs[s]["train@fit"]["cpu_time_s"] for s in timed]) if timed else None
    fits = [runs[s]["fit"] for s in seeds if runs[s]["fit"].get("range_test_steps") is not None]
    shares = [(fit["range_test_steps"] - fit.get("start_step", 0)) / fit["run_steps"] for fit in fits]
    floor = f"; the range test's steps alone: {1 + statistics.fmean(shares):.2f}×" if len(shares) == len(seeds) else ""
    cost = f"{ratio:.2f}× in wall time" + ("" if cpu is None else f", {cpu:.2f}× in CPU time")
    parts.append(f"fit's cost / one training run: {cost} (target ≤ 1.2×{floor})")
    return "; ".join(parts)


def table(doc: dict[str, Any]) -> str:
    """Markdown: per task, each method's seed-mean loss, accuracy and wall time (over the seeds fit ran,
    the methods run on fewer named so), and fit against the targets."""
    lines = []
    for name, entry in doc["tasks"].items():
        seeds = sorted((s for s, runs in entry["runs"].items() if "fit" in runs), key=int)
        if not seeds:  # grid-lr rows alone, kept for the TASK+full-warmup entries to copy
            continue
        lines += [
            f"\n**{name}** (seeds {', '.join(seeds)})\n",
            "| method | peak LR | val loss | val accuracy | wall time |",
            "|---|---|---|---|---|",
        ]
        for method in METHODS:
            rows = [entry["runs"][s][method] for s in seeds if method in entry["runs"][s]]
            if not rows:
                continue
            acc = _mean([r["val_accuracy"] for r in rows]) if rows[0]["val_accuracy"] is not None else None
            peaks = sorted({f"{r['peak_lr']:.3g}" for r in rows})
            label = method if len(rows) == len(seeds) else f"{method} ({len(rows)} seeds)"
            lines.append(
                f"| {label} | {', '.join(peaks)} | {_mean([r['val_loss'] for r in rows]):.4f} | "
                f"{'–' if acc is None else f'{acc:.4f}'} | {_mean([r['wall_time_s'] for r in rows]):.1f} s |"
            )
        best = entry.get("grid_best")
        if best:
            acc = best["val_accuracy"]
            lines.append(
                f"| grid-best ({best['grid_points']} LRs × {len(best['seeds'])} seeds) | {best['peak_lr']:.3g} | "
                f"{best['val_loss']:.4f} | {'–' if acc is None else f'{acc:.4f}'} | "
                f"{best['wall_time_s']:.1f} s per run, {best['grid_wall_time_s']:.0f} s per seed for the grid |"
            )
        lines.append("\n" + _targets(name, entry["runs"], seeds))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "shakespeare"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    parser.add_argument(
        "--fit-only", action="store_true", help="re-run fit and train@fit only, keeping the stored baselines"
    )
    parser.add_argument(
        "--steps", type=int, help="fit and train@fit only, on a budget of this many steps (stored as TASK@STEPS)"
    )
    parser.add_argument(
        "--full-warmup",
        action="store_true",
        help="fit with full_warmup=True and train@fit (stored as TASK+full-warmup, grid-lr copied from TASK)",
    )
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}})
    if not args.table_only:
        torch.set_num_threads(args.threads)
        doc["machine"] = {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "threads": args.threads,
        }
        for name in args.tasks:
            key = name if args.steps is None else f"{name}@{args.steps}"
            key += "+full-warmup" if args.full_warmup else ""
            entry = doc["tasks"].setdefault(key, {"runs": {}})
            entry["grid_best"] = grid_best(name) if args.steps is None else None
            warm_up(name)
            for seed in args.seeds:
                runs = entry["runs"].setdefault(str(seed), {})
                base = doc["tasks"].get(name, {}).get("runs", {}).get(str(seed), {})
                if args.full_warmup and "grid-lr" in base:
                    runs["grid-lr"] = base["grid-lr"]  # deterministic at one thread: the same run
                grid = not ((args.fit_only or args.full_warmup) and "grid-lr" in runs)  # kept once measured
                fit_only = args.fit_only or args.full_warmup
                full = args.full_warmup or None  # without the flag: fit's own default
                runs.update(run_task(name, seed, fit_only=fit_only, steps=args.steps, grid=grid, full_warmup=full))
                args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(table(doc))


if __name__ == "__main__":
    main()
