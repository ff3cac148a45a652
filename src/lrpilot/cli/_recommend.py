"""`lrpilot recommend`: a starting LR, band, schedule and warmup from published rules, each with its
source; or the same recommendation as settings for Hugging Face, TRL, axolotl, torchtune, llama.cpp
or plain PyTorch (``--format``); or the rule table (``--rules``)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lrpilot import _validate as check
from lrpilot._optional import require
from lrpilot.cli._output import console, errors_as_messages, print_json, stderr
from lrpilot.rules import (
    FORMATS,
    OPTIMIZER_NAMES,
    RULES,
    Recommendation,
    export_notes,
    to_axolotl,
    to_hf,
    to_llama_cpp,
    to_pytorch,
    to_torchtune,
    to_trl,
    torchtune_blockers,
)
from lrpilot.rules._exports import torchtune_refusal
from lrpilot.rules._recommend import CLI_NAMES, recommend_named

OUTPUTS = ("table", "json", *FORMATS)
_CONFIDENCE_STYLE = {"high": "green", "medium": "yellow", "low": "red"}


def recommend(  # noqa: PLR0917  (typer reads the options from the signature)
    params: Annotated[
        str | None, typer.Option("--params", "-p", help="Model size: a count or '135M', '7B', '1.5B'.")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="A local Hugging Face model directory: its parameters are counted (not --params)."
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option("--method", "-m", help="pretraining, full, lora, qlora or rl (dpo, grpo, ...).")
    ] = None,
    optimizer: Annotated[
        str,
        typer.Option(
            "--optimizer",
            help=f"adamw, adam, sgd (momentum 0.9), or an AdamW by its Hugging Face name: "
            f"{', '.join(OPTIMIZER_NAMES[3:])}; the exports write it.",
        ),
    ] = "adamw",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", help="Examples per optimizer step, all devices included.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", "-n", help="Length of the run in optimizer steps.")] = None,
    tokens: Annotated[str | None, typer.Option("--tokens", help="Token budget, e.g. '2B' (pretraining).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per example.")] = None,
    ref_lr: Annotated[float | None, typer.Option("--ref-lr", help="An LR you tuned on this setup.")] = None,
    ref_batch_size: Annotated[
        int | None, typer.Option("--ref-batch-size", help="The batch size --ref-lr was tuned at.")
    ] = None,
    decay: Annotated[str | None, typer.Option("--decay", help="cosine or linear, instead of the default.")] = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help=f"Output: {', '.join(OUTPUTS)}.", show_default=True)
    ] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", help="llama-finetune's --epochs, with --format llama-cpp only (the run's length is --steps)."
        ),
    ] = None,
    rules: Annotated[bool, typer.Option("--rules", help="List every rule with its source, and exit.")] = False,
) -> None:
    """Recommend a peak LR, its range, schedule, warmup and floor, with the rule and source behind each."""
    with errors_as_messages(as_json or output == "json"):  # either way a script reads the error as JSON
        fmt = check.choice("recommend", "--format", "json" if as_json else output, OUTPUTS)
        if as_json and output not in ("table", "json"):  # --json would silently win over --format
            raise ValueError(f"recommend: --json is --format json; it cannot go with --format {output}: give one")
        if rules:
            if fmt not in ("table", "json"):  # else the table came out as if it were that format
                raise ValueError(
                    f"recommend: --rules prints a table or JSON (--format table or json), not --format {fmt}"
                )
            _print_rules(fmt)
            return
        size = params if model is None else "--model"
        if size is None or method is None:
            missing = " and ".join(n for n, v in (("--params (or --model)", size), ("--method", method)) if v is None)
            raise ValueError(f"recommend: {missing} needed (or --rules to list the rules)")
        if params is not None and model is not None:
            raise ValueError(f"recommend: --params {params} and --model {model} both give the model's size: give one")
        _check_epochs(epochs, fmt)
        count = None if model is None else model_parameters(model)
        inputs = (optimizer, batch_size, steps, tokens, seq_len, ref_lr, ref_batch_size, decay)
        rec = recommend_named(CLI_NAMES, params if count is None else count, method, *inputs)  # errors name the flags
        if count is not None:
            note = f"--model {model}: {count:,} parameters, counted from its config.json"
            rec = dataclasses.replace(rec, notes=(note, *rec.notes))
        if fmt == "table":
            _print_table(rec)
        elif fmt == "json":
            print_json(rec.to_dict())
        else:
            emit(rec, fmt, epochs=epochs, decay_option="--decay cosine")


def model_parameters(model_dir: Path) -> int:
    """How many parameters the Hugging Face model saved in `model_dir` has, from its config.json
    alone: the model is built on torch's meta device, so no weight is read and a 70B model counts in
    a moment. Tied weights count once (as ``model.parameters()`` yields them), and a quantized
    checkpoint counts its parameters, not its packed storage. A folder that is not a model (no such
    folder, no config.json) gets the error ``fit --model`` gives it; a GGUF file, which has no config
    to count from, the advice to give ``--params``."""
    torch = require("torch", "hf", "recommend --model")
    transformers = require("transformers", "hf", "recommend --model")
    from lrpilot.autopilot._hf import _check_model_path, quiet_transformers  # needs torch

    if model_dir.suffix == ".gguf" or (model_dir.is_dir() and not (model_dir / "config.json").exists()):
        gguf = [model_dir] if model_dir.suffix == ".gguf" else sorted(model_dir.glob("*.gguf"))
        if gguf:  # fit's refusal would tell how to train it; here only its size is wanted
            raise ValueError(
                f"--model: {gguf[0]} is a GGUF file (llama.cpp's format); --model counts a Hugging Face folder's "
                "parameters from its config.json: give the size with --params instead (e.g. -p 8B)"
            )
    _check_model_path(model_dir)
    with quiet_transformers():
        try:
            config = transformers.AutoConfig.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--model: {model_dir}/config.json is not a model config: {exc}") from None
        saved = [
            getattr(transformers, n) for n in getattr(config, "architectures", None) or [] if hasattr(transformers, n)
        ]
        try:
            with torch.device("meta"):
                built = saved[0](config) if saved else transformers.AutoModel.from_config(config)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"--model: transformers cannot build a model from {model_dir}/config.json: {exc}"
            ) from None
    return sum(int(p.numel()) for p in built.parameters())


def _check_epochs(epochs: int | None, fmt: str) -> None:
    """Refuse --epochs where nothing reads it: recommend knows no dataset size to turn epochs into
    steps, and an option silently ignored reads as if it had set the run's length. Where it is read,
    check it here, by its option's name, before llama.cpp's notes are printed."""
    if epochs is None:
        return
    if fmt == "llama-cpp":
        check.step_count("recommend", "--epochs", epochs, 1)
    else:
        raise ValueError(
            f"recommend: --epochs {epochs} has no effect with --format {fmt}: it is llama-finetune's --epochs (with "
            "--format llama-cpp only); the run's length is --steps (epochs × optimizer steps per epoch) or --tokens"
        )


def emit(rec: Recommendation, fmt: str, *, epochs: int | None = None, decay_option: str | None = None) -> None:
    """Print `rec` as one of `FORMATS` (``lrpilot recommend`` and ``lrpilot tune`` share it), and on
    stderr what the format cannot carry over (`export_notes`). `decay_option` is the command's option
    that gives a cosine decay, for the torchtune refusal (``lrpilot tune`` has none)."""
    for note in export_notes(rec, fmt):
        stderr.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    if fmt == "torchtune" and torchtune_blockers(rec):
        raise ValueError(_torchtune_refusal(rec, decay_option))
    if fmt in ("hf", "trl"):
        print_json(to_hf(rec) if fmt == "hf" else to_trl(rec))
    elif fmt == "axolotl":
        typer.echo(to_axolotl(rec), nl=False)
    elif fmt == "torchtune":
        typer.echo(shlex.join(to_torchtune(rec)))
    elif fmt == "llama-cpp":
        typer.echo(shlex.join(to_llama_cpp(rec, epochs=epochs)))
    else:
        typer.echo(to_pytorch(rec), nl=False)


def _torchtune_refusal(rec: Recommendation, decay_option: str | None) -> str:
    """The torchtune refusal with this command's options as the fixes, not the Python API's."""
    fixes = {
        "decay": f"{decay_option} for a cosine decay" if decay_option else "--format pytorch (the exact schedule)",
        "floor": "--format pytorch (the exact schedule as plain PyTorch, for a custom recipe) or --format hf / "
        "axolotl, which keep the floor",
        "shape": "--format pytorch (the exact schedule as plain PyTorch, for a custom recipe)",
    }
    return torchtune_refusal(rec, [fixes[k] for k in torchtune_blockers(rec)], "recommend --format torchtune")


def _print_rules(fmt: str) -> None:
    if fmt == "json":
        print_json([{"id": r.id, "text": r.text, "source": r.source} for r in RULES])
        return
    table = Table(title="lrpilot recommend: the rules", show_lines=True)
    table.add_column("rule")
    table.add_column("what it says")
    table.add_column("source")
    for r in RULES:
        table.add_row(r.id, escape(r.text), escape(r.source))
    console.print(table)


def _print_table(rec: Recommendation) -> None:
    s = rec.setup
    batch = f" · batch {s.batch_size:,}" if s.batch_size is not None else ""
    console.print(
        f"[bold]{s.method}[/] · {s.params:,} parameters · {s.optimizer_label}{batch} · {s.steps:,} steps",
        highlight=False,
    )
    style = _CONFIDENCE_STYLE[rec.confidence]
    summary = Table(show_header=False, box=None, padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    band = f"range {rec.low:.3g} – {rec.high:.3g}, confidence [{style}]{rec.confidence}[/]"
    summary.add_row("peak LR", f"[bold cyan]{rec.peak_lr:.3g}[/]  {band}")
    summary.add_row("schedule", escape(rec.schedule.to_string()))
    summary.add_row("warmup", f"{rec.warmup_steps:,} steps")
    floor = f"{rec.floor_lr:.3g} ({100 * rec.floor_ratio:g} % of the peak)" if rec.floor_ratio else "0 (decay to 0)"
    summary.add_row("floor", floor)
    if rec.lora_plus_ratio is not None:
        summary.add_row("LoRA+", f"optional: lora_B at {rec.lora_plus_ratio:g}× the LR of lora_A")
    console.print(summary)
    console.print("[bold]why[/]")
    for i, r in enumerate(rec.reasons, 1):
        console.print(f" {i}. [bold]{r.rule}[/]: {escape(r.effect)}", soft_wrap=True, highlight=False)
        console.print(f"    [dim]source: {escape(r.source)}[/]", soft_wrap=True, highlight=False)
    for note in rec.notes:
        console.print(f"[dim]note: {escape(note)}[/]", soft_wrap=True)
