"""Fault-injection benchmark of the training guard against the usual alternatives.

Real training runs of the built-in tasks (`lrpilot.tasks`, each with its fixed recipe: AdamW,
warmup + cosine, its clipping) at a good peak LR; each fault hits at 40 % of the run; every method
sees the same seeds, data and fault:

    faults   clean · lr_x10 · lr_x100 (the LR jumps and stays) · bad_batch (one batch with a 1000×
             gradient) · nan (NaN loss at one step) · fp16 (5 steps whose logits overflow float16)
             · low_lr (the whole run at 0.01× the LR: a flat start) · corrupt (8 batches in a row
             whose loss is NaN: a corrupt shard, whatever the weights and the LR)
    methods  none (the recipe as is) · hf (HF Trainer defaults: clip at 1.0, NaN steps still applied)
             · rlrop (torch ReduceLROnPlateau, defaults, on 25-step mean losses) · killspike
             (llm-foundry KillLossSpike, acting) · zclip (ZClip, re-implemented from
             bluorion-com/ZClip) · lrpilot (TorchGuard, defaults) · lrpilot-auto, lrpilot-both
             (``cut_mode="auto"`` / ``"both"`` instead of the default "cap": the ablation behind it)
             · lrpilot-w32 (the detectors' default 32-loss warm-up instead of a sixth of the run:
             the ablation behind `GuardConfig.for_run`'s, which only differs below 192 steps)
             · lrpilot-s8 (the divergence and collapse tests' short median of 8 losses at any batch:
             the ablation behind `GuardConfig.for_run`'s ``batch_size``, which only differs below 32)

Reported per method: faulty runs recovered (finished, finite validation loss), final validation
loss relative to the clean unguarded run, steps from the fault to the method's first action, false
alarms on clean runs, and wall-clock time per step on clean runs (CPU, one thread; noisy on a
shared machine, see benchmarks/guard_overhead.py for the overhead proper).

    nice -n 10 python benchmarks/guard_faults.py --out benchmarks/data/guard_faults.json   # digits + shakespeare
    python benchmarks/guard_faults.py --table-only --out benchmarks/data/guard_faults.json  # the stored runs' tables
    python benchmarks/guard_faults.py --tasks digits --seeds 1            # a quick look (~1 min)
    python benchmarks/guard_faults.py --tasks sst2-lora --seeds 1         # needs SST-2 on disk
    python benchmarks/guard_faults.py --tasks digits --steps 60           # every recipe cut to 60 steps
    python benchmarks/guard_faults.py --tasks sst2-lora --steps 50 --peak 4.64e-3   # and its peak LR
    python benchmarks/guard_faults.py --tasks sst2-lora --batch-size 8 --steps 200 --peak 2.15e-3 \
        --methods none,lrpilot,lrpilot-s8                                          # a small batch
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrpilot.detect import DetectConfig, init, loss_baseline, observe, robust_baseline
from lrpilot.guard import GuardConfig
from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard
from lrpilot.tasks import Recipe, Task, get_task, make_optimizer

FAULTS = ("clean", "lr_x10", "lr_x100", "bad_batch", "nan", "fp16", "low_lr", "corrupt")
CORRUPT_BATCHES = 8
METHODS = (
    "none",
    "hf",
    "rlrop",
    "killspike",
    "zclip",
    "lrpilot",
    "lrpilot-auto",
    "lrpilot-both",
    "lrpilot-w32",
    "lrpilot-s8",
)
ABLATIONS: dict[str, dict[str, Any]] = {
    "lrpilot-auto": {"cut_mode": "auto"},
    "lrpilot-both": {"cut_mode": "both"},
}
"""The cut modes of the lrpilot variants (lrpilot-w32, lrpilot-s8: `make_guard` builds them)."""


# ----------------------------------------------------------------------------- tasks
PEAKS = {"digits": 1e-2, "shakespeare": 2e-2, "sst2-lora": 5e-4, "sst2-full": 5e-5}
"""A good peak LR per task (digits: best of 1e-3…3e-2; shakespeare at 400 steps: best of 1e-3…4e-2,
seed 0), so that the clean run is a fair reference and ×10 / ×100 are real faults."""
STEPS = {"shakespeare": 400}  # shortened recipes (a complete warmup + decay): CPU time


@dataclass
class Setup:
    """A built-in task with its recipe (shortened where STEPS says), peak LR and number of classes."""

    task: Task
    recipe: Recipe
    peak: float
    num_classes: int

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def steps(self) -> int:
        return self.recipe.total_steps


def setup(name: str, steps: int | None = None, peak: float | None = None, batch: int | None = None) -> Setup:
    """`name`'s task at its recipe (cut to `steps`, else to `STEPS[name]` where that is given; at
    `batch` examples a step if given) and `peak` (default `PEAKS[name]`, good at the recipe's length
    and batch: a shorter run wants a higher one, a smaller batch a lower one)."""
    task = get_task(name)
    if batch is not None:
        task = replace(task, recipe=replace(task.recipe, batch_size=batch))
    steps = steps or STEPS.get(name)
    recipe = task.recipe.shortened(steps) if steps is not None else task.recipe
    if task.classes is None:
        raise ValueError(f"guard_faults: {name} has no chance level (Task.classes)")
    return Setup(task, recipe, peak or PEAKS[name], task.classes)


# ----------------------------------------------------------------------------- baselines
class KillLossSpike:
    """llm-foundry's KillLossSpike with ``log_only=False`` (patience 4, ×2 the window mean, window 100,
    loss cap 10): raises once 5 losses in a row are ≥ 2× the mean of the last 100."""

    def __init__(self, patience: int = 4, multiplier: float = 2.0, window: int = 100, cap: float = 10.0) -> None:
        self.patience, self.multiplier, self.window, self.cap = patience, multiplier, window, cap
        self.losses: list[float] = []
        self.outliers = 0

    def fires(self, loss: float, batch: int) -> bool:
        fire = False
        if len(self.losses) == self.window:
            mean = float(np.mean(self.losses))
            if loss >= mean * self.multiplier:
                self.outliers += 1
                fire = self.outliers > self.patience
            else:
                self.outliers = 0
                high = sum(1 for v in self.losses if v > self.cap)
                fire = batch >= 2 * self.window and high >= self.window / 2
        self.losses = [*self.losses[-(self.window - 1) :], loss]
        return fire


class ZClip:
    """ZClip (bluorion-com/ZClip, zscore mode, adaptive scaling) with its defaults: EMA α = 0.97,
    z > 2.5 clips to μ + 2.5σ / (z / 2.5), 25 warm-up steps, max_grad_norm 1.0 on top; the EMA is
    updated with the clipped norm. Like the original, a NaN norm goes into the EMA."""

    def __init__(self, alpha: float = 0.97, z: float = 2.5, warmup: int = 25, max_norm: float | None = 1.0) -> None:
        self.alpha, self.z, self.warmup, self.max_norm = alpha, z, warmup, max_norm
        self.buffer: list[float] = []
        self.mean = self.var = 0.0

    def step(self, model: nn.Module) -> bool:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        total = float(torch.stack([g.square().sum() for g in grads]).sum().sqrt())  # .item() per step, as ZClip
        if len(self.buffer) < self.warmup:
            self.buffer.append(total)
            if len(self.buffer) == self.warmup:
                self.mean = sum(self.buffer) / len(self.buffer)
                self.var = sum((x - self.mean) ** 2 for x in self.buffer) / len(self.buffer)
            if self.max_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)
            return False
        std = self.var**0.5
        z = (total - self.mean) / (std + 1e-6)
        clip = self.mean + self.z * std / (z / self.z) if z > self.z else None
        effective = clip if clip is not None else total
        if self.max_norm is not None:
            effective = min(effective, self.max_norm)
        if total > effective:
            coef = effective / (total + 1e-6)
            for g in grads:
                g.mul_(coef)
        norm = clip if clip is not None else total
        self.mean = self.alpha * self.mean + (1 - self.alpha) * norm
        self.var = self.alpha * self.var + (1 - self.alpha) * (norm - self.mean) ** 2
        return clip is not None


# ----------------------------------------------------------------------------- one run
def lr_factor(fault: str, step: int, k: int) -> float:
    if fault == "low_lr":
        return 0.01
    if fault in ("lr_x10", "lr_x100") and step >= k:
        return 10.0 if fault == "lr_x10" else 100.0
    return 1.0


def overflow(output: Any) -> Any:
    """An fp16 overflow in the logits: ×1e5 and through float16, whose largest value is 65504."""
    if isinstance(output, torch.Tensor):
        return (output * 1e5).half().float()
    output.logits = (output.logits * 1e5).half().float()
    return output


def forward_loss(s: Setup, model: nn.Module, batch: Any, *, fault: str, b: int, k: int) -> Any:
    hook = model.register_forward_hook(lambda m, i, o: overflow(o)) if fault == "fp16" and k <= b < k + 5 else None
    try:
        loss = s.task.loss(model, batch)
    finally:
        if hook is not None:
            hook.remove()
    if fault == "bad_batch" and b == k:
        loss = loss * 1e3
    if (fault == "nan" and b == k) or (fault == "corrupt" and k <= b < k + CORRUPT_BATCHES):
        loss = loss * math.nan
    return loss


class Baselines:
    """The methods other than lrpilot, applied around a plain optimizer step."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.plateau_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        self.rlrop = torch.optim.lr_scheduler.ReduceLROnPlateau(self.plateau_opt)  # torch defaults
        self.kill, self.zclip = KillLossSpike(), ZClip()
        self.recent: list[float] = []
        self.events: list[int] = []  # batches at which the method acted

    def before_step(self, model: nn.Module, b: int, clip: float | None) -> float:
        """Clip as the method does (the recipe's clip, HF's 1.0, or ZClip's own); return the LR
        multiplier (ReduceLROnPlateau's)."""
        if self.method == "zclip":
            if self.zclip.step(model):
                self.events.append(b)
        elif self.method == "hf" or clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0 if self.method == "hf" else clip)
        return float(self.plateau_opt.param_groups[0]["lr"])

    def after_step(self, value: float, b: int) -> bool:
        """Feed the loss; True if the method stops the run."""
        self.recent.append(value)
        if self.method == "rlrop" and len(self.recent) == 25:
            before = self.plateau_opt.param_groups[0]["lr"]
            self.rlrop.step(float(np.mean(self.recent)))
            self.recent = []
            if self.plateau_opt.param_groups[0]["lr"] < before:
                self.events.append(b)
        if self.method == "killspike" and self.kill.fires(value, b):
            self.events.append(b)
            return True
        return False


def make_guard(s: Setup, model: nn.Module, opt: torch.optim.Optimizer, method: str) -> TorchGuard:
    """The guard at its defaults except for the knobs measured in steps, which are scaled to these
    short runs (a few hundred steps instead of thousands): `GuardConfig.for_run` (a snapshot every
    4 % of the run instead of 50 steps, a re-warmup as long, the detectors judging after a sixth of
    a run shorter than 192 steps; what `lrpilot fit` runs), and the
    flat-start test over the first fifth (default 300 steps). Raising the LR on a flat start is
    switched on (it is opt-in). The short median is fitted to the recipe's batch (as fit's is). The
    recipe's gradient clipping is kept. The thresholds (z scores, patience, floors) are the defaults."""
    detect = DetectConfig.for_classes(s.num_classes, flat_steps=s.steps // 5)
    batch = None if method == "lrpilot-s8" else s.recipe.batch_size
    config = GuardConfig.for_run(
        s.steps, batch_size=batch, detect=detect, raise_on_flat=True, **ABLATIONS.get(method, {})
    )
    if method == "lrpilot-w32":
        config = replace(config, detect=replace(detect, div_short=config.detect.div_short))
    return TorchGuard(model, opt, config=config, max_grad_norm=s.recipe.grad_clip)


def run(s: Setup, fault: str, method: str, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = s.task.build_model(seed)
    opt = make_optimizer(model, s.recipe, s.peak)
    sched = s.recipe.schedule(s.peak)
    data = s.task.batches(seed)
    k = int(0.4 * s.steps)
    guard = make_guard(s, model, opt, method) if method.startswith("lrpilot") else None
    base = Baselines(method)
    losses: list[float] = []
    grad_norms: list[float] = []
    step = b = 0
    stopped = None
    t0 = time.perf_counter()
    while step < s.steps and b < 2 * s.steps:
        loss = forward_loss(s, model, next(data), fault=fault, b=b, k=k)
        loss.backward()
        value = float(loss.detach())  # every method below reads the loss on the host; free on CPU
        losses.append(value)
        lr = float(sched(step)) * lr_factor(fault, step, k)
        if guard is not None:
            for g in opt.param_groups:
                g["lr"] = lr
            try:
                guard.step(loss)
            except GuardGaveUpError:
                stopped = b
                break
            step, b = guard.step_count, b + 1
            continue
        if method == "none" and fault == "clean":
            grad_norms.append(
                float(nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]))
            )
        scale = base.before_step(model, b, s.recipe.grad_clip)
        for g in opt.param_groups:
            g["lr"] = lr * scale
        opt.step()
        opt.zero_grad(set_to_none=True)
        if base.after_step(value, b):
            stopped = b
            break
        step, b = step + 1, b + 1
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"task": s.name, "fault": fault, "method": method, "seed": seed, "k": k}
    events = base.events
    if guard is not None:
        report = guard.report()
        events = [r["batch"] for r in report["records"] if r["action"] != "warn"]
        out["actions"] = [(r["batch"], r["action"], r["detector"]) for r in report["records"]]
        guard.close()
    final = s.task.evaluate(model)
    out.update(
        val_loss=final if math.isfinite(final) else None,
        finished=stopped is None and step >= s.steps,
        recovered=stopped is None and step >= s.steps and math.isfinite(final),
        batches=b,
        stopped_at=stopped,
        events=len(events),
        first_event=next((e for e in events if e >= (0 if fault == "low_lr" else k)), None),
        seconds_per_step=seconds / max(b, 1),
    )
    if grad_norms:
        out["clean_z"] = clean_scores(losses, grad_norms, s.steps)
    return out


def clean_scores(losses: list[float], grad_norms: list[float], steps: int) -> dict[str, float]:
    """The largest robust z a healthy run reached (loss and grad norm), judged from where the guard
    of a `steps`-step run judges (`GuardConfig.for_run`): how far the defaults sit from a false alarm."""
    c = GuardConfig.for_run(steps).detect
    state = init(c)
    worst = {"loss_z": 0.0, "grad_z": 0.0}
    for i, (loss, gn) in enumerate(zip(losses, grad_norms, strict=True)):
        if state.losses.size >= c.min_history:
            med, sigma, log_space = loss_baseline(state)
            z = (math.log(loss) - med) / sigma if log_space and loss > 0 else (loss - med) / sigma
            worst["loss_z"] = max(worst["loss_z"], z)
        if state.log_grads.size >= c.min_history:
            gmed, gsigma = robust_baseline(state.log_grads, 0.0, c.grad_floor)
            worst["grad_z"] = max(worst["grad_z"], (math.log(max(gn, 1e-30)) - gmed) / gsigma)
        _, state = observe(state, step=i, loss=loss, grad_norm=gn)
    return worst


# ----------------------------------------------------------------------------- the report
def summarize(runs: list[dict[str, Any]]) -> str:
    lines = []
    for task in sorted({r["task"] for r in runs}):
        rows = [r for r in runs if r["task"] == task]
        clean = {r["seed"]: r["val_loss"] for r in rows if r["method"] == "none" and r["fault"] == "clean"}
        base_speed = statistics.median(
            r["seconds_per_step"] for r in rows if r["method"] == "none" and r["fault"] == "clean"
        )
        lines += [
            f"\n### {task} ({len(clean)} seeds)\n",
            "| method | faulty runs recovered | median final loss vs clean | worst | median steps to act "
            "| false alarms (clean runs) | overhead / step |",
            "|---|---|---|---|---|---|---|",
        ]
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            faulty = [r for r in mine if r["fault"] != "clean"]
            ratios = [
                r["val_loss"] / clean[r["seed"]] if r["recovered"] and r["val_loss"] is not None else math.inf
                for r in faulty
            ] or [math.nan]  # clean runs only (--faults clean): no ratio
            delays = [
                r["first_event"] - r["k"] for r in faulty if r["first_event"] is not None and r["fault"] != "low_lr"
            ]
            alarms = sum(r["events"] for r in mine if r["fault"] == "clean")
            speed = statistics.median(r["seconds_per_step"] for r in mine if r["fault"] == "clean")
            lines.append(
                f"| {method} | {sum(r['recovered'] for r in faulty)}/{len(faulty)} "
                f"| {_ratio(statistics.median(ratios))} | {_ratio(max(ratios))} "
                f"| {statistics.median(delays) if delays else '–'} | {alarms} "
                f"| {100 * (speed / base_speed - 1):+.0f} % |"
            )
        lines += ["", "| final loss vs clean (median over seeds) | " + " | ".join(FAULTS[1:]) + " |"]
        lines.append("|---" * len(FAULTS) + "|")
        for method in (m for m in METHODS if any(r["method"] == m for r in rows)):
            cells = []
            for fault in FAULTS[1:]:
                sel = [r for r in rows if r["method"] == method and r["fault"] == fault]
                if not sel:
                    cells.append("–")
                    continue
                vals = [
                    r["val_loss"] / clean[r["seed"]] if r["recovered"] and r["val_loss"] is not None else math.inf
                    for r in sel
                ]
                cells.append(_ratio(statistics.median(vals)))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        zs = [r["clean_z"] for r in rows if "clean_z" in r]
        if zs:
            lines.append(
                f"\nLargest robust z on clean runs: loss {max(z['loss_z'] for z in zs):.1f}, "
                f"grad norm {max(z['grad_z'] for z in zs):.1f} (spike thresholds: 6 and 6)."
            )
    return "\n".join(lines)


def _ratio(x: float) -> str:
    if math.isnan(x):
        return "–"
    return "diverged/stopped" if not math.isfinite(x) else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,shakespeare")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=None, help="cut every task's recipe to this many steps")
    parser.add_argument("--peak", type=float, default=None, help="the peak LR of every task (default: PEAKS)")
    parser.add_argument("--batch-size", type=int, default=None, help="every task's batch (default: its recipe's)")
    parser.add_argument("--out", type=Path, default=None, help="Also write every run as JSON here.")
    parser.add_argument(
        "--table-only", action="store_true", help="print the tables of the runs stored in --out, without training"
    )
    args = parser.parse_args()
    if args.table_only:
        if args.out is None or not args.out.is_file():
            parser.error("--table-only reads the runs stored in --out FILE (benchmarks/data/guard_faults.json)")
        print(summarize(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    runs: list[dict[str, Any]] = []
    for name in args.tasks.split(","):
        task = setup(name, args.steps, args.peak, args.batch_size)
        seeds = range(args.seeds if name == "digits" else max(1, args.seeds - 1))
        for seed in seeds:
            for fault in args.faults.split(","):
                for method in args.methods.split(","):
                    r = run(task, fault, method, seed)
                    runs.append(r)
                    print(
                        f"{name:11} seed {seed} {fault:9} {method:12} val {r['val_loss']} recovered {r['recovered']} "
                        f"events {r['events']} first {r['first_event']} {1000 * r['seconds_per_step']:.1f} ms/step",
                        flush=True,
                    )
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(runs, indent=1))
    print(summarize(runs))


if __name__ == "__main__":
    main()
