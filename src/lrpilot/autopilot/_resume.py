"""The range test's ramp as the run's warmup: snapshots along the ramp, and where to go on from.

fit's range test trains the very model it measures, with the run's optimizer, batches and
clipping: by the time its exponential ramp passes the peak it will choose, the model has been
warmed up from the rules' band's low end to that LR. A finder restores the model afterwards, and
the run then warms up again from zero, paying for the warmup twice (on the 150-step SST-2 recipes
the warmup is 15 steps, half the test's cost). `RampStates` keeps snapshots of the trainable
state along the ramp; `RampStates.resume` puts back the last one at or below the chosen peak and
says which step of the schedule's warmup has that LR: the run goes on from there, its warmup's
earlier steps replaced by the ramp's, never more of them than the ramp took: the model never
trains fewer steps than the run it shortens (replacing the char-GPT's 100-step warmup with the
few dozen ramp steps to its peak, a shorter run with a much faster warmup, raised its final loss
in a first trial; with this rule its warmup is kept).

A snapshot holds the weights an optimizer step changes: the optimizer's parameters (an adapter's,
not the frozen model's) and the model's buffers, copied into host memory that the snapshot falling
out of the window hands on (allocating afresh costs more than the copy, as for the guard's
snapshots). Not Adam's moments: the run starts its optimizer afresh. The ramp's moments average
gradients over the whole ramp, the untrained model's at LRs far below the peak included, and
carried into the run they cost a from-scratch model its final loss (``benchmarks/ramp_resume.py``,
against the same fit with nothing from the ramp: digits, 100 steps, +4.3 % ± 3.7 %, with a fresh
optimizer −3.2 % ± 2.9 %; 250 steps, +1.4 % ± 1.1 % against −0.3 % ± 0.8 %; 40 and 100 seeds) while
making no difference on the SST-2 fine-tunes (+0.0 % ± 0.4 %, 10 seeds each). The snapshots are a
third the size for it (a fully fine-tuned MiniLM's: 90 MB instead of 270). They are kept for the
last `WINDOW` decades of the ramp only, and only as many as `MEMORY_SHARE` of the machine's memory
holds (spaced out when fewer fit: the run then resumes a little lower in its warmup; none fit, none
are taken and the run starts from scratch).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import Optimizer

from lrpilot.integrations.torch_state import _physical_memory
from lrpilot.schedules import Schedule

__all__ = ["MEMORY_SHARE", "WINDOW", "RampStates", "Resumed"]

WINDOW = 1.8
"""Decades of LR before the test's last point whose snapshots are kept. A test with the settled
stop ends about `lrpilot.finder.SETTLE` (0.65) decades past the smoothed minimum (sooner when a
divergence rule fires first, later only while the loss has not given back half its fall), and
lrpilot's rule puts the peak 0.35–0.84 decades below that minimum: about 1.5 decades back at the
most, plus the spacing between snapshots."""

MEMORY_SHARE = 1 / 4
"""The share of physical memory the snapshots may take together: what `TrainingState` keeps in
memory before it goes to disk (a fully fine-tuned MiniLM's 90 MB snapshots then fit at every step
of the window on a 24 GiB machine)."""


@dataclass(frozen=True)
class Resumed:
    """Where the run goes on from: the ramp's state after `ramp_steps` steps (the last at `ramp_lr`,
    at or below the peak) stands for the schedule's first `start_step` steps (its warmup's steps
    at or below that LR)."""

    ramp_steps: int
    ramp_lr: float
    start_step: int

    def note(self) -> str:
        """A line for the report."""
        return (
            f"the run went on from the range test's state after {self.ramp_steps} ramp steps (LR {self.ramp_lr:.3g}), "
            f"in place of the schedule's first {self.start_step} warmup steps"
        )


@dataclass
class _Snapshot:
    point: int
    lr: float
    tensors: list[torch.Tensor]
    """Copies of the optimizer's parameters, then the model's buffers."""


class RampStates:
    """Snapshots of the weights the optimizer changes (its parameters and the model's buffers)
    along a range test's ramp of `steps` steps over `decades` decades; `capture` is the test's
    per-point callback."""

    def __init__(self, model: nn.Module, optimizer: Optimizer, *, steps: int, decades: float) -> None:
        self.model, self.optimizer = model, optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.buffers = list(model.buffers())
        self.window = max(1, math.ceil(WINDOW * steps / decades)) if decades > 0 else steps
        self.every = 1
        self._kept: deque[_Snapshot] = deque()
        self._spare: list[torch.Tensor] | None = None
        self._budget = int(_physical_memory() * MEMORY_SHARE)

    def _live(self) -> list[torch.Tensor]:
        """The tensors a snapshot copies."""
        return [p.detach() for p in self.params] + [b.detach() for b in self.buffers]

    def capture(self, point: int, lr: float) -> None:
        """Snapshot the state after the ramp's step `point` (at `lr`) when it is one to keep."""
        if self.every == 0 or point % self.every:
            return
        live = self._live()
        if point == 0 and not self._kept:  # the first snapshot sizes the rest
            nbytes = sum(t.numel() * t.element_size() for t in live)
            fits = self._budget // max(nbytes, 1)
            if fits < 1:
                self.every = 0
                return
            self.every = math.ceil(self.window / min(fits, self.window))
        spare = self._spare if self._spare is not None and _fits(self._spare, live) else None
        self._spare = None
        copies = spare or [torch.empty_like(t, device="cpu", pin_memory=t.is_cuda) for t in live]
        cuda = any(t.is_cuda for t in live)
        torch._foreach_copy_(copies, live, non_blocking=cuda)  # one call: a small model's copies are mostly overhead
        if cuda:
            torch.cuda.synchronize()
        self._kept.append(_Snapshot(point, lr, copies))
        if len(self._kept) > math.ceil(self.window / self.every):
            self._spare = self._kept.popleft().tensors  # its memory takes the next snapshot

    def start_step(self, peak: float, schedule: Schedule, warmup_steps: int) -> int:
        """The step of `schedule` that `resume` would go on from (0: none); changes nothing."""
        chosen = self._choose(peak, schedule, warmup_steps)
        return 0 if chosen is None else chosen[1]

    def resume(self, peak: float, schedule: Schedule, warmup_steps: int) -> Resumed | None:
        """Put back the weights of the last snapshot that can stand for the start of `schedule`'s
        warmup (the model is changed in place; the run's optimizer starts afresh); None, with the
        model left as it is, when there is none. The snapshots are dropped.

        A snapshot after ``k`` ramp steps at LR ``q`` stands for the warmup's steps at or below
        ``q`` if ``q`` is at most the peak and those steps are at most ``k``: the model then has had
        at least as many updates as the run it shortens. A long warmup (the char-GPT's 100 steps
        reach the peak far slower than the ramp) is replaced only up to where the ramp overtakes it.
        """
        chosen = self._choose(peak, schedule, warmup_steps)
        self._kept, self._spare = deque(), None
        if chosen is None:
            return None
        snap, start = chosen
        self._put_back(snap)
        return Resumed(ramp_steps=snap.point + 1, ramp_lr=snap.lr, start_step=start)

    def _choose(self, peak: float, schedule: Schedule, warmup_steps: int) -> tuple[_Snapshot, int] | None:
        """The last snapshot that can stand for the warmup's first steps, and how many."""
        for snap in reversed(self._kept):
            start = sum(1 for t in range(warmup_steps) if float(schedule(t)) <= snap.lr)
            if snap.lr <= peak and 0 < start <= snap.point + 1:
                return snap, start
        return None

    def _put_back(self, snap: _Snapshot) -> None:
        """The snapshot's weights and buffers into the model."""
        with torch.no_grad():
            torch._foreach_copy_(self._live(), snap.tensors)


def _fits(spare: list[torch.Tensor], live: list[torch.Tensor]) -> bool:
    return len(spare) == len(live) and all(
        s.shape == t.shape and s.dtype == t.dtype for s, t in zip(spare, live, strict=True)
    )
