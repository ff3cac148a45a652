"""Per-step cost of the training guard against a loop that reads nothing back from the device.

Two character-level GPTs on tiny shakespeare (the `shakespeare` task's model and data, resized):
2 layers d=128 (batch 16 × 128) and 12 layers d=768 (batch 16 × 128 on CUDA; on CPU, where a step
of that takes tens of seconds, batch 2 × 128). Loops:

    bare     forward, backward, AdamW step, zero_grad: nothing read back
    item     bare + ``loss.item()`` every step (what most loops and loss-spike callbacks do)
    guard    bare + ``TorchGuard.step(loss)`` with its defaults (judged every step on CPU; on CUDA read
             every 10 steps, asynchronously), snapshots excluded (measured apart)
    guard16  the same with ``read_every=16`` on whatever device this is

On CUDA the guard loop also runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises
on any host-device synchronisation; the table says whether it raised. Snapshot cost (every
``snapshot_every`` = 50 steps by default) is measured separately and shown per step.

The pure state machine the guard runs on the host every step (`lrpilot.guard.update`) and the
doctor's fold over a log (`lrpilot.detect.scan`) are timed apart, per observation, on a synthetic
5,000-step loss curve (no model: what they cost is Python and small-array numpy).

    nice -n 10 python benchmarks/guard_overhead.py              # CPU here: ~10 min
    python benchmarks/guard_overhead.py --device cuda           # on a GPU machine
    python benchmarks/guard_overhead.py --state-machine-only    # the state machine alone: ~15 s
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from lrpilot import guard as core
from lrpilot.detect import scan
from lrpilot.guard import GuardConfig
from lrpilot.integrations.torch_guard import TorchGuard
from lrpilot.tasks import get_task


def make(layers: int, d: int, batch: int, ctx: int, device: str) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    """The shakespeare task's model and batches at this size (its recipe, batch size changed)."""
    base = get_task("shakespeare")
    task = dataclasses.replace(
        base, context=ctx, width=d, heads=max(4, d // 64), layers=layers, recipe=replace(base.recipe, batch_size=batch)
    )
    model = task.build_model(0).to(device)
    data = task.batches(0)
    batches = [tuple(t.to(device) for t in next(data)) for _ in range(32)]
    i = {"n": 0}

    def loss() -> torch.Tensor:
        b = batches[i["n"] % len(batches)]
        i["n"] += 1
        return task.loss(model, b)

    return model, loss


def timed(
    variant: str, model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int, device: str
) -> tuple[float, float]:
    """(seconds per step, seconds per step spent after backward) of `variant` over `steps` steps
    (after 3 untimed ones). The second number — the optimizer step, plus the guard where there is
    one — isolates the guard's own cost from the noise of the forward and backward passes."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    guard = None
    if variant.startswith("guard"):
        # the default read interval (1 on CPU, 10 on CUDA), snapshots pushed out of the timed window
        read = 16 if variant == "guard16" else (10 if device == "cuda" else 1)
        guard = TorchGuard(model, opt, config=GuardConfig(snapshot_every=10**6), read_every=read)
    tail = [0.0]

    def one() -> None:
        loss = loss_fn()
        loss.backward()
        t0 = time.perf_counter()
        if guard is not None:
            guard.step(loss)
        else:
            if variant == "item":
                loss.item()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        tail[0] += time.perf_counter() - t0

    for _ in range(3):
        one()
    tail[0] = 0.0
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    if guard is not None:
        guard.close()
    return seconds, tail[0] / steps


def sync_free(model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int) -> str:
    """Run guarded steps under sync debug mode "error": "yes" if nothing synchronised."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    guard = TorchGuard(model, opt)  # defaults: snapshots every 50 steps are part of what is checked
    for _ in range(20):  # past warm-up and a few reads, so the steady state is what is checked
        loss = loss_fn()
        loss.backward()
        guard.step(loss)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            loss = loss_fn()
            loss.backward()
            guard.step(loss)
    except RuntimeError as exc:
        return f"no: {str(exc).splitlines()[0][:80]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "yes"


def snapshot_seconds(model: nn.Module, loss_fn: Callable[[], torch.Tensor], device: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = loss_fn()
    loss.backward()
    opt.step()  # so the optimizer state exists
    guard = TorchGuard(model, opt)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    guard._take_snapshot()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    guard.close()
    return seconds


def state_machine(repeats: int, n: int = 5000) -> tuple[float, float]:
    """Median µs per observation of `lrpilot.guard.update` and `lrpilot.detect.scan` over a loss
    that decays with noise, one spike in it, and a grad norm (every detector runs on every step)."""
    rng = np.random.default_rng(0)
    losses = 2.3 * np.exp(-np.arange(n) / 800) + 0.05 + 0.02 * rng.standard_normal(n)
    losses[3 * n // 5] = 50.0
    norms = np.abs(1.0 + 0.2 * rng.standard_normal(n))
    config = GuardConfig.for_run(n)

    def update() -> None:
        state = core.init(config)
        for t in range(n):
            _, state = core.update(state, loss=float(losses[t]), grad_norm=float(norms[t]), lr=1e-3, step=t)

    def fold() -> None:
        scan(range(n), losses, norms)

    out = []
    for fn in (update, fold):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) / n * 1e6)
        out.append(statistics.median(samples))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--state-machine-only", action="store_true", help="time update and scan only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    update_us, scan_us = state_machine(args.repeats)
    print(f"per observation: lrpilot.guard.update {update_us:.0f} µs, lrpilot.detect.scan {scan_us:.0f} µs")
    if args.state_machine_only:
        return
    dev = args.device
    configs = {
        "small": ("2-layer d=128, batch 16×128", 2, 128, 16, 128, 60 if dev == "cpu" else 300),
        "large": (
            f"12-layer d=768, batch {16 if dev == 'cuda' else 2}×128",
            12,
            768,
            16 if dev == "cuda" else 2,
            128,
            6 if dev == "cpu" else 100,
        ),
    }
    rows = []
    for size in args.sizes.split(","):
        label, layers, d, batch, ctx, steps = configs[size]
        model, loss_fn = make(layers, d, batch, ctx, dev)
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in ("bare", "item", "guard", "guard16")}
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            for variant, samples in times.items():
                samples.append(timed(variant, model, loss_fn, steps, dev))
        med = {v: statistics.median(t[0] for t in ts) for v, ts in times.items()}
        tail = {v: statistics.median(t[1] for t in ts) for v, ts in times.items()}
        snap = snapshot_seconds(model, loss_fn, dev)
        sync = sync_free(model, loss_fn, 120) if dev == "cuda" else "n/a (no GPU)"
        rows.append((label, med, tail, snap, sync))
        print(
            label, {k: f"{1000 * v:.2f} ms" for k, v in med.items()}, {k: f"{1000 * v:.3f} ms" for k, v in tail.items()}
        )
        print(f"snapshot {1000 * snap:.0f} ms", flush=True)

    def pct(x: float, base: float) -> str:
        return f"{100 * (x / base - 1):+.1f} %"

    print(
        f"\ndevice: {dev} ({torch.get_num_threads()} thread(s)), torch {torch.__version__}, median of {args.repeats}\n"
    )
    print(
        "| model | bare step | with `loss.item()` | with the guard | guard, read every 16 "
        "| guard's own time / step | snapshot (every 50 steps) | sync-free |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, med, tail, snap, sync in rows:
        b = med["bare"]
        own = tail["guard"] - tail["bare"]
        print(
            f"| {label} | {1000 * b:.1f} ms | {pct(med['item'], b)} | {pct(med['guard'], b)} "
            f"| {pct(med['guard16'], b)} | {1000 * own:.2f} ms = {100 * own / b:.2f} % "
            f"| {1000 * snap:.0f} ms = {100 * snap / (50 * b):.2f} % | {sync} |"
        )


if __name__ == "__main__":
    main()
