"""An interrupted fit's training state, to resume it exactly (``lrpilot fit --resume RUN_DIR``).

A fit stopped by Ctrl-C saves its weights and report like any stopped run; where it stopped at a
step boundary it also writes ``resume.pt``: the loop's state there (`RunState`: the weights the
optimizer changes, AdamW's moments, the loss scale, the guard's memory, torch's generator, how many
batches were drawn, and what the report draws so far) beside what the fit had decided before
training (`Checkpoint`: its arguments, the schedule, the recommendation, the range test). Resumed,
the run draws the batches after those and the dropout masks it would have drawn, so on the CPU it
ends with the weights an uninterrupted fit ends with, to the bit, a rollback after the resume
included (the guard's snapshots are saved with its memory).

The first Ctrl-C during training is deferred to the end of the step in progress
(`stop_at_step_boundary`): a step stopped inside the optimizer's update would leave some weights
updated and others not. A second Ctrl-C stops at once; the weights are then saved but the run
cannot be resumed (no ``resume.pt``), which the notes say.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "RESUME_FILE",
    "Checkpoint",
    "RunState",
    "StopRequest",
    "model_device",
    "resume_file",
    "rng_state",
    "set_rng_state",
    "stop_at_step_boundary",
]

RESUME_FILE = "resume.pt"
"""What an interrupted fit needs to go on (`Checkpoint`), in its run directory."""
FORMAT = 1
"""`Checkpoint`'s layout; a file of another is refused."""


@dataclass
class RunState:
    """The training loop at a step boundary: everything that decides the steps after it."""

    step: int
    """Steps done (the guard's step count)."""
    position: int
    """Batches drawn from the task's stream (the range test's ramp included where it stood for the warmup)."""
    weights: dict[str, torch.Tensor]
    """The parameters the optimizer trains and the model's buffers, on the host."""
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    guard: dict[str, Any]
    """`TorchGuard.state_dict` with its snapshots (a rollback after the resume goes where the run
    never stopped would), and below its log of the steps it judged and its audit records."""
    guard_history: tuple[list[int], list[float], list[float]]
    guard_records: list[dict[str, Any]]
    rng: dict[str, torch.Tensor]
    """torch's generators (`rng_state`) at the boundary."""
    evals: dict[str, Any]
    """The evaluations so far (`lrpilot.autopilot._training._evaluate`'s history)."""
    layer_steps: list[int]
    layer_ratios: list[list[float]]


@dataclass
class Checkpoint:
    """What `fit` decided before training and the loop's state (`RunState`): enough to rebuild the
    model from its source and go on. `arguments` are fit's own (paths absolute)."""

    arguments: dict[str, Any]
    recipe: Any
    """The run's `lrpilot.tasks.Recipe`, fitted to its budget."""
    job_recipe: Any
    """A user's model's recipe as the recommendation set it (`HfTask.with_recipe`); None for a built-in task."""
    schedule: Any
    peak: float
    resumed: Any
    """`lrpilot.autopilot._resume.Resumed`: the range test's ramp stood for the warmup's first steps."""
    recommendation: Any
    finder: Any
    record: dict[str, Any]
    """The run record's parts decided before training: notes, tradeoff, horizon, timings; and the
    points where the run went on before (``resumes``, `lrpilot.report.RunRecord.resumes`)."""
    state: RunState
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    """The SHA-256 of the data files it read (`digests`), to refuse a resume on other data."""
    threads: int | None = None
    """torch's CPU threads the fit trained on: its resume trains on as many (`lrpilot fit --resume`
    had resumed a built-in task, trained on one, on torch's default, and digits ended 0.0822126716
    against the uninterrupted 0.0822126791). None: a checkpoint written before they were kept."""
    quick: Any = None
    """The evaluations' precision before the last one (`lrpilot.tasks._device.Precision`; None:
    the run's), so that a resumed run's curve is measured as the uninterrupted one's."""
    format: int = FORMAT

    def save(self, run_dir: Path) -> Path:
        """Write ``resume.pt`` into `run_dir`, replacing an earlier one only once it is whole: a Ctrl-C
        as it was written (a second one, after the one that stopped the run) had left a truncated file
        in place of the resumable one of a fit resumed and stopped again."""
        path = run_dir / RESUME_FILE
        partial = path.with_name(path.name + ".partial")
        try:
            torch.save({field.name: getattr(self, field.name) for field in dataclasses.fields(self)}, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Checkpoint:
        """The checkpoint of the fit in `run_dir`; a clear error where there is none to resume."""
        path = resume_file(run_dir)
        # the file is lrpilot's own, written into the user's run folder: its objects are lrpilot's dataclasses
        data = torch.load(path, map_location="cpu", weights_only=False)
        if data.get("format") != FORMAT:
            raise ValueError(f"fit: {path} is of format {data.get('format')!r}; this lrpilot resumes format {FORMAT}")
        return cls(**data)


def resume_file(run_dir: Path) -> Path:
    """`run_dir`'s `RESUME_FILE`, or a clear error where there is none to resume (fit checks it
    before it prints or loads anything)."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"fit: --resume {run_dir} is not a directory (give the interrupted fit's run folder)")
    path = run_dir / RESUME_FILE
    if not path.is_file():
        raise ValueError(
            f"fit: --resume {run_dir} holds no {RESUME_FILE}: only a fit interrupted at a step boundary (one "
            "Ctrl-C during training) can be resumed, and a finished one has nothing left to train"
        )
    return path


DATA_ARGUMENTS = ("data", "eval_data", "retention")
"""fit's arguments that name files of data (read again on resume)."""


def digests(arguments: dict[str, Any]) -> dict[str, str]:
    """The SHA-256 of each data file among fit's `arguments` (`DATA_ARGUMENTS`), by argument."""
    out = {}
    for name in DATA_ARGUMENTS:
        if arguments.get(name) is not None and Path(arguments[name]).is_file():
            digest = hashlib.sha256()
            with open(arguments[name], "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            out[name] = digest.hexdigest()
    return out


def check_unchanged(checkpoint: Checkpoint) -> None:
    """Refuse to resume on data files that changed since the fit was interrupted: its batch position
    and its evaluations would then be of other data."""
    now = digests(checkpoint.arguments)
    for name, digest in checkpoint.files.items():
        if now.get(name) != digest:
            path = checkpoint.arguments[name]
            raise ValueError(
                f"fit: --resume: {path} ({name}) changed since the fit was interrupted (its SHA-256 differs, or it "
                "is gone); resume with the data it trained on, or start a new fit"
            )


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's CPU generator and, for a model on a GPU (its `device`: `model_device`), that GPU's
    (dropout there draws from it)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def model_device(model: nn.Module) -> torch.device:
    """Where `model`'s parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def set_rng_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put back `rng_state`'s generators."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], next(p.device for p in model.parameters()))


@dataclass
class StopRequest:
    """Set by the first Ctrl-C during training; the loop stops at the next step boundary."""

    requested: bool = False


@contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Defer the first Ctrl-C (SIGINT) to the loop's next step boundary: the handler only sets
    `StopRequest.requested` and says so; a second Ctrl-C raises KeyboardInterrupt at once, as
    Python's own handler does. Only where Python's handler is the one installed, in the main thread
    (a caller's own handler, or a thread, is left as it is)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True
        sys.stderr.write("\nlrpilot: stopping after this step (Ctrl-C again to stop at once)\n")

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
