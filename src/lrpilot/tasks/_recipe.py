"""The fixed training recipe of a task: everything about a run except the peak learning rate.

A task's recipe never changes between runs, so that the final validation loss is a function of
the peak LR (and the seed) alone: that function is what the oracle sweep measures and what an LR
finder is scored against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from lrpilot import _validate as check
from lrpilot.schedules import WSD, Cosine, Linear, Schedule

__all__ = ["DECAYS", "Recipe"]

DECAYS = ("cosine", "linear", "wsd")
"""Decay shapes a recipe may use after its warmup (``wsd``: hold the peak, then a 1-sqrt decay
over the last `WSD_DECAY` of the run)."""
WSD_DECAY = 0.2
"""The share of a ``wsd`` recipe's run spent decaying: MiniCPM found 10 % enough for long runs;
the short runs lrpilot tunes on get twice that."""


@dataclass(frozen=True)
class Recipe:
    """AdamW with decoupled weight decay, linear warmup, then a cosine or linear decay to a floor.

    Attributes:
        batch_size: examples per optimizer step.
        total_steps: optimizer steps in a full run, warmup included.
        warmup_steps: linear warmup steps (lrpilot's convention: the first step already gets
            ``peak / (warmup_steps + 1)``).
        decay: ``"cosine"``, ``"linear"`` or ``"wsd"``, from the peak at the end of the warmup to
            the floor at `total_steps`.
        floor_ratio: the final LR as a fraction of the peak.
        weight_decay: AdamW's decoupled weight decay, applied to matrices and embeddings only
            (biases and normalisation gains are not decayed, as in Hugging Face and nanoGPT).
        betas, eps: AdamW's moment coefficients and denominator guard.
        grad_clip: the global gradient-norm clip, or None for none.
    """

    batch_size: int
    total_steps: int
    warmup_steps: int
    decay: str
    floor_ratio: float
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        owner = "Recipe"
        check.step_count(owner, "batch_size", self.batch_size, 1)
        check.step_count(owner, "total_steps", self.total_steps, 1)
        check.step_count(owner, "warmup_steps", self.warmup_steps, 0, self.total_steps)
        check.choice(owner, "decay", self.decay, DECAYS)
        check.in_range(owner, "floor_ratio", self.floor_ratio, 0.0, 1.0)
        check.non_negative(owner, "weight_decay", self.weight_decay)
        for i, beta in enumerate(self.betas):
            check.in_range(owner, f"betas[{i}]", beta, 0.0, 1.0, high_open=True)
        check.positive(owner, "eps", self.eps)
        if self.grad_clip is not None:
            check.positive(owner, "grad_clip", self.grad_clip)

    @property
    def optimizer(self) -> str:
        """Always ``"adamw"``: every task trains with AdamW, the optimizer LR advice is about."""
        return "adamw"

    def schedule(self, peak: float) -> Schedule:
        """The LR schedule of a full run at this peak LR."""
        total, warmup, floor = self.total_steps, self.warmup_steps, self.floor_ratio
        if self.decay == "wsd":
            decay = max(1, min(round(WSD_DECAY * total), total - warmup))
            return WSD(peak=peak, total_steps=total, warmup_steps=warmup, decay_steps=decay, floor_ratio=floor)
        cls = Cosine if self.decay == "cosine" else Linear
        return cls(peak=peak, total_steps=total, warmup_steps=warmup, floor_ratio=floor)

    def shortened(self, steps: int) -> Recipe:
        """The same recipe compressed to `steps` optimizer steps, warmup scaled in proportion.

        A shortened run is still a complete run (warmup, then decay to the floor), so it is a
        cheap stand-in for the full recipe, not its first `steps` steps.
        """
        steps = check.step_count("Recipe.shortened", "steps", steps, 1)
        warmup = min(steps, round(self.warmup_steps * steps / self.total_steps))
        return replace(self, total_steps=steps, warmup_steps=warmup)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the recipe, optimizer included."""
        return {"optimizer": self.optimizer, **asdict(self), "betas": list(self.betas)}
