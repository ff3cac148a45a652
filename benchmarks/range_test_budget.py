"""Can fit's range test be made cheaper? Smaller batches and faster ramps, scored against the oracle.

fit's cost over one training run is at least ``1 + range-test steps / run steps`` (the test's steps
cost what training steps cost), and on the 150-step SST-2 recipes and the 250-step digits recipe
that alone is 1.2–1.5×. The two ways to cheapen the test without changing what it measures on:

    batch ×½, ×¼   each step on a fraction of the recipe's batch (cheaper steps, noisier losses);
                   the peak also read with the rules' square-root batch scaling (×√(B/b))
    ramp 6.25, 9   6.25 or 9 steps a decade instead of the 12.5 the rule is calibrated at (half or ¾ the steps)

Each variant runs fit's own range test (`lrpilot.autopilot._search.range_test`: fit's ramp from
10× below the rules' band, the task's recipe, the seed's initial weights, batches and dropout
draws; run to divergence as tune runs it, fit's settled stop replayed by ``--settle``) and is
scored by the excess loss and regret of its peak on the task's oracle sweep
(``benchmarks/_scoring.py``), beside the test as fit runs it (batch ×1, ramp 12.5).

    nice -n 10 python benchmarks/range_test_budget.py --tasks digits shakespeare
    nice -n 10 python benchmarks/range_test_budget.py --tasks sst2-lora sst2-full --variants 1:12.5 0.5:12.5 0.25:12.5
    python benchmarks/range_test_budget.py --table-only
    python benchmarks/range_test_budget.py --spread      # how far one test's answer moves from seed to seed
    python benchmarks/range_test_budget.py --settle      # what the settled stop saves and moves
    python benchmarks/range_test_budget.py --landmarks   # other readings of the same curves; how clearly they fell
    python benchmarks/range_test_budget.py --starts      # where fit's ramp starts, replayed; the retry's margins

``--spread`` reads the full-batch tests stored here and the finder benchmark's fast-mode tests
(``finder_curves_<task>.json``, from 1e-7), 10 per task, and prints the standard deviation of
lrpilot's answer in decades and its mean offset from the oracle's best LR, with the rule's smoothing
at 0.2 decades (its default) and wider (the factor refitted to the lowest mean excess for each).

``--landmarks`` reads the ``--spread`` curves other ways (the rule at narrower smoothings, its
bootstrap median, the middle of the basin around the minimum, the edge where the loss turns up),
each with one factor refitted for all tasks, and prints the same SD and offset per task; then how
many noise levels fit's own stored tests fell by.

``--settle`` replays `lrpilot.finder.DivergenceRule`'s settled stop on every stored curve (each
variant here, the finder benchmark's fast-mode and 100-step curves) at several settings and prints
how far it moves lrpilot's answer and the steps it saves.

``--starts`` cuts the same curves to begin at the rules' band's low end (fit's start since
ea00fa1) or a third of it, and prints how far each answer moves against the curve cut a decade
under the band (fit's start before), its excess loss and the steps saved; then, over every stored
test, how far its minimum lies above fit's start and how much its loss rose over its first five
steps (the margins of `lrpilot.autopilot._search.FLAT_START` and `START_RISE`).

Results are merged into ``benchmarks/data/range_test_budget.json`` (one entry per task, seed and variant;
those already there are skipped unless ``--refresh``). A test that gives no answer (its smoothed loss
never falls below its start) scores as if nothing had been trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from _environment import command, load_json, save_json
from _scoring import OracleCurve, score
from lrpilot.autopilot._search import ramp, range_test
from lrpilot.autopilot._target import builtin_target, fitted_recipe
from lrpilot.rules import recommend

DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "range_test_budget.json"
VARIANTS = ("1:12.5", "0.5:12.5", "0.25:12.5", "1:6.25", "0.5:6.25", "1:9")
"""``batch fraction:steps per decade``."""


def run_variant(name: str, seed: int, fraction: float, density: float) -> dict[str, Any]:
    """fit's range test (`lrpilot.autopilot._search.range_test`) on `name` with the batch cut to
    `fraction` and `density` steps a decade."""
    target = builtin_target(name, None)
    task = target.task
    model = task.build_model(seed)
    rec = recommend(model, target.method, batch_size=task.recipe.batch_size, steps=target.steps, seq_len=target.seq_len)
    recipe = fitted_recipe(task.recipe, target.steps, "the default")
    batch = max(1, round(task.recipe.batch_size * fraction))
    small = dataclasses.replace(task, recipe=dataclasses.replace(task.recipe, batch_size=batch))
    start, end, _ = ramp(rec)
    steps = round(density * math.log10(end / start))
    started = time.perf_counter()
    search = range_test(small, model, recipe, rec, seed=seed, steps=steps, progress=lambda *_: None)
    wall = time.perf_counter() - started
    if search.finder is None:  # no answer (fit would fall back to the rules): scored as untrained
        return {"peak_lr": None, "error": search.notes[0], "batch_size": batch, "wall_time_s": wall, "steps": steps}
    record = search.finder.record
    return {
        "peak_lr": search.peak,
        "steps": record.steps,
        "batch_size": batch,
        "wall_time_s": wall,
        "lrs": list(record.lrs),
        "losses": [x if math.isfinite(x) else None for x in record.losses],
    }


def table(doc: dict[str, Any]) -> str:
    """Markdown: per task and variant, the peaks' excess loss and regret on the oracle, steps, wall time."""
    lines = [
        "| task | batch | steps / decade | peak read as | excess loss mean (worst) | regret mean | steps | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in doc["tasks"].items():
        oracle = OracleCurve.from_doc(json.loads((DATA / f"oracle_{name}.json").read_text(encoding="utf-8")))
        for variant in VARIANTS:
            rows = [by[variant] for by in runs.values() if variant in by]
            if not rows:
                continue
            fraction, density = (float(x) for x in variant.split(":"))
            readings = [("measured", 1.0)] + ([("×√(B/b)", math.sqrt(1 / fraction))] if fraction < 1 else [])
            for label, factor in readings:
                scores = [score(oracle, None if row["peak_lr"] is None else row["peak_lr"] * factor) for row in rows]
                failed = sum(s.failed for s in scores)
                lines.append(
                    f"| {name} ({len(rows)} seeds{f', {failed} without an answer' if failed else ''}) | "
                    f"×{fraction:g} | {density:g} | {label} | "
                    f"{statistics.fmean(s.excess for s in scores):.2%} ({max(s.excess for s in scores):.2%}) | "
                    f"{statistics.fmean(s.regret for s in scores):.4f} | "
                    f"{statistics.median(row['steps'] for row in rows):g} | "
                    f"{statistics.median(row['wall_time_s'] for row in rows):.2f} s |"
                )
    return "\n".join(lines)


def _curves(doc: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    """The full-batch tests of `doc` and the finder benchmark's fast-mode tests, per task."""
    out: dict[str, list[tuple[Any, Any]]] = {}
    for name, label, lrs, losses in _all_curves(doc):
        if label.startswith(("1:12.5/", "fast/")):
            out.setdefault(name, []).append((lrs, losses))
    return out


def _oracles(names: Any) -> dict[str, OracleCurve]:
    return {
        name: OracleCurve.from_doc(json.loads((DATA / f"oracle_{name}.json").read_text(encoding="utf-8")))
        for name in names
    }


def _refitted(
    answers: dict[str, list[float]], oracles: dict[str, OracleCurve], log_factors: Any
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """``(factor, mean excess, {task: (SD, offset)})``: `answers` times the one factor (of
    ``exp(log_factors)``) with the lowest mean over tasks of each task's mean excess loss; the SD of
    each task's log10 answers and their mean offset from the oracle's best LR."""
    import numpy as np

    def mean_excess(factor: float) -> float:
        return statistics.fmean(
            statistics.fmean(score(oracles[name], lr * factor).excess for lr in lrs) for name, lrs in answers.items()
        )

    factor = float(min(np.exp(log_factors), key=mean_excess))
    per_task = {}
    for name, lrs in answers.items():
        logs = [math.log10(lr * factor) for lr in lrs]
        offset = statistics.fmean(logs) - math.log10(oracles[name].lr_star)
        per_task[name] = (statistics.pstdev(logs), offset)
    return factor, mean_excess(factor), per_task


def _settled_end(stop: Any, lrs: Any, losses: Any) -> int:
    """Where `stop` (a `DivergenceRule` with a settle) would have ended the stored curve."""
    usable = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    return next((j + 1 for j in range(usable) if stop.settled(lrs[: j + 1], losses[: j + 1])), len(losses))


def spread(doc: dict[str, Any]) -> str:
    """Per smoothing bandwidth: each task's spread (SD of log10 answer) and offset from the oracle's best."""
    import functools

    import numpy as np

    import lrpilot.finder._rule as rule
    from lrpilot.finder._features import curve_features

    curves = _curves(doc)
    oracles = _oracles(curves)
    lines = []
    original = rule.curve_features
    try:
        for bandwidth in (0.2, 0.3, 0.4, 0.5):
            rule.curve_features = functools.partial(curve_features, bandwidth=bandwidth)
            answers = {name: [rule.lrpilot(x, y).lr for x, y in cs] for name, cs in curves.items()}
            factor, excess, per_task = _refitted(answers, oracles, np.linspace(-0.7, 0.7, 57))
            parts = [
                f"{name} ({len(answers[name])}): SD {sd:.2f}, offset {offset:+.2f}"
                for name, (sd, offset) in per_task.items()
            ]
            head = f"bandwidth {bandwidth}: factor ×{factor:.2f}, mean excess {excess:.2%}; "
            lines.append(head + "; ".join(parts))
    finally:
        rule.curve_features = original
    return "\n".join(lines)


def _landmark(name: str, bandwidth: float = 0.2, rise: float = 0.0) -> Any:
    """An answer read off a curve, before a global factor: ``rule`` (lrpilot's, at `bandwidth`),
    ``band`` (its bootstrap median), ``basin`` (the geometric middle of the LRs whose smoothed loss
    is within `rise` of the fall above the minimum) or ``edge`` (the first LR past the minimum that
    rises that far), the last two times the rule's learnt-share factor."""
    import numpy as np

    import lrpilot.finder._rule as rule
    from lrpilot.finder._features import curve_features

    def answer(lrs: Any, losses: Any) -> float:
        if name == "band":
            return rule.lrpilot_band(lrs, losses)[1]
        f = curve_features(lrs, losses, bandwidth=bandwidth)
        y = np.asarray(losses)[: f.usable]
        factor = rule.peak_factor(rule.learnt_share(f.loss_start, f.loss_min, bool(np.all(y > 0))))
        if name == "rule":
            return f.lr_min * factor
        s, limit = np.asarray(f.smoothed), f.loss_min + rise * f.drop
        lo = hi = f.i_min
        while hi + 1 < len(s) and s[hi + 1] <= limit:
            hi += 1
        if name == "edge":
            return f.lrs[hi] * factor
        while lo > 0 and s[lo - 1] <= limit:
            lo -= 1
        return math.sqrt(f.lrs[lo] * f.lrs[hi]) * factor

    return answer


def landmarks(doc: dict[str, Any]) -> str:
    """Would another reading of the same curves spread less? Each landmark on the `--spread` curves
    with one factor for all tasks (refitted to the lowest mean excess); then how clearly fit's own
    tests fell (`CurveFeatures.drop_sigma` at the settled stop: `lrpilot.finder.CLEAR_FALL` is 2.5)."""
    import numpy as np

    from lrpilot.finder import SETTLE, DivergenceRule
    from lrpilot.finder._features import curve_features

    curves = _curves(doc)
    oracles = _oracles(curves)
    readings = {
        "rule, smoothing 0.2 (lrpilot's)": _landmark("rule"),
        "rule, smoothing 0.15": _landmark("rule", 0.15),
        "rule, smoothing 0.1": _landmark("rule", 0.1),
        "bootstrap median": _landmark("band"),
        "basin within 0.1 of the fall": _landmark("basin", rise=0.1),
        "basin within 0.25": _landmark("basin", rise=0.25),
        "edge at 0.1 of the fall": _landmark("edge", rise=0.1),
        "edge at 0.25": _landmark("edge", rise=0.25),
    }
    lines = []
    for label, read in readings.items():
        answers = {name: [read(x, y) for x, y in cs] for name, cs in curves.items()}
        _, excess, per_task = _refitted(answers, oracles, np.linspace(-3.0, 3.0, 241))
        parts = [f"{name} SD {sd:.2f} ({offset:+.2f})" for name, (sd, offset) in per_task.items()]
        lines.append(f"{label}: mean excess {excess:.2%}; " + ", ".join(parts))
    stop = DivergenceRule(settle=SETTLE)
    clarity: dict[str, list[float]] = {}
    for name, label, lrs, losses in _all_curves(doc):
        if label.startswith("1:12.5/"):
            end = _settled_end(stop, lrs, losses)
            clarity.setdefault(name, []).append(curve_features(lrs[:end], losses[:end]).drop_sigma)
    falls = ", ".join(f"{name} {min(v):.1f}–{max(v):.1f}" for name, v in clarity.items())
    lines.append(f"fit's tests (batch ×1, 12.5 a decade, settled stop): fall in noise levels {falls}")
    return "\n".join(lines)


def _all_curves(doc: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """``(task, label, lrs, losses)`` of every stored test: each variant here, and the finder
    benchmark's fast-mode and 100-step curves."""
    import numpy as np

    def arrays(record: dict[str, Any]) -> tuple[Any, Any]:
        return np.array(record["lrs"]), np.array([math.nan if v is None else v for v in record["losses"]])

    out = []
    for name, seeds in doc["tasks"].items():
        for seed, runs in seeds.items():
            out += [(name, f"{variant}/{seed}", *arrays(row)) for variant, row in runs.items() if row.get("lrs")]
        finder = json.loads((DATA / f"finder_curves_{name}.json").read_text(encoding="utf-8"))
        for key, entry in finder["entries"].items():
            records = entry.get("records") or ([entry["record"]] if "record" in entry else [])
            if key.startswith(("fast/", "curve/")):
                out += [(name, key, *arrays(record)) for record in records if record.get("lrs")]
    return out


def settle(doc: dict[str, Any]) -> str:
    """The settled stop (`lrpilot.finder.DivergenceRule.settle`) replayed on every stored curve: per
    setting, how far it moves lrpilot's answer and how many steps it saves (each curve ends where
    its test's divergence rules stopped it, so a replay shows what the settled stop adds)."""
    from lrpilot.finder import SETTLE, DivergenceRule, lrpilot

    curves = [c for c in _all_curves(doc) if c[3].size >= 5]
    lines = []
    for decades, rise in ((0.5, 0.5), (SETTLE, 0.5), (0.8, 0.5), (SETTLE, 1e-9)):
        rule = DivergenceRule(settle=decades, rise=rise)
        moved, saved, fits = [], 0, {}
        for name, label, lrs, losses in curves:
            try:
                full = lrpilot(lrs, losses).lr
            except ValueError:  # no answer in the curve at all
                continue
            end = _settled_end(rule, lrs, losses)
            moved.append(abs(math.log10(lrpilot(lrs[:end], losses[:end]).lr / full)))
            saved += len(losses) - end
            if label.startswith("1:12.5/"):
                fits.setdefault(name, []).append((len(losses), end))
        rise_text = "half the drop given back" if rise == 0.5 else "no rise needed"
        head = f"settle {decades} decades, {rise_text}: {len(moved)} curves, answer moved ≤ {max(moved):.3f} decades"
        head += f" ({sum(m > 0.01 for m in moved)} by > 0.01), {saved} steps saved; fit's tests, mean steps: "
        lines.append(
            head
            + ", ".join(
                f"{name} {statistics.fmean(n for n, _ in ends):.1f} → {statistics.fmean(e for _, e in ends):.1f}"
                for name, ends in fits.items()
            )
        )
    return "\n".join(lines)


def _fit_starts(names: Any) -> dict[str, tuple[float, float]]:
    """``{task: (band's low end, fit's ramp start)}`` from the rules for each built-in task."""
    out = {}
    for name in names:
        target = builtin_target(name, None)
        task = target.task
        model = task.build_model(0)
        rec = recommend(
            model, target.method, batch_size=task.recipe.batch_size, steps=target.steps, seq_len=target.seq_len
        )
        out[name] = (rec.low, ramp(rec)[0])
    return out


def starts(doc: dict[str, Any]) -> str:
    """Where fit's ramp starts, replayed on the stored curves (each cut to begin at a given LR): the
    answer's move against the curve cut a decade under the rules' band (fit's start before
    ea00fa1), the excess loss on the oracle and the steps saved; then the margins of the checks
    that run a test again from lower (`lrpilot.autopilot._search.FLAT_START`, `START_RISE`)
    over every stored test: its minimum's distance from fit's start, its rise over its first
    five steps."""
    import numpy as np

    from lrpilot.finder import lrpilot
    from lrpilot.finder._features import curve_features, noise_level

    curves = _curves(doc)
    oracles = _oracles(curves)
    where = _fit_starts(curves)
    lines = []
    for label, at in (("band / 10 (before)", 0.1), ("band / 3", 1 / 3), ("fit's start", None)):
        parts = []
        for name, cs in curves.items():
            low, start = where[name]
            cut_at = start if at is None else low * at
            moved, excess, saved = [], [], []
            for x, y in cs:
                base, keep = x >= low / 10 * 0.999, x >= cut_at * 0.999
                before, after = lrpilot(x[base], y[base]).lr, lrpilot(x[keep], y[keep]).lr
                moved.append(math.log10(after / before))
                excess.append(score(oracles[name], after).excess)
                saved.append(int(base.sum() - keep.sum()))
            parts.append(
                f"{name} from {cut_at:.2g}: moved ≤ {max(map(abs, moved)):.3f} decades "
                f"(mean {statistics.fmean(moved):+.3f}), excess {statistics.fmean(excess):.2%}, "
                f"{statistics.fmean(saved):.1f} steps saved"
            )
        lines.append(f"{label}: " + "; ".join(parts))
    nearest: dict[bool, dict[str, float]] = {True: {}, False: {}}
    rise: dict[str, float] = {}
    for name, label, x, y in _all_curves(doc):
        f = curve_features(x, y)
        whole = nearest[not label.startswith(("0.5:", "0.25:"))]
        whole[name] = min(whole.get(name, math.inf), math.log10(f.lrs[f.i_min] / where[name][1]))
        usable = np.asarray(y)[: f.usable]
        rise[name] = max(rise.get(name, -math.inf), float(np.max(usable[1:6]) - usable[0]) / noise_level(usable))

    def listed(values: dict[str, float], digits: int) -> str:
        return ", ".join(f"{name} {v:.{digits}f}" for name, v in values.items())

    lines.append(
        f"every stored test ({len(_all_curves(doc))}): its minimum above fit's start, nearest "
        f"{listed(nearest[True], 2)} decades at the recipe's batch ({listed(nearest[False], 2)} at ½ or ¼ of it); "
        f"its rise over the first five steps, largest {listed(rise, 1)} noise levels"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "shakespeare"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--refresh", action="store_true", help="run variants already in --out again")
    parser.add_argument("--spread", action="store_true", help="print the answers' seed-to-seed spread and exit")
    parser.add_argument("--settle", action="store_true", help="replay the settled stop on the stored curves and exit")
    parser.add_argument("--landmarks", action="store_true", help="other readings of the --spread curves, and exit")
    parser.add_argument(
        "--starts", action="store_true", help="replay where fit's ramp starts on the stored curves, and exit"
    )
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"tasks": {}, "commands": []})
    if args.spread:
        print(spread(doc))
        return
    if args.settle:
        print(settle(doc))
        return
    if args.starts:
        print(starts(doc))
        return
    if args.landmarks:
        print(landmarks(doc))
        return
    if not args.table_only:
        torch.set_num_threads(args.threads)
        doc["commands"].append(command(["lrpilot", "torch", "numpy"]))
        for name in args.tasks:
            run_variant(name, args.seeds[0], 1.0, 12.5)  # untimed: the first steps import parts of torch
            for seed in args.seeds:
                for variant in args.variants:
                    if variant in doc["tasks"].get(name, {}).get(str(seed), {}) and not args.refresh:
                        continue
                    fraction, density = (float(x) for x in variant.split(":"))
                    row = run_variant(name, seed, fraction, density)
                    doc["tasks"].setdefault(name, {}).setdefault(str(seed), {})[variant] = row
                    peak = "none" if row["peak_lr"] is None else f"{row['peak_lr']:.3g}"
                    print(f"  {name} seed {seed} {variant}: peak {peak} in {row['steps']} steps", flush=True)
                    save_json(args.out, doc)
    print(table(doc))


if __name__ == "__main__":
    main()
