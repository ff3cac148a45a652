"""Writers of training logs in each format the doctor reads, from the same arrays."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from tests.detect import curves


def run_arrays(n: int = 400, *, seed: int = 0, nan_from: int | None = None, every: int = 1) -> dict[str, np.ndarray]:
    """A healthy-looking run logged every `every` steps (steps `every`, 2·`every`, ...), warmup + cosine LR,
    as a Trainer logs it: step N counts N updates done, with the LR update N used (the schedule's at N - 1)."""
    steps = (np.arange(n) + 1) * every
    loss = curves.clean(n=n, seed=seed)
    if nan_from is not None:
        loss[nan_from:] = math.nan
    total = n * every
    warm = total // 10
    t = steps.astype(np.float64) - 1
    lr = np.where(
        t < warm, 3e-4 * t / warm, 3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + np.cos(np.pi * (t - warm) / (total - warm)))
    )
    return {"step": steps, "loss": loss, "lr": lr, "grad_norm": curves.clean_grads(n=n, seed=seed + 1)}


def write_trainer_state(
    path: Path, run: dict[str, np.ndarray], eval_every: int = 0, extra: dict[str, object] | None = None
) -> Path:
    """A trainer_state.json as transformers writes it (`extra`: more top-level fields, such as
    ``train_batch_size`` and ``logging_steps``)."""
    history: list[dict[str, float | int]] = []
    for i, step in enumerate(run["step"]):
        history.append(
            {
                "epoch": float(i) / 100,
                "grad_norm": float(run["grad_norm"][i]),
                "learning_rate": float(run["lr"][i]),
                "loss": float(run["loss"][i]),
                "step": int(step),
            }
        )
        if eval_every and (i + 1) % eval_every == 0:
            history.append({"epoch": float(i) / 100, "eval_loss": float(run["loss"][i]) + 0.1, "step": int(step)})
    history.append({"epoch": 4.0, "step": int(run["step"][-1]), "train_loss": 1.23, "train_runtime": 10.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps writes NaN as NaN, as transformers does for a NaN loss
    state = {"global_step": int(run["step"][-1]), **(extra or {}), "log_history": history}
    path.write_text(json.dumps(state, indent=2))
    return path


def write_csv(path: Path, run: dict[str, np.ndarray], columns: tuple[str, ...] = ("step", "loss", "lr")) -> Path:
    keys = {"learning_rate": "lr", "train_loss": "loss"}
    names = [keys.get(c.lower(), c.lower()) for c in columns]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i in range(run["step"].size):
            writer.writerow([run[name][i] for name in names])
    return path


def write_jsonl(path: Path, run: dict[str, np.ndarray]) -> Path:
    with path.open("w") as fh:
        for i in range(run["step"].size):
            row = {"step": int(run["step"][i]), "loss": float(run["loss"][i]), "lr": float(run["lr"][i])}
            fh.write(json.dumps(row) + "\n")
    return path


def write_lightning_metrics(path: Path, run: dict[str, np.ndarray], val_every: int = 50) -> Path:
    """Lightning CSVLogger's layout: epoch, step, then metrics; train and val rows interleaved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "lr-AdamW", "step", "train_loss", "val_loss"])
        for i in range(run["step"].size):
            step = int(run["step"][i]) - 1
            writer.writerow([0, run["lr"][i], step, run["loss"][i], ""])
            if (i + 1) % val_every == 0:
                writer.writerow([0, "", step, "", float(run["loss"][i]) + 0.1])
    return path


def write_tensorboard(logdir: Path, run: dict[str, np.ndarray]) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as writer:
        for i in range(run["step"].size):
            step = int(run["step"][i])
            writer.add_scalar("train/loss", float(run["loss"][i]), step)
            writer.add_scalar("train/learning_rate", float(run["lr"][i]), step)
            writer.add_scalar("train/grad_norm", float(run["grad_norm"][i]), step)
    return logdir
