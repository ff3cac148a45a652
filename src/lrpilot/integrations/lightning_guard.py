"""The training guard as a Lightning `Callback` (automatic optimization, one optimizer).

Lightning calls ``on_before_optimizer_step`` inside ``optimizer.step(closure)``, after the backward
pass and before the update, which is where the guard judges the step: a bad step's update becomes
a no-op (gradients zeroed, LR 0 for that step), repeated trouble restores the last good snapshot of
the module and the optimizer and cuts the LR, and a hopeless run stops (``trainer.should_stop``)
with the last good weights. The numbers are logged (``guard/non_finite``, ``guard/skips``,
``guard/rollbacks``, ``guard/lr_factor``), so they land in the logger's files, which
``lrpilot doctor`` reads. As with the Trainer callback, Lightning owns the step, the scheduler and
the data: a rollback restores weights and optimizer state, and training goes on from the current
step.

Without a ``config`` the guard is fitted to the run when training starts (`GuardConfig.for_run`):
its length (``trainer.estimated_stepping_batches``; an endless run keeps the defaults) and the
examples each judged loss averages over (the train loader's ``batch_size`` ×
``accumulate_grad_batches`` × ``world_size``: the ranks' losses are averaged; ``batch_size=`` where
the loader has no fixed one). A LightningModule does not say it is a classifier: ``classes=`` gives
the chance level, so that a loss back at it after learning is a collapse. ::

    trainer = lightning.Trainer(callbacks=[GuardCallback(classes=10)], ...)

The guard's memory (`TorchGuard.state_dict`) is the callback's ``state_dict``, kept in Lightning's
checkpoints and restored by ``fit(ckpt_path=...)``: an LR it cut stays cut.
"""

from __future__ import annotations

from typing import Any

import torch

from lrpilot._optional import require
from lrpilot.integrations._callback_config import TrainerGuardBase, callback_config
from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard

__all__ = ["GuardCallback"]

_Callback: Any = require("lightning.pytorch", "lightning", "the Lightning guard callback").Callback


class GuardCallback(TrainerGuardBase, _Callback):  # type: ignore[misc]
    """A Lightning `Callback` running `TorchGuard` on every optimizer step (see the module docstring).

    Args:
        config: the guard's policy, used as given but for ``rewind``, forced off (Lightning owns
            the step); None: fitted to the run when training starts (see the module docstring;
            then in `config`).
        batch_size: without a `config`, the examples one optimizer step averages over, where the
            train loader has no fixed ``batch_size``.
        classes: without a `config`, the classes of a single-label classifier (its chance level).
        label_counts: without a `config`, instead of `classes`: how many training examples carry
            each label, for unbalanced labels, whose chance level is their entropy
            (`lrpilot.detect.DetectConfig.for_label_counts`).
        audit: a path for the JSONL audit log.
        snapshot_to: ``"cpu"``, ``"device"`` or a directory (see `TorchGuard`).
    """

    _after_update: Any = None
    """The optimizer's step post hook that takes the guard's LR off after the update."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"GuardCallback: guards exactly one optimizer, got {len(trainer.optimizers)}")
        self.config = callback_config(
            self._given,
            total_steps=trainer.estimated_stepping_batches,
            batch_size=self._batch_size or _examples_per_step(trainer),
            chance_loss=self._chance,
        )
        self.guard = TorchGuard(
            pl_module,
            trainer.optimizers[0],
            config=self.config,
            read_every=1,
            snapshot_to=self.snapshot_to,
            audit=self.audit_path,
            step=trainer.global_step,
            max_grad_norm=_norm_clip(trainer),
        )
        self._resume(trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        """Lightning's checkpoint of this callback: the guard's memory (`checkpoint_state`)."""
        return self.checkpoint_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From ``fit(ckpt_path=...)``, before training starts: the guard takes it back then."""
        self._saved = dict(state_dict) or None

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach().float().reshape(()))

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        guard = self.guard
        if guard is None:
            return
        guard.step_count = trainer.global_step
        # Lightning divides each batch's loss by accumulate_grad_batches before the backward pass,
        # also in an epoch's last step when fewer batches are left: their sum judged that step at
        # a fraction of its loss (1/3 of it, one batch of three), a sudden "low" that counted as
        # learning. The batches' mean loss is the step's.
        scale = int(trainer.accumulate_grad_batches)
        loss = torch.stack(self._losses).mean() * scale if self._losses else torch.zeros(())
        self._losses = []
        try:
            action = guard.judge(loss)
        except GuardGaveUpError as exc:
            action = self._gave_up(exc.action, trainer.global_step)
            trainer.should_stop = True
        if action.findings and action.findings[0].kind == "non_finite":
            self.non_finite += 1
        self._action = action
        self._lr_block = guard.external_update(action)
        self._lr_block.__enter__()
        # Lightning steps a per-step LR scheduler after the update but before `on_train_batch_end`:
        # the guard's LR comes off right after the update, so the scheduler steps from its own LR
        # (put back after it had stepped, the old LR froze the schedule at its first value).
        self._after_update = guard.optimizer.register_step_post_hook(self._end_lr_block)

    def _end_lr_block(self, *_: Any) -> None:
        """Put the param groups' own LRs back (the optimizer's step post hook, once)."""
        if self._after_update is not None:
            self._after_update.remove()
            self._after_update = None
        if self._lr_block is not None:
            self._lr_block.__exit__(None, None, None)
            self._lr_block = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._end_lr_block()  # an update the optimizer never ran (a GradScaler's skip) ends here
        if self.guard is None or self._action is None:
            return
        self.guard.commit(self._action)
        self._action = None
        s = self.guard.state
        pl_module.log_dict(
            {
                "guard/non_finite": float(self.non_finite),
                "guard/skips": float(s.skips),
                "guard/rollbacks": float(s.rollbacks),
                "guard/lr_factor": s.multiplier(self.guard.lr_now(), trainer.global_step),
            },
            on_step=True,
            on_epoch=False,
        )

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.guard is not None:
            self.guard.close()


def _norm_clip(trainer: Any) -> float | None:
    """The trainer's ``gradient_clip_val`` when it clips by norm (Lightning's default algorithm).
    Lightning clips after ``on_before_optimizer_step``; the guard clips the same way first, so it
    judges the gradient the update applies (`TorchGuard`'s `max_grad_norm`), and Lightning's own
    clip then finds nothing left to do."""
    value, algorithm = trainer.gradient_clip_val, trainer.gradient_clip_algorithm
    if not value or (algorithm is not None and algorithm != "norm"):
        return None
    return float(value)


def _examples_per_step(trainer: Any) -> int | None:
    """The examples behind one judged loss, where the train loader has a fixed ``batch_size``:
    every rank's accumulated batches of one optimizer step."""
    batch = getattr(trainer.train_dataloader, "batch_size", None)
    if not isinstance(batch, int) or batch < 1:
        return None
    return batch * int(trainer.accumulate_grad_batches) * int(trainer.world_size)
