"""`lrpilot tune` against other ways of choosing the peak LR, on the built-in tasks.

For each task and seed, every method starts from the same initial model and batch order
(``task.build_model(seed)``, ``task.batches(seed)``):

    tune          ``lrpilot.tune(task, budget=3.0, seed=...)``: rules and a range test for the prior;
                  rung trials (the recipe compressed to a third, at 2× the candidate's LR) for the
                  design, the line search and TPE, the best third promoted to full runs under the
                  guard (synchronous successive halving); the best full run is the model
                  (``report=False``). Its compute is
                  its own accounting, ``run_equivalents`` (range-test steps + trial steps over the
                  run length), reported as measured.
    tpe           an Optuna study with its default ``TPESampler(seed=seed)``: the peak LR
                  log-uniform in [1e-6, 1] (the oracle's range), each trial a full
                  ``lrpilot.tasks.train(task, lr, seed)`` run scored by its final validation loss
                  (a diverged run scores the untrained loss, ``initial_metrics(task, seed).loss``),
                  3 trials (3 run-equivalents, tune's budget), the best trial's LR chosen.
                  NB: TPE's default ``n_startup_trials`` is 10, so its 3 trials are all drawn by
                  its internal ``RandomSampler(seed=seed)`` — the very LRs of ``random`` below.
                  Training is deterministic given the seed, so a run already trained at the same
                  LR in this process is reused (``reused_runs``; its measured wall time is counted).
    random        the same study with ``RandomSampler(seed=seed)``.
    fit           ``lrpilot.fit(task, seed=seed, report=False)``: one guarded run at the range
                  test's LR. Its compute is its wall time over that of ``train`` at fit's LR (one
                  plain run of the recipe, timed right after, as in ``fit_vs_defaults.py``).
    schedulefree  ``schedulefree.AdamWScheduleFree`` at its defaults (lr 2.5e-3, no weight decay)
                  with the recipe's warmup and clipping (``fit_vs_defaults.run_schedulefree``).
    prodigy       ``prodigyopt.Prodigy(lr=1.0, betas=(0.9, 0.999), safeguard_warmup=True)``, the
                  settings its README recommends, with the recipe's decoupled weight decay on the
                  same parameters as the recipe's AdamW (matrices and embeddings; none on biases
                  and norms) — chosen over Prodigy's default of none so that only the LR differs
                  from the recipe; the recipe's gradient clipping; a ``LambdaLR`` multiplier of
                  linear warmup over the recipe's warmup steps (lrpilot's convention, the first
                  step at 1/(warmup+1)) then cosine to 0 at the last step (the README's
                  ``CosineAnnealingLR(T_max=total_steps)``; the recipe's floor is not used). Its
                  final step-size estimate ``d`` (the Adam-equivalent LR) is stored as
                  ``estimated_lr``, not scored.
    grid          the oracle sweep (``benchmarks/data/oracle_<task>.json``, every grid LR × every
                  sweep seed, full runs): its best seed-mean LR lr*; the "actual" loss is the
                  sweep's own run of that seed at lr* (none for a seed the sweep lacks); its cost is
                  the sweep's size in runs.

Scores (``benchmarks/_scoring.py``), per task and seed:

* oracle: the chosen LR scored on the oracle's seed-mean curve — normalised regret
  ``(L(lr) - L*) / (L_init - L*)`` and excess ``L(lr) / L* - 1`` (de-noised, comparable across
  seeds; none for schedulefree and prodigy, which choose no peak LR for the recipe);
* actual: the final validation loss of the method's own trained model, and its excess over L*.
  For the searching methods (tune, tpe, random) this is the best of the runs they picked on the
  same validation set, so it is optimistic by the selection; the oracle score is not;
* compute in run-equivalents (tune: its own; tpe, random: 3; fit: its wall / one run; the LR-free
  optimizers: 1; grid: the sweep's runs) and wall time (including evaluation and model building;
  2 shared CPUs, so ± 20 %).

The targets (printed under each task's table): tune within 0.01 normalised regret and ≤ 2 %
excess of the grid's best at ≤ 3 run-equivalents; better than TPE and random at the same budget
(oracle regret and actual loss); better than the LR-free optimizers (actual loss).

    nice -n 10 python benchmarks/tune_vs_baselines.py --tasks digits --seeds 0 1 2 3 4
    nice -n 10 python benchmarks/tune_vs_baselines.py --tasks shakespeare --seeds 0 1
    nice -n 10 python benchmarks/tune_vs_baselines.py --tasks sst2-lora --seeds 0 --data-dir ../shared/data
    nice -n 10 python benchmarks/tune_vs_baselines.py --tasks digits --methods tune   # re-run one method
    python benchmarks/tune_vs_baselines.py --table-only

Results are merged into ``benchmarks/data/tune_vs_baselines.json`` per task, seed and method, so
runs can be split across calls.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the tasks need is on disk

import optuna  # imported before anything is timed: tune and the Optuna baselines share it
import torch

import lrpilot
from _environment import command, load_json, save_json
from _scoring import OracleCurve, score
from fit_vs_defaults import run_fit, run_schedulefree, run_train, train_steps, warm_up
from lrpilot.tasks import SST2_ENV, Task, TrainResult, get_task, initial_metrics, task_names, train
from lrpilot.tasks._base import seeded

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "tune_vs_baselines.json"
METHODS = ("tune", "tpe", "random", "fit", "schedulefree", "prodigy", "grid")
LR_FREE = ("schedulefree", "prodigy")
BUDGET = 3.0
"""tune's budget in run-equivalents, and the Optuna baselines' trial count."""
N_TRIALS = 3
LR_LOW, LR_HIGH = 1e-6, 1.0
"""The Optuna baselines' search range: the oracle sweep's."""
PRODIGY_BETAS = (0.9, 0.999)
PACKAGES = ("lrpilot", "torch", "numpy", "optuna", "schedulefree", "prodigyopt", "transformers", "peft")

_INITIAL: dict[tuple[str, int], float] = {}
_RUNS: dict[tuple[str, int, float], TrainResult] = {}


# ----------------------------------------------------------------------------- methods
def initial_loss(task: Task, seed: int) -> float:
    """The untrained model's validation loss: what a diverged run scores."""
    key = (task.name, seed)
    if key not in _INITIAL:
        _INITIAL[key] = initial_metrics(task, seed).loss
    return _INITIAL[key]


def run_tune(task: Task, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = lrpilot.tune(task.name, budget=BUDGET, seed=seed, out=Path(tmp) / "run", report=False, device="cpu")
    wall = time.perf_counter() - started
    return {
        "peak_lr": result.best.peak_lr,
        "val_loss": result.value,
        "val_accuracy": result.metrics.get("val_accuracy"),
        "diverged": not math.isfinite(result.value),
        "run_equivalents": result.run_equivalents,
        "wall_time_s": wall,
        "tune_wall_time_s": result.wall_time_s,
        "metrics": dict(result.metrics),
        "finder": {k: result.finder.get(k) for k in ("peak_lr", "band", "steps", "seconds")},
        "trials": [t.to_dict() for t in result.trials],
        "notes": list(result.notes),
    }


def _train_once(task: Task, lr: float, seed: int) -> tuple[TrainResult, bool]:
    """`train` at (`lr`, `seed`), or the identical run already trained in this process (and True)."""
    key = (task.name, seed, lr)
    if key in _RUNS:
        return _RUNS[key], True
    _RUNS[key] = train(task, lr, seed)
    return _RUNS[key], False


def run_optuna(task: Task, seed: int, kind: str) -> dict[str, Any]:
    """An Optuna study of `N_TRIALS` full runs over the peak LR (log-uniform in the oracle's range)."""
    sampler = optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    untrained = initial_loss(task, seed)
    trials: list[dict[str, Any]] = []
    reused_wall = 0.0

    def objective(trial: optuna.Trial) -> float:
        nonlocal reused_wall
        lr = trial.suggest_float("peak_lr", LR_LOW, LR_HIGH, log=True)
        result, reused = _train_once(task, lr, seed)
        if reused:
            reused_wall += result.wall_time_s
        value = untrained if result.diverged else result.val_loss
        trials.append(
            {
                "peak_lr": lr,
                "val_loss": value,
                "val_accuracy": result.val_accuracy,
                "diverged": result.diverged,
                "wall_time_s": result.wall_time_s,
                "reused": reused,
            }
        )
        return value

    started = time.perf_counter()
    study.optimize(objective, n_trials=N_TRIALS)
    wall = time.perf_counter() - started + reused_wall
    best = trials[study.best_trial.number]
    return {
        "peak_lr": best["peak_lr"],
        "val_loss": best["val_loss"],
        "val_accuracy": best["val_accuracy"],
        "diverged": best["diverged"],
        "run_equivalents": float(N_TRIALS),
        "wall_time_s": wall,
        "reused_runs": sum(t["reused"] for t in trials),
        "trials": trials,
    }


def run_fit_row(task: Task, seed: int) -> dict[str, Any]:
    """fit, then one plain run at its LR to express fit's wall time in runs."""
    row = run_fit(task, seed)
    one = run_train(task, row["peak_lr"], seed)
    finite = math.isfinite(row["val_loss"])
    row.update(
        val_loss=row["val_loss"] if finite else initial_loss(task, seed),
        diverged=not finite,
        run_equivalents=row["wall_time_s"] / one["wall_time_s"],
        one_run_wall_time_s=one["wall_time_s"],
        train_at_fit_val_loss=one["val_loss"],
    )
    return row


def run_schedulefree_row(task: Task, seed: int) -> dict[str, Any]:
    row = run_schedulefree(task, seed)
    builtin = row.pop("peak_lr")
    if row["diverged"]:
        row["val_loss"] = initial_loss(task, seed)
    return {**row, "peak_lr": None, "builtin_lr": builtin, "run_equivalents": 1.0}


def prodigy_multiplier(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warmup (the first step at 1/(warmup+1), as the recipe's schedules), then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def run_prodigy(task: Task, seed: int) -> dict[str, Any]:
    """The task's model, batches, loss and evaluation, stepped by Prodigy (see the module docstring)."""
    from prodigyopt import Prodigy

    recipe = task.recipe
    started = time.perf_counter()
    with seeded(seed):
        model = task.build_model(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        optimizer = Prodigy(groups, lr=1.0, betas=PRODIGY_BETAS, safeguard_warmup=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, prodigy_multiplier(recipe.total_steps, recipe.warmup_steps)
        )
        estimates: list[float] = []

        def after_step(step: int) -> None:
            scheduler.step()
            if step % max(1, recipe.total_steps // 10) == 0:
                estimates.append(float(optimizer.param_groups[0]["d"]))

        diverged = train_steps(task, model, optimizer, seed, after_step)
        metrics = task.metrics(model)
    diverged = diverged or not math.isfinite(metrics.loss)
    return {
        "peak_lr": None,
        "val_loss": initial_loss(task, seed) if diverged else metrics.loss,
        "val_accuracy": metrics.accuracy,
        "diverged": diverged,
        "run_equivalents": 1.0,
        "wall_time_s": time.perf_counter() - started,
        "estimated_lr": float(optimizer.param_groups[0]["d"]),
        "estimated_lr_trace": estimates,
    }


def load_oracle(name: str) -> tuple[OracleCurve, dict[str, Any]] | None:
    """The oracle curve of `name` and a summary of its sweep (None when there is no sweep)."""
    path = DATA / f"oracle_{name}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    curve = OracleCurve.from_doc(doc)
    lr_star = curve.lr_star
    at_best = {str(run["seed"]): run for run in doc["runs"] if math.isclose(run["peak_lr"], lr_star, rel_tol=1e-9)}
    summary = {
        "lr_star": lr_star,
        "l_star": curve.l_star,
        "l_init": curve.l_init,
        "grid_points": len(curve.lrs),
        "seeds": doc["seeds"],
        "runs": len(doc["runs"]),
        "coverage": list(curve.coverage),
        "complete": curve.complete,
        "wall_time_s": sum(run["wall_time_s"] for run in doc["runs"]),
        "at_best": {
            seed: {k: run[k] for k in ("val_loss", "val_accuracy", "diverged", "wall_time_s")}
            for seed, run in at_best.items()
        },
    }
    return curve, summary


def grid_row(oracle: dict[str, Any], seed: int) -> dict[str, Any]:
    own = oracle["at_best"].get(str(seed))
    return {
        "peak_lr": oracle["lr_star"],
        "val_loss": None if own is None else own["val_loss"],
        "val_accuracy": None if own is None else own["val_accuracy"],
        "diverged": None if own is None else own["diverged"],
        "run_equivalents": float(oracle["runs"]),
        "wall_time_s": oracle["wall_time_s"],
        "note": f"{oracle['grid_points']} LRs × {len(oracle['seeds'])} seeds; this seed's run at lr*"
        + ("" if own is not None else " is not in the sweep"),
    }


RUNNERS: dict[str, Callable[[Task, int], dict[str, Any]]] = {
    "tune": run_tune,
    "tpe": lambda task, seed: run_optuna(task, seed, "tpe"),
    "random": lambda task, seed: run_optuna(task, seed, "random"),
    "fit": run_fit_row,
    "schedulefree": run_schedulefree_row,
    "prodigy": run_prodigy,
}


def scored(row: dict[str, Any], curve: OracleCurve | None) -> dict[str, Any]:
    """`row` with its oracle score (for a chosen LR) and its actual loss's excess and regret over L*."""
    if curve is None:
        return row
    lr = row.get("peak_lr")
    if lr is not None:
        s = score(curve, lr)
        row["oracle"] = {"loss": s.loss, "regret": s.regret, "excess": s.excess, "log_ratio": s.log_ratio}
    else:
        row["oracle"] = None
    loss = row.get("val_loss")
    if loss is not None and math.isfinite(loss):
        row["excess"] = loss / curve.l_star - 1.0
        row["regret"] = (loss - curve.l_star) / (curve.l_init - curve.l_star)
    else:
        row["excess"] = row["regret"] = None
    return row


def warm_up_all(name: str) -> None:
    """Untimed: a tiny fit (torch's lazy imports on the first step) and a tiny tune (SQLite, Optuna's
    storage), so that neither is charged to the first timed method."""
    warm_up(name)
    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(ValueError, RuntimeError):
        lrpilot.tune(name, steps=30, budget=20.0, max_trials=1, out=Path(tmp) / "run", report=False)


def run_task(name: str, seeds: list[int], methods: list[str], doc: dict[str, Any], out: Path) -> None:
    task = get_task(name)
    oracle = load_oracle(name)
    curve, summary = oracle if oracle is not None else (None, None)
    entry = doc["tasks"].setdefault(name, {"runs": {}})
    entry["oracle"] = summary
    entry["recipe"] = task.recipe.to_dict()
    if any(m in RUNNERS for m in methods):
        warm_up_all(name)
    for seed in seeds:
        runs = entry["runs"].setdefault(str(seed), {})
        for method in methods:
            if method == "grid":
                if summary is None:
                    continue
                row = grid_row(summary, seed)
            else:
                row = RUNNERS[method](task, seed)
            row["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            runs[method] = scored(row, curve)
            save_json(out, doc)
            lr = row.get("peak_lr")
            regret = (row.get("oracle") or {}).get("regret")
            print(
                f"  {name} seed {seed} {method}: lr {'–' if lr is None else f'{lr:.3g}'}, "
                f"val loss {_f(row.get('val_loss'), '.4f')}, oracle regret {_f(regret, '.4f')}, "
                f"{row['run_equivalents']:.2f} runs, {row['wall_time_s']:.1f} s",
                flush=True,
            )


# ----------------------------------------------------------------------------- table
def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def _values(rows: list[dict[str, Any]], get: Callable[[dict[str, Any]], float | None]) -> list[float]:
    out = [get(r) for r in rows]
    return [v for v in out if v is not None and math.isfinite(v)]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _mean_worst(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    mean, worst = statistics.fmean(values), max(values)
    return format(mean, fmt) if len(values) == 1 else f"{format(mean, fmt)} ({format(worst, fmt)})"


def summary_of(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Seed means (and worsts) of a method's rows."""
    oracle_regret = _values(rows, lambda r: (r.get("oracle") or {}).get("regret"))
    oracle_excess = _values(rows, lambda r: (r.get("oracle") or {}).get("excess"))
    excess = _values(rows, lambda r: r.get("excess"))
    return {
        "oracle_regret": _mean(oracle_regret),
        "worst_oracle_regret": max(oracle_regret) if oracle_regret else None,
        "oracle_excess": _mean(oracle_excess),
        "worst_oracle_excess": max(oracle_excess) if oracle_excess else None,
        "val_loss": _mean(_values(rows, lambda r: r.get("val_loss"))),
        "excess": _mean(excess),
        "worst_excess": max(excess) if excess else None,
        "run_equivalents": _mean(_values(rows, lambda r: r["run_equivalents"])),
        "max_run_equivalents": max(_values(rows, lambda r: r["run_equivalents"]), default=None),
    }


def _seeds_text(seeds: list[str]) -> str:
    return ", ".join(seeds)


def _lr_text(method: str, rows: list[dict[str, Any]]) -> str:
    if method == "grid":
        return f"{rows[0]['peak_lr']:.2g}"
    if method == "schedulefree":
        return f"none ({rows[0]['builtin_lr']:g} built in)"
    if method == "prodigy":
        return "none (d: " + ", ".join(f"{r['estimated_lr']:.2g}" for r in rows) + ")"
    return ", ".join(f"{r['peak_lr']:.2g}" for r in rows)


def _check(ok: bool | None) -> str:
    return "?" if ok is None else ("✓" if ok else "✗")


def _lt(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a < b


def targets(name: str, stats: dict[str, dict[str, float | None]]) -> str:
    """The targets line of one task (seed means; worsts shown where they differ)."""
    t = stats.get("tune")
    if t is None:
        return f"targets ({name}): no tune rows"
    parts = []
    regret, excess, actual, equivalents = t["oracle_regret"], t["oracle_excess"], t["excess"], t["max_run_equivalents"]
    parts.append(
        f"oracle regret {_f(regret, '.4f')} mean, {_f(t['worst_oracle_regret'], '.4f')} worst ≤ 0.01 "
        f"{_check(None if regret is None else regret <= 0.01)}"
    )
    parts.append(
        f"excess ≤ 2 %: oracle {_f(excess, '+.2%')} {_check(None if excess is None else excess <= 0.02)}, "
        f"actual {_f(actual, '+.2%')} {_check(None if actual is None else actual <= 0.02)}"
    )
    parts.append(
        f"run-equivalents ≤ 3: {_f(equivalents, '.2f')} max "
        f"{_check(None if equivalents is None else equivalents <= 3.0)}"
    )
    for other in ("tpe", "random"):
        o = stats.get(other)
        if o is None:
            continue
        parts.append(
            f"vs {other}: regret {_f(regret, '.4f')} vs {_f(o['oracle_regret'], '.4f')} "
            f"{_check(_lt(regret, o['oracle_regret']))}, loss {_f(t['val_loss'], '.4f')} vs "
            f"{_f(o['val_loss'], '.4f')} {_check(_lt(t['val_loss'], o['val_loss']))}"
        )
    for other in LR_FREE:
        o = stats.get(other)
        if o is None:
            continue
        parts.append(
            f"vs {other}: loss {_f(t['val_loss'], '.4f')} vs {_f(o['val_loss'], '.4f')} "
            f"{_check(_lt(t['val_loss'], o['val_loss']))}"
        )
    return f"targets ({name}, tune): " + "; ".join(parts)


def table(doc: dict[str, Any], tasks: list[str] | None = None) -> str:
    """Markdown: per task, each method's chosen LRs (per seed), oracle and actual scores, compute."""
    lines: list[str] = []
    for name, entry in doc["tasks"].items():
        if tasks is not None and name not in tasks:
            continue
        seeds = sorted(entry["runs"], key=int)
        oracle = entry.get("oracle")
        head = f"\n**{name}** (seeds {_seeds_text(seeds)})"
        if oracle:
            head += (
                f" — grid: {oracle['grid_points']} LRs × {len(oracle['seeds'])} seeds = {oracle['runs']} runs, "
                f"lr* {oracle['lr_star']:.3g}, L* {oracle['l_star']:.4f}, L_init {oracle['l_init']:.4f}"
            )
        lines += [
            head + "\n",
            "| method | chosen LR (per seed) | oracle regret mean (worst) | oracle excess mean (worst) | "
            "actual val loss | actual excess vs L* mean (worst) | run-equivalents | wall (× one run) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        stats: dict[str, dict[str, float | None]] = {}
        for method in METHODS:
            method_seeds = [s for s in seeds if method in entry["runs"][s]]
            rows = [entry["runs"][s][method] for s in method_seeds]
            if not rows:
                continue
            stats[method] = s = summary_of(rows)
            label = method if method_seeds == seeds else f"{method} (seeds {_seeds_text(method_seeds)})"
            if method == "tune":
                label = f"**{label}**"
            regrets = _values(rows, lambda r: (r.get("oracle") or {}).get("regret"))
            oexcess = _values(rows, lambda r: (r.get("oracle") or {}).get("excess"))
            equivalents = _values(rows, lambda r: r["run_equivalents"])
            eq_text = (
                f"{equivalents[0]:.0f}"
                if method == "grid"
                else _f(_mean(equivalents), ".2f")
                + (f" (max {max(equivalents):.2f})" if max(equivalents) - min(equivalents) > 0.005 else "")
            )
            walls = _values(rows, lambda r: r["wall_time_s"])
            wall_text = f"{walls[0]:.0f} s (whole sweep)" if method == "grid" else f"{statistics.fmean(walls):.1f} s"
            ratios = [
                r["wall_time_s"] / one
                for seed, r in zip(method_seeds, rows, strict=True)
                if (one := entry["runs"][seed].get("fit", {}).get("one_run_wall_time_s"))
            ]
            if method != "grid" and len(ratios) == len(rows):
                wall_text += f" ({statistics.fmean(ratios):.1f}× a run)"
            diverged = sum(bool(r.get("diverged")) for r in rows)
            loss_text = _f(s["val_loss"], ".4f") + (f" ({diverged} diverged)" if diverged else "")
            lines.append(
                f"| {label} | {_lr_text(method, rows)} | {_mean_worst(regrets, '.4f')} | "
                f"{_mean_worst(oexcess, '+.1%')} | {loss_text} | "
                f"{_mean_worst(_values(rows, lambda r: r.get('excess')), '+.1%')} | {eq_text} | {wall_text} |"
            )
        lines += ["", targets(name, stats)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=task_names(), default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--data-dir", help=f"SST-2 folder (sets ${SST2_ENV}; default: its value or ../shared/data)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args(argv)
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}})
    if not args.table_only:
        if args.data_dir:
            os.environ[SST2_ENV] = str(Path(args.data_dir).resolve())
        torch.set_num_threads(args.threads)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        doc.setdefault("commands", []).append(command(PACKAGES))
        doc["environment"] = doc["commands"][-1]["environment"]
        for name in args.tasks:
            run_task(name, args.seeds, list(args.methods), doc, args.out)
        print(table(doc, args.tasks))
    else:
        print(table(doc))


if __name__ == "__main__":
    main()
