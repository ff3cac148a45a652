"""Framework adapters. Each module imports its framework on use, so ``import lrpilot`` stays light.

Schedules:

* `lrpilot.integrations.torch`: `LRPilotScheduler`, a torch ``LRScheduler`` that sets the absolute
  LR of every param group from an lrpilot schedule (plain loops, Hugging Face ``Trainer``, Lightning).
* `lrpilot.integrations.transformers`: `to_training_args` / `from_training_args`, the exact mapping
  between lrpilot schedules and Hugging Face ``lr_scheduler_type`` settings.
* `lrpilot.integrations.lightning`: `lightning_scheduler_config` for ``configure_optimizers``.
* `lrpilot.integrations.optax`: `to_optax`, a jit-able ``count -> lr`` function for optax.

The LR finder and the training guard have their own modules here (``torch_finder``, ``torch_guard``, ...).
"""
