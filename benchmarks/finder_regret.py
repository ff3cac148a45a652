"""LR-finder quality: the regret of each tool's suggestion against the oracle sweep of every task.

**Stage 1** (expensive, cached in ``benchmarks/data/finder_curves_<task>.json``): for each built-in
task and range-test seed, from the same initial model (``task.build_model(seed)``), optimizer
(the recipe's AdamW) and batch order (``task.batches(seed)``):

    curve     lrpilot's runner, 100 steps from 1e-7 to 10, never stopped early (only a NaN ends
              it): the raw curve fed to the re-implemented anchors, so each applies its own stop
    fast      ``find_lr(mode="fast")`` as a user would call it (≤ 100 steps, its own stop rule)
    tlf       the real ``torch-lr-finder`` package: ``LRFinder(...).range_test(batches,
              start_lr=1e-7, end_lr=10, num_iter=100)``, ``plot(suggest_lr=True)`` (Agg backend)
              and ``reset()``; raw losses are captured so the re-implementation can be checked
    thorough  ``find_lr(mode="thorough")``: 2 to 4 range tests on fresh batches
    probes    thorough mode with the opt-in probe runs (``probe_budget``: 10 % of the run, ≥ 84 steps)

lrpilot runs get the recipe's gradient clipping (``max_grad_norm``), as a user's loop would;
torch-lr-finder has no clipping option. Times (wall and CPU) are per call, snapshot and restore
included, after an untimed warm-up of both tools; ``fast`` and ``tlf`` of a seed run back to back,
so their timings share the machine's load.

**Stage 2** (cheap): every rule is applied to the cached curves and scored against the oracle
(``benchmarks/_scoring.py``): normalised regret ``(L(lr) - L*) / (L_init - L*)``, excess loss
``L(lr) / L* - 1`` and ``|log10(lr / lr*)|``, L interpolated in log-LR on the seed-mean oracle
curve. lrpilot's answers are recomputed from the cached records with the current rule
(``lrpilot.finder.analyze``; they equal the live ones, which the notes check), so a change of the
rule needs no new range tests; a change of the runner (its fingerprint) makes stage 1 re-run
lrpilot's entries. Last comes a leave-one-task-out fit of the rule's constant.

    nice -n 10 python benchmarks/finder_regret.py                                # all tasks
    nice -n 10 python benchmarks/finder_regret.py --tasks digits shakespeare    # a subset
    python benchmarks/finder_regret.py --score-only                             # stage 2 only
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import functools
import hashlib
import io
import json
import math
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the tasks need is on disk
os.environ.setdefault("TQDM_DISABLE", "1")  # torch-lr-finder's progress bar

import numpy as np
import torch
from torch import nn

import lrpilot
from _environment import command, save_json
from _scoring import OracleCurve, Score, score, summarise
from lrpilot.finder import (
    PEAK_FACTOR,
    PROGRESS_EXPONENT,
    PROGRESS_REF,
    SUGGESTERS,
    DivergenceRule,
    FinderResult,
    RangeTestRecord,
    analyze,
    curve_learnt_share,
    ema,
    probe_budget,
)
from lrpilot.finder._baselines import _cut_at_ratio_stop  # replays the tools' stops
from lrpilot.integrations.torch_finder import find_lr, range_test
from lrpilot.tasks import Task, get_task, make_optimizer, task_names

SCHEMA = 1
DATA = Path(__file__).resolve().parent / "data"
KINDS = ("curve", "fast", "tlf", "thorough", "probes")  # fast and tlf back to back: their timings share the load
START_LR, END_LR, NUM_STEPS = 1e-7, 10.0, 100
FIXED = (1e-3, 3e-4, 2e-4, 5e-5)
ANCHORS = ("fastai_valley", "fastai_slide", "fastai_steep", "fastai_minimum", "lightning", "torch_lr_finder")
FINGERPRINTED = ("fast", "thorough", "probes")


# ----------------------------------------------------------------------------- stage 1
@functools.cache
def fingerprint(kind: str) -> str:
    """A hash of the code a ``fast``, ``thorough`` or ``probes`` entry's *records* depend on: the
    runner that records the curves (and, for thorough mode, how many tests it runs; for probes, the
    whole finder, whose rule places them). Stage 2 re-applies the current rule to fast and thorough
    records, so a change of the rule alone needs no new range tests. The hash is of the syntax
    tree without docstrings (editing documentation re-runs nothing), taken once per process, when
    the code that runs is the code on disk."""
    root = Path(lrpilot.__file__).resolve().parent
    files = [root / "integrations" / "torch_finder.py", root / "integrations" / "torch_state.py"]
    files += [root / "finder" / name for name in ("_curve.py", "_record.py")]
    if kind == "thorough":
        files.append(root / "finder" / "_analyze.py")
    if kind == "probes":
        files += sorted((root / "finder").glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            first = body[0].value if isinstance(body, list) and body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        digest.update(path.name.encode())
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:12]


def _setup(task: Task, seed: int) -> tuple[nn.Module, torch.optim.Optimizer, Iterator[Any]]:
    """The user's starting point: the seed's initial model, the recipe's AdamW, the seed's batches."""
    model = task.build_model(seed)
    optimizer = make_optimizer(model, task.recipe, 1e-3)  # the finders overwrite the LR
    torch.manual_seed(seed)  # dropout draws
    return model, optimizer, task.batches(seed)


def _recipe_kwargs(task: Task) -> dict[str, Any]:
    r = task.recipe
    return {
        "total_steps": r.total_steps,
        "warmup_ratio": r.warmup_steps / r.total_steps,
        "floor_ratio": r.floor_ratio,
        "decay": r.decay,
    }


def _step_fn(task: Task, model: nn.Module) -> Callable[[Any], torch.Tensor]:
    return lambda batch: task.loss(model, batch)


def _record_json(record: RangeTestRecord) -> dict[str, Any]:
    out = record.to_dict()
    out.pop("smoothed")  # recomputable, half the file
    if out["train_losses"] == out["losses"]:
        out.pop("train_losses")
    return out


def _record_from(data: dict[str, Any]) -> RangeTestRecord:
    data = dict(data)
    beta = float(data.get("beta", 0.9))
    losses = [math.nan if v is None else v for v in data["losses"]]
    data.setdefault("smoothed", [None if not math.isfinite(v) else v for v in ema(losses, beta)])
    data.setdefault("train_losses", data["losses"])
    return RangeTestRecord.from_dict(data)


def _result_json(result: FinderResult) -> dict[str, Any]:
    details = {k: v for k, v in result.details.items() if k != "bootstrap"}
    return {
        "peak_lr": result.peak_lr,
        "band": list(result.band),
        "max_stable_lr": result.max_stable_lr,
        "method": result.method,
        "steps_used": result.steps_used,
        "wall_time_s": result.wall_time_s,
        "details": details,
        "probes": [{k: v for k, v in p.to_dict().items() if k != "losses"} for p in result.probes],
        "records": [_record_json(r) for r in result.records],
    }


def run_curve(task: Task, seed: int) -> dict[str, Any]:
    model, optimizer, batches = _setup(task, seed)
    never = DivergenceRule(rise=1e30, noise_mult=0.0, rel_floor=0.0, clear_fall=math.inf)  # only a NaN/Inf ends it
    record = range_test(
        model,
        optimizer,
        batches,
        step=_step_fn(task, model),
        start_lr=START_LR,
        end_lr=END_LR,
        num_steps=NUM_STEPS,
        max_grad_norm=task.recipe.grad_clip,
        divergence=never,
    )
    return {"record": _record_json(record), "wall_time_s": record.wall_time_s}


def run_lrpilot(task: Task, seed: int, mode: str, num_steps: int = NUM_STEPS) -> dict[str, Any]:
    """`find_lr` as a user calls it; mode ``"probes"``: thorough mode with the opt-in probe runs
    (`lrpilot.finder.probe_budget`: 10 % of the run, at least 84 steps)."""
    model, optimizer, batches = _setup(task, seed)
    cpu = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = find_lr(
            model,
            optimizer,
            batches,
            step=_step_fn(task, model),
            start_lr=START_LR,
            end_lr=END_LR,
            num_steps=num_steps,
            max_grad_norm=task.recipe.grad_clip,
            mode="thorough" if mode == "probes" else mode,
            probe_budget=probe_budget(task.recipe.total_steps) if mode == "probes" else None,
            **_recipe_kwargs(task),
        )
    out = _result_json(result)
    out["cpu_time_s"] = time.process_time() - cpu
    out["warnings"] = [str(w.message) for w in caught]
    out["fingerprint"] = fingerprint(mode)
    return out


def run_tlf(task: Task, seed: int, num_steps: int = NUM_STEPS) -> dict[str, Any]:
    """The torch-lr-finder package on the same model, optimizer and batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    model, optimizer, batches = _setup(task, seed)
    raw: list[float] = []

    class Loss(nn.Module):  # the task's loss as the "model": batch in, loss out
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch: Any) -> torch.Tensor:
            return task.loss(self.inner, batch)

    class Batches(TrainDataLoaderIter):  # type: ignore[misc]
        def __init__(self, iterator: Iterator[Any]) -> None:  # no DataLoader to wrap
            self.data_loader, self._iterator, self.auto_reset = None, iterator, False

        def inputs_labels_from_batch(self, batch_data: Any) -> tuple[Any, None]:
            return batch_data, None

    def criterion(loss: torch.Tensor, _labels: None) -> torch.Tensor:
        raw.append(float(loss.detach().item()))
        return loss

    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        finder = LRFinder(Loss(model), optimizer, criterion, device="cpu")
        finder.range_test(Batches(batches), start_lr=START_LR, end_lr=END_LR, num_iter=num_steps)
        _, suggestion = finder.plot(suggest_lr=True)
        finder.reset()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    plt.close("all")
    lrs = [float(v) for v in finder.history["lr"]]
    history = [float(v) for v in finder.history["loss"]]
    from_history = lrs[10:-5][int(np.argmin(np.gradient(np.asarray(history[10:-5]))))]
    reimpl = SUGGESTERS["torch_lr_finder"](lrs, raw[: len(lrs)]).lr
    return {
        "lrs": lrs,
        "raw_losses": raw[: len(lrs)],
        "smoothed_losses": history,
        "suggestion": float(suggestion),
        "suggestion_from_history": from_history,
        "reimplementation": reimpl,
        "steps": len(lrs),
        "wall_time_s": wall,
        "cpu_time_s": cpu,
    }


RUNNERS: dict[str, Callable[[Task, int], dict[str, Any]]] = {
    "curve": run_curve,
    "fast": lambda task, seed: run_lrpilot(task, seed, "fast"),
    "thorough": lambda task, seed: run_lrpilot(task, seed, "thorough"),
    "probes": lambda task, seed: run_lrpilot(task, seed, "probes"),
    "tlf": run_tlf,
}


def curves_path(data_dir: Path, task: str) -> Path:
    return data_dir / f"finder_curves_{task}.json"


def load_curves(path: Path, task: Task) -> dict[str, Any]:
    if path.exists():
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc["task"] != task.name or doc["recipe"] != task.recipe.to_dict():
            sys.exit(f"{path} holds range tests of {doc['task']} with another recipe; move it away")
        return doc
    return {
        "schema": SCHEMA,
        "task": task.name,
        "recipe": task.recipe.to_dict(),
        "range_test": {"start_lr": START_LR, "end_lr": END_LR, "num_steps": NUM_STEPS},
        "entries": {},
        "commands": [],
    }


def stale(entry: dict[str, Any] | None, kind: str) -> bool:
    if entry is None:
        return True
    return kind in FINGERPRINTED and entry.get("fingerprint") != fingerprint(kind)


def collect(task: Task, seeds: list[int], path: Path, *, refresh: bool, kinds: tuple[str, ...]) -> dict[str, Any]:
    doc = load_curves(path, task)
    packages = ("lrpilot", "torch", "numpy", "transformers", "peft", "torch-lr-finder")
    doc["commands"].append(command(packages, fingerprint={kind: fingerprint(kind) for kind in FINGERPRINTED}))
    todo = [
        (seed, kind) for seed in seeds for kind in kinds if refresh or stale(doc["entries"].get(f"{kind}/{seed}"), kind)
    ]
    if any(kind in ("fast", "tlf") for _, kind in todo):
        # untimed warm-up of both tools (lazy imports, first-call allocations), so that the first
        # timed seed is not charged for them
        with warnings.catch_warnings(), contextlib.suppress(RuntimeError, ValueError):
            warnings.simplefilter("ignore")
            run_lrpilot(task, seeds[0], "fast", num_steps=20)
        with contextlib.suppress(RuntimeError, ValueError):
            run_tlf(task, seeds[0], num_steps=20)
    for seed, kind in todo:
        name = f"{kind}/{seed}"
        entry = RUNNERS[kind](task, seed)
        entry["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        doc["entries"][name] = entry
        save_json(path, doc)
        peak = entry.get("peak_lr", entry.get("suggestion"))
        extra = f" -> {peak:.3e}" if peak is not None else ""
        print(f"  {task.name} {name}: {entry['wall_time_s']:.1f} s{extra}", flush=True)
    save_json(path, doc)
    return doc


# ----------------------------------------------------------------------------- stage 2
def _anchor_steps(name: str, losses: np.ndarray) -> int:
    """Optimizer steps the tool itself would have taken on this curve (its own stop rule)."""
    finite_prefix = int(np.flatnonzero(~np.isfinite(losses))[0]) + 1 if not np.all(np.isfinite(losses)) else len(losses)
    if name.startswith("fastai"):
        n = _cut_at_ratio_stop(ema(losses, 0.98), 4.0, 0, best_first=True)
    elif name == "lightning":
        smoothed = np.empty_like(losses)
        avg = 0.0
        for i, value in enumerate(losses):
            avg = 0.98 * avg + 0.02 * value
            smoothed[i] = avg / (1 - 0.98 ** (i + 2))
        n = _cut_at_ratio_stop(smoothed, 4.0, 1, best_first=False)
    else:
        n = len(losses)
        best, s = math.inf, 0.0
        for i, value in enumerate(losses):
            s = value if i == 0 else 0.05 * value + 0.95 * s
            best = min(best, s) if i else s
            if s > 5.0 * best:
                n = i + 1
                break
    return min(n, finite_prefix)


def _rule_peak(entry: dict[str, Any]) -> float | None:
    """lrpilot's answer from an entry's records with the current rule (the stored one if it ran probes)."""
    if entry["probes"]:
        return float(entry["peak_lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return analyze([_record_from(r) for r in entry["records"]]).peak_lr
        except ValueError:
            return None


def suggestions(doc: dict[str, Any], seeds: list[int]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per method and seed: the suggested LR (None when the rule gave none), steps and wall time."""
    out: dict[str, dict[int, dict[str, Any]]] = {}

    def put(method: str, seed: int, lr: float | None, steps: float | None, wall: float | None, **extra: Any) -> None:
        out.setdefault(method, {})[seed] = {"lr": lr, "steps": steps, "wall_time_s": wall, **extra}

    for seed in seeds:
        entries = doc["entries"]
        for mode, label in (("fast", "fast"), ("thorough", "thorough"), ("probes", "thorough + probes")):
            entry = entries.get(f"{mode}/{seed}")
            if entry is None:
                continue
            if stale(entry, mode):
                print(f"  warning: {doc['task']} {mode}/{seed} was recorded by older finder code", file=sys.stderr)
            put(
                f"lrpilot ({label})",
                seed,
                _rule_peak(entry),
                entry["steps_used"],
                entry["wall_time_s"],
                cpu_time_s=entry.get("cpu_time_s"),
                live=entry["peak_lr"],
            )
        curve = entries.get(f"curve/{seed}")
        if curve is not None:
            x, y = _record_from(curve["record"]).arrays()
            for name in ANCHORS:
                try:
                    lr = SUGGESTERS[name](x, y).lr
                except ValueError:
                    lr = None
                label = name + (" (re-impl.)" if name == "torch_lr_finder" else "")
                put(label, seed, lr, _anchor_steps(name, y), None)
        tlf = entries.get(f"tlf/{seed}")
        if tlf is not None:
            put(
                "torch-lr-finder (package)",
                seed,
                tlf["suggestion"],
                tlf["steps"],
                tlf["wall_time_s"],
                cpu_time_s=tlf.get("cpu_time_s"),
            )
    return out


def score_task(doc: dict[str, Any], oracle: OracleCurve, seeds: list[int]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method, per_seed in suggestions(doc, seeds).items():
        scores = {seed: score(oracle, s["lr"]) for seed, s in per_seed.items()}
        methods[method] = {
            "per_seed": {str(seed): {**per_seed[seed], **_score_json(scores[seed])} for seed in sorted(per_seed)},
            "summary": summarise(scores.values()),
            "median_steps": _median([s["steps"] for s in per_seed.values()]),
            "median_wall_time_s": _median([s["wall_time_s"] for s in per_seed.values()]),
            "median_cpu_time_s": _median([s.get("cpu_time_s") for s in per_seed.values()]),
        }
    for lr in FIXED:
        s = score(oracle, lr)
        methods[f"fixed {lr:g}"] = {
            "per_seed": {"-": {"lr": lr, **_score_json(s)}},
            "summary": summarise([s]),
            "median_steps": 0,
            "median_wall_time_s": None,
            "median_cpu_time_s": None,
        }
    return methods


def checks(doc: dict[str, Any], seeds: list[int]) -> list[str]:
    """Consistency of the cache: lrpilot's fast record is the prefix of the never-stopped curve of
    the same seed (the runner is deterministic), the live answers equal the offline ones, and
    torch-lr-finder's ``plot(suggest_lr=True)`` equals both the suggestion recomputed from its
    ``history`` and lrpilot's re-implementation applied to its raw losses."""
    entries, out = doc["entries"], []
    prefix, live, tlf = [], [], []
    for seed in seeds:
        fast, curve, t = entries.get(f"fast/{seed}"), entries.get(f"curve/{seed}"), entries.get(f"tlf/{seed}")
        if fast is not None and curve is not None:
            a = np.asarray(_record_from(fast["records"][0]).losses)
            b = np.asarray(_record_from(curve["record"]).losses)[: len(a)]
            prefix.append(float(np.max(np.abs(a - b))) if len(a) == len(b) else math.inf)
        for mode in FINGERPRINTED:
            entry = entries.get(f"{mode}/{seed}")
            if entry is not None and not stale(entry, mode):
                peak = _rule_peak(entry)
                live.append(peak is not None and math.isclose(peak, entry["peak_lr"], rel_tol=1e-9))
        if t is not None:
            tlf.append(t["suggestion"] == t["suggestion_from_history"] == t["reimplementation"])
    task = doc["task"]
    for clock in ("wall", "cpu"):
        pairs = [
            entries[f"fast/{seed}"][f"{clock}_time_s"] / entries[f"tlf/{seed}"][f"{clock}_time_s"]
            for seed in seeds
            if f"fast/{seed}" in entries and entries.get(f"tlf/{seed}", {}).get(f"{clock}_time_s")
        ]
        if pairs:
            out.append(
                f"{task}: lrpilot fast ÷ torch-lr-finder {clock} time, paired by seed (run back to back): "
                f"median {statistics.median(pairs):.2f}, range {min(pairs):.2f}–{max(pairs):.2f}"
            )
    if prefix:
        worst = max(prefix)
        out.append(f"{task}: fast record vs never-stopped curve of the same seed: max |Δloss| {worst:.2g}")
    if live:
        out.append(f"{task}: offline rule = live find_lr answer on {sum(live)}/{len(live)} runs")
    if tlf:
        out.append(f"{task}: torch-lr-finder plot() = history argmin = re-implementation on {sum(tlf)}/{len(tlf)} runs")
    return out


def _score_json(s: Score) -> dict[str, Any]:
    return {"loss": s.loss, "regret": s.regret, "excess": s.excess, "log_ratio": s.log_ratio}


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def aggregate(per_task: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method over tasks: the mean of the per-task means, the worst single suggestion."""
    out: dict[str, dict[str, float]] = {}
    methods = {m for task in per_task.values() for m in task}
    for method in methods:
        tasks = [t[method] for t in per_task.values() if method in t]
        if len(tasks) != len(per_task):
            continue
        summaries = [t["summary"] for t in tasks]
        out[method] = {
            "tasks": float(len(tasks)),
            "mean_regret": statistics.fmean(s["mean_regret"] for s in summaries),
            "worst_regret": max(s["worst_regret"] for s in summaries),
            "mean_excess": statistics.fmean(s["mean_excess"] for s in summaries),
            "worst_excess": max(s["worst_excess"] for s in summaries),
            "mean_log_ratio": statistics.fmean(s["mean_log_ratio"] for s in summaries),
            "failures": sum(s["failures"] for s in summaries),
        }
    return out


# ----------------------------------------------------------------------------- leave one task out
FACTORS = np.geomspace(0.05, 2.0, 161)
"""The `PEAK_FACTOR` candidates of the leave-one-task-out fit."""
EXPONENTS = np.linspace(0.0, 1.5, 31)
"""The `PROGRESS_EXPONENT` candidates (0: a constant factor, the rule before the learnt share)."""


def _progress_term(entry: dict[str, Any]) -> float:
    """``((1 - p) / (1 - PROGRESS_REF))`` of an entry's records (their geometric mean for several):
    the rule's answer scales with its power `PROGRESS_EXPONENT`, so refitting that exponent needs
    no range test."""
    logs = []
    for data in entry["records"]:
        share = curve_learnt_share(*_record_from(data).arrays())
        logs.append(math.log((1.0 - share) / (1.0 - PROGRESS_REF)))
    return math.exp(statistics.fmean(logs))


def _rescaled(lrs: list[float | None], terms: list[float], factor: float, exponent: float) -> list[float | None]:
    """The rule's answers with other constants: they scale with the factor and with the progress
    term's power."""
    scale = factor / PEAK_FACTOR
    return [
        None if lr is None else lr * scale * g ** (exponent - PROGRESS_EXPONENT)
        for lr, g in zip(lrs, terms, strict=True)
    ]


def loto(
    per_task: dict[str, dict[str, Any]], oracles: dict[str, OracleCurve], docs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Leave one task out for lrpilot's two fitted constants, `PEAK_FACTOR` and `PROGRESS_EXPONENT`
    (the 100-step test makes the ramp-speed correction 1): for each task, the pair that minimises
    the mean regret (mean over the other tasks of their mean over seeds) on the *other* tasks, and
    the held-out task scored with it; beside it the same with the exponent held at 0 (a constant
    factor). The answers scale with the factor and with the progress term's power, so no range
    test is re-run."""
    out: dict[str, Any] = {"shipped": {"factor": PEAK_FACTOR, "exponent": PROGRESS_EXPONENT}, "modes": {}}
    for mode in ("fast", "thorough"):
        method = f"lrpilot ({mode})"
        base, terms = {}, {}
        for t, m in per_task.items():
            if method in m:
                seeds = list(m[method]["per_seed"])
                base[t] = [m[method]["per_seed"][seed]["lr"] for seed in seeds]
                terms[t] = [_progress_term(docs[t]["entries"][f"{mode}/{seed}"]) for seed in seeds]
        if len(base) < 2:
            continue

        def answers(task: str, factor: float, exponent: float) -> list[float | None]:
            return _rescaled(base[task], terms[task], factor, exponent)  # noqa: B023 (used in this iteration only)

        def mean_regret(task: str, factor: float, exponent: float) -> float:
            return statistics.fmean(score(oracles[task], lr).regret for lr in answers(task, factor, exponent))

        table = {t: np.array([[mean_regret(t, f, e) for e in EXPONENTS] for f in FACTORS]) for t in base}
        rows, constant = {}, {}
        for held in base:
            others = np.mean([table[t] for t in base if t != held], axis=0)
            i, j = np.unravel_index(int(np.argmin(others)), others.shape)
            factor, exponent = float(FACTORS[i]), float(EXPONENTS[j])
            scores = [score(oracles[held], lr) for lr in answers(held, factor, exponent)]
            rows[held] = {"factor": factor, "exponent": exponent, **summarise(scores)}
            flat = float(FACTORS[int(np.argmin(others[:, 0]))])
            constant[held] = {"factor": flat, **summarise(score(oracles[held], lr) for lr in answers(held, flat, 0.0))}
        everything = np.mean(list(table.values()), axis=0)
        i, j = np.unravel_index(int(np.argmin(everything)), everything.shape)
        out["modes"][mode] = {
            "held_out": rows,
            "held_out_constant": constant,
            "mean_regret": statistics.fmean(r["mean_regret"] for r in rows.values()),
            "worst_regret": max(r["worst_regret"] for r in rows.values()),
            "mean_excess": statistics.fmean(r["mean_excess"] for r in rows.values()),
            "worst_excess": max(r["worst_excess"] for r in rows.values()),
            "constant_mean_excess": statistics.fmean(r["mean_excess"] for r in constant.values()),
            "constant_worst_excess": max(r["worst_excess"] for r in constant.values()),
            "in_sample_factor": float(FACTORS[i]),
            "in_sample_exponent": float(EXPONENTS[j]),
        }
    return out


ORDER = (
    "lrpilot (fast)",
    "lrpilot (thorough)",
    "lrpilot (thorough + probes)",
    "torch-lr-finder (package)",
    "torch_lr_finder (re-impl.)",
    "fastai_valley",
    "fastai_slide",
    "fastai_steep",
    "fastai_minimum",
    "lightning",
    *(f"fixed {lr:g}" for lr in FIXED),
)


def _sorted_methods(methods: Any) -> list[str]:
    return sorted(methods, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def markdown(
    per_task: dict[str, dict[str, Any]],
    agg: dict[str, dict[str, float]],
    held_out: dict[str, Any],
    totals: dict[str, int],
    notes: list[str],
) -> str:
    lines = [
        f"| all {len(per_task)} tasks | mean regret | worst regret | mean excess | worst excess | "
        "mean \\|log10 lr/lr*\\| | no answer |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in _sorted_methods(agg):
        a = agg[method]
        bold = "**" if method.startswith("lrpilot") else ""
        lines.append(
            f"| {bold}{method}{bold} | {a['mean_regret']:.4f} | {a['worst_regret']:.4f} | {a['mean_excess']:.1%} | "
            f"{a['worst_excess']:.1%} | {a['mean_log_ratio']:.2f} | {int(a['failures'])} |"
        )
    tasks = list(per_task)
    lines += ["", "| mean regret (worst) | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method in _sorted_methods(agg):
        cells = []
        for task in tasks:
            s = per_task[task][method]["summary"]
            cells.append(f"{s['mean_regret']:.4f}" + (f" ({s['worst_regret']:.4f})" if s["n"] > 1 else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| cost: median steps (% of the run) · wall s | " + " | ".join(tasks) + " |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    for method in _sorted_methods(agg):
        if not per_task[tasks[0]][method]["median_wall_time_s"]:
            continue
        cells = []
        for task in tasks:
            m = per_task[task][method]
            steps = m["median_steps"]
            cells.append(f"{steps:.0f} ({steps / totals[task]:.0%}) · {m['median_wall_time_s']:.3g}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    for task, methods in per_task.items():
        lines += [
            f"| {task} ({totals[task]} steps) | mean regret | worst regret | mean excess | worst excess | "
            "mean \\|log10 lr/lr*\\| | median LR | steps (% of run) | wall s | CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method in _sorted_methods(methods):
            m = methods[method]
            s = m["summary"]
            lrs = [p["lr"] for p in m["per_seed"].values() if p["lr"] is not None]
            steps = m["median_steps"]
            steps_text = "0" if not steps else f"{steps:.0f} ({steps / totals[task]:.0%})"
            lines.append(
                f"| {method} | {s['mean_regret']:.4f} | {s['worst_regret']:.4f} | {s['mean_excess']:.1%} | "
                f"{s['worst_excess']:.1%} | {_f(s['mean_log_ratio'], '.2f')} | "
                f"{_f(statistics.median(lrs) if lrs else None, '.2e')} | {steps_text} | "
                f"{_f(m['median_wall_time_s'], '.3g')} | {_f(m['median_cpu_time_s'], '.3g')} |"
            )
        lines.append("")
    for mode, result in held_out.get("modes", {}).items():
        lines += [
            f"| leave one task out, {mode} | PEAK_FACTOR, PROGRESS_EXPONENT fitted on the others | mean regret | "
            "worst regret | mean excess | worst excess | constant factor instead: fitted, mean excess (worst) |",
            "|---|---|---|---|---|---|---|",
        ]
        for task, row in result["held_out"].items():
            flat = result["held_out_constant"][task]
            lines.append(
                f"| {task} | {row['factor']:.3f}, {row['exponent']:.2f} | {row['mean_regret']:.4f} | "
                f"{row['worst_regret']:.4f} | {row['mean_excess']:.1%} | {row['worst_excess']:.1%} | "
                f"{flat['factor']:.3f}, {flat['mean_excess']:.1%} ({flat['worst_excess']:.1%}) |"
            )
        shipped = held_out["shipped"]
        lines.append(
            f"| **all (held out)** | shipped {shipped['factor']}, {shipped['exponent']}; in-sample best "
            f"{result['in_sample_factor']:.3f}, {result['in_sample_exponent']:.2f} | {result['mean_regret']:.4f} | "
            f"{result['worst_regret']:.4f} | {result['mean_excess']:.1%} | {result['worst_excess']:.1%} | "
            f"{result['constant_mean_excess']:.1%} ({result['constant_worst_excess']:.1%}) |"
        )
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def load_oracle(data_dir: Path, task: str) -> tuple[OracleCurve, str]:
    doc = json.loads((data_dir / f"oracle_{task}.json").read_text())
    curve = OracleCurve.from_doc(doc)
    lo, hi = curve.coverage
    note = (
        f"{task}: oracle {len(curve.lrs)} peak LRs {lo:.0e}…{hi:.2g}, seeds {doc['seeds']}, "
        f"lr* {curve.lr_star:.3g}, L* {curve.l_star:.4f}, L_init {curve.l_init:.4f}"
    )
    if hi < 0.99 or lo > 1.01e-6 or not curve.complete:
        note += " — PROVISIONAL: the sweep does not cover 1e-6…1 with every seed yet"
    return curve, note


def stage2(data_dir: Path, tasks: list[str], seeds: list[int], out: Path | None, md: Path | None) -> dict[str, Any]:
    per_task: dict[str, dict[str, Any]] = {}
    oracles: dict[str, OracleCurve] = {}
    totals: dict[str, int] = {}
    docs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name in tasks:
        path = curves_path(data_dir, name)
        if not path.exists():
            print(f"  {name}: no range tests cached in {path}; skipped", file=sys.stderr)
            continue
        oracle, note = load_oracle(data_dir, name)
        doc = docs[name] = json.loads(path.read_text())
        notes.append(note)
        notes += checks(doc, seeds)
        oracles[name] = oracle
        totals[name] = int(doc["recipe"]["total_steps"])
        per_task[name] = score_task(doc, oracle, seeds)
    agg = aggregate(per_task)
    held_out = loto(per_task, oracles, docs) if len(per_task) > 1 else {}
    text = markdown(per_task, agg, held_out, totals, notes)
    print(text)
    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": shlex.join([sys.executable, *sys.argv]),
        "fingerprint": {kind: fingerprint(kind) for kind in FINGERPRINTED},
        "seeds": seeds,
        "notes": notes,
        "aggregate": agg,
        "leave_one_task_out": held_out,
        "tasks": per_task,
    }
    if out is not None:
        save_json(out, result)
    if md is not None:
        md.write_text(text)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=task_names(), default=task_names())
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="stage-1 entries to run")
    parser.add_argument("--data-dir", help="SST-2 folder (default: $LRPILOT_SST2_DIR or ../shared/data)")
    parser.add_argument("--bench-dir", type=Path, default=DATA, help="where the oracle and range-test JSONs live")
    parser.add_argument("--refresh", action="store_true", help="re-run cached range tests")
    parser.add_argument("--score-only", action="store_true", help="stage 2 only, from the cache")
    parser.add_argument("--out", type=Path, default=DATA / "finder_regret.json")
    parser.add_argument("--markdown", type=Path, help="also write the scoreboard here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if not args.score_only:
        for name in args.tasks:
            sst2 = args.data_dir and name.startswith("sst2")
            task = get_task(name, data_dir=args.data_dir) if sst2 else get_task(name)
            print(f"{name}: range tests, seeds {args.seeds}", flush=True)
            collect(task, args.seeds, curves_path(args.bench_dir, name), refresh=args.refresh, kinds=tuple(args.kinds))
    stage2(args.bench_dir, args.tasks, args.seeds, args.out, args.markdown)


if __name__ == "__main__":
    main()
