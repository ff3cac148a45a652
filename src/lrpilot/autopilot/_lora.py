"""``--method lora``'s adapters as the user sets them: rank, alpha and the projections they go on
(``--lora-rank``, ``--lora-alpha``, ``--lora-targets``; PEFT's ``r``, ``lora_alpha`` and
``target_modules``), checked before anything loads, and matched against the model once it has.

The defaults, rank 8 and alpha 16 on the attention projections, are what fit's LoRA figures were
measured with. Alpha defaults to twice the rank, so that the adapter's scale, alpha / rank, stays 2
when only the rank is changed. Which modules the choices name in a model is
`lrpilot.autopilot._hf`'s (``attention_projections``, ``block_projections``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lrpilot import _validate as check

__all__ = ["DEFAULT_RANK", "TARGETS", "LoraOptions", "block_name", "calibration_note", "lora_options", "matching"]

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
