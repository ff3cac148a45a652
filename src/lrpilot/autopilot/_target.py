"""What fit trains: a built-in task or the user's model and data, the model built from it, the
rules' recommendation for that model, and the recipe fitted to the budget (what fit, tune and
``lrpilot find --model`` each build the same way)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpilot import _validate as check
from lrpilot.autopilot._budget import Budget
from lrpilot.autopilot._data import name_key
from lrpilot.autopilot._hf import LABELS_FILE, HfTask, check_hf_options, load_hf_task, recipe_from
from lrpilot.autopilot._lora import LoraOptions, calibration_note, lora_options
from lrpilot.autopilot._pooled import head_note
from lrpilot.rules import CALIBRATED_STEPS, Recommendation, recommend, stretched_to_epoch
from lrpilot.tasks import Recipe, Task, get_task, task_names
from lrpilot.tasks._device import Precision

__all__ = [
    "DEFAULT_TASK",
    "FINETUNE_WARMUP",
    "TARGET_ARGUMENTS",
    "Target",
    "TargetSpec",
    "build_model",
    "builtin_target",
    "check_target",
    "describe_budget",
    "fitted_recipe",
    "planned",
    "recommended",
    "resolve_target",
    "user_target",
]

FINETUNE_WARMUP = 0.1
"""The rules' fine-tuning warmup (10 % of the run, ``warmup-finetuning``), which a user model's recipe follows."""
NEEDS_DATA = "--model needs --data FILE (.csv, .jsonl, .json or .txt with a text column)"


@dataclass(frozen=True)
class TargetSpec:
    """What to train, as fit's arguments say it (None: not given): a built-in `task`, or a user's
    `model` and `data` with their options. One value handed down from fit's (or tune's) keyword
    arguments to `resolve_target` and `check_target`, rather than each of them listing all thirteen;
    `owner` is the command their errors name (``"tune: --model needs --data FILE"``)."""

    task: str | None = None
    model: str | Path | None = None
    data: str | Path | None = None
    eval_data: str | Path | None = None
    task_type: str | None = None
    method: str | None = None
    data_dir: str | Path | None = None
    batch_size: int | None = None
    columns: Mapping[str, str] | None = None
    max_length: int | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_targets: str | Sequence[str] | None = None
    owner: str = "fit"

    @classmethod
    def of(cls, arguments: Mapping[str, Any], owner: str = "fit") -> TargetSpec:
        """The spec from keyword arguments that hold its fields among others (fit's own, a resume's
        stored ones, a study's stored target); one they lack (a checkpoint saved before the LoRA
        options existed) keeps its default."""
        return cls(**{name: arguments[name] for name in TARGET_ARGUMENTS if name in arguments}, owner=owner)


TARGET_ARGUMENTS = tuple(field.name for field in fields(TargetSpec) if field.name != "owner")
"""fit's arguments that say what it trains: `TargetSpec`'s fields, its `owner` aside. A resume
rebuilds the same model, its adapters included, from them as its checkpoint stored them
(`TargetSpec.of`: one saved without the LoRA ones rebuilds the defaults)."""


@dataclass(frozen=True)
class Target:
    """A task to train plus what the rules need to know about it."""

    task: Task
    label: str
    method: str
    """`recommend`'s method: pretraining from scratch, full fine-tuning or LoRA."""
    steps: int
    """The default budget in steps."""
    seq_len: int | None = None
    calibrated: tuple[int, int] = CALIBRATED_STEPS
    """The run lengths the range test's rule is calibrated at for this task (`horizon_factor`): a
    built-in task's own recipe; for a user's model the calibration suite's range, stretched to one
    epoch of the data."""
    notes: tuple[str, ...] = ()
    """What the run's notes say about the model fit built (the head it put on a user's checkpoint)."""


def builtin_target(name: str, data_dir: Path | None, owner: str = "fit") -> Target:
    """A built-in task; its own recipe's length is what the range test's rule was calibrated at."""
    from lrpilot.tasks._shakespeare import ShakespeareTask
    from lrpilot.tasks._sst2 import Sst2Task

    check.choice(owner, "--task", name, task_names())
    if data_dir is not None and not name.startswith("sst2"):
        raise ValueError(f"{owner}: --data-dir applies to the sst2 tasks only, not to {name!r}")
    task = get_task(name, data_dir=data_dir) if data_dir is not None else get_task(name)
    method = ("lora" if task.lora else "full") if isinstance(task, Sst2Task) else "pretraining"
    seq_len = task.context if isinstance(task, ShakespeareTask) else None
    steps = task.recipe.total_steps
    return Target(task, name, method, steps, seq_len, calibrated=(steps, steps))


def user_target(
    model: Path,
    data: Path | None,
    eval_data: Path | None,
    *,
    kind: str,
    method: str,
    batch_size: int,
    columns: Mapping[str, str] | None = None,
    max_length: int | None = None,
    lora: LoraOptions | None = None,
    owner: str = "fit",
) -> Target:
    """A local Hugging Face model fine-tuned on the user's data (`load_hf_task`, its adapters
    `lora`'s); the rule's calibrated run lengths stretched to one epoch of it."""
    if data is None:
        raise ValueError(f"{owner}: {NEEDS_DATA}")
    task = load_hf_task(
        model,
        data,
        eval_data,
        kind=kind,
        method=method,
        batch_size=batch_size,
        columns=columns,
        max_length=max_length,
        lora=lora,
        owner=owner,
    )
    heads = (
        head_note(task.pooling) if task.pooling else None,
        calibration_note(task.lora, task.kind) if task.method == "lora" else None,
        _dtype_note(task),
        _names_note(task),
        _chance_note(task),
        _gaps_note(task),
        _format_note(task),
        _eval_note(task, held_out=eval_data is None),
        _batch_note(task, batch_size),
    )
    notes = tuple(note for note in heads if note)
    return Target(
        task, task.name, method, task.default_steps, calibrated=stretched_to_epoch(task.epoch_steps), notes=notes
    )


def _dtype_note(task: HfTask) -> str | None:
    """Weights stored in a half precision are trained in float32: say so, and how to compute in it."""
    if task.stored_dtype not in ("bfloat16", "float16"):
        return None
    return (
        f"the checkpoint's weights are stored in {task.stored_dtype}; fit trains them in float32 (AdamW's small "
        "updates would round away in half-precision weights); with --precision bf16 or fp16 the forward passes "
        "compute in it and the frozen weights (a LoRA base) stay as stored"
    )


def _format_note(task: HfTask) -> str | None:
    """A causal LM's data: which tokens the loss counts, and what the length limit and the chat
    template did to the rows."""
    if task.lm_format is None:
        return None
    if task.lm_format == "text":
        ended = "each text ends with the end-of-text token"
        if task.tokenizer is not None and task.tokenizer.eos_token_id is None:
            ended = "the tokenizer has no end-of-text token, so the texts end unmarked (the model learns no stop)"
        note = f"text data: the loss counts every token, and {ended}"
    else:
        counted = "assistant turns'" if task.lm_format == "messages" else "completions'"
        targets = task.train_data.targets or []
        share = sum(map(sum, targets)) / max(1, sum(map(len, targets)))
        note = f"{task.lm_format} data: the loss counts the {counted} tokens only ({share:.0%} of the training tokens)"
    if task.cut:
        note += (
            f"; {task.cut} of {len(task.train_data.ids)} training sequences were longer than {task.max_length} "
            "tokens and were cut there (their ends are not trained; --max-length raises the limit)"
        )
    split, chats = task.split
    if split:
        note += (
            f"; the chat template renders earlier turns differently once a later one follows (as reasoning models "
            f"drop earlier reasoning), so {split} of {chats} training chats train each such turn in the context the "
            f"model writes it in, as {len(targets)} sequences in all"
        )
    dropped, held = task.left_out
    if dropped or held:
        note += (
            f"; {dropped} training and {held} evaluation rows had none left within the first {task.max_length} "
            "tokens and are left out (--max-length raises the limit)"
        )
    return note


def _names_note(task: HfTask) -> str | None:
    """How labels given as names became class ids, and where the names are saved."""
    if not task.label_names:
        return None
    saved = f"{LABELS_FILE}, and config.json's id2label"
    if task.label_match is not None:
        return _numeric_names_note(task, saved)
    ids = ", ".join(f"{i} = {name}" for i, name in enumerate(task.label_names))
    note = f"labels are names, read as class ids {ids}; the saved model keeps them ({saved})"
    for spellings in task.label_spellings:
        quoted = ", ".join(repr(s) for s in spellings)
        name = next(n for n in task.label_names if name_key(n) == name_key(spellings[0]))
        note += f"; {quoted} differ only in case or spaces and are one class, {name!r}"
    return note


def _numeric_names_note(task: HfTask, saved: str) -> str:
    """Numeric labels matched to a classifier checkpoint's numeric label names (`HfTask.label_match`):
    which output each trains, and where they would also have fit as class ids, what that would have
    trained instead."""
    names = task.label_names
    outputs = ", ".join(f"{i} = {name!r}" for i, name in enumerate(names))
    note = (
        f"the labels are numbers, and so are the names of the model's outputs (id2label {outputs}): the labels were "
        f"matched to the model's label names, not read as class ids (a {names[0]} trains output 0, the one named "
        f"{names[0]!r}); the saved model keeps the names ({saved})"
    )
    if task.label_match == "ambiguous":
        note += (
            f"; every label would also fit as a class id 0 … {len(names) - 1}, which trains other outputs (a 1 would "
            f"train output 1, named {names[1]!r}): fit reads them as the model's names; if they are class ids, give "
            "each label as its id's name instead"
        )
    return note


UNBALANCED = 0.95
"""`_chance_note`: labels whose entropy is below this share of ln(classes) are called unbalanced
(a 75 % / 25 % split is at 0.81, 60 % / 40 % at 0.97)."""


def _chance_note(task: HfTask) -> str | None:
    """What the notes say when a classifier's chance level is its unbalanced labels' entropy (over
    the classes its training data has: those it lacks are `_gaps_note`'s)."""
    chance, classes, labels = task.chance_loss, task.classes, task.train_data.labels
    if chance is None or classes is None or labels is None:
        return None
    present = int((torch.bincount(labels) > 0).sum())
    if present < 2 or chance >= UNBALANCED * math.log(present):
        return None
    largest = int(torch.bincount(labels).max()) / len(labels)
    return (
        f"unbalanced labels (the largest class is {largest:.0%} of the training data): the guard's chance level is "
        f"their entropy, {chance:.3g}, not ln {present} = {math.log(present):.3g}, so a model that collapses onto "
        "the majority class (its accuracy that class's share) is rolled back rather than read as one that learned"
    )


SMALL_EVAL = 100
"""`_eval_note`: a classifier's evaluation of fewer examples than this gets a note (an accuracy on
100 is within ±0.1 at 95 %; on 2 rows, 10 % of a 20-row --data, it is 0, 0.5 or 1)."""


def _eval_note(task: HfTask, *, held_out: bool) -> str | None:
    """What the evaluation cannot tell: examples it shares with the training data, token for token
    (rows copied into --eval, or duplicate rows of --data split across the held-out tenth), which
    it scores as new text; and a classifier's accuracy on too few examples to compare runs by."""
    examples = len(task.val_data.ids)
    trained = {tuple(ids) for ids in task.train_data.ids}
    shared = sum(tuple(ids) in trained for ids in task.val_data.ids)
    parts = []
    if shared:
        fix = "--data holds these rows more than once" if held_out else "leave them out of --eval"
        parts.append(
            f"{shared} of the {examples} evaluation examples are also in the training data, token for token: the "
            f"evaluation scores them as new text, so its loss and accuracy flatter the model ({fix})"
        )
    if task.kind == "classification" and examples < SMALL_EVAL:
        where = f"the {examples} rows held out of --data" if held_out else f"the {examples} rows of --eval"
        parts.append(
            f"the evaluation is {where}: an accuracy on so few moves in steps of {1 / examples:.2g} and is uncertain "
            f"by up to ±{min(0.5, 0.98 / math.sqrt(examples)):.2f} (95 %); an --eval of {SMALL_EVAL} or more examples "
            "gives a figure to compare runs by"
        )
    return "; ".join(parts) or None


def _batch_note(task: HfTask, asked: int) -> str | None:
    """Where the batch size asked for is above the training examples: batches are of all of them
    (--batch-size 64 on 36 rows had trained batches of 36, and run.json's batch size, in silence)."""
    used = task.recipe.batch_size
    if used == asked:
        return None
    return f"--batch-size {asked} is more than the {used} training examples: each step trains on all {used}"


def _gaps_note(task: HfTask) -> str | None:
    """Class ids with no training example: integer labels are read as 0 … the largest, so ids with
    gaps (0, 2, 5) give a head with outputs that never train."""
    classes, labels = task.classes, task.train_data.labels
    if classes is None or labels is None:
        return None
    missing = [i for i, n in enumerate(torch.bincount(labels, minlength=classes).tolist()) if n == 0]
    if not missing:
        return None
    if task.label_names:  # named classes lack examples only where the checkpoint's own head has more
        named = ", ".join(task.label_names[i] for i in missing)
        return (
            f"the checkpoint's class(es) {named} have no training example: its head has {classes} outputs and "
            f"{len(missing)} of them never train"
        )
    ids = ", ".join(map(str, missing))
    return (
        f"class id(s) {ids} have no training example: the head has {classes} outputs and {len(missing)} of them "
        "never train (labels are read as class ids 0 … the largest; number them 0 … n−1, or give them as names)"
    )


def resolve_target(spec: TargetSpec) -> Target:
    """A built-in task, or the user's model and data; options that belong to the other are errors,
    and so are LoRA options without ``--method lora`` (`lora_options`)."""
    if spec.model is None:
        given = {
            "--data": spec.data,
            "--eval": spec.eval_data,
            "--task-type": spec.task_type,
            "--method": spec.method,
            "--columns": spec.columns,
            "--max-length": spec.max_length,
            "--lora-rank": spec.lora_rank,
            "--lora-alpha": spec.lora_alpha,
            "--lora-targets": spec.lora_targets,
        }
        for name, value in {**given, "--batch-size": spec.batch_size}.items():
            if value is not None:
                raise ValueError(
                    f"{spec.owner}: {name} applies to --model (your own model); a built-in task's recipe fixes it"
                )
        data_dir = None if spec.data_dir is None else Path(spec.data_dir)
        return builtin_target(spec.task or DEFAULT_TASK, data_dir, spec.owner)
    _check_beside_model(spec)
    settings = _user_settings(spec)
    return user_target(
        Path(spec.model),
        None if spec.data is None else Path(spec.data),
        None if spec.eval_data is None else Path(spec.eval_data),
        columns=spec.columns,
        max_length=spec.max_length,
        lora=_lora(spec, settings["method"]),
        owner=spec.owner,
        **settings,
    )


def check_target(spec: TargetSpec, *, plan: Budget | None = None) -> Recipe:
    """`resolve_target`'s checks with nothing read or loaded (a built-in task is a look-up): the
    options, the paths of the model and its data, and a step budget in `plan` against the warmup
    of the recipe it compresses: a built-in task's own; for a user's model (whose recipe is the
    rules', known once it loads) their fine-tuning warmup, `FINETUNE_WARMUP` of the run. Returns
    that recipe (a user's model's: its batch size, and a placeholder length of 1000 steps)."""
    if spec.model is None:
        recipe = resolve_target(spec).task.recipe
    else:
        _check_beside_model(spec)
        if spec.data is None:
            raise ValueError(f"{spec.owner}: {NEEDS_DATA}")
        settings = _user_settings(spec)
        _lora(spec, settings["method"])
        check_hf_options(
            Path(spec.model),
            Path(spec.data),
            None if spec.eval_data is None else Path(spec.eval_data),
            columns=spec.columns,
            max_length=spec.max_length,
            owner=spec.owner,
            **settings,
        )
        share = round(FINETUNE_WARMUP * 1000)  # a run of any length: a budget's check reads the warmup's share
        recipe = Recipe(settings["batch_size"], 1000, share, decay="linear", floor_ratio=0.0, weight_decay=0.01)
    if plan is not None and plan.steps is not None:
        fitted_recipe(recipe, plan.steps, describe_budget(plan), owner=spec.owner)
    return recipe


def _check_beside_model(spec: TargetSpec) -> None:
    """A user's model takes no built-in task and no SST-2 folder."""
    if spec.task is not None:
        raise ValueError(f"{spec.owner}: give --task (a built-in task) or --model (your own), not both")
    if spec.data_dir is not None:
        raise ValueError(f"{spec.owner}: --data-dir applies to the sst2 tasks, not to --model")


def _user_settings(spec: TargetSpec) -> dict[str, Any]:
    """A user's model's task type, method and batch size, the defaults where not given."""
    return {
        "kind": spec.task_type or "classification",
        "method": spec.method or "full",
        "batch_size": 16 if spec.batch_size is None else spec.batch_size,
    }


def _lora(spec: TargetSpec, method: str) -> LoraOptions:
    """The spec's adapters, checked against the run's `method` (`lora_options`)."""
    return lora_options(spec.owner, method, spec.lora_rank, spec.lora_alpha, spec.lora_targets)


DEFAULT_TASK = "shakespeare"
"""What ``lrpilot fit`` trains with no arguments: the char-GPT on tiny shakespeare (shipped), a few
minutes end to end on one CPU thread."""


def describe_budget(plan: Budget | None) -> str:
    """A budget as messages name it: as given, or "the default"."""
    return "the default" if plan is None else str(plan)


def fitted_recipe(recipe: Recipe, steps: int, budget: str, *, owner: str = "fit") -> Recipe:
    """The recipe compressed (or stretched) to `steps`, warmup in proportion. Every schedule fit
    trains with has a warmup (Adam's first updates are its largest relative to the weights): a
    budget whose warmup rounds to nothing is refused, with the smallest one that has a step of it."""
    fitted = recipe.shortened(steps)
    if fitted.warmup_steps < 1:
        ratio = recipe.warmup_steps / recipe.total_steps if recipe.warmup_steps else FINETUNE_WARMUP
        smallest = next(n for n in itertools.count(1) if round(ratio * n) >= 1)  # as `Recipe.shortened` rounds
        given = budget if budget == f"{steps} steps" else f"{budget}, {steps} steps"  # a time budget's steps too
        raise ValueError(
            f"{owner}: the budget ({given}) is too small for a warmup: the schedule warms up over "
            f"{ratio:.0%} of the run, which needs at least {smallest} steps"
        )
    return fitted


def build_model(
    target: Target, seed: int, device: torch.device | None = None, precision: Precision | None = None
) -> nn.Module:
    """The fresh model of `target` (its seed's head or adapters) on `device` (the CPU by default),
    its trainable weights float32 (`Precision.master`, for `precision`: fp32 by default)."""
    return (precision or Precision()).master(target.task.build_model(seed)).to(device or torch.device("cpu"))


def recommended(target: Target, net: nn.Module, steps: int) -> tuple[Recommendation, Task]:
    """The rules' recommendation for `net` trained `steps` steps at the task's batch size, and the
    task to train: a user's model with the recommendation's warmup and decay (`recipe_from`), a
    built-in task with its own recipe."""
    batch = target.task.recipe.batch_size
    rec = recommend(net, target.method, batch_size=batch, steps=steps, seq_len=target.seq_len)
    job = target.task.with_recipe(recipe_from(rec, batch)) if isinstance(target.task, HfTask) else target.task
    return rec, job


def planned(
    target: Target, net: nn.Module, steps: int, budget: str, *, owner: str = "fit"
) -> tuple[Recommendation, Task, Recipe]:
    """`recommended`, and the task's recipe fitted to `steps` (`fitted_recipe`: a budget, named
    `budget` in its error, too short for a warmup is refused for `owner`)."""
    rec, job = recommended(target, net, steps)
    return rec, job, fitted_recipe(job.recipe, steps, budget, owner=owner)
