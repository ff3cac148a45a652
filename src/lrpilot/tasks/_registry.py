"""The built-in tasks by name."""

from __future__ import annotations

import dataclasses
import os

from lrpilot import _validate as check
from lrpilot.tasks._base import Task
from lrpilot.tasks._digits import DIGITS
from lrpilot.tasks._shakespeare import SHAKESPEARE
from lrpilot.tasks._sst2 import SST2_FULL, SST2_LORA, Sst2Task, find_sst2_dir

__all__ = ["TASKS", "get_task", "task_names"]

TASKS: dict[str, Task] = {task.name: task for task in (DIGITS, SHAKESPEARE, SST2_FULL, SST2_LORA)}
"""Every built-in task, cheapest first."""


def task_names() -> list[str]:
    """The built-in task names, cheapest first."""
    return list(TASKS)


def get_task(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """The built-in task `name`; unknown names raise ValueError with a "did you mean".

    `data_dir` is the folder with the SST-2 CSVs for the ``sst2-*`` tasks (checked now; without it
    they look for ``$LRPILOT_SST2_DIR`` or ``../shared/data`` beside the source checkout when first
    used). Giving it for another task is an error, so a typo in the name cannot pass unnoticed.
    """
    task = TASKS[check.choice("get_task", "name", name, TASKS)]
    if data_dir is None:
        return task
    if not isinstance(task, Sst2Task):
        raise ValueError(f"get_task: data_dir applies to the sst2 tasks only, got data_dir={data_dir!r} for {name!r}")
    return dataclasses.replace(task, data_dir=find_sst2_dir(data_dir))
