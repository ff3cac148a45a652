"""How much higher the best peak LR of a compressed run is than that of the full run.

``lrpilot tune`` first trains each candidate on a rung: the recipe compressed to a third of its
length (``recipe.shortened(round(R / 3))``, warmup and decay included). A shorter run's best LR is
higher, so the rung trains at the candidate's LR × 3^β, β = ``HORIZON_EXPONENT`` in
``src/lrpilot/rules/_horizon.py`` (the horizon law, which ``lrpilot fit`` also applies to a budget).
This benchmark measures the ratio that β stands for:

    r = (best peak LR of the third-length run) / (best peak LR of the full run),   β = log(r) / log(3)

For each task and seed, a rung run is trained exactly as a rung trial trains one: the recipe of
``plan_run(target, target.steps, seed)`` (`lrpilot.tuning._engine`), shortened to ``round(R / 3)``
steps, a fresh ``job.build_model(seed)``, ``lrpilot.autopilot._training.train_guarded`` under the guard,
one evaluation on the whole validation set at the end. Its peak LR is ``f × lr*``, where lr* is the
full run's best LR — the oracle sweep's best seed-mean grid LR
(``_scoring.OracleCurve.from_doc(benchmarks/data/oracle_<task>.json).lr_star``) — and f runs over
``--factors``. A run the guard gave up on (or with a non-finite loss) is diverged: tune prunes it,
and here it puts its factor out of the running.

Printed per task: the rung's final validation loss per factor (mean over the seeds that hold every
factor, and each seed's), the best grid factor r and its β, and a refined optimum — the vertex of
the parabola in log(f) through the best grid factor and its two neighbours, clipped to the
neighbours — with its β, since the grid is coarse (√2 steps).

    nice -n 10 python benchmarks/rung_horizon.py --tasks digits --seeds 0 1 2 3 4
    nice -n 10 python benchmarks/rung_horizon.py --tasks shakespeare --seeds 0 1
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/rung_horizon.py --tasks sst2-lora sst2-full --seeds 0
    python benchmarks/rung_horizon.py --table-only

Results are merged into ``benchmarks/data/rung_horizon.json`` per task, seed and factor, so runs
can be split across calls. One torch thread; 2 shared CPUs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the tasks need is on disk

import numpy as np
import torch

from _environment import command, load_json, save_json
from _scoring import OracleCurve
from lrpilot.autopilot._progress import Clock, quiet
from lrpilot.autopilot._target import Target, TargetSpec, resolve_target
from lrpilot.autopilot._training import train_guarded
from lrpilot.rules import HORIZON_EXPONENT
from lrpilot.tasks import SST2_ENV, Recipe, Task, task_names
from lrpilot.tuning._engine import RUNG, plan_run

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "rung_horizon.json"
TASKS = ("digits", "shakespeare", "sst2-lora", "sst2-full")
FACTORS = (0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
"""LR / lr*: √2 steps around the expected ×2 of a third-length run."""
PACKAGES = ("lrpilot", "torch", "numpy", "transformers", "peft")


# ----------------------------------------------------------------------------- measurement
def oracle_lr_star(name: str) -> float:
    """The full run's best peak LR: the oracle sweep's best seed-mean grid LR."""
    path = DATA / f"oracle_{name}.json"
    if not path.is_file():
        raise SystemExit(f"rung_horizon: {path} is missing; run benchmarks/oracle_sweep.py for {name} first")
    return OracleCurve.from_doc(json.loads(path.read_text(encoding="utf-8"))).lr_star


def factor_key(factor: float) -> str:
    """A factor as a JSON key: short and stable, so that calls merge on the same keys."""
    return f"{factor:g}"


def rung_plan(target: Target, seed: int) -> tuple[Task, Recipe, int]:
    """The task and full recipe tune would train for `seed`, and the rung's length."""
    _, _, job, recipe = plan_run(target, target.steps, seed)
    return job, recipe, round(recipe.total_steps * RUNG)


def rung_run(job: Task, recipe: Recipe, rung: int, seed: int, lr: float) -> dict[str, Any]:
    """One rung trial's training, as `lrpilot.tuning._trial.TrialRunner._rung` does it, at `lr`
    (no horizon scaling: the LR is the point being measured)."""
    short = recipe.shortened(rung)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_guarded(
            job,
            job.build_model(seed),
            short,
            short.schedule(lr),
            seed=seed,
            run_dir=Path(tmp),
            progress=quiet,
            callback=None,
            clock=Clock(),
            eval_at=[rung],
        )
    loss = float(trained.final.get("val_loss", math.nan))
    return {
        "peak_lr": lr,
        "full_steps": recipe.total_steps,
        "rung_steps": rung,
        "val_loss": loss if math.isfinite(loss) else None,
        "val_accuracy": trained.final.get("val_accuracy"),
        "status": trained.status,
        "diverged": trained.status == "gave_up" or not math.isfinite(loss),
        "guard_actions": len(trained.guard.get("records", [])),
        "wall_time_s": time.perf_counter() - started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_task(name: str, seeds: list[int], factors: list[float], doc: dict[str, Any], out: Path) -> None:
    """Every (seed, factor) rung run of `name`, saved after each so that an interrupted call keeps its runs."""
    lr_star = oracle_lr_star(name)
    target = resolve_target(TargetSpec(name))
    entry = doc["tasks"].setdefault(name, {"runs": {}})
    entry["lr_star"] = lr_star
    for seed in seeds:
        job, recipe, rung = rung_plan(target, seed)
        entry["recipe"] = recipe.to_dict()
        runs = entry["runs"].setdefault(str(seed), {})
        for factor in factors:
            row = rung_run(job, recipe, rung, seed, factor * lr_star)
            runs[factor_key(factor)] = row
            save_json(out, doc)
            print(
                f"  {name} seed {seed} ×{factor:g}: lr {row['peak_lr']:.3g}, {rung} steps, "
                f"val loss {_f(row['val_loss'])}{' (diverged)' if row['diverged'] else ''}, "
                f"{row['wall_time_s']:.1f} s",
                flush=True,
            )


# ----------------------------------------------------------------------------- analysis
def _score(row: dict[str, Any]) -> float:
    """A run's loss for choosing the best factor: a diverged run is infinitely bad, as tune prunes it."""
    return math.inf if row["diverged"] or row["val_loss"] is None else float(row["val_loss"])


def seed_means(runs: dict[str, dict[str, Any]]) -> tuple[list[float], list[float], list[str]]:
    """Factors (increasing), the mean loss over the seeds that hold every factor, and those seeds:
    a factor averaged over other seeds than its neighbours would not be comparable with them."""
    factors = sorted({float(key) for rows in runs.values() for key in rows})
    seeds = sorted((seed for seed, rows in runs.items() if all(factor_key(f) in rows for f in factors)), key=int)
    means = [statistics.fmean(_score(runs[s][factor_key(f)]) for s in seeds) if seeds else math.nan for f in factors]
    return factors, means, seeds


def refined_optimum(factors: list[float], means: list[float]) -> float | None:
    """The vertex of the parabola in log(f) through the best grid factor and its neighbours, clipped
    to the neighbours; None when the best is at the grid's edge, or the three points are not convex
    (a tie or a diverged neighbour)."""
    i = int(np.argmin(means))
    if i == 0 or i == len(factors) - 1:
        return None
    x = np.log(factors[i - 1 : i + 2])
    y = np.asarray(means[i - 1 : i + 2])
    if not np.all(np.isfinite(y)):
        return None
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return None
    return float(math.exp(min(max(-b / (2 * a), x[0]), x[2])))


def beta(ratio: float) -> float:
    """The horizon exponent a best-LR ratio stands for, for a run a third as long: LR*(D) ∝ D^-β."""
    return math.log(ratio) / math.log(1 / RUNG)


# ----------------------------------------------------------------------------- table
def _f(value: float | None, fmt: str = ".4f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    return "diverged" if row["diverged"] else _f(row["val_loss"])


def task_table(name: str, entry: dict[str, Any]) -> str:
    """The markdown table of one task, then its best factor, refined optimum and their β."""
    runs = entry["runs"]
    factors, means, seeds = seed_means(runs)
    all_seeds = sorted(runs, key=int)
    some = next(row for rows in runs.values() for row in rows.values())
    lines = [
        f"### {name}: lr* {entry['lr_star']:.3g}, rung {some['rung_steps']} of {some['full_steps']} steps",
        "",
        "| factor | LR | mean val loss | " + " | ".join(f"seed {s}" for s in all_seeds) + " |",
        "|---:|---:|---:|" + "---:|" * len(all_seeds),
    ]
    for factor, mean in zip(factors, means, strict=True):
        cells = [_cell(runs[s].get(factor_key(factor))) for s in all_seeds]
        lr = factor * entry["lr_star"]
        shown = "diverged" if mean == math.inf else _f(mean)
        lines.append(f"| {factor:g} | {lr:.3g} | {shown} | " + " | ".join(cells) + " |")
    lines.append("")
    if not seeds:
        lines.append("No seed holds every factor: no mean, no optimum.")
        return "\n".join(lines)
    if len(seeds) < len(all_seeds):
        lines.append(f"Means over seeds {', '.join(seeds)} (those holding every factor).")
    if not any(math.isfinite(m) for m in means):
        lines.append("Every factor diverged: no optimum.")
        return "\n".join(lines)
    best = factors[int(np.argmin(means))]
    edge = " (at the grid's edge: the optimum may lie beyond)" if best in (factors[0], factors[-1]) else ""
    lines.append(f"Best grid factor r = {best:g}, β = {beta(best):.2f}{edge}.")
    refined = refined_optimum(factors, means)
    if refined is not None:
        lines.append(f"Parabola in log(f) around it: r = {refined:.2f}, β = {beta(refined):.2f}.")
    lines.append(f"HORIZON_EXPONENT = {HORIZON_EXPONENT} stands for r = {(1 / RUNG) ** HORIZON_EXPONENT:.2f}.")
    return "\n".join(lines)


def table(doc: dict[str, Any], tasks: list[str] | None = None) -> str:
    """The tables of `tasks` (all in the document when None), in the order of `TASKS`."""
    names = [n for n in (tasks or list(doc["tasks"])) if n in doc["tasks"] and doc["tasks"][n]["runs"]]
    names.sort(key=lambda n: TASKS.index(n) if n in TASKS else len(TASKS))
    return "\n\n".join(task_table(n, doc["tasks"][n]) for n in names)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=task_names(), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--factors", nargs="+", type=float, default=list(FACTORS), help="peak LRs as multiples of lr*")
    parser.add_argument("--data-dir", help=f"SST-2 folder (sets ${SST2_ENV}; default: its value or ../shared/data)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the tables of --out and exit")
    args = parser.parse_args(argv)
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}})
    if args.table_only:
        print(table(doc))
        return
    if args.data_dir:
        os.environ[SST2_ENV] = str(Path(args.data_dir).resolve())
    torch.set_num_threads(1)
    doc["description"] = "Seed-mean final validation loss of third-length (rung) runs at peak LR = factor × lr*."
    doc.setdefault("commands", []).append(command(PACKAGES))
    doc["environment"] = doc["commands"][-1]["environment"]
    for name in args.tasks:
        run_task(name, args.seeds, args.factors, doc, args.out)
    print(table(doc, args.tasks))


if __name__ == "__main__":
    main()
