"""A real, tiny run for the report's tests, numpy only: an MLP on Gaussian blobs trained with Adam.

A range test on it gives a real `FinderResult`, the rules give a real `Recommendation`, the pure
guard watches the training loss (one batch is corrupted to NaN, so it acts), and the per-layer
‖Δw‖ / ‖w‖ is measured around real Adam updates. Everything runs in well under a second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from lrpilot import guard
from lrpilot.finder import FinderResult, RangeTestMonitor, RangeTestRecord, analyze, ramp_schedule
from lrpilot.report import LayerStats, RunRecord, TrainingHistory
from lrpilot.rules import recommend
from lrpilot.schedules import Schedule

Array = npt.NDArray[np.float64]
LAYERS = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")
TOTAL_STEPS = 240
BATCH = 32


def blobs(seed: int = 0, n: int = 1200) -> tuple[Array, npt.NDArray[np.int64], Array, npt.NDArray[np.int64]]:
    """Four overlapping Gaussian classes in 16 dimensions, split 1000 / 200."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 0.45, size=(4, 16))
    y = rng.integers(0, 4, size=n)
    x = centers[y] + rng.normal(0.0, 1.0, size=(n, 16))
    return x[:1000], y[:1000], x[1000:], y[1000:]


def init_params(seed: int = 0) -> dict[str, Array]:
    rng = np.random.default_rng(seed + 1)
    return {
        "hidden.weight": rng.normal(0.0, 1 / 4, size=(16, 32)),
        "hidden.bias": np.full(32, 0.1),
        "out.weight": rng.normal(0.0, 1 / math.sqrt(32), size=(32, 4)),
        "out.bias": np.full(4, 0.1),
    }


def loss_and_grads(p: dict[str, Array], x: Array, y: npt.NDArray[np.int64]) -> tuple[float, dict[str, Array]]:
    """Softmax cross-entropy of a one-hidden-layer ReLU network, and its gradients."""
    h = np.maximum(x @ p["hidden.weight"] + p["hidden.bias"], 0.0)
    logits = h @ p["out.weight"] + p["out.bias"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(probs[np.arange(y.size), y] + 1e-12)))
    d_logits = probs.copy()
    d_logits[np.arange(y.size), y] -= 1.0
    d_logits /= y.size
    d_h = (d_logits @ p["out.weight"].T) * (h > 0)
    grads = {
        "out.weight": h.T @ d_logits,
        "out.bias": d_logits.sum(axis=0),
        "hidden.weight": x.T @ d_h,
        "hidden.bias": d_h.sum(axis=0),
    }
    return loss, grads


def accuracy(p: dict[str, Array], x: Array, y: npt.NDArray[np.int64]) -> float:
    h = np.maximum(x @ p["hidden.weight"] + p["hidden.bias"], 0.0)
    return float(np.mean(np.argmax(h @ p["out.weight"] + p["out.bias"], axis=1) == y))


@dataclass
class Adam:
    """Adam with bias correction (β = 0.9, 0.999); `step` returns each layer's ‖Δw‖ / ‖w‖."""

    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    t: int = 0

    def step(self, p: dict[str, Array], grads: dict[str, Array], lr: float) -> list[float]:
        self.t += 1
        ratios = []
        for name in LAYERS:
            g = grads[name]
            self.m[name] = 0.9 * self.m.get(name, np.zeros_like(g)) + 0.1 * g
            self.v[name] = 0.999 * self.v.get(name, np.zeros_like(g)) + 0.001 * g * g
            m_hat = self.m[name] / (1 - 0.9**self.t)
            v_hat = self.v[name] / (1 - 0.999**self.t)
            delta = -lr * m_hat / (np.sqrt(v_hat) + 1e-8)
            ratios.append(float(np.linalg.norm(delta) / max(np.linalg.norm(p[name]), 1e-12)))
            p[name] = p[name] + delta
        return ratios


def batches(x: Array, y: npt.NDArray[np.int64], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(y.size)
        for i in range(0, y.size - BATCH + 1, BATCH):
            yield x[order[i : i + BATCH]], y[order[i : i + BATCH]]


def range_test(num_steps: int = 100) -> FinderResult:
    """Smith's range test on a fresh model: the LR rises 1e-5 → 10 until the loss blows up."""
    x, y, _, _ = blobs()
    p, opt, data = init_params(), Adam(), batches(x, y, seed=7)
    ramp = ramp_schedule(1e-5, 10.0, num_steps)
    monitor, lrs, reason = RangeTestMonitor(), [], "completed"
    for i in range(num_steps):
        lr = float(ramp(i))
        loss, grads = loss_and_grads(p, *next(data))
        lrs.append(lr)
        stop = monitor.update(loss)
        if stop is not None:
            reason = stop
            break
        opt.step(p, grads, lr)
    record = RangeTestRecord(
        lrs=lrs,
        losses=monitor.losses,
        smoothed=monitor.smoothed,
        steps=len(lrs),
        num_steps=num_steps,
        stop_reason=reason,
        start_lr=1e-5,
        end_lr=10.0,
    )
    return analyze([record], total_steps=TOTAL_STEPS)


def train(
    schedule: Schedule, *, nan_at: int | None = 90
) -> tuple[TrainingHistory, LayerStats, list[dict[str, Any]], dict[str, Array]]:
    """Train with `schedule` under the pure guard; batch `nan_at` is corrupted (its loss is NaN)."""
    x, y, xv, yv = blobs()
    p, opt, data = init_params(), Adam(), batches(x, y, seed=3)
    state, audit = guard.init(), guard.AuditLog()
    history = TrainingHistory(steps=[], loss=[], lr=[], eval_metrics={"accuracy": []})
    stats = LayerStats(names=list(LAYERS), steps=[], ratios=[])
    for step in range(TOTAL_STEPS):
        lr = float(schedule(step))
        loss, grads = loss_and_grads(p, *next(data))
        if step == nan_at:
            loss = math.nan
        action, state = guard.update(state, loss=loss, lr=lr, step=step)
        audit.add(action)
        applied = state.effective_lr(lr, step)
        history.steps.append(step)
        history.loss.append(loss)
        history.lr.append(applied)
        if action.applies_update:
            ratios = opt.step(p, grads, applied)
            if step % 10 == 0:
                stats.steps.append(step)
                stats.ratios.append(ratios)
        if (step + 1) % 40 == 0:
            history.eval_steps.append(step + 1)
            history.eval_loss.append(loss_and_grads(p, xv, yv)[0])
            history.eval_metrics["accuracy"].append(accuracy(p, xv, yv))
    return history, stats, audit.records, p


def realistic_record(title: str = "blobs MLP, Adam") -> RunRecord:
    """The whole pipeline on the tiny task: rules, range test, guarded training, evaluation."""
    clock = time.perf_counter()
    n_params = sum(a.size for a in init_params().values())
    rec = recommend(n_params, "pretraining", optimizer="adam", batch_size=BATCH, steps=TOTAL_STEPS)
    t_rec = time.perf_counter() - clock
    clock = time.perf_counter()
    found = range_test()
    t_find = time.perf_counter() - clock
    assert found.schedule is not None
    clock = time.perf_counter()
    history, stats, actions, params = train(found.schedule)
    t_train = time.perf_counter() - clock
    _, _, xv, yv = blobs()
    val_loss = loss_and_grads(params, xv, yv)[0]
    check = rec.check(found.peak_lr)
    return RunRecord(
        title=title,
        task="MLP 16→32→4 on 4 Gaussian blobs (numpy, Adam, batch 32)",
        total_steps=TOTAL_STEPS,
        history=history,
        schedule=found.schedule.to_string(),
        recommendation=rec.to_dict(),
        finder=found.to_dict(),
        guard_actions=actions,
        layer_stats=stats,
        metrics={"val_loss": val_loss, "val_accuracy": accuracy(params, xv, yv)},
        timings={"recommend": t_rec, "find": t_find, "train": t_train},
        notes=[] if check.agrees else [check.message],
    )
