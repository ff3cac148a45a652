"""Per-step cost of the training guard against a loop that reads nothing back from the device.

Two character-level GPTs on tiny shakespeare (the `shakespeare` task's model and data, resized):
2 layers d=128 (batch 16 × 128) and 12 layers d=768 (batch 16 × 128 on CUDA; on CPU, where a step
of that takes tens of seconds, batch 2 × 128). Loops:

    bare         forward, backward, AdamW step, zero_grad: nothing read back
    item         bare + ``loss.item()`` every step (what most loops and loss-spike callbacks do)
    guard        bare + ``TorchGuard.step(loss)`` with its defaults (judged every step on CPU; on CUDA
                 read every 10 steps, asynchronously), snapshots excluded (measured apart)
    guard16      the same with ``read_every=16``
    bare-fused, guard-fused   (CUDA) the same with fused AdamW, which the guard skips through exactly

Steps are timed with no synchronisation inside the timed window; each loop's host time after
``backward()`` is timed too (on CUDA: the time to launch that work, what a step paced by its
launches pays). On CUDA the script also counts kernels per step (torch's profiler) and runs the
guard under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any host-device
synchronisation, with foreach AdamW, fused AdamW and clipping. A snapshot (every ``snapshot_every``
= 50 steps by default) is timed apart, into buffers reused as in a run, and shown per step.

The pure state machine the guard runs on the host every step (`lrpilot.guard.update`) and the
doctor's fold over a log (`lrpilot.detect.scan`) are timed apart, per observation, on a synthetic
5,000-step loss curve (no model: what they cost is Python and small-array numpy).

    nice -n 10 python benchmarks/guard_overhead.py              # CPU here: ~10 min
    python benchmarks/guard_overhead.py --device cuda --json out.json   # on a GPU machine: ~4 min
    python benchmarks/guard_overhead.py --state-machine-only    # the state machine alone: ~15 s
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

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


VARIANTS = ("bare", "item", "guard", "guard16", "bare-fused", "guard-fused")


def optimizer(variant: str, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW, fused for the ``-fused`` variants (the guard then skips through its ``found_inf``),
    else torch's default implementation for the device (foreach on CUDA)."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=variant.endswith("-fused") or None)


def guarded(variant: str, model: nn.Module, opt: torch.optim.Optimizer, device: str) -> TorchGuard | None:
    """The guard of a ``guard*`` variant: its default read interval (1 on CPU, 10 on CUDA, as for
    the default 50-step snapshots) or 16, snapshots pushed out of the timed window."""
    if not variant.startswith("guard"):
        return None
    read = 16 if variant == "guard16" else (10 if device == "cuda" else 1)
    return TorchGuard(model, opt, config=GuardConfig(snapshot_every=10**6), read_every=read)


def timed(
    variant: str, model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int, device: str
) -> tuple[float, float]:
    """(seconds per step, host seconds per step spent after backward) of `variant` over `steps`
    steps (after 3 untimed ones), synchronising only before and after them. The second number — the
    optimizer step, plus the guard where there is one — is compute time on CPU; on CUDA it is the
    host's time to launch that work, which is what a small model's step, paced by its launches, pays."""
    opt = optimizer(variant, model)
    guard = guarded(variant, model, opt, device)
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


def kernels_per_step(variant: str, model: nn.Module, loss_fn: Callable[[], torch.Tensor], device: str) -> float:
    """GPU kernels and copies launched per step (torch's profiler over 20 steps, reads included)."""
    from torch.profiler import ProfilerActivity, profile

    opt = optimizer(variant, model)
    guard = guarded(variant, model, opt, device)
    steps = 20

    def one() -> None:
        loss = loss_fn()
        loss.backward()
        if guard is not None:
            guard.step(loss)
        else:
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(10):
        one()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            one()
        torch.cuda.synchronize()
    if guard is not None:
        guard.close()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA) / steps


def sync_free(model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int, **options: Any) -> str:
    """Run guarded steps under sync debug mode "error": "yes" if nothing synchronised.
    `options`: ``fused`` (the optimizer), ``max_grad_norm`` (the guard clips)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=options.pop("fused", None))
    guard = TorchGuard(model, opt, **options)  # snapshots every 50 steps are part of what is checked
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
    guard.close()
    return "yes"


def snapshot_seconds(model: nn.Module, loss_fn: Callable[[], torch.Tensor], device: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = loss_fn()
    loss.backward()
    opt.step()  # so the optimizer state exists
    guard = TorchGuard(model, opt)
    guard._spare = guard._take_snapshot()  # as a pruned snapshot's: its buffers are reused, as in a run
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


def pct(variant: dict[str, Any] | None) -> str:
    """A variant's median overhead over its bare loop, and the range over the repeats."""
    if variant is None:
        return "–"
    lo, hi = variant["overhead_pct_range"]
    return f"{variant['overhead_pct']:+.1f} % ({lo:+.1f} … {hi:+.1f})"


def measure(size: str, dev: str, repeats: int) -> dict[str, Any]:
    """Every variant on one model size, interleaved `repeats` times; on CUDA also the kernels per
    step and the sync-free checks."""
    gpu = dev == "cuda"
    label, layers, d, batch, steps = {
        "small": ("2-layer d=128, batch 16×128", 2, 128, 16, 600 if gpu else 60),
        "large": (f"12-layer d=768, batch {16 if gpu else 2}×128", 12, 768, 16 if gpu else 2, 100 if gpu else 6),
    }[size]
    model, loss_fn = make(layers, d, batch, 128, dev)
    variants = VARIANTS if gpu else VARIANTS[:4]  # CPU: fused AdamW is no common choice there
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved, so drift hits every variant alike
        for variant, samples in times.items():
            samples.append(timed(variant, model, loss_fn, steps, dev))
    row: dict[str, Any] = {"model": label, "steps": steps, "variants": {}}
    for v, ts in times.items():
        base = times["bare-fused" if v.endswith("-fused") else "bare"]
        ratios = [t[0] / b[0] - 1 for t, b in zip(ts, base, strict=True)]  # paired by repeat
        row["variants"][v] = {
            "step_ms": 1000 * statistics.median(t[0] for t in ts),
            "host_after_backward_ms": 1000 * statistics.median(t[1] for t in ts),
            "overhead_pct": 100 * statistics.median(ratios),
            "overhead_pct_range": [100 * min(ratios), 100 * max(ratios)],
        }
    row["snapshot_ms"] = 1000 * snapshot_seconds(model, loss_fn, dev)
    if gpu:
        row["kernels_per_step"] = {v: kernels_per_step(v, model, loss_fn, dev) for v in variants if v != "item"}
        row["sync_free"] = {
            "foreach AdamW": sync_free(model, loss_fn, 120),
            "fused AdamW": sync_free(model, loss_fn, 120, fused=True),
            "clipping (max_grad_norm=1)": sync_free(model, loss_fn, 120, max_grad_norm=1.0),
        }
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| model | optimizer | bare step | `loss.item()` | guard | guard, read every 16 "
        "| guard's host time after backward | snapshot (every 50 steps) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        v = row["variants"]
        for opt_name, bare, guard in (("AdamW", "bare", "guard"), ("AdamW fused", "bare-fused", "guard-fused")):
            if bare not in v:
                continue
            plain = bare == "bare"
            own = v[guard]["host_after_backward_ms"] - v[bare]["host_after_backward_ms"]
            b = v[bare]["step_ms"]
            print(
                f"| {row['model']} | {opt_name} | {b:.2f} ms | {pct(v['item'] if plain else None)} | {pct(v[guard])} "
                f"| {pct(v['guard16'] if plain else None)} | {own:+.3f} ms = {100 * own / b:+.2f} % "
                f"| {row['snapshot_ms']:.1f} ms = {100 * row['snapshot_ms'] / (50 * b):.2f} % |"
            )
    for row in rows:
        if "sync_free" in row:
            print(f"{row['model']}: kernels per step {row['kernels_per_step']}; sync-free {row['sync_free']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--state-machine-only", action="store_true", help="time update and scan only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    update_us, scan_us = state_machine(args.repeats)
    print(f"per observation: lrpilot.guard.update {update_us:.0f} µs, lrpilot.detect.scan {scan_us:.0f} µs")
    if args.state_machine_only:
        return
    rows = []
    for size in args.sizes.split(","):
        rows.append(measure(size, args.device, args.repeats))
        print(json.dumps(rows[-1], indent=1, ensure_ascii=False), flush=True)
    env = f"{args.device} ({torch.get_num_threads()} thread(s)), torch {torch.__version__}"
    if args.device == "cuda":
        env += f", {torch.cuda.get_device_name()}"
    print(f"\ndevice: {env}, median of {args.repeats} interleaved repeats\n")
    print_table(rows)
    if args.json:
        out = {"environment": env, "repeats": args.repeats, "rows": rows}
        out["state_machine_us"] = {"update": update_us, "scan": scan_us}
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
