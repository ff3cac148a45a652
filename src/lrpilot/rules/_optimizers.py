"""The optimizers `recommend` accepts, and how each tool spells them.

The rules know three families: AdamW, Adam and SGD with momentum 0.9. Within a family the
implementations (torch's fused AdamW, bitsandbytes' 8-bit and paged AdamW) take the same LR, so the
rules treat them alike; but a user who asked for ``paged_adamw_8bit`` (QLoRA's usual optimizer) must
get it back in the exported config, not a plain ``adamw_torch``. Each `Optimizer` names the family
its LR rules come from and its spelling in every export.

Accepted names are the family names and the Hugging Face ``optim`` names of their implementations;
other optimizers Hugging Face knows (Adafactor, Lion, RMSprop, ...) have no sourced LR rule here and
are refused rather than given an AdamW LR.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrpilot._validate import suggest_name

__all__ = ["OPTIMIZERS", "OPTIMIZER_NAMES", "SGD_MOMENTUM", "Optimizer", "optimizer_named"]

OPTIMIZERS = ("adamw", "adam", "sgd")
"""Optimizer families with sourced rules; ``sgd`` means SGD with momentum 0.9, as in Goyal et al. 2017."""

SGD_MOMENTUM = 0.9
"""The momentum Goyal et al.'s SGD rule assumes; exports set it."""


@dataclass(frozen=True)
class Optimizer:
    """One accepted optimizer and its spelling in each export.

    Attributes:
        name: lrpilot's name for it (a family name or a Hugging Face ``optim`` name).
        family: ``adamw``, ``adam`` or ``sgd``: which LR rules apply.
        hf: ``TrainingArguments.optim`` (TRL's configs and axolotl's ``optimizer`` take the same names).
        torch: the class torchtune's ``optimizer._component_`` and the PyTorch export instantiate.
        torch_kwargs: constructor arguments that make it this implementation (``fused=True``, Adam's
            ``weight_decay=0.0``).
        llama_cpp: llama-finetune's ``--optimizer`` (``adamw`` or ``sgd``: it has no other).
    """

    name: str
    family: str
    hf: str
    torch: str
    torch_kwargs: tuple[tuple[str, object], ...] = ()
    llama_cpp: str = "adamw"

    @property
    def package(self) -> str:
        """The package the `torch` class comes from (``torch`` or ``bitsandbytes``)."""
        return self.torch.split(".", 1)[0]


_TABLE = (
    Optimizer("adamw", "adamw", "adamw_torch", "torch.optim.AdamW"),
    # Hugging Face has no plain Adam: AdamW at weight_decay=0 is Adam exactly (the exports set it).
    # torch's Adam is written with weight_decay=0.0 too: its weight_decay is an L2 term, and a config's
    # (torchtune's set 0.01 for AdamW) would otherwise turn into one.
    Optimizer("adam", "adam", "adamw_torch", "torch.optim.Adam", (("weight_decay", 0.0),)),
    Optimizer("sgd", "sgd", "sgd", "torch.optim.SGD", (("momentum", SGD_MOMENTUM),), "sgd"),
    Optimizer("adamw_torch", "adamw", "adamw_torch", "torch.optim.AdamW"),
    Optimizer("adamw_torch_fused", "adamw", "adamw_torch_fused", "torch.optim.AdamW", (("fused", True),)),
    Optimizer("adamw_8bit", "adamw", "adamw_8bit", "bitsandbytes.optim.AdamW8bit"),
    Optimizer("adamw_bnb_8bit", "adamw", "adamw_bnb_8bit", "bitsandbytes.optim.AdamW8bit"),
    Optimizer("paged_adamw_8bit", "adamw", "paged_adamw_8bit", "bitsandbytes.optim.PagedAdamW8bit"),
    Optimizer("paged_adamw_32bit", "adamw", "paged_adamw_32bit", "bitsandbytes.optim.PagedAdamW"),
)
_BY_NAME = {o.name: o for o in _TABLE}
_ALIASES = {"momentum": "sgd"}

OPTIMIZER_NAMES = tuple(_BY_NAME)
"""Every accepted optimizer name (aliases aside), families first."""

_NO_RULE = {
    "adafactor": "Adafactor",
    "lion_8bit": "Lion",
    "lion_32bit": "Lion",
    "paged_lion_8bit": "Lion",
    "paged_lion_32bit": "Lion",
    "lion": "Lion",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "ademamix": "AdEMAMix",
    "ademamix_8bit": "AdEMAMix",
    "schedule_free_adamw": "schedule-free AdamW (no schedule to recommend)",
    "schedule_free_sgd": "schedule-free SGD (no schedule to recommend)",
    "schedule_free_radam": "schedule-free RAdam (no schedule to recommend)",
}


def optimizer_named(value: object, owner: str = "recommend", param: str = "optimizer") -> Optimizer:
    """The `Optimizer` named `value` (case and ``-``/``_`` insensitive), or a ``ValueError`` that
    lists the accepted names: an optimizer without a sourced rule would otherwise get AdamW's LR.
    `param` is the input's name in that error (``--optimizer`` on the command line).

    >>> optimizer_named("paged_adamw_8bit").family, optimizer_named("Momentum").name
    ('adamw', 'sgd')
    """
    text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    text = _ALIASES.get(text, text)
    if text in _BY_NAME:
        return _BY_NAME[text]
    accepted = ", ".join(OPTIMIZER_NAMES)
    if text in _NO_RULE:
        raise ValueError(
            f"{owner}: {param} {value!r} ({_NO_RULE[text]}) has no sourced LR rule: the rules cover AdamW, Adam and "
            f"SGD with momentum; {param} must be one of {accepted}"
        )
    hint = suggest_name(text, [*OPTIMIZER_NAMES, *_ALIASES])
    raise ValueError(f"{owner}: {param} must be one of {accepted} (or momentum for sgd), got {value!r}{hint}")
