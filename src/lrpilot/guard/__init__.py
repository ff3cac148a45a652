"""The training guard's core: a pure state machine over the loss, the gradient norm and the LR.

``init(config) -> GuardState`` and ``update(state, *, loss, grad_norm=None, lr, step) ->
(Action, GuardState)``; numpy only. Framework code (`lrpilot.integrations.torch_guard` and the
trainer callbacks) feeds it and carries out its actions: skip the update, roll back to a snapshot,
cut or raise the LR, give up with a report.

>>> from lrpilot import guard
>>> state = guard.init()
>>> for step in range(40):
...     action, state = guard.update(state, loss=2.0 - 0.01 * step, lr=1e-3, step=step)
>>> action, state = guard.update(state, loss=float("nan"), lr=1e-3, step=40)
>>> action.kind, action.applies_update
('skip', False)
"""

from lrpilot.guard._audit import AuditLog, summarize
from lrpilot.guard._config import GuardConfig
from lrpilot.guard._policy import ACTIONS, Action, update
from lrpilot.guard._state import GuardState, Snapshot, init, rebase

__all__ = [
    "ACTIONS",
    "Action",
    "AuditLog",
    "GuardConfig",
    "GuardState",
    "Snapshot",
    "init",
    "rebase",
    "summarize",
    "update",
]
