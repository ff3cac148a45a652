"""Options `lrpilot fit` and `lrpilot tune` share: what to train (a built-in task, or a local
Hugging Face model and the user's data), declared once so both commands read and document them
the same way; and `output_file`, the check every option that writes one file makes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrpilot import _validate as check
from lrpilot._optional import require

__all__ = [
    "BatchSizeOption",
    "ColumnsOption",
    "DataDirOption",
    "DataOption",
    "DeviceOption",
    "EvalOption",
    "FinderStepsOption",
    "FitPrecisionOption",
    "LoraAlphaOption",
    "LoraRankOption",
    "LoraTargetsOption",
    "MaxLengthOption",
    "MethodOption",
    "ModelOption",
    "PrecisionOption",
    "TaskOption",
    "TaskTypeOption",
    "check_run_options",
    "output_file",
    "parse_columns",
]

TaskOption = Annotated[
    str | None,
    typer.Option("--task", help="Built-in task: shakespeare (the default), digits, sst2-full, sst2-lora."),
]
ModelOption = Annotated[
    Path | None, typer.Option("--model", help="A local Hugging Face model directory (save_pretrained).")
]
DataOption = Annotated[
    Path | None, typer.Option("--data", help="--model: training data, .csv/.jsonl/.json/.txt with text (and label).")
]
EvalOption = Annotated[
    Path | None, typer.Option("--eval", help="--model: evaluation data like --data (default: 10 % held out).")
]
TaskTypeOption = Annotated[
    str | None,
    typer.Option(
        "--task-type",
        help="--model: classification (text,label; the default) or causal-lm (text; prompt,completion; or messages).",
    ),
]
MethodOption = Annotated[str | None, typer.Option("--method", help="--model: full fine-tuning (the default) or lora.")]
LoraRankOption = Annotated[
    int | None, typer.Option("--lora-rank", help="--method lora: the adapters' rank (default 8).", show_default=False)
]
LoraAlphaOption = Annotated[
    float | None,
    typer.Option(
        "--lora-alpha",
        help="--method lora: the adapters' alpha (default twice the rank: the scale alpha/rank stays 2).",
        show_default=False,
    ),
]
LoraTargetsOption = Annotated[
    str | None,
    typer.Option(
        "--lora-targets",
        help="--method lora: attention (the default), all-linear (every projection of the model's blocks), or "
        "module names (q_proj,v_proj).",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[int | None, typer.Option("--batch-size", help="--model: examples per step (default 16).")]
MaxLengthOption = Annotated[
    int | None,
    typer.Option(
        "--max-length",
        help="--model: tokens per example, longer ones truncated (default 128 for a classifier; 1024 for a "
        "causal LM, as TRL's, or the model's context where shorter).",
    ),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder with sst2_train.csv and sst2_validation.csv.")
]
FinderStepsOption = Annotated[
    int | None,
    typer.Option(
        "--finder-steps",
        help="Steps of the range test (default: 12.5 a decade at a batch of 32 or more, 32/B times that below, "
        "at most 4×; from the low end of the rules' band to 10).",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Where to train: auto (a CUDA GPU where torch sees one, else the CPU; the default), cpu, cuda or cuda:N.",
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="The forward passes: fp32 (the default), bf16, or fp16 (with a loss scale), autocast on the device.",
    ),
]
FitPrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="The forward passes: fp32, bf16, or fp16 (with a loss scale), autocast on the device. Not given: "
        "fp32, the range test and the evaluations along the run of a 10M+ parameter model in bf16 where the "
        "hardware computes it (the last evaluation in fp32).",
    ),
]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="--model: the data's columns where not named for their roles, text, text_pair, label, prompt, "
        "completion, messages, tools, chat_template_kwargs (text=review,label=stars); a text_pair column "
        "makes a classifier of pairs.",
    ),
]


def parse_columns(value: str | None, owner: str) -> dict[str, str] | None:
    """``--columns text=sentence,label=sentiment`` as ``{"text": "sentence", "label": "sentiment"}``."""
    if value is None:
        return None
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    if not pairs or any(not sep or not role.strip() or not column.strip() for role, sep, column in pairs):
        raise ValueError(f"{owner}: --columns takes ROLE=COLUMN pairs joined by commas (text=sentence), got {value!r}")
    return {role.strip(): column.strip() for role, _, column in pairs}


def output_file(owner: str, option: str, path: Path | None) -> Path | None:
    """`path` for an option that writes one file (``--audit``, ``--plot``), refused up front if it is
    an existing directory: the write would fail only after the work (a guard run's training) with a
    traceback. Options that take a directory say so in their name and help (``--out``)."""
    if path is not None and path.is_dir():
        raise ValueError(
            f"{owner}: {option} expects a file path, got the directory {path}: name a file, e.g. "
            f"{path / _DEFAULT_NAMES.get(option, 'out')}"
        )
    if path is not None and option == "--plot":
        return _image_path(owner, path)
    return path


def _image_path(owner: str, path: Path) -> Path:
    """The file a ``--plot`` is written to: matplotlib saves a name without an extension as a PNG
    with ``.png`` added (so the command says that name, not the one given), and refuses an
    extension it cannot write only once the figure is drawn, after the work."""
    if not path.suffix:
        return path.with_suffix(".png")
    require("matplotlib", "plot", "plotting")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(
            f"{owner}: --plot must name an image file ending in one of {', '.join('.' + f for f in sorted(formats))}; "
            f"got {path}"
        )
    return path


_DEFAULT_NAMES = {"--audit": "audit.jsonl", "--plot": "plot.png"}


def check_run_options(owner: str, seed: int, finder_steps: int | None) -> None:
    """``--seed`` and ``--finder-steps`` checked by their option names, before anything is printed
    or loaded (the library checks them too, by its parameters' names, ``seed`` and ``finder_steps``)."""
    check.step_count(owner, "--seed", seed, 0, 2**32 - 1)
    if finder_steps is not None:
        check.step_count(owner, "--finder-steps", finder_steps, 5, 100_000)
