"""``--method lora``'s adapters as the user sets them: rank, alpha and the projections they go on
(``--lora-rank``, ``--lora-alpha``, ``--lora-targets``; PEFT's ``r``, ``lora_alpha`` and
``target_modules``), checked before anything loads, and matched against the model once it has.

The defaults, rank 8 and alpha 16 on the attention projections, are what fit's LoRA figures were
measured with. Alpha defaults to twice the rank, so that the adapter's scale, alpha / rank, stays 2
when only the rank is changed. The choices are found in any transformer by name and type, not
per architecture (`attention_projections`, `block_projections`), and `with_lora` puts the adapters on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import nn

from lrpilot import _validate as check
from lrpilot._optional import require
from lrpilot.tasks._pooling import PooledClassifier

__all__ = [
    "DEFAULT_RANK",
    "TARGETS",
    "LoraOptions",
    "attention_projections",
    "block_name",
    "block_projections",
    "calibration_note",
    "causal_lm_targets",
    "lora_note",
    "lora_options",
    "matching",
    "with_lora",
]

DEFAULT_RANK = 8
TARGETS = ("attention", "all-linear")
"""``--lora-targets``' named choices: the attention projections (the default), or every linear
projection of the model's blocks (TRL's and PEFT's ``all-linear``, heads excepted); else module names."""


@dataclass(frozen=True)
class LoraOptions:
    """The adapters' rank, alpha (None: twice the rank) and targets (a name of `TARGETS`, or the
    ends of module names, ``("q_proj", "v_proj")``)."""

    rank: int = DEFAULT_RANK
    alpha: float | None = None
    targets: str | tuple[str, ...] = "attention"

    @property
    def lora_alpha(self) -> float:
        """PEFT's ``lora_alpha``: as given, else twice the rank (the scale alpha / rank then 2)."""
        return 2 * self.rank if self.alpha is None else self.alpha


def lora_options(
    owner: str,
    method: str,
    rank: int | None = None,
    alpha: float | None = None,
    targets: str | Sequence[str] | None = None,
) -> LoraOptions:
    """The options checked (rank an integer ≥ 1, alpha a number > 0, targets `parse_targets`'s),
    refused where the method trains no adapters: a full fine-tune would have ignored them."""
    values = {"--lora-rank": rank, "--lora-alpha": alpha, "--lora-targets": targets}
    named = [name for name, value in values.items() if value is not None]
    if named and method != "lora":
        raise ValueError(
            f"{owner}: {', '.join(named)} {'applies' if len(named) == 1 else 'apply'} to --method lora (adapters), "
            f"and this run is --method {method} (every weight trains); add --method lora or drop {', '.join(named)}"
        )
    return LoraOptions(
        DEFAULT_RANK if rank is None else check.step_count(owner, "--lora-rank", rank, 1),
        None if alpha is None else check.positive(owner, "--lora-alpha", alpha),
        "attention" if targets is None else parse_targets(owner, targets),
    )


def parse_targets(owner: str, value: str | Sequence[str]) -> str | tuple[str, ...]:
    """``attention``, ``all-linear``, or module names (``q_proj,v_proj`` or a sequence of them),
    each the end of a module's name as PEFT matches it; repeats dropped."""
    names = value.split(",") if isinstance(value, str) else list(value)
    cleaned = tuple(name.strip() if isinstance(name, str) else "" for name in names)
    if len(cleaned) == 1 and cleaned[0] in TARGETS:
        return cleaned[0]
    if not cleaned or not all(cleaned) or any(name in TARGETS for name in cleaned):
        raise ValueError(
            f"{owner}: --lora-targets must be {' or '.join(TARGETS)}, or module names joined by commas "
            f"(q_proj,v_proj), got {value!r}"
        )
    return tuple(dict.fromkeys(cleaned))


def block_name(name: str) -> str:
    """A module's name within its numbered block (``model.layers.3.self_attn.q_proj`` →
    ``self_attn.q_proj``), the same in every block; its last part where it is in none."""
    parts = name.split(".")
    numbered = [i for i, part in enumerate(parts[:-1]) if part.isdigit()]
    return ".".join(parts[numbered[-1] + 1 :]) if numbered else parts[-1]


def _ends_with(name: str, wanted: str) -> bool:
    """PEFT's rule for a target module's name: the name itself, or its end after a dot."""
    return name == wanted or name.endswith(f".{wanted}")


def matching(wanted: tuple[str, ...], projections: list[str]) -> list[str]:
    """The `projections` (the model's block projections, full names) that one of `wanted` names;
    a name that names none is an error listing the choices, as the blocks name them: PEFT itself
    would name the module, but not what there is instead."""
    for name in wanted:
        if not any(_ends_with(found, name) for found in projections):
            choices = ", ".join(dict.fromkeys(block_name(found) for found in projections))
            raise ValueError(
                f"--lora-targets: {name!r} is none of this model's projections; those of its blocks are {choices} "
                f"(give names of these, or their ends: {block_name(projections[0]).rsplit('.', 1)[-1]}), or "
                f"{' or '.join(TARGETS)}"
            )
    return [found for found in projections if any(_ends_with(found, name) for name in wanted)]


def calibration_note(options: LoraOptions, kind: str) -> str | None:
    """A causal LM's adapters on more than the attention projections: fit's LR choice was not
    calibrated there, and where it was measured it put the peak too high; None otherwise."""
    if kind != "causal-lm" or options.targets == "attention":
        return None
    what = "all-linear" if options.targets == "all-linear" else ",".join(options.targets)
    return (
        f"--lora-targets {what}: fit's LR choice for causal LMs (the range test's rule and the horizon law) was "
        "calibrated with adapters on the attention projections; with all-linear's, an ad hoc measurement on "
        "SmolLM2-135M (40 steps) found the best LR lower than fit's short-run peak, so this run's peak may be high "
        "(lrpilot tune searches it)"
    )


# --- the adapters on a model -------------------------------------------------------------------

_ATTENTION_WORDS = ("attn", "attention")
_HEAD_WORDS = ("classifier", "score", "lm_head")


def _projections(model: nn.Module) -> Iterator[str]:
    """The names of the model's linear layers (and GPT-2's Conv1D, a linear layer stored
    transposed), the classification / LM head excepted."""
    kinds: tuple[type, ...] = (nn.Linear,)
    pytorch_utils = require("transformers.pytorch_utils", "hf", "fit --method lora")
    conv1d = getattr(pytorch_utils, "Conv1D", None)
    if isinstance(conv1d, type):
        kinds = (*kinds, conv1d)
    for name, module in model.named_modules():
        if isinstance(module, kinds) and not any(word in name.lower().split(".")[-1] for word in _HEAD_WORDS):
            yield name


def attention_projections(model: nn.Module) -> list[str]:
    """The attention projections of any transformer, found by name and type rather than per
    architecture: linear layers (or GPT-2's Conv1D) under a module whose name says attention
    (``attn``, ``attention``), the classification / LM head excepted."""
    return [name for name in _projections(model) if any(word in name.lower() for word in _ATTENTION_WORDS)]


def block_projections(model: nn.Module) -> list[str]:
    """The linear projections of every transformer block, attention and MLP alike (GPT-2's
    ``c_attn``, ``c_proj``, ``c_fc``; Llama's ``q/k/v/o_proj``, ``gate/up/down_proj``; Falcon's
    ``query_key_value``, ``dense_h_to_4h``, ...): the layers under a numbered block (``h.0``,
    ``layers.11``), so never the LM head, the embeddings or a projection outside the blocks (OPT's
    ``project_in``); only the language model's (`_decoder_prefix`): a multimodal checkpoint's
    vision tower, which text never reaches, had adapters that trained nothing."""
    prefix = _decoder_prefix(model)
    return [
        name
        for name in _projections(model)
        if name.startswith(prefix) and any(part.isdigit() for part in name.split(".")[:-1])
    ]


def causal_lm_targets(model: nn.Module) -> list[str]:
    """Where a causal LM's LoRA goes: the attention projections of its language model's blocks
    (`block_projections` that are `attention_projections`), as fit's causal-LM figures were measured.
    Adding the MLP's (``--lora-targets all-linear``, TRL's; Unsloth's seven projections) adapts twice
    the weights and moves the best LR down, below where fit's range test and horizon law, calibrated
    with attention adapters, put a short run's peak; a fit on those says so in its notes (`calibration_note`)."""
    attention = set(attention_projections(model))
    return [name for name in block_projections(model) if name in attention]


def _decoder_prefix(model: nn.Module) -> str:
    """Where the model's language model lies in it (``"model.language_model."`` in Gemma 3's
    image-text checkpoints, ``"transformer."`` in GPT-2's), as transformers' ``get_decoder`` says;
    ``""`` (the whole model) where it does not say."""
    try:
        decoder = model.get_decoder()  # type: ignore[operator]
    except (AttributeError, NotImplementedError, TypeError):
        return ""
    return next((f"{name}." for name, module in model.named_modules() if module is decoder and name), "")


def _lora_targets(model: nn.Module, kind: str | None, targets: str | tuple[str, ...]) -> list[str]:
    """The modules `targets` (`LoraOptions.targets`) names in `model`: ``attention``, a causal LM's
    language model's attention projections (`causal_lm_targets`) or a classifier's every one
    (`attention_projections`); ``all-linear``, every projection of the model's blocks
    (`block_projections`: never a head, the embeddings or a vision tower); else those of them the
    names end (`matching`)."""
    causal = kind == "causal-lm"
    if targets == "attention":
        found = causal_lm_targets(model) if causal else attention_projections(model)
        where = "attention projections in this model's numbered blocks" if causal else "attention projections"
    else:
        found = block_projections(model)
        where = "linear projections in this model's numbered blocks"
        if found and not isinstance(targets, str):
            found = matching(targets, found)
    if not found:
        raise ValueError(f"--method lora: found no {where} to put adapters on; use --method full")
    return found


def with_lora(model: nn.Module, kind: str | None, options: LoraOptions) -> nn.Module:
    """LoRA adapters of `options`' rank and alpha (no dropout) on the projections it names
    (`_lora_targets`); a classifier's fresh head is trained in full (peft's SEQ_CLS task type saves
    it with the adapter). `kind` None: a bare encoder, whose head (`PooledClassifier`'s) lies
    outside the adapter and trains in full anyway."""
    peft = require("peft", "hf", "fit --method lora")
    targets = _lora_targets(model, kind, options.targets)
    modules = dict(model.named_modules())
    transposed = any(not isinstance(modules[name], nn.Linear) for name in targets)  # GPT-2's Conv1D stores W^T
    config = peft.LoraConfig(
        r=options.rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        fan_in_fan_out=transposed,
        task_type=None if kind is None else "SEQ_CLS" if kind == "classification" else "CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft 0.21 calls a name transformers 5 deprecates
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return peft.get_peft_model(model, config)  # type: ignore[no-any-return]


def lora_note(model: nn.Module) -> str | None:
    """What a LoRA fit trains, for the notes: the adapters' rank and alpha, the projections they are
    on (as each block names them, `block_name`: ``attn.c_proj`` and ``mlp.c_proj`` are two) and
    the share of the model's parameters that train; None for a model without adapters. The run's
    own outputs (summary, report, ``run.json``) had said none of it: only the saved
    ``adapter_config.json`` listed the targets."""
    wrapped = model.encoder if isinstance(model, PooledClassifier) else model
    config = getattr(wrapped, "peft_config", {}).get("default")
    if config is None:
        return None
    adapted = [name for name, module in wrapped.named_modules() if hasattr(module, "lora_A")]
    kinds = ", ".join(dict.fromkeys(map(block_name, adapted)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return (
        f"LoRA: rank {config.r} (alpha {config.lora_alpha:g}) adapters on {len(adapted)} projections ({kinds}); "
        f"{trainable / 1e6:.3g} M of the model's {total / 1e6:.3g} M parameters train ({trainable / total:.2%})"
    )
