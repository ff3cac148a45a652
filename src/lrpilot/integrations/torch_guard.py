"""The training guard in a plain PyTorch loop: detect on the device, act on the host, sync rarely.

::

    guard = TorchGuard(model, optimizer, schedule=Cosine(peak=3e-4, total_steps=10_000, warmup_steps=500))
    for batch in batches:                        # any endless iterator; the guard owns the step count
        if guard.step_count >= 10_000:
            break
        loss = loss_fn(model(batch))
        loss.backward()
        guard.step(loss)                         # sets the LR, steps (or skips), rolls back, zero_grads

**No host-device sync per step.** Each step the guard computes the gradient norm and a 0/1 "keep"
factor on the device (0 for a non-finite loss or grad norm, or one above the spike thresholds of the
last read), makes the update a no-op where it is 0 (a fused optimizer's ``found_inf``, the same
device tensor GradScaler uses, for an exact skip; otherwise the gradients are multiplied by it, as
OLMo-core's 0/1 step factor does), and writes (loss, grad norm, keep) into a device buffer. Every
`read_every` steps (10 by default on CUDA) the buffer is copied to the host (asynchronously: a
pinned buffer and an event polled each step) and the pure guard (`lrpilot.guard.update`) judges
those steps in order; a rollback restores the last confirmed snapshot (that one synchronises). A NaN
gradient times 0 is still NaN, so with a non-fused optimizer a non-finite step poisons the update and
is undone by that rollback a few steps later; use a fused optimizer (``fused=True``) for exact skips.
The device has no thresholds before the first window the detectors judge has been read, so a spike
in it is applied; the host's later "skip" is then recorded with ``"applied": true`` (`late_skips`).
On CPU there is no device to wait for, so the default is to judge every step before its update
(exact skips for any optimizer). On an H200 the CUDA path ran under ``torch.cuda.set_sync_debug_mode
("error")`` without raising (``tests/integrations/test_cuda.py``); what it costs a step is in
``benchmarks/guard_overhead.py``: about ten small kernels and their launches, which a model whose
step is paced by the host's launches feels (+10 % on a 2-layer char-GPT) and a large one does not
(+0.5 % with fused AdamW on a 12-layer one).

**Snapshots** (the model's trainable parameters and buffers — frozen parameters never change, and
in a LoRA run they are nearly all of the model —, optimizer, torch scheduler, GradScaler, RNG, data
position if given) are taken every `GuardConfig.snapshot_every` steps into host memory (pinned,
async on CUDA), onto the device, or into a directory for models too large for either.
**Distributed**: the keep factors and the read buffer are all-reduced (MIN of keep factors, MAX of
grad norms, mean loss), so every rank judges the same numbers and skips or rolls back at the same
step.
"""

from __future__ import annotations

import copy
import math
import random
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrpilot import guard as core
from lrpilot._validate import step_count
from lrpilot.detect import spike_thresholds
from lrpilot.guard import Action, AuditLog, GuardConfig, GuardState
from lrpilot.schedules import Schedule

__all__ = ["GuardGaveUpError", "TorchGuard", "total_grad_norm"]


class GuardGaveUpError(RuntimeError):
    """The guard gave up (see the message); the last good state has been restored."""

    def __init__(self, action: Action) -> None:
        super().__init__(action.reason)
        self.action = action


def total_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients as a device tensor (no sync), foreach kernels per device."""
    if not grads:
        return torch.zeros(())
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    first = grads[0].device
    with torch.no_grad():  # no per-gradient detach: a dispatch each, which a small GPU step feels
        if len(by_device) == 1:  # the usual case: nothing to move
            norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))]
        else:
            norms = [
                torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs))).to(first) for gs in by_device.values()
            ]
        total: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms)) if len(norms) > 1 else norms[0]
    return total


def _to(obj: Any, device: torch.device | str | None, *, pin: bool = False, spare: Any = None) -> Any:
    """A deep copy of `obj` with every tensor copied to `device` (pinned + async for CUDA → host),
    or where it is (`device` None: an optimizer's step counts stay on the host, as it keeps them).

    `spare` is a discarded copy of the same structure whose tensors are reused where shape, dtype
    and device match: writing into memory that is already allocated (and, for pinned memory,
    registered) is several times faster than fresh allocations, which made a 12-layer model's
    snapshot cost 5 % of its step time on CPU.
    """
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        target = torch.device("cpu") if pin and t.is_cuda else t.device if device is None else torch.device(device)
        if (
            isinstance(spare, torch.Tensor)
            and spare.shape == t.shape
            and spare.dtype == t.dtype
            and spare.device.type == target.type
        ):
            return spare.copy_(t, non_blocking=t.is_cuda and pin)
        if pin and t.is_cuda:
            out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
            return out.copy_(t, non_blocking=True)
        return t.to(target, copy=True)
    if isinstance(obj, dict):
        old = spare if isinstance(spare, dict) else {}
        return {k: _to(v, device, pin=pin, spare=old.get(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        olds = spare if isinstance(spare, list | tuple) and len(spare) == len(obj) else [None] * len(obj)
        return type(obj)(_to(v, device, pin=pin, spare=o) for v, o in zip(obj, olds, strict=True))
    if obj is None or isinstance(obj, bool | int | float | str):  # immutable: what deepcopy hands back
        return obj
    return copy.deepcopy(obj)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class TorchGuard:
    """Guards a PyTorch training loop (see the module docstring for the loop and the mechanics).

    The first snapshot (model, optimizer, random generators) is taken here, when the guard is
    built: seed before building it, so that a rollback to it restores your seeded generators (torch
    seeds its global generator at random per process, and `lrpilot fit` builds its guard in its
    seeded block for this reason).

    Args:
        model, optimizer: what is trained, and snapshotted.
        config: the guard's policy and thresholds.
        schedule: an lrpilot schedule; the guard sets every param group's LR to ``schedule(step)``
            (times the group's initial ratio to the largest group) times its own adjustment. Without
            it, the LR in the param groups (set by you or `scheduler`) is multiplied for the update
            and put back.
        scheduler: a torch LR scheduler; the guard steps it once per step and snapshots it.
        scaler: a `torch.amp.GradScaler`; the guard unscales, steps and updates it. A non-finite
            gradient with a finite loss is then the scaler's to skip, not a fault.
        data: anything with ``state_dict``/``load_state_dict`` (a sampler, a StatefulDataLoader):
            restored on rollback, so the same batches are replayed. Without it the data just goes on
            (the rewound steps see fresh batches, as PaLM's restarts skipped the batches at a spike).
        read_every: steps between reads of the device verdicts (default: 1 on CPU; on CUDA the
            largest divisor of `GuardConfig.snapshot_every` up to 16, i.e. 10 for the default 50).
        snapshot_to: ``"cpu"`` (host memory), ``"device"`` (fast, needs memory) or a directory.
        max_grad_norm: also clip gradients to this norm (the guard computes the norm anyway); the
            detectors then judge the clipped norm, that of the gradient the update applies.
        audit: a path for the JSONL audit log (the records are also kept in `audit.records`).
        step: the step the run is at (resuming).
        process_group: the group to agree in; default: the world, when torch.distributed is initialised.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        config: GuardConfig | None = None,
        schedule: Schedule | None = None,
        scheduler: Any = None,
        scaler: Any = None,
        data: Any = None,
        read_every: int | None = None,
        snapshot_to: str | Path = "cpu",
        max_grad_norm: float | None = None,
        audit: str | Path | None = None,
        step: int = 0,
        process_group: Any = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.schedule, self.scheduler, self.scaler, self.data = schedule, scheduler, scaler, data
        self.config = config or GuardConfig()
        self.max_grad_norm = max_grad_norm
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        if read_every is None:  # CUDA: the largest divisor of snapshot_every up to 16 (10 for 50); CPU: 1
            k = self.config.snapshot_every
            read_every = max(d for d in range(1, 17) if k % d == 0) if self.device.type == "cuda" else 1
        self.read_every = step_count("TorchGuard", "read_every", read_every, 1)
        if self.config.snapshot_every % self.read_every:
            raise ValueError(
                f"TorchGuard: config.snapshot_every ({self.config.snapshot_every}) must be a multiple of "
                f"read_every ({self.read_every}), so snapshots are taken where verdicts are read"
            )
        self._snapshot_to = snapshot_to
        self._snap_dir: Path | None = None
        if snapshot_to not in ("cpu", "device"):
            self._snap_dir = Path(snapshot_to)
            self._snap_dir.mkdir(parents=True, exist_ok=True)
        top = max((float(g["lr"]) for g in optimizer.param_groups), default=0.0)
        self._ratios = [float(g["lr"]) / top if top > 0 else 1.0 for g in optimizer.param_groups]
        self._group = None
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1:
            self._group = process_group or dist.group.WORLD
        self.audit = AuditLog(audit)
        self.history_steps: list[int] = []
        self.history_loss: list[float] = []
        self.history_lr: list[float] = []
        self.device_skips = 0
        self.late_skips = 0
        self._fused = bool(getattr(optimizer, "_step_supports_amp_scaling", False)) and scaler is None
        self.step_count = step
        self.state: GuardState = core.init(self.config, step=step)
        self._spare: Any = None
        self._snapshots: dict[int, Any] = {step: self._take_snapshot()}
        # (loss, grad norm) above these limits is flagged on the device: the spike thresholds of the
        # last read, nudged up one float so that `value < limit` is `finite and value <= threshold`
        self._limits = torch.full((2,), math.inf, device=self.device)
        self._buffer = torch.zeros((self.read_every, 3), device=self.device)  # rows: loss, grad norm, keep
        self._values_at = [row[:2] for row in self._buffer]  # views made once: slicing is a dispatch
        self._keep_at = [row[2] for row in self._buffer]  # 1.0 if the device applied the update
        self._meta: list[tuple[int, float]] = []  # (step, schedule LR) of the records in the buffer
        self._pending: list[tuple[torch.Tensor, Any, list[tuple[int, float]]]] = []

    # ------------------------------------------------------------------ the per-step call
    def step(self, loss: torch.Tensor, *, grad_norm: torch.Tensor | None = None) -> Action | None:
        """After ``loss.backward()``: judge, apply or skip the update, zero the grads, and act on
        whatever verdicts arrived. Returns the action of the step judged now (None when the verdict
        is still on its way, in delayed mode).

        `grad_norm`: the total gradient norm if you already have it (``clip_grad_norm_`` returns
        it; give the *unclipped* norm), which saves the guard a pass over the gradients.
        """
        if self.read_every > 1:
            self._step_delayed(loss, grad_norm)
            return None
        t = self.step_count
        lr_in = self._lr_in(t)
        action = self._judge_now(loss, grad_norm, lr_in)
        if action.kind == "rollback":
            return action
        if action.applies_update:
            with self.lr_applied(lr_in, t):
                self._optimizer_step()
        elif self.scaler is not None:
            self.scaler.update()
        self.commit(action)
        return action

    def judge(self, loss: torch.Tensor, *, grad_norm: torch.Tensor | None = None) -> Action:
        """Judge the current step now, before its update (one sync): the building block of `step`
        and of the trainer callbacks, which then apply the update their own way and `commit`.

        A rollback or give-up restores the snapshot here (and zeroes the gradients); a give-up
        raises `GuardGaveUpError` after restoring.
        """
        return self._judge_now(loss, grad_norm, self._lr_in(self.step_count))

    def _judge_now(self, loss: torch.Tensor, grad_norm: torch.Tensor | None, lr_in: float) -> Action:
        """`judge`, given the step's schedule LR `lr_in` (`step` needs it again for the update)."""
        if self.state.gave_up:
            raise GuardGaveUpError(Action("give_up", self.step_count, reason="the guard gave up earlier"))
        t = self.step_count
        loss_d, gn, grads, factor = self._measure(loss, grad_norm)
        if self._group is None:  # both values in one read (one sync on a GPU)
            values = [*torch.stack([loss_d, gn]).tolist(), 1.0]
        else:  # every rank judges the same numbers
            rows = torch.stack([loss_d, gn, torch.ones((), device=self.device)]).reshape(1, 3)
            values = self._agree(rows).tolist()[0]
        action = self._judge(t, lr_in, values)
        if factor is not None and float(factor) < 1.0:  # read after the verdict's sync: no extra wait
            torch._foreach_mul_(grads, factor)
        if action.kind in ("rollback", "give_up"):
            if self.scaler is not None:  # close the step it unscaled, or the next unscale_ raises; the
                self.scaler.update()  # snapshot's scale comes back with the rest
            self._restore(action, next_step=t + 1)
        return action

    def external_update(self, action: Action) -> AbstractContextManager[None]:
        """For trainers that step the optimizer themselves (Hugging Face, Lightning): the block to
        run their ``optimizer.step()`` in. It holds the guard's LR for this step; for a step the
        guard rejected, the gradients are zeroed now and the block holds LR 0, so the update is a
        no-op whatever the optimizer (weight decay included)."""
        noop = not action.applies_update
        if noop:
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()
        return self.lr_applied(self._lr_in(self.step_count), self.step_count, zero=noop)

    def commit(self, action: Action) -> None:
        """After the step's update (applied or not): zero the grads, step the scheduler, count the
        step, and take the snapshot the guard asked for."""
        t = self.step_count
        self._after_step()
        if action.snapshot:
            self._snapshots[t + 1] = self._take_snapshot()
        self._prune()

    def _measure(
        self, loss: torch.Tensor, grad_norm: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """(loss, grad norm, grads, clip factor) on the device, after unscaling. The caller clips
        (multiplies the grads by the factor; None: no clipping): a caller that reads the factor
        anyway can skip a factor of exactly 1, a no-op pass over every gradient (1 % of a fully
        fine-tuned MiniLM's CPU step).

        With clipping, the grad norm returned (and judged) is the clipped one, the norm of the
        gradient the optimizer applies: a skip keeps an outsized update out of the weights and
        Adam's moments, and a clipped gradient makes none. A classifier's grad norm grows several
        times over as it grows confident (one confidently wrong example in a small batch no longer
        cancels out), which the raw norm's spike test read as spikes: a LoRA fine-tune at batch 16
        rolled back twice on clipped steps (`benchmarks/fit_user_path.py`, seed 2). A non-finite
        norm stays non-finite (inf × 0 is NaN)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        gn = total_grad_norm(grads) if grad_norm is None else torch.as_tensor(grad_norm)
        loss_d = loss.detach() if loss.requires_grad else loss  # Python checks first: each call is a dispatch
        if loss_d.dim():
            loss_d = loss_d.reshape(())
        if gn.dtype != torch.float32 or gn.device != self.device:
            gn = gn.to(self.device, torch.float32)
        if loss_d.dtype != torch.float32 or loss_d.device != self.device:
            loss_d = loss_d.to(self.device, torch.float32)
        factor = None
        if self.max_grad_norm is not None and grads:
            factor = torch.clamp(self.max_grad_norm / (gn + 1e-6), max=1.0)
            gn = gn * factor
        return loss_d, gn, grads, factor

    def _step_delayed(self, loss: torch.Tensor, grad_norm: torch.Tensor | None = None) -> None:
        """Flag on the device, mask the update, record; read the verdicts every `read_every` steps."""
        if self.state.gave_up:
            raise GuardGaveUpError(Action("give_up", self.step_count, reason="the guard gave up earlier"))
        t = self.step_count
        lr_in = self._lr_in(t)
        # Each torch call below is a dispatch (tens of µs of host time on a GPU server's CPU) and a
        # kernel: a small model's GPU step is paced by the host's launches, so they are few.
        with torch.no_grad():
            loss_d, gn, grads, factor = self._measure(loss, grad_norm)
            if factor is not None:  # on the device, unread: no sync
                torch._foreach_mul_(grads, factor)
            values, keep = self._values_at[len(self._meta)], self._keep_at[len(self._meta)]
            torch.stack([loss_d, gn], out=values)  # straight into the read buffer
            if self.scaler is None:  # 1.0 if both are below their limits (so finite), else 0.0
                torch.prod(values < self._limits, 0, dtype=torch.float32, out=keep)
            else:  # an inf grad is the scaler's to skip
                keep.copy_((values[0] < self._limits[0]) & (~torch.isfinite(gn) | (gn < self._limits[1])))
            if self._group is not None:
                torch.distributed.all_reduce(keep, op=torch.distributed.ReduceOp.MIN, group=self._group)
            with self.lr_applied(lr_in, t):
                if self._fused:
                    self.optimizer.found_inf = 1.0 - keep  # type: ignore[attr-defined]
                    self.optimizer.grad_scale = None  # type: ignore[attr-defined]
                    try:
                        self._optimizer_step()
                    finally:
                        del self.optimizer.found_inf  # type: ignore[attr-defined]
                        del self.optimizer.grad_scale  # type: ignore[attr-defined]
                else:
                    torch._foreach_mul_(grads, keep)
                    self._optimizer_step()
        self._after_step()
        self._meta.append((t, lr_in))
        if (t + 1) % self.read_every == 0:  # absolute boundaries, so snapshot steps end a window
            self._launch_read()
        self._poll(wait=False)

    def flush(self) -> None:
        """Read and act on every verdict still on its way (a sync; call before saving or at the end)."""
        if self._meta:
            self._launch_read()
        self._poll(wait=True)

    def settle(self) -> int | None:
        """Make the weights safe to save when a run stops between reads (Ctrl-C): read every verdict
        on its way (`flush`; a rollback or give-up among them acts), and if a trainable parameter
        still holds a non-finite value — a non-finite step's update, which on the delayed path only
        the rollback a few steps later undoes — load the latest confirmed snapshot. Returns that
        snapshot's step, or None where the weights were sound."""
        self.flush()
        if all(bool(torch.isfinite(p).all()) for p in self.model.parameters() if p.requires_grad):
            return None
        step = max(self._snapshots)
        self.optimizer.zero_grad(set_to_none=True)
        self._load_snapshot(self._snapshots[step], everything=self.config.rewind)
        if self.config.rewind:
            self.step_count = step
        return step

    # ------------------------------------------------------------------ reading verdicts
    def _launch_read(self) -> None:
        n = len(self._meta)
        buf = self._agree(self._buffer[:n].clone())
        t_last = self._meta[-1][0]
        snap = self._take_snapshot() if (t_last + 1) % self.config.snapshot_every == 0 else None
        if buf.is_cuda:
            host = torch.empty(buf.shape, dtype=buf.dtype, pin_memory=True)
            host.copy_(buf, non_blocking=True)
            event: Any = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
        else:
            host, event = buf, None
        self._pending.append((host, (event, snap), list(self._meta)))
        self._meta = []

    def _poll(self, *, wait: bool) -> None:
        while self._pending:
            host, (event, snap), meta = self._pending[0]
            if event is not None and not event.query():
                if not (wait or len(self._pending) > 1):
                    return
                event.synchronize()  # rare: the device is more than a window behind
            self._pending.pop(0)
            if self._process(host.tolist(), meta, snap):
                return

    def _process(self, rows: list[list[float]], meta: list[tuple[int, float]], snap: Any) -> bool:
        """Judge a window of steps in order; True if a rollback discarded what came after it."""
        for (t, lr_in), values in zip(meta, rows, strict=True):
            action = self._judge(t, lr_in, values, applied=values[2] == 1)
            if values[2] == 0 and action.applies_update:
                self.device_skips += 1
            if action.kind in ("rollback", "give_up"):
                self._pending.clear()
                self._meta = []
                self._restore(action, next_step=self.step_count)
                return True
        if snap is not None and meta[-1][0] + 1 in self.state.snapshot_steps:
            self._snapshots[meta[-1][0] + 1] = snap
        self._prune()
        limits = np.nextafter(np.array(spike_thresholds(self.state.detect), np.float32), np.float32(np.inf))
        self._limits.copy_(torch.from_numpy(limits), non_blocking=True)
        return False

    def _judge(self, t: int, lr_in: float, values: list[float], *, applied: bool = False) -> Action:
        """Judge step `t` on the host. `applied`: the device already applied its update (delayed
        mode), so a "skip" now comes too late: its audit record says ``"applied": true`` and
        `late_skips` counts it. The device flags a step against the thresholds of the last read,
        none before the detectors' first judged window was read, so a spike there went into the
        weights while the log said it was skipped."""
        loss, gn = values[0], values[1]
        grad = None if (self.scaler is not None and not math.isfinite(gn)) else gn
        # a non-finite gradient the device masked by ×0 (no fused found_inf, no scaler) is still NaN
        masked = not applied and self.read_every > 1 and not self._fused and self.scaler is None
        poisoned = masked and not (math.isfinite(loss) and math.isfinite(gn))
        update = core.update(self.state, loss=loss, grad_norm=grad, lr=lr_in, step=t, applied=applied or poisoned)
        action, self.state = update
        extra: dict[str, Any] = {"batch": len(self.history_steps)}  # the batch judged, counting replays
        if applied and action.kind == "skip":
            extra["applied"] = True
            self.late_skips += 1
        if self._group is not None:
            extra["rank"] = torch.distributed.get_rank(self._group)
        self.audit.add(action, **extra)
        self.history_steps.append(t)
        self.history_loss.append(loss)
        self.history_lr.append(action.lr_before if action.lr_before is not None else lr_in)
        return action

    def _agree(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank gets the same rows: mean loss, max grad norm (the keep column is agreed already)."""
        if self._group is None:
            return rows
        dist = torch.distributed
        world = dist.get_world_size(self._group)
        loss = rows[:, :1].clone()
        rest = rows[:, 1:].clone()
        dist.all_reduce(loss, op=dist.ReduceOp.SUM, group=self._group)
        dist.all_reduce(rest, op=dist.ReduceOp.MAX, group=self._group)
        return torch.cat([loss / world, rest], dim=1)

    # ------------------------------------------------------------------ LR and the update
    def _lr_in(self, t: int) -> float:
        if self.schedule is not None:
            return float(self.schedule(t))
        return max(float(g["lr"]) for g in self.optimizer.param_groups)

    def lr_now(self) -> float:
        """The LR the run asks for at the current step, before the guard's adjustment (the
        schedule's, else the largest param group's): ``state.multiplier(lr_now(), step)`` is the
        factor the guard applies. Under a cap that factor depends on the LR, so the callbacks' logged
        factor, taken at LR 1, read as the cap itself (×0.0005 for a cap at 5e-4)."""
        return self._lr_in(self.step_count)

    @contextmanager
    def lr_applied(self, lr_in: float, t: int, *, zero: bool = False) -> Iterator[None]:
        """Within this block the param groups hold the guard's LR for step `t` (0 with `zero`: a
        no-op update for trainers that step the optimizer themselves).

        With a `schedule` the LR stays set after the block; a tensor LR (a capturable or fused
        optimizer's, or one kept a tensor so that a compiled ``optimizer.step`` is not recompiled for
        every new LR) is written in place: replaced by a Python float, it was no longer one."""
        mult = 0.0 if zero else self.state.multiplier(lr_in, t)
        groups = self.optimizer.param_groups
        before = [g["lr"] for g in groups]
        for g, ratio, lr in zip(groups, self._ratios, before, strict=True):
            value = (lr_in * ratio if self.schedule is not None else float(lr)) * mult
            if self.schedule is not None and isinstance(lr, torch.Tensor):
                lr.fill_(value)
            else:
                g["lr"] = value
        try:
            yield
        finally:
            if self.schedule is None:
                for g, lr in zip(groups, before, strict=True):
                    g["lr"] = lr

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _after_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        self.step_count += 1

    # ------------------------------------------------------------------ snapshots
    def _model_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict without its frozen parameters (``requires_grad`` False): no
        training step changes them, and in a LoRA run of a large model they are nearly all of it
        (a 7B model's would be 14 GB of host memory per snapshot)."""
        return {
            name: value.detach()
            for name, value in self.model.state_dict(keep_vars=True).items()
            if not (isinstance(value, torch.nn.Parameter) and not value.requires_grad)
        }

    def _take_snapshot(self) -> Any:
        state = {
            "model": self._model_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "data": None if self.data is None else self.data.state_dict(),
        }
        rng = _rng_state()
        spare, self._spare = self._spare, None
        if self._snapshot_to == "device":
            return {**_to(state, None, spare=spare), "rng": rng}
        pinned = self.device.type == "cuda"
        snap = {**_to(state, "cpu", pin=pinned, spare=spare), "rng": rng}
        if self._snap_dir is None:
            return snap
        if pinned:
            torch.cuda.synchronize(self.device)
        fd, name = tempfile.mkstemp(prefix="guard-snapshot-", suffix=".pt", dir=self._snap_dir)
        with open(fd, "wb") as fh:
            torch.save(snap, fh)
        return Path(name)

    def _load_snapshot(self, snap: Any, *, everything: bool = True) -> None:
        if isinstance(snap, Path):
            snap = torch.load(snap, weights_only=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # pinned copies may still be in flight
        result = self.model.load_state_dict(snap["model"], strict=False)
        trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        unfrozen = [name for name in result.missing_keys if name in trainable]
        if unfrozen:  # the run goes on (stopping it would lose more); these keep their current values
            warnings.warn(
                f"TorchGuard: parameters unfrozen since the snapshot of the rollback were not rolled back "
                f"(a snapshot holds what was trainable when it was taken): {unfrozen}",
                RuntimeWarning,
                stacklevel=2,
            )
        # The trainer callbacks (not `everything`) go on from the current step, whose LR the trainer's
        # scheduler owns: the param groups keep their current settings. The snapshot's LR, put back,
        # set a scheduler that steps from the group's LR (torch's StepLR, ExponentialLR) back to the
        # snapshot's step for the rest of the run.
        groups = (
            None if everything else [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        )
        # a copy: load_state_dict keeps the tensors it is given, and the steps after the rollback
        # would write into the snapshot (a second rollback to it would restore a later state)
        self.optimizer.load_state_dict(_to(snap["optimizer"], None))
        for group, settings in zip(self.optimizer.param_groups, groups or [], strict=False):
            group.update(settings)
        if self.scaler is not None:
            self.scaler.load_state_dict(snap["scaler"])
        if not everything:
            return
        if self.scheduler is not None:
            self.scheduler.load_state_dict(snap["scheduler"])
        if self.data is not None:
            self.data.load_state_dict(snap["data"])
        _set_rng_state(snap["rng"])

    def _restore(self, action: Action, *, next_step: int) -> None:
        """Load the snapshot of `action.rollback_to`; the run goes on from there (rewind) or from
        `next_step` (trainer callbacks, whose trainer owns the step, the scheduler and the data)."""
        target = action.rollback_to
        if target is None or target not in self._snapshots:
            raise RuntimeError(f"TorchGuard: no snapshot for step {target} (have {sorted(self._snapshots)})")
        self.optimizer.zero_grad(set_to_none=True)
        self._load_snapshot(self._snapshots[target], everything=self.config.rewind)
        self.step_count = target if self.config.rewind else next_step
        self._limits.fill_(math.inf)
        self._prune()
        if action.kind == "give_up":
            raise GuardGaveUpError(action)

    def _prune(self) -> None:
        keep = set(self.state.snapshot_steps)
        for step in [s for s in self._snapshots if s not in keep]:
            snap = self._snapshots.pop(step)
            if isinstance(snap, Path):
                snap.unlink(missing_ok=True)
            else:
                self._spare = snap  # its buffers are reused by the next snapshot

    # ------------------------------------------------------------------ resume and report
    def state_dict(self, *, snapshots: bool = False) -> dict[str, Any]:
        """The guard's state (JSON-ready). Save it with your checkpoint; pending verdicts are read first.

        `snapshots`: with the snapshots it keeps (their tensors on the host; no longer JSON, for
        ``torch.save``), so that a resumed run rolls back where the run never stopped would: without
        them its only snapshot is the state it resumed from, which a run saved during a slow
        blow-up cannot roll back past."""
        self.flush()
        out: dict[str, Any] = {"guard": self.state.state_dict(), "step": self.step_count}
        if snapshots:
            out["snapshots"] = {
                step: torch.load(snap, weights_only=False) if isinstance(snap, Path) else _to(snap, "cpu")
                for step, snap in self._snapshots.items()
            }
        return out

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Resume: the guard's memory comes back, and its snapshots where `state_dict` kept them;
        otherwise the current model is its only snapshot."""
        self.step_count = int(data["step"])
        state = GuardState.from_state_dict(data["guard"])
        kept = data.get("snapshots")
        self.state = state if kept is not None else core.rebase(state, self.step_count)
        self.config = self.state.config
        if kept is not None:
            self._snapshots = {int(step): self._placed(snap) for step, snap in kept.items()}
        else:
            self._snapshots = {self.step_count: self._take_snapshot()}
        self._prune()

    def _placed(self, snap: dict[str, Any]) -> Any:
        """A snapshot from `state_dict`, kept on disk where this guard keeps its own there, else in
        host memory (a rollback loads host tensors onto the device as it does pinned ones)."""
        if self._snap_dir is None:
            return snap
        fd, name = tempfile.mkstemp(prefix="guard-snapshot-", suffix=".pt", dir=self._snap_dir)
        with open(fd, "wb") as fh:
            torch.save(snap, fh)
        return Path(name)

    def effective_schedule(self) -> Schedule | None:
        """The lrpilot schedule as the guard now runs it (``guarded(base, ...)``), if one was given."""
        return None if self.schedule is None else self.state.schedule(self.schedule)

    def report(self) -> dict[str, Any]:
        """What the guard did: counts, the LR adjustment, the schedule it runs, the audit records."""
        self.flush()
        s = self.state
        sched = self.effective_schedule()
        return {
            "step": self.step_count,
            "skips": s.skips,
            "device_skips": self.device_skips,
            "late_skips": self.late_skips,
            "rollbacks": s.rollbacks,
            "cuts": s.cuts,
            "raises": s.raises,
            "gave_up": s.gave_up,
            "lr_scale": s.scale,
            "lr_cap": s.cap,
            "schedule": None if sched is None else sched.to_string(),
            "records": list(self.audit.records),
        }

    def close(self) -> None:
        """Free the snapshots (and their files)."""
        for snap in self._snapshots.values():
            if isinstance(snap, Path):
                snap.unlink(missing_ok=True)
        self._snapshots.clear()
        self._spare = None
        if self._snap_dir is not None and not any(self._snap_dir.iterdir()):
            shutil.rmtree(self._snap_dir, ignore_errors=True)

    def __enter__(self) -> TorchGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
