"""The training guard as a `transformers.TrainerCallback`.

The Trainer's ``logging_nan_inf_filter`` (on by default) only *hides* a NaN or Inf step: it logs
the running average in its place while the backward pass and the optimizer step still run, so the
weights go NaN behind a clean-looking log (trl#6702). This callback judges every optimizer step
before it is applied and:

* makes non-finite steps visible: ``guard_non_finite``, ``guard_skips``, ``guard_rollbacks`` and
  ``guard_lr_factor`` go into the Trainer's logs (and its ``trainer_state.json``), and every
  decision into the audit log;
* acts: a bad step's update becomes a no-op (gradients zeroed, LR 0 for that one optimizer step, so
  the weights do not move); repeated trouble or a divergence restores the last good snapshot of the
  model and optimizer and cuts the LR (re-warmed up); a hopeless run stops training, restored.

The Trainer owns the step, the LR scheduler and the data, so a rollback restores weights and
optimizer state while the step count, the schedule and the data go on (``GuardConfig.rewind`` is
False here). The Trainer clips the gradients (``max_grad_norm``) before this callback sees them,
so the guard judges the clipped norm, the gradient the update applies, as `TorchGuard` does with its
own ``max_grad_norm``.

Without a ``config`` the guard is fitted to the run when training begins (`GuardConfig.for_run`):
its length (``state.max_steps``), the examples each judged loss averages over
(``per_device_train_batch_size`` × ``gradient_accumulation_steps`` × ``world_size``: the ranks'
losses are averaged) and, for a sequence or token classifier, its ``num_labels``, whose chance
level makes a loss back at it after learning a collapse. ::

    trainer = Trainer(model=model, args=args, train_dataset=data)
    guard = GuardCallback.attach(trainer)        # first in line, so reporters see its numbers
    trainer.train()

The guard's memory (`TorchGuard.state_dict`) goes into every checkpoint's ``trainer_state.json``
and comes back with ``resume_from_checkpoint``: an LR it cut stays cut.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from lrpilot._hf_labels import single_label_classes
from lrpilot._optional import require
from lrpilot.guard import GuardConfig
from lrpilot.integrations._callback_config import TrainerGuardBase, callback_config
from lrpilot.integrations.torch_guard import GuardGaveUpError, TorchGuard

__all__ = ["GuardCallback"]

_TrainerCallback: Any = require("transformers", "hf", "the Trainer guard callback").TrainerCallback

_STATE_KEY = "lrpilot.GuardCallback"
"""The guard's entry in ``TrainerState.stateful_callbacks``, which every checkpoint's
``trainer_state.json`` holds and ``resume_from_checkpoint`` reads back. Not a callback class name:
the Trainer's own restore (``restore_callback_states_from_checkpoint``) rebuilds callbacks by class
name from their arguments, which would replace this one with one built without its config."""


class GuardCallback(TrainerGuardBase, _TrainerCallback):  # type: ignore[misc]
    """A `TrainerCallback` running `TorchGuard` on every optimizer step (see the module docstring).

    Args:
        config: the guard's policy, used as given but for ``rewind``, forced off (the Trainer owns
            the step); None: fitted to the run when training begins (see the module docstring;
            then in `config`).
        batch_size: without a `config`, the examples one optimizer step averages over, where the
            Trainer's arguments do not say it (a custom sampler or collator).
        classes: without a `config`, the classes of a classifier the model's ``num_labels`` does
            not tell (a custom head).
        label_counts: without a `config`, instead of `classes`: how many training examples carry
            each label, for unbalanced labels, whose chance level is their entropy
            (`lrpilot.detect.DetectConfig.for_label_counts`: where a model collapsed onto the
            majority class sits).
        audit: a path for the JSONL audit log.
        snapshot_to: ``"cpu"``, ``"device"`` or a directory (see `TorchGuard`).
    """

    _since_log = 0
    """Non-finite steps since the last log line."""
    _hook: Any = None
    """The forward hook that captures each micro-batch's loss, while training runs."""
    _attached = False
    """`attach` gave the callback the Trainer: its ``training_step`` losses stand in for a model that
    returns none."""
    _warned = False
    _trainer_losses: list[torch.Tensor]
    """The ``training_step`` losses of the step's micro-batches (attached)."""

    @classmethod
    def attach(cls, trainer: Any, config: GuardConfig | None = None, **kwargs: Any) -> GuardCallback:
        """Add a guard to `trainer` ahead of every other callback, so the loggers see its numbers.

        Attached, the guard also has a loss where the model returns none because the Trainer
        computes it outside the model (``label_smoothing_factor``, ``compute_loss_func``, an
        overridden ``compute_loss``): what ``training_step`` returns, summed over the step's
        micro-batches, the loss the Trainer logs. Without it the guard judged a loss of 0 at
        every step there."""
        callback = cls(config, **kwargs)
        trainer.callback_handler.callbacks.insert(0, callback)
        training_step = trainer.training_step

        def guarded_training_step(*args: Any, **kw: Any) -> Any:
            loss = training_step(*args, **kw)
            if callback.guard is not None and isinstance(loss, torch.Tensor):
                callback._trainer_losses.append(loss.detach().float().reshape(()))
            return loss

        trainer.training_step = guarded_training_step
        callback._attached = True
        return callback

    # -------------------------------------------------------------- hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs["model"], kwargs["optimizer"]
        self.config = callback_config(
            self._given,
            total_steps=state.max_steps,
            batch_size=self._batch_size or _examples_per_step(args),
            chance_loss=self._chance if self._chance is not None else _chance_of(model),
        )
        self.guard = TorchGuard(
            model,
            getattr(optimizer, "optimizer", optimizer),
            config=self.config,
            read_every=1,
            snapshot_to=self.snapshot_to,
            audit=self.audit_path,
            step=state.global_step,
        )
        if state.global_step > 0:  # resumed: the checkpoint's trainer_state.json holds the guard's memory
            self._saved = (state.stateful_callbacks or {}).get(_STATE_KEY)
            self._resume(state.global_step)
        self._trainer_losses = []
        self._hook = model.register_forward_hook(self._capture_loss)

    def _capture_loss(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if module.training and isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().float().reshape(()))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._losses = []
        self._trainer_losses = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        guard = self.guard
        if guard is None:
            return
        guard.step_count = state.global_step
        try:
            action = guard.judge(self._step_loss())
        except GuardGaveUpError as exc:
            action = self._gave_up(exc.action, state.global_step)
            control.should_training_stop = True
        if any(f.kind == "non_finite" for f in action.findings):  # the loss's or the gradients'
            self.non_finite += 1
            self._since_log += 1
        self._action = action
        self._lr_block = guard.external_update(action)
        self._lr_block.__enter__()

    def _step_loss(self) -> torch.Tensor:
        """The loss of the optimizer step: the mean of the losses the model returned for its
        micro-batches; where it returned none, the sum of the Trainer's (`attach`), else 0 and a
        warning, once.

        The model's own loss comes first: under gradient accumulation Hugging Face passes
        ``num_items_in_batch`` to every model that takes ``**kwargs``, a causal LM divides by it
        (its loss is then 1/accumulation of the step's, a constant factor the detectors, which
        compare a step with the steps before it, do not see) but a sequence classifier ignores
        it, and the Trainer, taking its loss for already scaled, logs and trains on accumulation ×
        its loss: a classifier's chance level would be out of reach."""
        if self._losses:
            return torch.stack(self._losses).mean()
        if self._attached and self._trainer_losses:
            return torch.stack(self._trainer_losses).sum()
        if not self._warned:
            self._warned = True
            warnings.warn(
                "GuardCallback: the model returned no loss (the Trainer computes it outside the model: "
                "label_smoothing_factor, compute_loss_func or an overridden compute_loss), so the guard "
                "judges gradient norms only; GuardCallback.attach(trainer) reads the loss the Trainer trains on",
                RuntimeWarning,
                stacklevel=3,
            )
        return torch.zeros(())

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._lr_block is not None:
            self._lr_block.__exit__(None, None, None)
            self._lr_block = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.guard is not None and self._action is not None:
            self.guard.commit(self._action)
            self._action = None
            if args.save_strategy != "no":  # the Trainer may save now: its trainer_state.json keeps this
                state.stateful_callbacks[_STATE_KEY] = self.checkpoint_state()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.guard is None or logs is None or "loss" not in logs:
            return
        s = self.guard.state
        numbers = {
            "guard_non_finite": self._since_log,
            "guard_skips": s.skips,
            "guard_rollbacks": s.rollbacks,
            "guard_lr_factor": s.multiplier(self.guard.lr_now(), state.global_step),
        }
        self._since_log = 0
        logs.update(numbers)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(numbers)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.guard is not None:
            self.guard.close()


def _examples_per_step(args: Any) -> int:
    """The examples behind one judged loss: every rank's micro-batches of one optimizer step."""
    return int(args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size)


def _chance_of(model: torch.nn.Module) -> float | None:
    """ln of a single-label classifier's number of classes (a PEFT wrapper's too), else None."""
    config = getattr(model, "config", None)
    labels, problem = getattr(config, "num_labels", None), getattr(config, "problem_type", None)
    classes = single_label_classes([type(model).__name__], labels, problem)
    return None if classes is None else math.log(classes)
