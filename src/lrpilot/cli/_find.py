"""`lrpilot find`: the LR range test on a built-in task or on your own model, and the peak LR to train with.

With no arguments it runs on the ``digits`` task (its data ships with scikit-learn; a few
seconds on a CPU). ``--task`` picks another built-in task, trained with its fixed recipe;
``--script my_setup.py[:FUNCTION]`` runs on what your own function returns (see `SCRIPT_HELP`).
The answer is `lrpilot.integrations.torch_finder.find_lr`'s: the suggested peak of a warmup +
decay recipe, the band of LRs expected to train about as well, the max stable LR, and the recipe
as a ready schedule spec.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import (
    Task as Bar,
)
from rich.table import Column, Table
from rich.text import Text

from lrpilot import _validate as check
from lrpilot.cli._options import (
    BatchSizeOption,
    ColumnsOption,
    DataOption,
    LoraAlphaOption,
    LoraRankOption,
    LoraTargetsOption,
    MaxLengthOption,
    MethodOption,
    ModelOption,
    TaskTypeOption,
    output_file,
    parse_columns,
)
from lrpilot.cli._output import console, errors_as_messages, print_json, stderr
from lrpilot.rules import Horizon

if TYPE_CHECKING:
    from lrpilot.finder import FinderResult
    from lrpilot.tasks import Task

DEFAULT_TASK = "digits"
DEFAULT_FUNCTION = "setup"
CLI_OWNED = {
    "start_lr": "--start-lr",
    "end_lr": "--end-lr",
    "num_steps": "--steps",
    "mode": "--mode",
    "callback": "its progress bar",
}
"""`find_lr` keywords that the command line sets, and what sets them: a script that returns one is told."""

SCRIPT_HELP = """\
--script FILE.py[:FUNCTION] runs FUNCTION (default: setup) from FILE with no arguments, after
seeding Python, NumPy and torch with --seed. It returns what find_lr needs:

- a dict: `{"model": nn.Module, "optimizer": torch.optim.Optimizer, "data": DataLoader or any
  re-iterable of batches, "loss_fn": loss_fn(model(inputs), targets)}`; loss_fn is optional for
  dict batches (`model(**batch).loss`), and any other find_lr keyword may be added (step,
  total_steps, max_grad_norm, accumulation_steps, amp, val_data, ...);
- a tuple: (model, optimizer, data) or (model, optimizer, data, loss_fn), find_lr's order;
- a dataclass or NamedTuple with the dict's names as fields.

The optimizer is the one you will train with (its type, betas and weight decay shape the
curve; its LR is overwritten). Their state is restored after the test, as it was before."""


@dataclasses.dataclass(frozen=True)
class _Job:
    """What a range test runs on: `find_lr`'s arguments except the ramp, and where they came from."""

    source: dict[str, Any]
    args: dict[str, Any]
    threads: int | None = None
    """torch threads for the test (None: leave the process's setting)."""
    notes: tuple[str, ...] = ()
    """What fit's notes say of the model and data it builds (--model): a class of merged spellings, unbalanced
    labels, an evaluation that overlaps the training data; the range test runs on that same data."""
    task: Task | None = None
    """The task whose batches the test draws (a built-in one, or --model's data as fit reads it),
    which says when the test went past the end of its data: a warning for a user's data
    (`lrpilot.autopilot._search.repeated_batches`), a note for a built-in task (`_task_passes`)."""


# --- the built-in tasks ---------------------------------------------------------------------------


def _task_job(name: str, data_dir: Path | None, seed: int) -> _Job:
    """A task's model, AdamW and batch stream as its recipe trains them, so the suggested peak is
    the recipe's and the ready schedule has the recipe's length, warmup, decay and floor."""
    from lrpilot.tasks import get_task, make_optimizer, task_names

    check.choice("find", "--task", name, task_names())
    if name.startswith("sst2"):
        _check_sst2(data_dir)
    elif data_dir is not None:
        raise ValueError(f"find: --data-dir applies to the sst2 tasks only, not to {name!r}")
    task = get_task(name, data_dir=data_dir)
    recipe = task.recipe
    model = task.build_model(seed)
    args = {
        "model": model,
        "optimizer": make_optimizer(model, recipe, 1.0),  # the LR is the ramp's; 1.0 keeps the groups' ratios
        "data": task.batches(seed),
        "step": lambda batch: task.loss(model, batch),
        "max_grad_norm": recipe.grad_clip,
        "total_steps": recipe.total_steps,
        "warmup_ratio": recipe.warmup_steps / recipe.total_steps,
        "floor_ratio": recipe.floor_ratio,
        "decay": recipe.decay,
    }
    return _Job({"task": name}, args, threads=1, task=task)


def _task_passes(job: _Job, result: FinderResult) -> list[str]:
    """A built-in task's range test that went past the end of its training set (digits: 22 batches,
    which a 100-step test goes over 3–4 times; thorough mode's tests each start from the same weights,
    so the longest one counts) said so nowhere, where a user's data gets a warning.
    Here it is a note, not a warning: the task's recipe goes over them too (digits: 11 times), and
    lrpilot's rule was calibrated on these tests, repeats included (`repeated_batches`)."""
    from lrpilot.autopilot._hf import HfTask

    task = job.task
    drawn = max(r.steps + r.skipped_steps for r in result.records)  # each test starts from the same weights
    have = None if task is None or isinstance(task, HfTask) else task.epoch_batches
    if task is None or have is None or drawn <= have:
        return []
    recipe = task.recipe
    tests, each = ("the range test", "") if len(result.records) == 1 else ("each range test", "up to ")
    return [
        f"the {task.name} task's training set is {have} batches of {recipe.batch_size}: {tests} went over them "
        f"{each}{drawn / have:.1f} times ({each}{drawn} steps), as its recipe's {recipe.total_steps} steps go over "
        f"them {recipe.total_steps / have:.1f} times; lrpilot's rule was calibrated on these tests, repeats included"
    ]


def _check_sst2(data_dir: Path | None) -> None:
    """SST-2 is not shipped: say where it was looked for and how to point the command at it."""
    from lrpilot.tasks import find_sst2_dir

    try:
        find_sst2_dir(data_dir)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc}\nGet SST-2 (GLUE) as two CSVs with columns text,label (e.g. from the Hugging Face dataset "
            "stanfordnlp/sst2: rename 'sentence' to 'text'), then pass --data-dir FOLDER."
        ) from None


# --- a user's Hugging Face model and data ---------------------------------------------------------


def _model_job(model: Path, data: Path | None, *, seed: int, total_steps: int | None, user: dict[str, Any]) -> _Job:
    """A local Hugging Face model on the user's data, built as `lrpilot fit --model` builds it (its
    head or LoRA adapter, the tokenized data, AdamW with fit's weight decay and clipping), so the
    curve is of the run fit would train (the ramp is find's, not fit's range test); its length:
    --total-steps, else one epoch of the data;
    on --device as fit's (auto: a CUDA GPU where torch sees one), its forward passes autocast to
    --precision as fit's do, and without one in the precision fit's own range test takes
    (`lrpilot.autopilot._search.finder_precision`: bf16 for a model of 10M+ parameters on hardware
    that computes it). Without it a user of fit had to write a --script to range-test the model fit
    trains."""
    from lrpilot.autopilot._hf import METHODS, TASK_TYPES
    from lrpilot.autopilot._lora import lora_options
    from lrpilot.autopilot._search import finder_precision
    from lrpilot.autopilot._target import build_model, recommended, user_target
    from lrpilot.tasks import make_optimizer
    from lrpilot.tasks._device import resolve_device, resolve_precision

    choices = (("--task-type", user["task_type"], TASK_TYPES), ("--method", user["method"], METHODS))
    for option, value, options in choices:
        if value is not None:  # named for this command, not fit's (whose checks these are too)
            check.choice("find", option, value, options)
    where = resolve_device(user["device"], owner="find")  # a wrong name fails before a weight is loaded
    mixed = resolve_precision(user["precision"], where, owner="find")
    adapters = (user["lora_rank"], user["lora_alpha"], user["lora_targets"])
    lora = lora_options("find", user["method"] or "full", *adapters)
    target = user_target(
        model,
        data,
        None,
        kind=user["task_type"] or "classification",
        method=user["method"] or "full",
        batch_size=16 if user["batch_size"] is None else user["batch_size"],
        columns=parse_columns(user["columns"], "find"),
        max_length=user["max_length"],
        lora=lora,
        owner="find",
    )
    steps = target.steps if total_steps is None else total_steps
    net = build_model(target, seed, where, mixed)  # fp32 trainable weights, as fit trains a bf16 checkpoint's
    # fit's range test of this model: in bf16 where the hardware computes it and no --precision was given
    chosen = user["precision"] is not None
    tested, why = finder_precision(mixed, net, where, chosen=chosen, timed=False, from_ramp=False)
    _, task = recommended(target, net, steps)
    recipe = task.recipe
    args = {
        "model": net,
        "optimizer": make_optimizer(net, recipe, 1.0),
        "data": task.batches(seed),
        "step": lambda batch: task.loss(net, batch),
        "max_grad_norm": recipe.grad_clip,
        "total_steps": steps,
        "calibrated_steps": target.calibrated,
        "warmup_ratio": recipe.warmup_steps / recipe.total_steps,
        "floor_ratio": recipe.floor_ratio,
        "decay": recipe.decay,
        "amp": tested.amp,  # with fp16 find_lr makes the loss scale
    }
    source = {"model": str(model), "data": str(data), "device": str(where), "precision": tested.name}
    notes = target.notes if why is None else (*target.notes, why)
    return _Job(source, args, notes=notes, task=task)


# --- a user's script ------------------------------------------------------------------------------


def _split_script(spec: str) -> tuple[Path, str]:
    """``file.py:function`` → (path, function); a colon that does not end in a name is part of the path."""
    path, colon, name = spec.rpartition(":")
    if colon and path and name.isidentifier():
        return Path(path), name
    return Path(spec), DEFAULT_FUNCTION


def _where(exc: BaseException, path: Path) -> str:
    """`` (file.py, line 12, in setup)``: the deepest frame of the traceback inside the user's file, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" ({path.name}, line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""


def _raised_at(exc: BaseException) -> str:
    """`` (raised in cross_entropy, torch/nn/functional.py, line 3555)``: where an error that no frame
    of the user's file is on came from (the model, data or loss their script returned, run by torch)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    parts = Path(last.filename).parts
    short = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else last.filename
    return f" (raised in {last.name}, {short}, line {last.lineno})"


@contextmanager
def _script_run(job: _Job) -> Iterator[None]:
    """The range test on a script's parts: its forward or loss raising (a shape, a dtype, a bug) printed
    lrpilot's and torch's traceback, the user's line somewhere inside it. It is one line that says their
    code failed, with their frame, or (none of it on the stack: a built-in loss given their batches)
    where it was raised; lrpilot's own errors (`RangeTestError`, a bad argument) pass as they are."""
    from lrpilot.finder import RangeTestError

    script = job.source.get("script")
    try:
        yield
    except RangeTestError:
        raise
    except Exception as exc:
        if script is None:
            raise
        path, label = Path(script), f"--script {Path(script).name}:{job.source['function']}"
        where = _where(exc, path)
        frames = traceback.extract_tb(exc.__traceback__)
        if where:
            raise ValueError(
                f"{label}: your code raised {type(exc).__name__} during the range test: {exc}{where}"
            ) from None
        if frames and Path(frames[-1].filename).is_relative_to(Path(__file__).parents[1]):
            raise  # lrpilot's own check of what the script returned: its message says what is wrong
        raise ValueError(
            f"{label}: the range test failed on the model, data or loss {job.source['function']}() returned: "
            f"{type(exc).__name__}: {exc}{_raised_at(exc)}"
        ) from None


@contextmanager
def _user_code(what: str, path: Path) -> Iterator[None]:
    """The user's own code failing is reported as one line that says where, not as lrpilot's traceback."""
    try:
        yield
    except Exception as exc:
        raise ValueError(f"{what} raised {type(exc).__name__}: {exc}{_where(exc, path)}") from None


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """The script's folder on ``sys.path`` while it loads and while its function runs, so that it can
    import the modules beside it, at the top or inside the function."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def _load_function(path: Path, name: str, label: str) -> Callable[[], Any]:
    """Import the script as a module (never as ``__main__``, so its own entry point does not run)
    and return its function `name`."""
    module_name = f"_lrpilot_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{label}: not a Python file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up here
    with _user_code(f"{label}: importing {path.name}", path):
        spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if function is None:
        functions = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        hint = check.suggest_name(name, functions)
        raise ValueError(
            f"{label}: {path.name} has no function {name!r}{hint}; define {name}() or name yours: --script FILE.py:NAME"
        )
    if not callable(function):
        raise ValueError(f"{label}: {name!r} in {path.name} is not a function (its type is {type(function).__name__})")
    return cast("Callable[[], Any]", function)


def _as_mapping(returned: Any, where: str) -> dict[str, Any]:
    """The three accepted shapes (dict, tuple in find_lr's order, dataclass / NamedTuple) as one dict."""
    if isinstance(returned, Mapping):
        return dict(returned)
    if isinstance(returned, tuple) and hasattr(returned, "_asdict"):
        return dict(returned._asdict())
    if dataclasses.is_dataclass(returned) and not isinstance(returned, type):
        return {f.name: getattr(returned, f.name) for f in dataclasses.fields(returned)}
    if isinstance(returned, tuple) and len(returned) in (3, 4):
        return dict(zip(("model", "optimizer", "data", "loss_fn"), returned, strict=False))
    size = f" of {len(returned)} items" if isinstance(returned, tuple) else ""
    raise ValueError(
        f"{where} returned {type(returned).__name__}{size}; return a dict with model, optimizer, data (and "
        "loss_fn), a tuple (model, optimizer, data[, loss_fn]) or a dataclass with those fields"
    )


def _check_returned(args: dict[str, Any], where: str) -> dict[str, Any]:
    """Name the first thing that is wrong with what the script returned, before any step is run."""
    import inspect

    import torch

    from lrpilot.integrations.torch_finder import find_lr

    known = set(inspect.signature(find_lr).parameters) - set(CLI_OWNED)
    for key in args:
        if key in CLI_OWNED:
            raise ValueError(f"{where} returned {key!r}, which the command line sets ({CLI_OWNED[key]})")
        if key not in known:
            raise ValueError(f"{where} returned an unknown key {key!r}{check.suggest_name(key, known)}")
    expected = {
        "model": (torch.nn.Module, "a torch.nn.Module"),
        "optimizer": (torch.optim.Optimizer, "a torch.optim.Optimizer"),
        "data": (Iterable, "an iterable of batches (a DataLoader)"),
    }
    for key, (kind, wanted) in expected.items():
        if key not in args:
            raise ValueError(f"{where} returned no {key!r}")
        if not isinstance(args[key], kind):
            raise ValueError(f"{where} returned {key}={type(args[key]).__name__}; it must be {wanted}")
    loss_fn = args.get("loss_fn")
    if loss_fn is not None and not callable(loss_fn):
        raise ValueError(f"{where} returned loss_fn={type(loss_fn).__name__}; it must be callable")
    return args


def _seed_everything(seed: int) -> None:
    """A script's model and data order depend on the global generators; seed them all."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _script_job(spec: str, total_steps: int | None) -> _Job:
    """Run the user's function and check what it returned; `total_steps` (--total-steps) wins over theirs."""
    path, name = _split_script(spec)
    label = f"--script {spec}"
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no such file {str(path)!r}")
    path = path.resolve()
    where = f"{label}: {name}()"
    with _importable(path.parent):
        function = _load_function(path, name, label)
        with _user_code(where, path):
            returned = function()
    args = _check_returned(_as_mapping(returned, where), where)
    if total_steps is not None:
        args["total_steps"] = total_steps
    return _Job({"script": str(path), "function": name}, args)


# --- running and reporting ------------------------------------------------------------------------


class _Count(MofNCompleteColumn):
    """Steps done of the phase's total; blank for a phase without a count (fit's loading, saving and
    report), which had read "0/?"."""

    def render(self, task: Bar) -> Text:
        return Text("") if task.total is None else super().render(task)


class _Step(ProgressColumn):
    """The latest step's LR and loss; blank for a phase without steps (fit's loading, saving and
    report), which had read "lr nan  loss nan". The loss keeps its width (``6.23`` and ``6.231``),
    so the bar beside it does not shift at every step on an 80-column terminal; on one line, as a
    `TextColumn` is (the bar shrinks first)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Bar) -> Text:
        lr, loss = task.fields.get("lr", math.nan), task.fields.get("loss", math.nan)
        return Text("") if math.isnan(lr) else Text(f"lr {lr:.2e}  loss {loss:<6.4g}")


def _progress() -> Progress:
    """The range test's bar, on stderr so that --json leaves stdout to the JSON; off where stderr is
    not a terminal (a log file, CI), which would only get a stray blank line from it."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(),
        _Step(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )


@contextmanager
def _interrupted(as_json: bool) -> Iterator[None]:
    """Ctrl-C used to end the command with status 130 and not a word, the progress bar gone: say
    how far the test got and exit as an interrupted program does."""
    from lrpilot.cli._fit import EXIT_INTERRUPTED
    from lrpilot.finder import RangeTestInterrupted

    try:
        yield
    except KeyboardInterrupt as exc:
        message = "interrupted before the range test gave an answer"
        if isinstance(exc, RangeTestInterrupted) and exc.record.lrs:
            record = exc.record
            which = f" (test {len(exc.records)})" if len(exc.records) > 1 else ""
            where = f"{record.steps} of {record.num_steps} steps (lr {record.lrs[-1]:.3g})"
            message = f"range test{which} interrupted after {where}: no suggestion from a partial curve"
        stderr.print(f"[yellow]{escape(message)}[/]", highlight=False, soft_wrap=True)
        if as_json:
            print_json({"error": message})
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def _finder_errors() -> Iterator[None]:
    """The finder's own errors (a curve with no answer, a loss that reaches no parameter, a wrong
    type) are messages for the user, like bad options."""
    from lrpilot.finder import RangeTestError

    try:
        yield
    except (RangeTestError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def _run(job: _Job, ramp: dict[str, Any]) -> tuple[FinderResult, list[str]]:
    """`find_lr` with a progress bar; the warnings it gives (an unclear fall, a curve still falling
    at the end) are returned to print, not raised."""
    import torch

    from lrpilot.autopilot._search import repeated_batches, too_high
    from lrpilot.finder import RangeTestWarning
    from lrpilot.integrations.torch_finder import find_lr

    threads = torch.get_num_threads()
    if job.threads is not None:
        torch.set_num_threads(job.threads)  # the tasks are small: a second thread only contends
    label = "range test" if ramp["mode"] == "fast" else "range tests"
    try:
        with _progress() as progress, warnings.catch_warnings(record=True) as caught, _finder_errors():
            warnings.simplefilter("always", RangeTestWarning)  # every time, not once per process
            bar = progress.add_task(label, total=ramp["num_steps"], lr=ramp["start_lr"], loss=math.nan)

            def advance(point: int, lr: float, loss: float) -> None:
                progress.update(bar, completed=point + 1, lr=lr, loss=loss)

            with _script_run(job):  # inside _finder_errors, which would take a TypeError's frames away
                result = find_lr(**job.args, **ramp, callback=advance)
    finally:
        torch.set_num_threads(threads)
    # the finder's words name its parameter; here the user set it as the option
    notes = [str(w.message).replace("end_lr", "--end-lr").replace("num_steps", "--steps") for w in caught]
    high = too_high(result.records)
    if high is not None:  # the numbers then read a curve of a model already thrown out (fit retries lower)
        why = high.removesuffix(", so the best LR lies under the rules' band")
        notes.insert(
            0,
            f"the range test started above the LRs this model trains at ({why}): its peak, band and max stable LR "
            f"are not measurements; run it again from a lower --start-lr (e.g. {ramp['start_lr'] / 100:.3g})",
        )
    repeated = None if job.task is None else repeated_batches(job.task, result.steps_used, len(result.records))
    if repeated is not None:
        notes.append(f"{repeated}; more data, a smaller --batch-size or fewer --steps give it fresh ones")
    return result, notes


def _spec(result: FinderResult) -> str | None:
    """The ready schedule with its peak rounded to 3 significant digits: the band spans a factor of
    about 4, so further digits are noise, and the short spec is what gets pasted into a config."""
    if result.schedule is None:
        return None
    from lrpilot.schedules import parse

    return parse({**result.schedule.to_dict(), "peak": float(f"{result.peak_lr:.3g}")}).to_string()


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers (a noiseless curve's drop_sigma is inf) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _table(result: FinderResult) -> Table:
    record = result.record
    low, high = result.band
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("suggested peak LR", f"[bold green]{result.peak_lr:.3g}[/]")
    table.add_row("band (about as good)", f"{low:.3g} – {high:.3g}")
    table.add_row("max stable LR", f"{result.max_stable_lr:.3g}")
    if len(result.records) == 1:
        table.add_row("range test", f"{record.steps} of {record.num_steps} steps, {record.stop_reason}")
    else:  # thorough mode: every test, not the first one's alone
        runs = ", ".join(f"{r.steps} ({r.stop_reason})" for r in result.records)
        table.add_row(f"{len(result.records)} range tests", f"{runs} of {record.num_steps} steps")
    if result.probes:
        table.add_row("probe runs", f"{len(result.probes)} ({sum(p.steps for p in result.probes)} steps)")
    table.add_row("steps used", str(result.steps_used))
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("method", result.method)
    return table


def _header(job: _Job, ramp: dict[str, Any], seed: int) -> str:
    what = job.source.get("task") or job.source.get("model") or f"{job.source['script']}:{job.source['function']}"
    mixed = job.source.get("precision", "fp32")
    autocast = "" if mixed == "fp32" else f", {mixed} autocast"
    where = f" on {job.source['device']}" if "device" in job.source else ""
    return (
        f"[bold]{escape(what)}[/]: range test {ramp['start_lr']:.0e} → {ramp['end_lr']:.0e} over "
        f"{ramp['num_steps']} steps, {ramp['mode']} mode, seed {seed}{autocast}{where}"
    )


def find(  # noqa: PLR0917  (typer reads the options from the signature)
    task: Annotated[
        str | None,
        typer.Option("--task", help="Built-in task: digits (the default), shakespeare, sst2-full, sst2-lora."),
    ] = None,
    script: Annotated[
        str | None,
        typer.Option("--script", help="FILE.py[:FUNCTION] returning your model, optimizer, data and loss (below)."),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="fast: one range test. thorough: 2–4 on fresh batches (~10 % of the run).")
    ] = "fast",
    steps: Annotated[int, typer.Option("--steps", "-n", help="Optimizer steps of the range test.")] = 100,
    start_lr: Annotated[float, typer.Option("--start-lr", help="LR of the first step.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="LR of the last step.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the model, the data order and the test.")] = 0,
    total_steps: Annotated[
        int | None,
        typer.Option(
            "--total-steps",
            help="--script, --model: the length of your run, for the ready schedule (--model: one epoch by default).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder with sst2_train.csv and sst2_validation.csv.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the range test here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    model: ModelOption = None,
    data: DataOption = None,
    task_type: TaskTypeOption = None,
    method: MethodOption = None,
    columns: ColumnsOption = None,
    batch_size: BatchSizeOption = None,
    max_length: MaxLengthOption = None,
    lora_rank: LoraRankOption = None,
    lora_alpha: LoraAlphaOption = None,
    lora_targets: LoraTargetsOption = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="--model: where the range test runs, as fit --device: auto (a CUDA GPU where torch sees one, else "
            "the CPU; the default), cpu, cuda or cuda:N.",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="--model: the range test's forward passes: fp32, bf16, or fp16 (with a loss scale), autocast on "
            "the device, as fit --precision trains. Not given: as fit's range test, bf16 for a 10M+ parameter "
            "model where the hardware computes it, else fp32.",
        ),
    ] = None,
) -> None:
    """Run the LR range test and suggest the peak LR of a warmup + decay schedule, with its band.

    Without --task, --script or --model it runs on the digits task (an MLP on scikit-learn's
    digits). --model DIR --data FILE range-tests your Hugging Face model as `lrpilot fit` trains it.
    """
    with errors_as_messages(as_json), _interrupted(as_json):
        plot = output_file("find", "--plot", plot)  # before the range test, not after it
        ramp = _ramp(mode, steps, start_lr, end_lr)
        check.step_count("find", "--seed", seed, 0, 2**32 - 1)
        user: dict[str, Any] = {"task_type": task_type, "method": method, "columns": columns}
        user.update(batch_size=batch_size, max_length=max_length)
        user.update(lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets)
        user.update(device=device, precision=precision)
        job = _job(
            task, script, seed=seed, total_steps=total_steps, data_dir=data_dir, model=model, data=data, user=user
        )
        if mode == "thorough" and job.args.get("total_steps") is None:
            raise ValueError(
                "find: --mode thorough needs the run's length: --total-steps N (or total_steps from the script)"
            )
        if not as_json:
            console.print(_header(job, ramp, seed), soft_wrap=True)
        result, notes = _run(job, ramp)
        written = None
        if plot is not None:
            from lrpilot.report.finder_plots import plot_range_test

            written = plot_range_test(result, plot)
    spec = _spec(result)
    said = [*job.notes, *_task_passes(job, result)]
    if as_json:
        payload = {**job.source, "mode": mode, "seed": seed, **result.to_dict(), "spec": spec}
        extra = {"warnings": notes, "notes": said, "plot": str(written) if written else None}
        print_json(_finite({**payload, **extra}))
        return
    console.print(_table(result))
    horizon = result.details.get("horizon")
    if horizon:
        console.print(escape(Horizon(lr=result.peak_lr, **horizon).note()), soft_wrap=True, highlight=False)
    # on its own line, not in a table cell, so that it can be copied whole at any terminal width
    console.print(
        f"schedule: [cyan]{escape(spec)}[/]" if spec else "schedule: give --total-steps N for a ready one",
        soft_wrap=True,
    )
    for note in said:  # as fit prints them
        console.print(f"[dim]note[/] {escape(note)}", highlight=False, soft_wrap=True)
    for note in notes:
        stderr.print(f"[yellow]warning[/] {escape(note)}", highlight=False, soft_wrap=True)
    if written:
        console.print(f"plot written to {written}")


def _ramp(mode: str, steps: int, start_lr: float, end_lr: float) -> dict[str, Any]:
    """The range test's settings, checked before anything is built."""
    from lrpilot.finder import MODES

    check.choice("find", "--mode", mode, MODES)
    check.step_count("find", "--steps", steps, 5, 100_000)
    check.positive("find", "--start-lr", start_lr)
    check.positive("find", "--end-lr", end_lr)
    if start_lr >= end_lr:
        raise ValueError(f"find: --start-lr must be below --end-lr, got {start_lr:g} and {end_lr:g}")
    return {"mode": mode, "num_steps": steps, "start_lr": start_lr, "end_lr": end_lr}


def _job(
    task: str | None,
    script: str | None,
    *,
    seed: int,
    total_steps: int | None,
    data_dir: Path | None,
    model: Path | None = None,
    data: Path | None = None,
    user: dict[str, Any] | None = None,
) -> _Job:
    """What to run on: the script, a task, a user's model, or the default task; contradictory
    options are errors."""
    user = user or {}
    if sum(x is not None for x in (task, script, model)) > 1:
        raise ValueError("find: give one of --task, --script or --model")
    given = {"--data": data, **{f"--{k.replace('_', '-')}": v for k, v in user.items()}}
    for name, value in given.items() if model is None else ():
        if value is not None:
            raise ValueError(f"find: {name} applies to --model (your own Hugging Face model)")
    if total_steps is not None:
        check.step_count("find", "--total-steps", total_steps, 1)
        if script is None and model is None:
            raise ValueError(
                "find: --total-steps applies to --script and --model; a task's run length is fixed by its recipe"
            )
    _seed_everything(seed)
    if model is not None:
        if data_dir is not None:
            raise ValueError("find: --data-dir applies to the sst2 tasks, not to --model")
        return _model_job(model, data, seed=seed, total_steps=total_steps, user=user)
    if script is None:
        return _task_job(task or DEFAULT_TASK, data_dir, seed)
    if data_dir is not None:
        raise ValueError("find: --data-dir applies to the sst2 tasks, not to --script")
    return _script_job(script, total_steps)
