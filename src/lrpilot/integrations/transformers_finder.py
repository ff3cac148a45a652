"""The LR range test on a Hugging Face `transformers.Trainer` (full fine-tuning, PEFT/LoRA alike).

::

    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    result = find_lr_for_trainer(trainer)
    trainer.args.learning_rate = result.learning_rate     # the peak for the run's warmup + decay
    trainer.train()

Everything comes from the trainer, so the test trains the way ``trainer.train()`` will: its model
(a PEFT model trains only its adapters), its training DataLoader (batch size, collator, sampler),
the optimizer ``Trainer.create_optimizer`` builds from ``TrainingArguments`` (AdamW with weight
decay on the same parameter groups; or the optimizer you passed), ``gradient_accumulation_steps``,
``bf16``/``fp16``, ``max_grad_norm``, and the loss of ``Trainer.compute_loss`` (so a subclass's
custom loss is what the test measures). The run length for the ready schedule is ``max_steps``,
or the epochs times the optimizer steps per epoch.

The trainer is left as it was: the model's weights, modes and RNG states are restored (see
`lrpilot.integrations.torch_finder`), and an optimizer the finder had to create is dropped again,
so ``trainer.train()`` builds a fresh one with the learning rate you set. Where that LR would not
reach the run, the finder says so: a scheduler the Trainer was given (or kept from an earlier
``train()``) is an error that says how to let the Trainer build it, an optimizer of your own a
warning (it trains at its param groups' LRs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from lrpilot._optional import require
from lrpilot.finder import FinderResult
from lrpilot.integrations.torch_finder import find_lr

__all__ = ["find_lr_for_trainer", "trainer_run_length"]


def trainer_run_length(trainer: Any) -> int | None:
    """Optimizer steps ``trainer.train()`` will take: ``max_steps``, else epochs × ⌈batches per
    epoch / gradient_accumulation_steps⌉; None when the training data has no length."""
    args = trainer.args
    max_steps = int(args.max_steps or 0)
    if max_steps > 0:
        return max_steps
    try:
        batches = len(trainer.get_train_dataloader())
    except TypeError:  # an IterableDataset without a length
        return None
    per_epoch = max(1, math.ceil(batches / max(1, int(args.gradient_accumulation_steps))))
    return max(1, math.ceil(per_epoch * float(args.num_train_epochs)))


def _recipe(trainer: Any, total_steps: int | None) -> dict[str, Any]:
    """The schedule settings closest to the trainer's own (Hugging Face's linear and cosine
    schedules decay to 0; its warmup is ``warmup_steps``, a count or a fraction of the run)."""
    args = trainer.args
    kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    warmup = float(getattr(args, "warmup_steps", 0) or 0)
    ratio = float(getattr(args, "warmup_ratio", 0) or 0)
    if total_steps:
        ratio = warmup / total_steps if warmup >= 1 else (warmup or ratio)
    ratio = min(ratio, 0.5)
    floor = 0.1 if kind not in ("linear", "cosine", "polynomial", "constant", "constant_with_warmup") else 0.0
    return {"decay": "linear" if kind == "linear" else "cosine", "floor_ratio": floor, "warmup_ratio": ratio}


def _check_the_lr_reaches_the_run(trainer: Any) -> None:
    """Where ``TrainingArguments.learning_rate`` will not set the run's LR, say so: the recipe (set
    it, then ``train()``) otherwise trains at the old LR without a word.

    A scheduler built with the optimizer (``optimizers=(optimizer, scheduler)``, or kept from an
    earlier ``train()``, which also keeps its optimizer) has captured its base LR: an error that
    says how to let the Trainer build both. An optimizer of the user's own trains at its param
    groups' LRs: a warning that names them.
    """
    optimizer = trainer.optimizer
    if optimizer is None:
        return
    groups = getattr(optimizer, "optimizer", optimizer).param_groups
    if trainer.lr_scheduler is not None and any("initial_lr" in g for g in groups):
        raise ValueError(
            "find_lr_for_trainer: the Trainer already has an LR scheduler (optimizers=(optimizer, scheduler), or "
            "one kept from an earlier train()), whose base LR the LR found would not reach; let the Trainer build "
            "both (trainer.optimizer = trainer.lr_scheduler = None, or optimizers=(None, None)), run the finder, "
            "then set trainer.args.learning_rate"
        )
    warnings.warn(
        f"find_lr_for_trainer: the Trainer trains with the optimizer it was given, at its param groups' LRs "
        f"{[g['lr'] for g in groups]}; TrainingArguments.learning_rate does not reach them: set each group's lr "
        "from result.learning_rate (keeping their ratios), or let the Trainer build the optimizer",
        UserWarning,
        stacklevel=3,
    )


def find_lr_for_trainer(
    trainer: Any,
    *,
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    mode: str = "fast",
    use_eval_dataset: bool = False,
    val_batches: int = 4,
    val_every: int = 1,
    repeats: int = 1,
    probe_budget: int | None = None,
    storage: str = "auto",
    callback: Callable[[int, float, float], None] | None = None,
) -> FinderResult:
    """Run lrpilot's range test on `trainer` and return the peak LR for its ``TrainingArguments``.

    Args:
        trainer: a `transformers.Trainer` (or subclass) with a train dataset.
        num_steps, start_lr, end_lr, mode, repeats, probe_budget, storage, callback: as in
            `lrpilot.integrations.torch_finder.find_lr`.
        use_eval_dataset: measure the curve on `val_batches` batches of the trainer's eval
            dataset (every `val_every` steps) instead of the training batches' loss.

    Returns:
        A `lrpilot.finder.FinderResult`; ``result.learning_rate`` goes into
        ``TrainingArguments(learning_rate=...)``: it is for the trainer's own run length (its
        ``max_steps``, or its epochs of batches), moved there by the horizon law when that is
        outside the 150–1000 steps the rule is calibrated at (see `find_lr`'s `calibrated_steps`).
    """
    require("transformers", "hf", "find_lr_for_trainer")
    if getattr(trainer, "train_dataset", None) is None:
        raise ValueError("find_lr_for_trainer: the trainer has no train_dataset to run the range test on")
    args = trainer.args
    model = trainer.model
    _check_the_lr_reaches_the_run(trainer)
    created = trainer.optimizer is None
    optimizer = trainer.create_optimizer() if created else trainer.optimizer
    try:
        total_steps = trainer_run_length(trainer)
        amp = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else None
        max_norm = float(args.max_grad_norm) if args.max_grad_norm and args.max_grad_norm > 0 else None

        def step(batch: Any) -> Any:
            return trainer.compute_loss(model, batch)

        return find_lr(
            model,
            optimizer,
            trainer.get_train_dataloader(),
            step=step,
            start_lr=start_lr,
            end_lr=end_lr,
            num_steps=num_steps,
            accumulation_steps=max(1, int(args.gradient_accumulation_steps)),
            amp=amp,
            max_grad_norm=max_norm,
            val_data=trainer.get_eval_dataloader() if use_eval_dataset else None,
            val_batches=val_batches,
            val_every=val_every,
            total_steps=total_steps,
            mode=mode,
            repeats=repeats,
            probe_budget=probe_budget,
            storage=storage,
            callback=callback,
            **_recipe(trainer, total_steps),
        )
    finally:
        if created:
            trainer.optimizer = None
