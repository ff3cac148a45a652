"""A user's checkpoint loaded with ``from_pretrained``, refused where its weights are not usable.

transformers builds the model from ``config.json`` and fills in what the weight files hold: a file
that cannot be read (a download cut short, a Git LFS pointer checked out in place of the weights)
raised a traceback from safetensors or torch, and weights of another model (a folder whose config
and weights were copied from two checkpoints) loaded none of its tensors, a report fit keeps quiet
(`lrpilot.autopilot._hf.quiet_transformers`): the model trained from random weights as if it were
the pretrained one.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["MAX_MISSING_SHARE", "pretrained"]

MAX_MISSING_SHARE = 0.5
"""The largest share of a model's weights (in numbers, not tensors) that may be missing from its
checkpoint: a fresh head (a classifier's ``score``, a pooler) is a sliver of it; weights of another
architecture leave all of it missing."""

_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def pretrained(loader: Any, source: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    """``loader.from_pretrained(source, **options)`` and its loading report (``missing_keys``, ...),
    or a ValueError naming the folder: weights that cannot be read, or that miss more than
    `MAX_MISSING_SHARE` of the model."""
    from safetensors import SafetensorError

    try:
        model, info = loader.from_pretrained(source, output_loading_info=True, **options)
    except (OSError, RuntimeError, ValueError, SafetensorError, pickle.UnpicklingError) as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--model: the weights in {source} cannot be read ({said}){_pointers(source)}") from None
    _check_missing(model, info, source)
    return model, info


def _pointers(folder: Path) -> str:
    """Where the folder's weight files are Git LFS pointers (a clone without ``git lfs pull``), a
    sentence saying so; else how a readable folder is made."""
    pointers = []
    for path in sorted(folder.iterdir()):
        if path.suffix in _WEIGHT_SUFFIXES and path.is_file() and path.stat().st_size < 1024:
            with path.open("rb") as handle:
                if handle.read(len(_LFS_POINTER)) == _LFS_POINTER:
                    pointers.append(path.name)
    if pointers:
        return f": {', '.join(pointers)} is a Git LFS pointer, not the weights; run git lfs pull in the folder"
    return "; a download cut short? save the model again with save_pretrained, or download it again"


def _check_missing(model: nn.Module, info: dict[str, Any], source: Path) -> None:
    """An error where the checkpoint's weights fill less than ``1 - MAX_MISSING_SHARE`` of the model."""
    state = model.state_dict()
    total = sum(tensor.numel() for tensor in state.values())
    missing = [key for key in info.get("missing_keys", []) if key in state]
    share = sum(state[key].numel() for key in missing) / total if total else 0.0
    if share > MAX_MISSING_SHARE:
        shown = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
        unexpected = sorted(info.get("unexpected_keys", []))
        theirs = f"; the files hold others ({', '.join(unexpected[:2])}, ...)" if unexpected else ""
        raise ValueError(
            f"--model: the weights in {source} are not this model's: {share:.0%} of the "
            f"{type(model).__name__} its config.json describes is missing from them ({shown}){theirs}, so it would "
            "train from random weights; give the folder save_pretrained wrote, its config and weights of one model"
        )
