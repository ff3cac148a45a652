"""The pooled head fit puts on a sentence-transformers checkpoint: the pooling read from the
checkpoint, pooled as sentence-transformers pools (checked against the library itself), saved and
loaded back; every other model keeps Hugging Face's head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.autopilot import PooledClassifier, load_classifier
from lrpilot.autopilot._hf import load_hf_task
from lrpilot.autopilot._pooled import HEAD_CONFIG, checkpoint_pooling
from tests.autopilot.conftest import minilm_dir, write_rows

TEXTS = ["a gorgeous, witty, seductive movie", "dull", "the plot is nothing but boilerplate clichés from start to end"]


def _sentence_folder(tmp_path: Path, config: dict[str, object] | str) -> Path:
    """A folder with sentence-transformers' module list and a Pooling config (no weights)."""
    (tmp_path / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    text = config if isinstance(config, str) else json.dumps(config)
    (tmp_path / "1_Pooling" / "config.json").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_pooling_is_read_from_the_checkpoint(tmp_path: Path) -> None:
    assert checkpoint_pooling(minilm_dir()) == ("mean",)
    assert checkpoint_pooling(tmp_path) == ()  # no modules.json: a plain Hugging Face model
    both = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": False}
    assert checkpoint_pooling(_sentence_folder(tmp_path / "a", both)) == ("cls", "mean")  # their order
    named = {"pooling_mode": ["mean", "max"]}  # sentence-transformers 6's own key
    assert checkpoint_pooling(_sentence_folder(tmp_path / "b", named)) == ("mean", "max")


@pytest.mark.parametrize(
    "config",
    [
        {"pooling_mode_weightedmean_tokens": True},
        {"pooling_mode_mean_tokens": True, "pooling_mode_lasttoken": True},
        "{",
    ],
)
def test_a_pooling_this_head_does_not_reproduce_keeps_the_hugging_face_head(
    config: dict[str, object] | str, tmp_path: Path
) -> None:
    assert checkpoint_pooling(_sentence_folder(tmp_path, config)) == ()


@pytest.fixture(scope="module")
def sentence_model() -> object:
    """all-MiniLM-L6-v2 as sentence-transformers loads it: the reference for pooling."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm_dir()), device="cpu")


def _pooled(model: PooledClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What `model`'s head reads: the pooled embedding of `batch`."""
    captured: list[torch.Tensor] = []
    hook = model.classifier.register_forward_hook(lambda _module, args, _out: captured.append(args[0]))
    with torch.no_grad():
        model(**batch)
    hook.remove()
    return captured[0]


def test_the_head_reads_the_checkpoints_own_sentence_embedding(sentence_model: Any) -> None:
    """all-MiniLM-L6-v2's embeddings as sentence-transformers computes them (mean, then its
    Normalize module) are the pooled vectors fit's head reads, normalized."""
    transformers = pytest.importorskip("transformers")
    base = minilm_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = PooledClassifier(transformers.AutoModel.from_pretrained(base), checkpoint_pooling(base), 2).eval()
    ours = _pooled(model, tokenizer(TEXTS, padding=True, return_tensors="pt"))
    expected = sentence_model.encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(torch.nn.functional.normalize(ours, dim=-1), expected, atol=1e-5)


@pytest.mark.parametrize("modes", [("cls",), ("max",), ("mean_sqrt_len_tokens",), ("cls", "mean", "max")])
def test_each_pooling_is_sentence_transformers_own(modes: tuple[str, ...], sentence_model: Any) -> None:
    """Against sentence-transformers' Pooling module over the same token states, on a padded batch."""
    transformers = pytest.importorskip("transformers")
    base = minilm_dir()
    encoder = transformers.AutoModel.from_pretrained(base).eval()
    batch = transformers.AutoTokenizer.from_pretrained(base)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state
    pooling = type(sentence_model[1])(384, pooling_mode=modes)
    expected = pooling({"token_embeddings": states, "attention_mask": batch["attention_mask"]})["sentence_embedding"]
    assert torch.allclose(_pooled(PooledClassifier(encoder, modes, 2).eval(), batch), expected, atol=1e-5)


def test_padding_does_not_move_a_texts_prediction() -> None:
    transformers = pytest.importorskip("transformers")
    base = minilm_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = PooledClassifier(transformers.AutoModel.from_pretrained(base), ("mean", "max"), 3).eval()
    with torch.no_grad():
        alone = model(**tokenizer(TEXTS[1:2], return_tensors="pt")).logits
        padded = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits[1:2]
    assert torch.allclose(alone, padded, atol=1e-5)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_sentence_transformers_checkpoint_gets_its_pooling_and_saves_and_loads(method: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 4)]
    data = write_rows(tmp_path / "train.csv", rows)
    task = load_hf_task(minilm_dir(), data, data, method=method)
    assert task.pooling == ("mean",)
    model = task.build_model(seed=0)
    assert isinstance(model, PooledClassifier)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert all("lora_" in n for n in trainable - {"classifier.weight", "classifier.bias"}) == (method == "lora")
    with torch.no_grad():
        model.classifier.weight.normal_()  # as if trained: not the fresh head a reload would draw
    saved = task.save(model, tmp_path / "run")
    assert (saved / HEAD_CONFIG).is_file()
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert torch.allclose(load_classifier(saved)(**batch).logits, model(**batch).logits, atol=1e-5)


def test_other_models_keep_the_hugging_face_head(tmp_path: Path) -> None:
    """A BERT without a sentence-transformers module list, and a checkpoint that already is a
    classifier (its own head is kept even beside a Pooling config)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    data = write_rows(tmp_path / "train.csv", [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 4)])
    plain = tmp_path / "bert"
    transformers.BertModel(config).save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    task = load_hf_task(plain, data, data)
    assert task.pooling == ()
    assert type(task.build_model(seed=0)).__name__ == "BertForSequenceClassification"
    classifier = tmp_path / "classifier"
    transformers.BertForSequenceClassification(config).save_pretrained(classifier)
    tokenizer.save_pretrained(classifier)
    _sentence_folder(classifier, {"pooling_mode_mean_tokens": True})
    assert load_hf_task(classifier, data, data).pooling == ()


def test_load_classifier_names_a_folder_without_a_pooled_head(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no classifier\.json"):
        load_classifier(tmp_path)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_hugging_face_head_saves_and_loads_with_transformers(method: str, tmp_path: Path) -> None:
    """A model without a sentence-transformers pooling keeps the folder Hugging Face loads: the
    model, or the adapter with the trained head (peft's SEQ_CLS task type)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    plain = tmp_path / "bert"
    transformers.BertModel(config).save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    data = write_rows(tmp_path / "train.csv", [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 4)])
    task = load_hf_task(plain, data, data, method=method)
    model = task.build_model(seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "classifier" in name:
                p.normal_()  # as if trained
    saved = task.save(model, tmp_path / "run")
    assert not (saved / HEAD_CONFIG).exists()
    if method == "lora":
        peft = pytest.importorskip("peft")
        base = transformers.AutoModelForSequenceClassification.from_pretrained(plain, num_labels=2)
        reloaded = peft.PeftModel.from_pretrained(base, saved)
    else:
        reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(saved)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-5)
