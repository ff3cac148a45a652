"""A `Recommendation` in the settings of the tools people train with.

None of these imports the tool: each is a plain mapping to the tool's own names. Where a tool
cannot run the recommended schedule, the exporter says so (a ``ValueError`` naming what is missing)
or, where the tool has no schedule at all (llama.cpp), its docstring says what is left out.

Every export that names an optimizer writes the one asked for (``recommend(...,
optimizer="paged_adamw_8bit")``), in the tool's spelling (`lrpilot.rules._optimizers`); llama.cpp,
which has only AdamW and SGD, gets the family, and `export_notes` says so.

Warmup conventions differ: lrpilot's schedules take a first warmup step above 0 (``warmup_offset=1``);
Hugging Face, TRL, axolotl and torchtune warm up from exactly 0 (``lr × s / W``). The tool exports
use each tool's own linear warmup over the same number of steps; `to_pytorch` reproduces
``rec.schedule`` exactly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

from lrpilot.integrations.transformers import to_training_args
from lrpilot.rules._optimizers import SGD_MOMENTUM
from lrpilot.rules._recommend import Recommendation

__all__ = [
    "FORMATS",
    "export_notes",
    "to_axolotl",
    "to_hf",
    "to_llama_cpp",
    "to_pytorch",
    "to_torchtune",
    "to_trl",
    "torchtune_blockers",
]

FORMATS = ("hf", "trl", "axolotl", "torchtune", "llama-cpp", "pytorch")
"""Export formats (``lrpilot recommend --format``)."""


def _hf_schedule_args(rec: Recommendation) -> dict[str, Any]:
    """`to_training_args` of the schedule with Hugging Face's warmup from 0 (same length)."""
    return to_training_args(dataclasses.replace(cast(Any, rec.schedule), warmup_offset=0.0))


def to_hf(rec: Recommendation) -> dict[str, Any]:
    """``transformers.TrainingArguments`` keyword arguments:
    ``TrainingArguments(output_dir, **to_hf(rec))``.

    The LR, scheduler, warmup and run length (``learning_rate``, ``lr_scheduler_type``,
    ``lr_scheduler_kwargs``, ``warmup_steps``, ``max_steps``: see
    `lrpilot.integrations.transformers.to_training_args`) and the optimizer (``optim``: the one asked
    for, ``adamw_torch`` for ``adamw``; ``adamw_torch`` with ``weight_decay=0.0`` for Adam, which it
    then is exactly; SGD with ``optim_args="momentum=0.9"``, which transformers 5 passes to
    ``torch.optim.SGD``). The batch
    size is left to you (``per_device_train_batch_size × gradient_accumulation_steps × devices``
    should be the recommendation's ``batch_size``). LoRA+ has no ``TrainingArguments`` field: use
    ``peft.optimizers.create_loraplus_optimizer(..., loraplus_lr_ratio=rec.lora_plus_ratio)``.

    >>> from lrpilot.rules import recommend
    >>> to_hf(recommend("7B", "full", steps=1000))
    {'learning_rate': 1e-05, 'lr_scheduler_type': 'linear', 'lr_scheduler_kwargs': {}, 'warmup_steps': 100, \
'max_steps': 1000, 'optim': 'adamw_torch'}
    """
    args = _hf_schedule_args(rec)
    args["optim"] = rec.setup.optimizer_spec.hf
    if rec.setup.optimizer == "sgd":
        args["optim_args"] = f"momentum={SGD_MOMENTUM:g}"
    if rec.setup.optimizer == "adam":
        args["weight_decay"] = 0.0
    return args


def to_trl(rec: Recommendation) -> dict[str, Any]:
    """TRL config keyword arguments (``SFTConfig``, ``DPOConfig``, ``GRPOConfig``; Unsloth passes
    them through): the same as `to_hf`, since every TRL config subclasses ``TrainingArguments``,
    and TRL's own defaults (e.g. SFTConfig's ``learning_rate``) are overridden by them."""
    return to_hf(rec)


def to_axolotl(rec: Recommendation) -> str:
    """An axolotl YAML fragment: ``learning_rate``, ``lr_scheduler``, ``cosine_min_lr_ratio`` (for a
    cosine's floor), ``warmup_steps``, ``max_steps``, ``optimizer`` (Hugging Face's ``optim`` names, as
    in `to_hf`: ``paged_adamw_8bit`` stays ``paged_adamw_8bit``); LoRA+ as a commented-out
    ``loraplus_lr_ratio`` (an option). Merge it into your config.

    A schedule that is neither a plain cosine or linear decay nor a cosine with a floor (a linear
    decay to a floor, Hugging Face's ``polynomial``; WSD) is written as the Hugging Face type `to_hf`
    gives, with its ``lr_scheduler_kwargs``: axolotl's ``lr_scheduler`` takes any of them and passes
    both to ``TrainingArguments``.

    >>> from lrpilot.rules import recommend
    >>> print(to_axolotl(recommend("7B", "full", steps=1000)), end="")
    # lrpilot recommend: full, 7B parameters, adamw, 1,000 steps (confidence medium)
    learning_rate: 1.0e-05
    lr_scheduler: linear
    warmup_steps: 100
    max_steps: 1000
    optimizer: adamw_torch
    """
    args = _hf_schedule_args(rec)
    kind = args["lr_scheduler_type"]
    lines = [f"# lrpilot recommend: {_summary(rec)}", f"learning_rate: {_yaml_float(rec.peak_lr)}"]
    if kind in ("cosine", "linear"):
        lines.append(f"lr_scheduler: {kind}")
    elif kind == "cosine_with_min_lr" and "min_lr_rate" in args["lr_scheduler_kwargs"]:
        lines.append("lr_scheduler: cosine")
        lines.append(f"cosine_min_lr_ratio: {_yaml_float(args['lr_scheduler_kwargs']['min_lr_rate'])}")
    else:
        lines.append(f"lr_scheduler: {kind}")
        kwargs = args["lr_scheduler_kwargs"]
        if kwargs:
            lines.append("lr_scheduler_kwargs:")
            lines += [f"  {key}: {_yaml_scalar(value)}" for key, value in kwargs.items()]
    lines.append(f"warmup_steps: {args['warmup_steps']}")
    lines.append(f"max_steps: {args['max_steps']}")
    lines.append(f"optimizer: {rec.setup.optimizer_spec.hf}")
    if rec.setup.optimizer == "sgd":
        lines.append(f'optim_args: "momentum={SGD_MOMENTUM:g}"')
    if rec.setup.optimizer == "adam":
        lines.append("weight_decay: 0.0  # AdamW without weight decay is Adam")
    if rec.lora_plus_ratio is not None:
        ratio = rec.lora_plus_ratio
        lines.append(f"# loraplus_lr_ratio: {_yaml_float(ratio)}  # LoRA+ (optional): lora_B at {ratio:g}x lora_A's LR")
    return "\n".join(lines) + "\n"


def to_torchtune(rec: Recommendation) -> list[str]:
    """torchtune command-line overrides (``tune run RECIPE --config CONFIG <overrides>``).

    torchtune's one built-in scheduler is
    ``torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup`` (linear warmup from 0,
    cosine to 0), so only a cosine recommendation without a floor maps onto it; others raise
    ``ValueError`` naming what blocks it (`torchtune_blockers`): a linear decay
    (``recommend(..., decay="cosine")`` gives a cosine one for fine-tuning) or pretraining's floor
    (no torchtune option keeps one: `to_pytorch` writes the exact schedule for a custom recipe).
    The optimizer is the one asked for (``bitsandbytes.optim.PagedAdamW8bit`` for
    ``paged_adamw_8bit``, ``optimizer.fused=True`` for ``adamw_torch_fused``; a bitsandbytes
    optimizer needs ``~optimizer.fused`` where the config sets it, as `export_notes` says). The run length
    is ``epochs=1 max_steps_per_epoch=STEPS``: torchtune sizes the cosine by epochs × steps per epoch,
    which is STEPS when the data holds at least STEPS optimizer steps.

    >>> from lrpilot.rules import recommend
    >>> to_torchtune(recommend("8B", "lora", steps=1000))[:2]
    ['optimizer._component_=torch.optim.AdamW', 'optimizer.lr=0.0001']
    """
    blockers = torchtune_blockers(rec)
    if blockers:
        fixes = {
            "decay": "recommend(..., decay='cosine') for a cosine decay",
            "floor": "to_pytorch(rec) (the exact schedule as plain PyTorch, for a custom recipe) or to_hf / "
            "to_axolotl, which keep the floor",
            "shape": "to_pytorch(rec) or lrpilot's torch adapter in a custom recipe",
        }
        raise ValueError(torchtune_refusal(rec, [fixes[k] for k in blockers], "to_torchtune"))
    args = _hf_schedule_args(rec)
    spec = rec.setup.optimizer_spec
    out = [f"optimizer._component_={spec.torch}", f"optimizer.lr={rec.peak_lr!r}"]
    out += [f"optimizer.{key}={value!r}" for key, value in spec.torch_kwargs]
    return [
        *out,
        "lr_scheduler._component_=torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
        f"lr_scheduler.num_warmup_steps={args['warmup_steps']}",
        "epochs=1",
        f"max_steps_per_epoch={args['max_steps']}",
    ]


def torchtune_blockers(rec: Recommendation) -> dict[str, str]:
    """What in `rec` torchtune's one built-in scheduler (linear warmup, cosine to 0) cannot run, by
    kind: ``decay`` (another decay shape), ``floor`` (an LR floor above 0), ``shape`` (anything else,
    such as a hold at the peak); empty when `to_torchtune` can export it. Kept apart from the
    remedies, which differ between the Python API and the command line."""
    s = rec.schedule
    found: dict[str, str] = {}
    if s.name != "cosine":
        found["decay"] = f"has a {s.name} decay"
    floor = float(getattr(s, "min_lr", 0.0))
    if floor > 0:
        found["floor"] = f"keeps a floor of {100 * floor / rec.peak_lr:.3g} % of the peak ({floor:.3g})"
    if not found and _hf_schedule_args(rec)["lr_scheduler_type"] != "cosine":
        found["shape"] = "is not a plain warmup then cosine to 0"
    return found


def torchtune_refusal(rec: Recommendation, fixes: list[str], owner: str) -> str:
    """The one-line refusal of a torchtune export: what blocks it (`torchtune_blockers`) and `fixes`."""
    blockers = " and ".join(torchtune_blockers(rec).values())
    return (
        f"{owner}: the schedule {rec.schedule.to_string()} {blockers}, which torchtune's only built-in LR scheduler "
        f"(get_cosine_schedule_with_warmup: cosine to 0) cannot run; use {'; or '.join(dict.fromkeys(fixes))}"
    )


def export_notes(rec: Recommendation, fmt: str) -> list[str]:
    """What the `fmt` export of `rec` cannot carry over and what it writes instead (a stated
    fallback): llama.cpp's, whose optimizers are AdamW and SGD without momentum; for torchtune
    a bitsandbytes optimizer, which the ``fused: True`` of torchtune's own configs (their QLoRA ones
    included) would break, and which an override can remove only where the config has it; and for
    axolotl a one-step warmup, which its trainer builder (``core/builders/base.py``) runs as two."""
    spec = rec.setup.optimizer_spec
    if fmt == "axolotl" and _hf_schedule_args(rec)["warmup_steps"] == 1:
        return ["axolotl runs warmup_steps: 1 as 2 steps (its trainer builder raises a one-step warmup to two)"]
    if fmt == "torchtune" and spec.package == "bitsandbytes":
        return [
            f"torchtune's configs set optimizer.fused: True, which {spec.torch} does not take (TypeError: unexpected "
            "keyword argument 'fused'): where your config has it, add ~optimizer.fused to the overrides"
        ]
    if fmt != "llama-cpp":
        return []
    notes = []
    if spec.name != spec.llama_cpp:
        notes.append(
            f"llama-finetune has only the optimizers adamw and sgd: {spec.name} is exported as --optimizer "
            f"{spec.llama_cpp}"
        )
    if spec.family == "sgd":
        notes.append(
            "llama-finetune's SGD has no momentum: the LR is 10x the peak, the effective step of "
            f"momentum-{SGD_MOMENTUM:g} SGD"
        )
    notes.append("llama-finetune has no warmup and no per-step decay: only the peak LR carries over")
    return notes


def to_llama_cpp(rec: Recommendation, *, epochs: int | None = None) -> list[str]:
    """Flags for llama.cpp's ``llama-finetune`` (examples/training/finetune.cpp; flags as in
    ``common/arg.cpp`` of the 2025 training rewrite: ``-lr/--learning-rate``,
    ``-lr-min/--learning-rate-min``, ``-decay-epochs/--learning-rate-decay-epochs``, ``-epochs/--epochs``,
    ``-opt/--optimizer adamw|sgd``, ``-wd``, ``-val-split``).

    Only the peak and the optimizer family (and ``--epochs`` if given) carry over: llama-finetune has
    AdamW and SGD only (``paged_adamw_8bit`` and the other AdamW implementations are exported as
    ``adamw``: `export_notes` states it), and no
    warmup and no per-step decay (one LR per epoch, with an optional exponential decay between
    epochs), so the recommendation's schedule is not expressible. Its SGD has no momentum, and its
    help advises an alpha ~10× AdamW's: an SGD recommendation (momentum 0.9) is exported at
    ``peak / (1 − 0.9) = 10 × peak``, the same effective step. The removed legacy ``finetune``
    (``--adam-alpha``) is not targeted.

    >>> from lrpilot.rules import recommend
    >>> to_llama_cpp(recommend("1B", "full", steps=500), epochs=2)
    ['--learning-rate', '2.13e-05', '--optimizer', 'adamw', '--epochs', '2']
    """
    lr = rec.peak_lr
    if rec.setup.optimizer == "sgd":
        lr = float(f"{lr / (1.0 - SGD_MOMENTUM):.3g}")
    out = ["--learning-rate", f"{lr:.3g}", "--optimizer", rec.setup.optimizer_spec.llama_cpp]
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"to_llama_cpp: epochs must be an integer ≥ 1, got {epochs!r}")
        out += ["--epochs", str(epochs)]
    return out


_PYTORCH = '''\
import math

import torch
{imports}
# lrpilot recommend: {summary}
PEAK_LR = {peak!r}
TOTAL_STEPS = {total}
WARMUP_STEPS = {warmup}
DECAY_START = {decay_start}  # {hold_note}
FLOOR_LR = {floor!r}  # {floor_pct:g} % of the peak
{lora_plus}

def lr_at(step: int) -> float:
    """The LR of the update after `step` updates: {spec}."""
    # 1) linear warmup: the first update already moves; the peak is reached at step WARMUP_STEPS
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / (WARMUP_STEPS + 1)
    # 2) {shape} decay from the peak (held until DECAY_START) to the floor at TOTAL_STEPS, then the floor
    progress = min(1.0, max(0.0, (step - DECAY_START) / (TOTAL_STEPS - DECAY_START)))
    w = {weight}
    return PEAK_LR * w + FLOOR_LR * (1.0 - w)


# `model` is your torch.nn.Module.
{groups}
optimizer = {optimizer}
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step) / PEAK_LR)
# Training loop: loss.backward(); optimizer.step(); scheduler.step(); optimizer.zero_grad()
'''

_WSD_WEIGHTS = {
    "1-sqrt": "1.0 - math.sqrt(progress)",
    "linear": "1.0 - progress",
    "cosine": "0.5 * (1.0 + math.cos(math.pi * progress))",
}
"""`to_pytorch`'s decay weight for each WSD decay shape it writes (``exp`` is not written)."""

_PLAIN_GROUPS = "params = [p for p in model.parameters() if p.requires_grad]"
_LORA_PLUS_GROUPS = """\
named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
params = [{"params": [p for n, p in named if "lora_B" not in n]}]
lora_b = [p for n, p in named if "lora_B" in n]
if lora_b:  # LoRA+: the B matrices get LORA_PLUS_RATIO × the LR (the scheduler scales both groups)
    params.append({"params": lora_b, "lr": PEAK_LR * LORA_PLUS_RATIO})"""


def to_pytorch(rec: Recommendation) -> str:
    """Plain PyTorch code (torch only, no lrpilot): the optimizer and a ``LambdaLR`` whose LR is
    ``rec.schedule`` at every step, written out nanoGPT-style in an ``lr_at(step)`` function, and the
    optimizer asked for (bitsandbytes' for its 8-bit and paged AdamW, imported at the top). It
    expects a ``model`` in scope. For LoRA and QLoRA it puts the ``lora_B`` parameters in a group of
    their own, at ``LORA_PLUS_RATIO`` × the LR: 1.0 (plain LoRA) unless you set it to the LoRA+
    ratio given in the comment."""
    s = rec.schedule
    shape = getattr(s, "name", "cosine")
    decay_start = rec.warmup_steps
    if shape == "cosine":
        weight = "0.5 * (1.0 + math.cos(math.pi * progress))"
    elif shape == "linear":
        weight = "1.0 - progress"
    elif shape == "wsd" and getattr(s, "decay_shape", None) in _WSD_WEIGHTS:  # `lrpilot.tune` may pick it
        weight = _WSD_WEIGHTS[s.decay_shape]  # type: ignore[attr-defined]
        decay = s.decay_steps or max(1, round(s.decay_fraction * rec.total_steps))  # type: ignore[attr-defined]
        decay_start, shape = rec.total_steps - decay, f"warmup-stable-decay ({s.decay_shape})"  # type: ignore[attr-defined]
    else:
        raise ValueError(f"to_pytorch: no code for a {shape!r} schedule ({s.to_string()}); use lrpilot's torch adapter")
    spec = rec.setup.optimizer_spec
    optimizer = f"{spec.torch}(params, lr=PEAK_LR"
    optimizer += "".join(f", {key}={value!r}" for key, value in spec.torch_kwargs) + ")"
    imports = "" if spec.package == "torch" else f"import {spec.package}  # {spec.name}\n"
    if rec.lora_plus_ratio is not None:
        lora_plus = (
            f"LORA_PLUS_RATIO = 1.0  # LoRA+ (optional, Hayou et al. 2024): set to {rec.lora_plus_ratio!r} to give "
            "lora_B that many times the LR of lora_A\n"
        )
        groups = _LORA_PLUS_GROUPS
    else:
        lora_plus, groups = "", _PLAIN_GROUPS
    floor = float(getattr(s, "min_lr", 0.0))
    return _PYTORCH.format(
        imports=imports,
        summary=_summary(rec),
        peak=float(rec.peak_lr),
        total=rec.total_steps,
        warmup=rec.warmup_steps,
        floor=floor,
        floor_pct=round(100 * floor / rec.peak_lr, 6),
        lora_plus=lora_plus,
        spec=s.to_string(),
        shape=shape,
        decay_start=decay_start,
        hold_note="the peak is held from the warmup's end to here" if decay_start > rec.warmup_steps else "no hold",
        weight=weight,
        groups=groups,
        optimizer=optimizer,
    )


def _summary(rec: Recommendation) -> str:
    s = rec.setup
    batch = f", batch {s.batch_size:,}" if s.batch_size is not None else ""
    return (
        f"{s.method}, {_count(s.params)} parameters, {s.optimizer_label}{batch}, {s.steps:,} steps "
        f"(confidence {rec.confidence})"
    )


def _count(n: int) -> str:
    for suffix, unit in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= unit:
            return f"{n / unit:.3g}{suffix}"
    return str(n)


def _yaml_scalar(value: object) -> str:
    """A number or string of ``lr_scheduler_kwargs`` as YAML reads it back: floats with a dot
    (`_yaml_float`), strings quoted (``decay_type: "1-sqrt"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return json.dumps(value)
    return str(value) if isinstance(value, int) else _yaml_float(value)


def _yaml_float(x: float) -> str:
    """A float YAML 1.1 (PyYAML, which axolotl uses) reads as a float: its mantissa needs a dot,
    so ``1e-05`` is written ``1.0e-05``."""
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent
