"""`lrpilot.fit` on a local Hugging Face model (all-MiniLM-L6-v2) and a user's CSV: full fine-tuning
and LoRA on 200 SST-2 rows with a tiny budget, the saved model / adapter reloaded; and the checks on
the user's input that need no weights."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.autopilot import PooledClassifier, fit, load_classifier
from lrpilot.autopilot._data import read_rows
from lrpilot.autopilot._hf import HfTask, _stored_dtype, load_hf_task
from lrpilot.autopilot._lora import attention_projections, causal_lm_targets
from lrpilot.autopilot._target import user_target
from tests.autopilot.conftest import minilm_dir, sst2_rows, tiny_bert_dir, write_rows

BUDGET = 6  # the smallest with a warmup step (10 %) and a few steps of decay
FINDER_STEPS = 12


def _small_fit(data: Path, eval_data: Path, tmp_path: Path, **options: Any) -> Any:
    """MiniLM fine-tuned on `data` for `BUDGET` steps after a `FINDER_STEPS`-step range test, in ``tmp_path/run``."""
    return fit(
        model=minilm_dir(),
        data=data,
        eval_data=eval_data,
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
        **options,
    )


def _logits(model: torch.nn.Module, tokenizer: object, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # type: ignore[operator]
    model.eval()
    with torch.no_grad():
        return model(**batch).logits  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
# peft 0.21 calls a name transformers 5 deprecates when it loads an adapter (lrpilot's own calls filter it)
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_minilm_classification_fits_saves_and_reloads(
    method: str, sst2_files: tuple[Path, Path], tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    base = minilm_dir()
    train, evaluation = sst2_files
    result = fit(
        model=base,
        data=train,
        eval_data=evaluation,
        method=method,
        budget=BUDGET,
        batch_size=8,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert result.schedule.to_dict()["total_steps"] == BUDGET
    assert result.record.resumed is None  # a fine-tune trains its whole warmup
    assert any(note.startswith(f"a fine-tune ({method}): the whole warmup") for note in result.record.notes)
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
    assert result.metrics["val_loss"] > 0
    assert result.recommendation.setup.method == method
    history = result.record.history  # 40 evaluation texts: every evaluation scores them all
    assert (history.eval_examples, history.final_eval) == (40, {})
    assert history.eval_loss[-1] == result.metrics["val_loss"]
    horizon = result.record.horizon  # 6 steps: far shorter than the 150–1000 the rule is calibrated on
    # a 12-step test may find nothing, or fall too little to overrule the rules: their band's end, as it is
    overruled = any(" not used: its loss fell by only" in note for note in result.record.notes)
    if result.finder is None or overruled:
        assert horizon is None
        assert result.peak_lr <= result.recommendation.peak_lr  # held below a blow-up the test saw, if any
    else:
        assert horizon is not None
        assert (horizon["reference_steps"], horizon["steps"]) == (150, BUDGET)
        assert result.peak_lr > horizon["found"]
    assert any(
        note.startswith("classification head: the checkpoint's own sentence-transformers pooling (mean")
        for note in result.record.notes
    )
    saved = result.model_path
    assert saved.name == ("adapter" if method == "lora" else "model")
    assert (saved / "adapter_config.json").is_file() == (method == "lora")
    texts = ["a gorgeous, witty film", "dull and lifeless"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved)
    reloaded = load_classifier(saved)
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["metrics"]["val_accuracy"] == pytest.approx(result.metrics["val_accuracy"])
    trained = _logits(reloaded, tokenizer, texts)
    assert torch.allclose(trained, _logits(result.model, tokenizer, texts), atol=1e-5)
    fresh = PooledClassifier(transformers.AutoModel.from_pretrained(base), ("mean",), 2)
    assert not torch.allclose(trained, _logits(fresh, tokenizer, texts))  # not the untrained head


def test_a_users_run_is_scaled_from_the_calibrated_lengths_or_one_epoch_if_longer(tmp_path: Path) -> None:
    """Stretching a run was measured only on runs that see their data several times: a user's run
    longer than the calibrated 150–1000 steps is scaled down only past one epoch."""
    from lrpilot.autopilot._target import user_target

    train = write_rows(tmp_path / "train.csv", sst2_rows(1200))  # 1,080 rows after the held-out tenth
    common = {"kind": "classification", "method": "full"}
    assert user_target(minilm_dir(), train, None, batch_size=16, **common).calibrated == (150, 1000)  # 68 steps
    assert user_target(minilm_dir(), train, None, batch_size=1, **common).calibrated == (150, 1080)


def test_lora_targets_are_the_attention_projections_found_by_name() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    model = transformers.BertForSequenceClassification(config)
    targets = attention_projections(model)
    assert len(targets) == 2 * 4  # query, key, value and the output projection of each layer
    assert all(".attention." in name for name in targets)
    assert "classifier" not in targets


def test_a_causal_lms_lora_targets_are_its_blocks_attention_projections() -> None:
    """The attention projections of every block, as fit's causal-LM figures were measured: never the
    MLP's, the LM head (tied to the embeddings here) or the embeddings."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    targets = causal_lm_targets(transformers.LlamaForCausalLM(config))
    projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
    assert sorted(targets) == sorted(f"model.layers.{i}.{p}" for i in (0, 1) for p in projections)


def test_an_image_text_checkpoints_lora_targets_are_its_language_models_alone() -> None:
    """Gemma 3's checkpoints from 4B up are image-text models: a fit on text puts adapters on the
    language model's blocks, not on the vision tower no text reaches."""
    transformers = pytest.importorskip("transformers")
    text = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "head_dim": 8}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "image_size": 28, "patch_size": 14}
    config = transformers.Gemma3Config(
        text_config={**text, "num_attention_heads": 2, "num_key_value_heads": 1},
        vision_config={**vision, "num_attention_heads": 2},
        mm_tokens_per_image=4,
        image_token_index=63,
    )
    targets = causal_lm_targets(transformers.Gemma3ForConditionalGeneration(config))
    assert len(targets) == 2 * 4
    assert all(name.startswith("model.language_model.layers.") for name in targets)


def test_jsonl_rows_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n', encoding="utf-8")
    assert read_rows(path, ("text", "label"), "--data") == [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    path.write_text('{"text": "good", "label": 1}\n{"text": "", "label": 0}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl, row 2: 'text' is empty"):
        read_rows(path, ("text", "label"), "--data")
    path.write_text('{"text": "good"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: not valid JSON"):
        read_rows(path, ("text",), "--data")


def test_labels_given_as_names_are_class_ids_in_sorted_order(tmp_path: Path) -> None:
    names = ["positive", "negative", "neutral"]
    rows = [{"text": f"text {i}", "label": names[i % 3]} for i in range(30)]
    data = write_rows(tmp_path / "train.csv", rows)
    held = write_rows(tmp_path / "eval.csv", [{"text": "x", "label": " neutral"}, {"text": "y", "label": "positive"}])
    task = load_hf_task(minilm_dir(), data, held)
    assert task.label_names == ("negative", "neutral", "positive")
    assert task.num_labels == 3
    assert task.train_data.labels is not None
    assert task.train_data.labels[:3].tolist() == [2, 0, 1]
    assert task.val_data.labels is not None
    assert task.val_data.labels.tolist() == [1, 2]  # surrounding spaces are not part of a name


def test_names_spelled_with_other_case_or_spaces_are_one_class_and_the_notes_say_so(tmp_path: Path) -> None:
    """Hand-merged labels ("Positive", "positive ", " POSITIVE") had been read as one class per
    spelling: five classes for two, the accuracy of a 5-way head on a 2-way task."""
    spellings = ["Positive", "negative", "positive ", " NEGATIVE", "Positive", "negative"]
    rows = [{"text": f"text {i}", "label": spellings[i % 6]} for i in range(30)]
    data = write_rows(tmp_path / "train.csv", rows)
    held = write_rows(tmp_path / "eval.csv", [{"text": "x", "label": "POSITIVE"}, {"text": "y", "label": "Negative"}])
    target = user_target(minilm_dir(), data, held, kind="classification", method="lora", batch_size=16)
    task = target.task
    assert isinstance(task, HfTask)
    assert (task.label_names, task.num_labels) == (("negative", "Positive"), 2)
    assert task.train_data.labels is not None
    assert task.val_data.labels is not None
    assert task.train_data.labels[:6].tolist() == [1, 0, 1, 0, 1, 0]
    assert task.val_data.labels.tolist() == [1, 0]
    note = next(n for n in target.notes if n.startswith("labels are names"))
    assert "0 = negative, 1 = Positive" in note
    assert "'negative', 'NEGATIVE', 'Negative' differ only in case or spaces and are one class, 'negative'" in note
    model = _tiny_classifier(tmp_path / "clf", {0: "NEGATIVE", 1: "POSITIVE"})  # a classifier's own names, any case
    assert load_hf_task(model, data).train_data.labels[:2].tolist() == [1, 0]  # type: ignore[index]


def test_json_booleans_are_the_class_names_a_csv_of_the_same_frame_gives(tmp_path: Path) -> None:
    """pandas writes a bool label column as True/False to a CSV (read as names) and as true/false to
    a .jsonl, which had been refused: "row 1: label must be an integer, got True"."""
    rows = [{"text": f"text {i}", "label": i % 3 == 0} for i in range(30)]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    from_csv = load_hf_task(minilm_dir(), write_rows(tmp_path / "train.csv", rows))
    from_json = load_hf_task(minilm_dir(), jsonl)
    assert from_json.label_names == from_csv.label_names == ("False", "True")
    assert from_json.train_data.labels is not None
    assert from_csv.train_data.labels is not None
    assert from_json.train_data.labels.tolist() == from_csv.train_data.labels.tolist()


@pytest.mark.parametrize(
    ("train", "held", "message"),
    [
        (["pos"] * 20, None, "train.csv: every label is 'pos'; a classifier needs at least two classes"),
        (["1"] * 20, None, "train.csv: every label is 1; a classifier needs at least two classes"),
        (["pos", "neg", "1"] * 7, None, "train.csv, row 3: label '1' is a number and row 1's 'pos' a name"),
        (
            ["pos", "neg"] * 10,
            ["neg", "meh"],
            "eval.csv, row 2: label 'meh' is not one of the training labels (neg, pos)",
        ),
        (["pos", "neg"] * 10, ["neg", "0"], "eval.csv, row 2: label '0' is not one of the training labels (neg, pos)"),
        (["1", "0", "1.5"] * 7, None, "train.csv, row 3: label must be an integer class id, got '1.5'"),
    ],
)
def test_labels_that_mix_numbers_and_names_or_are_unknown_are_refused_by_row(
    tmp_path: Path, train: list[str], held: list[str] | None, message: str
) -> None:
    data = write_rows(tmp_path / "train.csv", [{"text": f"text {i}", "label": label} for i, label in enumerate(train)])
    other = None
    if held is not None:
        other = write_rows(tmp_path / "eval.csv", [{"text": f"t {i}", "label": label} for i, label in enumerate(held)])
    with pytest.raises(ValueError, match=re.escape(message)):
        load_hf_task(minilm_dir(), data, other)


def _tiny_classifier(folder: Path, id2label: dict[int, str]) -> Path:
    """A randomly initialised BERT classifier with MiniLM's tokenizer and these labels, saved as a user's model."""
    label2id = {name: i for i, name in id2label.items()}
    return tiny_bert_dir(folder, id2label=id2label, label2id=label2id)


def test_a_classifier_checkpoint_keeps_its_own_label_numbering(tmp_path: Path) -> None:
    model = _tiny_classifier(tmp_path / "clf", {0: "POSITIVE", 1: "NEGATIVE"})
    data = write_rows(
        tmp_path / "train.csv", [{"text": f"t {i}", "label": ["NEGATIVE", "POSITIVE"][i % 2]} for i in range(20)]
    )
    task = load_hf_task(model, data)
    assert task.label_names == ("POSITIVE", "NEGATIVE")
    assert task.train_data.labels is not None
    assert task.train_data.labels[:2].tolist() == [1, 0]
    other = write_rows(tmp_path / "other.csv", [{"text": f"t {i}", "label": ["neg", "pos"][i % 2]} for i in range(20)])
    with pytest.raises(ValueError, match=r"already a classifier of the labels POSITIVE, NEGATIVE; 'neg', 'pos' is not"):
        load_hf_task(model, other)
    one = write_rows(tmp_path / "one.csv", [{"text": f"t {i}", "label": "negative"} for i in range(20)])
    with pytest.raises(ValueError, match=r"one.csv: every label is 'NEGATIVE'; a classifier needs at least two"):
        load_hf_task(model, one)


def test_a_classifier_saved_without_label_names_takes_the_datas(tmp_path: Path) -> None:
    """transformers names a classifier's classes LABEL_0, LABEL_1 when none were given; data with
    names had been refused: "already a classifier of the labels LABEL_0, LABEL_1; 'neg', 'pos' is not"."""
    model = _tiny_classifier(tmp_path / "clf", {0: "LABEL_0", 1: "LABEL_1"})
    rows = [{"text": f"t {i}", "label": ["pos", "neg"][i % 2]} for i in range(20)]
    task = load_hf_task(model, write_rows(tmp_path / "train.csv", rows))
    assert (task.label_names, task.num_labels) == (("neg", "pos"), 2)
    assert task.train_data.labels is not None
    assert task.train_data.labels[:2].tolist() == [1, 0]
    three = [{"text": f"t {i}", "label": ["pos", "neg", "meh"][i % 3]} for i in range(21)]
    message = "three.csv has 3 classes (meh, neg, pos), and the model already is a classifier of 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_hf_task(model, write_rows(tmp_path / "three.csv", three))


def test_the_held_out_tenth_leaves_every_class_a_training_example(tmp_path: Path) -> None:
    """A class of one example that the 10 % draw held out had no training example: a head output
    never trained, and a note that blamed gaps in integer class ids on labels given as names."""
    labels = [f"common_{i % 3}" for i in range(100)]
    for row, name in ((5, "rare_a"), (17, "rare_b"), (33, "rare_c")):
        labels[row] = name  # row 5 is one the seed-0 draw holds out
    rows = [{"text": f"text number {i}", "label": label} for i, label in enumerate(labels)]
    data = write_rows(tmp_path / "train.csv", rows)
    target = user_target(minilm_dir(), data, None, kind="classification", method="lora", batch_size=16)
    task = target.task
    assert isinstance(task, HfTask)
    assert task.train_data.labels is not None
    assert torch.bincount(task.train_data.labels, minlength=6).min() >= 1
    assert (len(task.train_data.ids), len(task.val_data.ids)) == (91, 9)
    assert not any("no training example" in note for note in target.notes)


def test_a_checkpoints_class_the_data_lacks_is_named_not_blamed_on_the_numbering(tmp_path: Path) -> None:
    """A 3-class checkpoint fine-tuned on data of two of its classes: the note had told the user to
    number labels 0 … n−1 or give them as names, which they were."""
    model = _tiny_classifier(tmp_path / "clf", {0: "NEG", 1: "NEU", 2: "POS"})
    rows = [{"text": f"t {i}", "label": ["POS", "NEG"][i % 2]} for i in range(20)]
    target = user_target(
        model, write_rows(tmp_path / "train.csv", rows), None, kind="classification", method="full", batch_size=8
    )
    assert (
        "the checkpoint's class(es) NEU have no training example: its head has 3 outputs and 1 of them never train"
        in target.notes
    )


STARS = {0: "1", 1: "2", 2: "3"}
"""A star-rating head: its outputs named by numbers that are not their ids."""


def _numbered(path: Path, labels: list[Any]) -> Path:
    return write_rows(path, [{"text": f"review number {i}", "label": label} for i, label in enumerate(labels)])


def _numeric_target(model: Path, tmp_path: Path, train: list[Any], held: list[Any] | None = None) -> Any:
    data = _numbered(tmp_path / "train.csv", train)
    other = None if held is None else _numbered(tmp_path / "eval.csv", held)
    target = user_target(model, data, other, kind="classification", method="full", batch_size=8)
    assert not any(note.startswith("labels are names") for note in target.notes)  # the names note is for names
    return target.task, [note for note in target.notes if "matched to the model's label names" in note]


def test_numbers_that_are_a_classifiers_label_names_train_the_outputs_of_those_names(tmp_path: Path) -> None:
    """A classifier whose outputs are named "1", "2", "3" (a star rating): the data's labels 1, 2, 3
    had been read as class ids, 3 refused as out of range and 1 and 2 silently training the outputs
    named "2" and "3"."""
    stars = _tiny_classifier(tmp_path / "stars", STARS)
    task, matched = _numeric_target(stars, tmp_path, [1, 2, 3] * 7, [3, 1, 2])
    assert (task.label_names, task.label_match, task.num_labels) == (("1", "2", "3"), "names", 3)
    assert task.val_data.labels.tolist() == [2, 0, 1]
    assert sorted(set(task.train_data.labels.tolist())) == [0, 1, 2]
    assert len(matched) == 1
    assert matched[0].startswith(
        "the labels are numbers, and so are the names of the model's outputs (id2label 0 = '1', 1 = '2', 2 = '3'): "
        "the labels were matched to the model's label names, not read as class ids (a 1 trains output 0, the one "
        "named '1')"
    )
    assert "would also fit as a class id" not in matched[0]

    # 1 and 2 fit as class ids too, of other outputs: read as the names, and the note says so
    task, matched = _numeric_target(stars, tmp_path, [1, 2] * 10, [2, 1])
    assert (task.label_names, task.label_match) == (("1", "2", "3"), "ambiguous")
    assert task.val_data.labels.tolist() == [1, 0]
    assert "every label would also fit as a class id 0 … 2, which trains other outputs" in matched[0]

    # a .jsonl's numbers, as integers, floats or strings, are the names of their value
    rows = [{"text": f"review {i}", "label": label} for i, label in enumerate([3, 1.0, "2"] * 7)]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert load_hf_task(stars, jsonl, _numbered(tmp_path / "eval.csv", [3, 1])).val_data.labels.tolist() == [2, 0]


@pytest.mark.parametrize(
    ("id2label", "train", "held", "ids"),
    [
        (STARS, [0, 1, 2] * 7, [2, 0], [2, 0]),  # 0 is no name: the labels are class ids
        (STARS, [1, 2] * 10, [0, 1], [0, 1]),  # the evaluation's 0 is no name either
        ({0: "0", 1: "1"}, [0, 1] * 10, [1, 0], [1, 0]),  # each name is its own id: nothing to match
        ({0: "LABEL_0", 1: "LABEL_1"}, [0, 1] * 10, [1, 0], [1, 0]),  # names no one chose
    ],
)
def test_numbers_stay_class_ids_where_they_are_not_all_the_models_label_names(
    tmp_path: Path, id2label: dict[int, str], train: list[int], held: list[int], ids: list[int]
) -> None:
    task, matched = _numeric_target(_tiny_classifier(tmp_path / "clf", id2label), tmp_path, train, held)
    assert (task.label_names, task.label_match, task.val_data.labels.tolist()) == ((), None, ids)
    assert not matched


def test_numbers_that_fit_as_names_and_as_ids_differently_are_read_as_the_names(tmp_path: Path) -> None:
    swapped = _tiny_classifier(tmp_path / "swapped", {0: "1", 1: "0"})
    task, matched = _numeric_target(swapped, tmp_path, [0, 1, 1] * 7, [0, 1])
    assert (task.label_names, task.label_match) == (("1", "0"), "ambiguous")
    assert task.val_data.labels.tolist() == [1, 0]
    assert "(a 1 would train output 1, named '0'): fit reads them as the model's names" in matched[0]


def test_a_fit_on_a_star_rating_classifier_trains_and_saves_the_outputs_of_the_labels_names(tmp_path: Path) -> None:
    """`lrpilot fit` end to end on a 3-star classifier's own numbering: its label 3 had been refused
    ("label 3 is out of range"); it now trains output 2, the one named "3" (the loss's gradient pulls
    that output's bias up), and the saved model, its labels.json and run.json's notes say so."""
    stars = _tiny_classifier(tmp_path / "stars", STARS)
    labels = [3] * 16 + [2] * 2 + [1] * 2  # mostly 3 stars
    train = _numbered(tmp_path / "train.csv", labels)
    held = _numbered(tmp_path / "eval.csv", [3, 3, 2, 1])
    run: dict[str, Any] = {"budget": BUDGET, "finder_steps": FINDER_STEPS, "out": tmp_path / "run", "report": False}
    result = fit(model=stars, data=train, eval_data=held, **run)
    saved, names = result.model_path, {"0": "1", "1": "2", "2": "3"}
    assert json.loads((saved / "labels.json").read_text(encoding="utf-8")) == {"id2label": names}
    assert json.loads((saved / "config.json").read_text(encoding="utf-8"))["id2label"] == names
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert any("the labels were matched to the model's label names" in note for note in record["notes"])
    task = load_hf_task(stars, train, held)  # the loss fit trains: its pull on each output's bias
    model = task.build_model(0)
    task.loss(model, task.train_data.batch(range(len(labels)), task.pad_id)).backward()
    pull = -model.classifier.bias.grad  # mean(label is k) − mean(p_k): up for the outputs the labels name
    assert int(pull.argmax()) == 2  # the output named "3", which 16 of the 20 labels are
    assert pull[2] > 0.3
    assert max(pull[0], pull[1]) < 0  # the outputs named "1" and "2": 2 labels each of 20


def test_without_eval_a_tenth_is_held_out(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "train.csv", [{"text": f"text number {i}", "label": i % 3} for i in range(50)])
    task = load_hf_task(minilm_dir(), data)
    assert (len(task.train_data.ids), len(task.val_data.ids)) == (45, 5)
    assert task.num_labels == 3  # a fresh head sized to the data's labels
    assert task.classes == 3  # the guard's chance level is ln 3


def test_an_evaluation_too_small_or_sharing_the_training_texts_is_named_in_the_notes(tmp_path: Path) -> None:
    """A 20-row --data had reported "val accuracy 1" from its 2 held-out rows, and an --eval that
    repeated training rows scored them as new text, with no word of either."""
    common: dict[str, Any] = {"kind": "classification", "method": "lora", "batch_size": 16}
    rows = [{"text": f"review number {i} of a film", "label": i % 2} for i in range(1000)]
    data = write_rows(tmp_path / "train.csv", rows)
    assert not any("evaluation" in n for n in user_target(minilm_dir(), data, None, **common).notes)  # 100 held out
    tiny = write_rows(tmp_path / "tiny.csv", rows[:20])
    note = next(n for n in user_target(minilm_dir(), tiny, None, **common).notes if "evaluation" in n)
    assert note.startswith("the evaluation is the 2 rows held out of --data: an accuracy on so few moves in steps")
    assert "uncertain by up to ±0.50 (95 %)" in note
    new = [{"text": f"another film {i}", "label": i % 2} for i in range(90)]
    held = write_rows(tmp_path / "eval.csv", rows[:30] + new)
    note = next(n for n in user_target(minilm_dir(), data, held, **common).notes if "evaluation" in n)
    assert note == (
        "30 of the 120 evaluation examples are also in the training data, token for token: the evaluation scores "
        "them as new text, so its loss and accuracy flatter the model (leave them out of --eval)"
    )


def test_the_stored_dtype_is_read_without_the_deprecated_alias() -> None:
    """Every fit of all-MiniLM-L6-v2 (no dtype in its config) printed "[transformers] `torch_dtype` is
    deprecated! Use `dtype` instead!": lrpilot read the alias where ``dtype`` was None."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers.BertConfig(), "dtype"):
        pytest.skip("transformers 4: torch_dtype is the only name")

    class Strict(transformers.BertConfig):  # type: ignore[misc]
        @property
        def torch_dtype(self) -> None:
            raise AssertionError("the deprecated alias was read")

    assert _stored_dtype(Strict()) is None
    assert _stored_dtype(Strict(dtype="bfloat16")) == "bfloat16"


@pytest.fixture
def tiny_causal_lm(tmp_path: Path) -> Path:
    """A randomly initialised 2-layer GPT-2 with MiniLM's tokenizer, saved as a user's model folder."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    config = transformers.GPT2Config(
        vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2, pad_token_id=0
    )
    folder = tmp_path / "tiny-gpt2"
    with torch.random.fork_rng():  # the same weights whatever the tests before it left in torch's generator
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _fox_lines(path: Path) -> Path:
    """40 lines of text as a causal LM's ``.jsonl`` training data."""
    lines = [json.dumps({"text": f"the quick brown fox number {i} jumps over the lazy dog"}) for i in range(40)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("method", ["full", "lora"])
def test_weights_stored_in_bf16_train_in_float32(method: str, tiny_causal_lm: Path, tmp_path: Path) -> None:
    """transformers 5 loads a checkpoint in its stored dtype (most LLMs': bf16), where AdamW's small
    updates round away: the weights fit trains are float32 (in fp32 all of them; under bf16
    autocast the trainable ones, a LoRA base staying as stored), and the notes say so."""
    from lrpilot.autopilot._target import user_target
    from lrpilot.tasks._device import Precision

    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "bf16"
    transformers.AutoModelForCausalLM.from_pretrained(tiny_causal_lm).to(torch.bfloat16).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tiny_causal_lm).save_pretrained(folder)
    data = _fox_lines(tmp_path / "train.jsonl")
    task = load_hf_task(folder, data, kind="causal-lm", method=method)
    assert task.stored_dtype == "bfloat16"
    assert torch.bfloat16 in {p.dtype for p in task.build_model(0).parameters()}  # as transformers loads it
    assert {p.dtype for p in Precision("fp32").master(task.build_model(0)).parameters()} == {torch.float32}
    mixed = Precision("bf16").master(task.build_model(0))
    assert {p.dtype for p in mixed.parameters() if p.requires_grad} == {torch.float32}
    frozen = {p.dtype for p in mixed.parameters() if not p.requires_grad}
    assert frozen == ({torch.bfloat16} if method == "lora" else set())
    target = user_target(folder, data, None, kind="causal-lm", method=method, batch_size=8)
    stored = "the checkpoint's weights are stored in bfloat16; fit trains them in float32"
    assert any(note.startswith(stored) for note in target.notes)
    result = fit(
        model=folder,
        data=data,
        task_type="causal-lm",
        method=method,
        precision="bf16",
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert math.isfinite(result.metrics["val_loss"])


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("method", ["full", "lora"])
def test_causal_lm_on_jsonl_text(method: str, tiny_causal_lm: Path, tmp_path: Path) -> None:
    data = _fox_lines(tmp_path / "train.jsonl")
    result = fit(
        model=tiny_causal_lm,
        data=data,
        task_type="causal-lm",
        method=method,
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert set(result.metrics) == {"val_loss"}  # per predicted token; no accuracy for a language model
    assert math.isfinite(result.metrics["val_loss"])  # a random model, 6 steps: finite is all one can ask
    assert (result.model_path / ("adapter_config.json" if method == "lora" else "config.json")).is_file()
    if method == "lora":  # GPT-2's projections are Conv1D (attention's c_attn, c_proj; the MLP's, not adapted)
        adapters = "LoRA: rank 8 (alpha 16) adapters on 4 projections (attn.c_attn, attn.c_proj); "
        assert any(note.startswith(adapters) and "parameters train (" in note for note in result.record.notes)
        config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
        assert sorted(config["target_modules"]) == [
            f"transformer.h.{i}.{m}" for i in (0, 1) for m in ("attn.c_attn", "attn.c_proj")
        ]
        assert config["fan_in_fan_out"] is True


def test_a_causal_lm_has_no_chance_level_for_the_guard(tiny_causal_lm: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"line {i} of text"}) for i in range(20)) + "\n", encoding="utf-8")
    assert load_hf_task(tiny_causal_lm, data, kind="causal-lm").classes is None


def _retention_rows(n: int) -> list[dict[str, str]]:
    """General text, unrelated to sentiment: lines of tiny shakespeare (shipped with lrpilot)."""
    from lrpilot.tasks import corpus

    lines = [line for line in corpus().splitlines() if len(line.split()) >= 5]
    return [{"text": line} for line in lines[:n]]


def test_drift_is_zero_for_the_original_and_grows_as_the_weights_move(tmp_path: Path) -> None:
    from lrpilot.autopilot._forgetting import load_drift

    data = write_rows(tmp_path / "train.csv", [{"text": f"text number {i}", "label": i % 2} for i in range(20)])
    task = load_hf_task(minilm_dir(), data)
    model = task.build_model(0)
    drift = load_drift(task, model, _retention_rows(16))
    assert drift(model) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    assert 0.0 < drift(model) < 2.0


@pytest.mark.slow
def test_forgetting_weight_trades_loss_against_drift(tmp_path: Path) -> None:
    rows = sst2_rows(120)
    train, evaluation = write_rows(tmp_path / "train.csv", rows[:100]), write_rows(tmp_path / "eval.csv", rows[100:])
    retention = write_rows(tmp_path / "general.csv", _retention_rows(8), columns=("text",))
    result = fit(
        model=minilm_dir(),
        data=train,
        eval_data=evaluation,
        budget=BUDGET,
        batch_size=8,
        finder_steps=FINDER_STEPS,
        retention=retention,
        method="lora",
        forgetting_weight=100.0,  # retention above all: a low peak must win
        out=tmp_path / "run",
        report=False,
    )
    notes = [n for n in result.record.notes if n.startswith("forgetting trade-off")]
    assert len(notes) == 1
    assert notes[0].count("drift") == 5  # the formula, then one per probe
    probes = [point["peak_lr"] for point in result.record.tradeoff["points"]]
    assert result.peak_lr < max(probes)  # a lower LR only ever forgets less
    assert result.peak_lr in probes
    assert result.record.tradeoff is not None  # the report's trade-off section draws these
    assert result.record.tradeoff["chosen"] == result.peak_lr
    assert len(result.record.tradeoff["points"]) == 4
    assert "drift" in result.metrics
    assert result.record.history.eval_metrics["drift"][-1] == result.metrics["drift"]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_half_precision_fine_tune_probes_and_measures_drift_in_it(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """fp16 autocast with a loss scale, through every phase of a user's fit: the range test, the
    forgetting probes (each with its own scale), the run under the guard, the evaluations and the
    drift, whose reference embeddings are computed in the run's precision."""
    data = _fox_lines(tmp_path / "train.jsonl")
    result = fit(
        model=tiny_causal_lm,
        data=data,
        task_type="causal-lm",
        method="lora",
        budget=BUDGET,
        batch_size=8,
        finder_steps=FINDER_STEPS,
        retention=write_rows(tmp_path / "general.csv", _retention_rows(8), columns=("text",)),
        forgetting_weight=1.0,
        precision="fp16",
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert result.record.precision == "fp16"
    points = {point["peak_lr"]: point for point in result.record.tradeoff["points"]}
    assert len(points) == 4
    assert math.isfinite(points[result.peak_lr]["score"])  # the probe it chose trained (a scaled fp16 step)
    assert 0 < result.metrics["drift"] < 2
    assert math.isfinite(result.metrics["val_loss"])


def _varied_rows(n: int) -> list[dict[str, object]]:
    """Texts of different lengths, so the whole set's length-sorted batches differ from the subset's."""
    return [{"text": " ".join(["word"] * (1 + i % 9)) + f" number {i}", "label": i % 2} for i in range(n)]


def test_the_last_evaluation_reads_the_quick_subset_off_its_pass_over_the_whole_set(tmp_path: Path) -> None:
    """A classifier: the whole set's figures exactly as `metrics` gives them, the subset's as a
    pass over the subset alone gives them (up to padding: other batches, other shapes)."""
    data = write_rows(tmp_path / "train.csv", _varied_rows(20))
    evaluation = write_rows(tmp_path / "eval.csv", _varied_rows(70))
    task = load_hf_task(minilm_dir(), data, evaluation)
    model = task.build_model(0)
    whole, part = task.metrics_and_subset(model, 16)
    assert whole == task.metrics(model)
    assert (whole.examples, part.examples) == (70, 16)
    alone = task.metrics(model, 16)
    assert part.loss == pytest.approx(alone.loss, rel=1e-5)
    assert part.accuracy == alone.accuracy


def test_a_causal_lm_subset_is_scored_per_predicted_token(tiny_causal_lm: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"text": " ".join(["token"] * (2 + i % 7)) + f" line {i}"}) for i in range(40)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = load_hf_task(tiny_causal_lm, data, kind="causal-lm")
    model = task.build_model(0)
    whole, part = task.metrics_and_subset(model, 2)
    assert whole == task.metrics(model)
    alone = task.metrics(model, 2)
    assert (part.loss, part.accuracy, part.examples) == (pytest.approx(alone.loss, rel=1e-5), None, 2)


def test_unbalanced_labels_are_the_guards_chance_level_and_the_doctor_reads_it(tmp_path: Path) -> None:
    """90 % / 10 % labels: the guard judges a collapse against their entropy (a model collapsed
    onto the majority class scores it), fit says so, and run.json carries it to the doctor."""
    from lrpilot.detect import DetectConfig
    from lrpilot.doctor import fitted_config, read

    rows = [{"text": f"text number {i}", "label": int(i % 10 == 0)} for i in range(100)]
    data = write_rows(tmp_path / "train.csv", rows)
    evaluation = write_rows(tmp_path / "eval.csv", rows[:20])
    task = load_hf_task(minilm_dir(), data, evaluation)
    assert task.chance_loss == pytest.approx(DetectConfig.for_label_counts([90, 10]).chance_loss)
    even = write_rows(tmp_path / "even.csv", [{**r, "label": i % 2} for i, r in enumerate(rows)])
    balanced = load_hf_task(minilm_dir(), even, evaluation)
    assert balanced.chance_loss == pytest.approx(math.log(2))
    result = _small_fit(data, evaluation, tmp_path)
    assert any(note.startswith("unbalanced labels (the largest class is 90% of") for note in result.record.notes)
    assert result.record.chance_loss == pytest.approx(0.3251, abs=1e-4)
    series = read(result.run_dir)
    assert series.chance_loss == result.record.chance_loss
    assert fitted_config(series).chance_loss == result.record.chance_loss
    assert fitted_config(series, classes=2).chance_loss == pytest.approx(math.log(2))  # --num-classes overrides


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_fit_on_named_labels_saves_the_names_with_the_model(tmp_path: Path, method: str) -> None:
    named = {"0": "negative", "1": "positive"}
    rows = [{"text": row["text"], "label": named[row["label"]]} for row in sst2_rows(60)]
    train, held = write_rows(tmp_path / "train.csv", rows[:48]), write_rows(tmp_path / "eval.csv", rows[48:])
    result = _small_fit(train, held, tmp_path, method=method)
    assert "labels are names, read as class ids 0 = negative, 1 = positive" in " ".join(result.record.notes)
    saved = json.loads((result.model_path / "labels.json").read_text(encoding="utf-8"))
    assert saved == {"id2label": {"0": "negative", "1": "positive"}}
    if method == "full":  # the encoder's own config names them too
        config = json.loads((result.model_path / "config.json").read_text(encoding="utf-8"))
        assert config["id2label"] == {"0": "negative", "1": "positive"}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("gpt2", r"are not this model's: 100% of the BertForSequenceClassification .* the files hold others \(transfo"),
        ("lfs", r"cannot be read \(.*\): model.safetensors is a Git LFS pointer, not the weights; run git lfs pull"),
        ("cut", r"cannot be read \(.*\); a download cut short\? save the model again"),
    ],
)
def test_weights_that_cannot_be_read_or_are_another_models_are_refused_before_training(
    tiny_causal_lm: Path, tmp_path: Path, weights: str, message: str
) -> None:
    """A Git LFS pointer in place of the weights, or a download cut short, raised safetensors'
    traceback; another model's weights beside this config loaded none of its tensors, in silence,
    and fit trained the random model it had built."""
    model = tiny_bert_dir(tmp_path / "bert")
    stored = model / "model.safetensors"
    if weights == "gpt2":
        stored.write_bytes((tiny_causal_lm / "model.safetensors").read_bytes())
    elif weights == "lfs":
        stored.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n", encoding="utf-8")
    else:
        stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    data = write_rows(tmp_path / "train.csv", [{"text": f"a review {i}", "label": i % 2} for i in range(20)])
    task = load_hf_task(model, data)
    with pytest.raises(ValueError, match=message):
        task.build_model(0)


def test_a_batch_size_above_the_training_examples_is_named_in_the_notes(tmp_path: Path) -> None:
    """--batch-size 64 on 36 training rows trained batches of 36, and run.json said 36, in silence."""
    data = write_rows(tmp_path / "train.csv", [{"text": f"a review {i}", "label": i % 2} for i in range(40)])
    target = user_target(minilm_dir(), data, None, kind="classification", method="full", batch_size=64)
    assert target.task.recipe.batch_size == 36  # 4 of the 40 held out
    assert "--batch-size 64 is more than the 36 training examples: each step trains on all 36" in target.notes
    fitting = user_target(minilm_dir(), data, None, kind="classification", method="full", batch_size=16)
    assert not any("--batch-size" in note for note in fitting.notes)


def test_a_model_saved_without_its_tokenizer_is_refused_not_trained_on_unknown_words(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    """transformers builds a placeholder tokenizer (every word ``[UNK]``) for a folder without one."""
    bare = tmp_path / "no-tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tiny_causal_lm / name).read_bytes())
    with pytest.raises(ValueError, match=r"has \d+ tokens for a model of 30522: the folder holds no tokenizer"):
        load_hf_task(bare, _fox_lines(tmp_path / "fox.jsonl"), kind="causal-lm")


def test_a_length_past_the_models_context_is_refused_before_any_training(tiny_causal_lm: Path, tmp_path: Path) -> None:
    fox = _fox_lines(tmp_path / "fox.jsonl")
    assert load_hf_task(tiny_causal_lm, fox, kind="causal-lm").max_length == 64  # its context, under TRL's 1024
    with pytest.raises(ValueError, match=r"--max-length: 256 tokens is longer than .* context: 64 positions"):
        load_hf_task(tiny_causal_lm, fox, kind="causal-lm", max_length=256)
    rows = write_rows(tmp_path / "train.csv", [{"text": f"a review {i}", "label": i % 2} for i in range(20)])
    with pytest.raises(ValueError, match=r"--max-length: 1024 tokens .* context: 512 positions\); give at most 512"):
        load_hf_task(minilm_dir(), rows, max_length=1024)


def test_an_encoder_is_refused_as_a_causal_lm(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is a bert encoder .* give a decoder"):
        load_hf_task(minilm_dir(), _fox_lines(tmp_path / "fox.jsonl"), kind="causal-lm")


def test_an_evaluation_class_the_training_data_lacks_is_refused_and_gaps_are_noted(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", [{"text": f"review {i}", "label": (0, 2, 5)[i % 3]} for i in range(30)])
    unseen = write_rows(tmp_path / "eval.csv", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    with pytest.raises(
        ValueError, match=r"--eval: eval.csv, row 2: label 1 never occurs in the training data \(its labels: 0, 2, 5\)"
    ):
        load_hf_task(minilm_dir(), train, unseen)
    target = user_target(minilm_dir(), train, None, kind="classification", method="lora", batch_size=8)
    gaps = next(note for note in target.notes if note.startswith("class id(s)"))
    assert gaps.startswith("class id(s) 1, 3, 4 have no training example: the head has 6 outputs and 3 of them never")
    assert not any(note.startswith("unbalanced labels") for note in target.notes)  # three classes, evenly spread


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_an_adapter_names_its_base_model_by_a_path_that_loads_from_anywhere(
    chat_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model given by a relative path (``--model ./my-llm``) is recorded in the adapter's config
    as its absolute path: peft's ``AutoPeftModelForCausalLM`` loads the base from there, and from
    any other directory a relative one had sent it to the Hugging Face Hub."""
    peft = pytest.importorskip("peft")
    monkeypatch.chdir(chat_lm.parent)
    result = fit(
        model=chat_lm.name,
        data=_fox_lines(tmp_path / "train.jsonl"),
        task_type="causal-lm",
        method="lora",
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == str(chat_lm.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    reloaded = peft.AutoPeftModelForCausalLM.from_pretrained(result.model_path)
    assert isinstance(reloaded, peft.PeftModel)


@pytest.mark.parametrize("kind", ["causal-lm", "classification"])
def test_tokens_added_to_the_tokenizer_but_not_the_model_are_refused_before_loading(
    kind: str, chat_lm: Path, tmp_path: Path
) -> None:
    """A tokenizer given tokens the model has no embeddings for (added, the model never resized)
    is refused by the token the data holds, not met mid-range-test as torch's "index out of range"."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(chat_lm)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    tokenizer.save_pretrained(chat_lm)
    rows = [{"text": f"call {i} <tool>" if i == 3 else f"line {i}", "label": i % 2} for i in range(20)]
    data = write_rows(tmp_path / "train.csv", rows)
    with pytest.raises(ValueError, match=r"the token '<tool>' \(id 600\), past the 600 embeddings.*resize_token"):
        load_hf_task(chat_lm, data, kind=kind)


def _retokenized(folder: Path, change: Any) -> Path:
    """`folder`'s tokenizer changed by `change` (the model untouched) and saved back."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    change(tokenizer)
    tokenizer.save_pretrained(folder)
    return folder


def _finite_first_batch(task: HfTask) -> bool:
    return bool(torch.isfinite(task.loss(task.build_model(0), next(iter(task.batches(0))))))


def test_a_pad_token_added_without_resizing_the_model_pads_with_one_it_has(chat_lm: Path, tmp_path: Path) -> None:
    """``tokenizer.add_special_tokens({"pad_token": "[PAD]"})`` saved without resizing the model
    (the usual recipe for GPT-2 and Llama) pads with the end-of-text token: which token pads does
    not matter to the loss, only that the model embeds it (id 600 failed the first batch)."""
    folder = _retokenized(chat_lm, lambda t: t.add_special_tokens({"pad_token": "[PAD]"}))
    task = load_hf_task(folder, _fox_lines(tmp_path / "train.jsonl"), kind="causal-lm", batch_size=4)
    assert task.tokenizer.pad_token_id == 600
    assert task.pad_id == task.tokenizer.eos_token_id
    assert _finite_first_batch(task)


def test_a_tokenizer_with_only_a_beginning_of_text_token_trains_and_the_notes_say_texts_end_unmarked(
    chat_lm: Path, tmp_path: Path
) -> None:
    """A tokenizer with a beginning-of-text token but neither a pad nor an end-of-text one was
    refused; it pads with the former, and the notes no longer say each text ends with the latter."""

    def bos_only(tokenizer: Any) -> None:
        tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|im_start|>", None, None

    folder = _retokenized(chat_lm, bos_only)
    data = _fox_lines(tmp_path / "train.jsonl")
    task = load_hf_task(folder, data, kind="causal-lm", batch_size=4)
    assert task.pad_id == task.tokenizer.bos_token_id
    assert _finite_first_batch(task)
    notes = user_target(folder, data, None, kind="causal-lm", method="full", batch_size=4).notes
    assert any("the tokenizer has no end-of-text token, so the texts end unmarked" in note for note in notes)


def test_a_checkpoint_without_its_lm_head_is_refused_as_a_causal_lm(chat_lm: Path, tmp_path: Path) -> None:
    """A decoder saved without its head (``AutoModel``'s, an embedding model's) loaded as a causal
    LM with a random head, which the quieted load report did not say, and trained on."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    folder = tmp_path / "headless"
    transformers.LlamaModel(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(chat_lm).save_pretrained(folder)
    task = load_hf_task(folder, _fox_lines(tmp_path / "train.jsonl"), kind="causal-lm", method="lora")
    with pytest.raises(
        ValueError, match=r"holds no LM head \(lm_head.weight is not in its weights: saved as LlamaModel"
    ):
        task.build_model(0)
    assert isinstance(
        load_hf_task(chat_lm, _fox_lines(tmp_path / "t.jsonl"), kind="causal-lm").build_model(0), torch.nn.Module
    )


def _saved(folder: Path, model: torch.nn.Module, tokenizer_from: Path) -> Path:
    """`model` saved in `folder` with the tokenizer of `tokenizer_from`, as a user's model."""
    transformers = pytest.importorskip("transformers")
    model.save_pretrained(folder)  # type: ignore[operator]
    transformers.AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(folder)
    return folder


def test_an_encoder_decoder_or_a_model_with_no_causal_lm_is_refused_before_loading(
    chat_lm: Path, tmp_path: Path
) -> None:
    """T5 (no causal LM in transformers: it said so at load, in a list of ~200 classes) and BART
    (whose causal LM is its decoder alone, without the encoder it reads) are refused by their type."""
    transformers = pytest.importorskip("transformers")
    data = _fox_lines(tmp_path / "train.jsonl")
    small = {"vocab_size": 600, "d_model": 16, "num_heads": 2}
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(**small, d_ff=32, num_layers=1, d_kv=8))
    with pytest.raises(ValueError, match=r"is a t5 encoder-decoder .* fit trains decoder-only causal LMs"):
        load_hf_task(_saved(tmp_path / "t5", t5, chat_lm), data, kind="causal-lm")
    bart = transformers.BartForConditionalGeneration(
        transformers.BartConfig(
            vocab_size=600, d_model=16, encoder_layers=1, decoder_layers=1, max_position_embeddings=64
        )
    )
    with pytest.raises(ValueError, match=r"is a bart encoder-decoder"):
        load_hf_task(_saved(tmp_path / "bart", bart, chat_lm), data, kind="causal-lm")
    clip = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    )
    with pytest.raises(ValueError, match=r"transformers has no causal LM for .* model type 'clip_text_model'"):
        load_hf_task(_saved(tmp_path / "clip", clip, chat_lm), data, kind="causal-lm")


def test_texts_past_the_tokenizers_model_max_length_are_cut_without_its_indexing_warning(
    chat_lm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """fit tokenizes each text whole and cuts it at --max-length (the notes count them), so the
    tokenizer's warning that a sequence past its ``model_max_length`` "will result in indexing
    errors" (GPT-2's 1024, OPT's 2048) told the user of a failure that never comes."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(chat_lm)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(chat_lm)
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"text": f"line {i} " * 80}) + "\n" for i in range(20)), encoding="utf-8")
    with caplog.at_level("WARNING"):
        task = load_hf_task(chat_lm, data, kind="causal-lm", max_length=64)
    assert task.cut == len(task.train_data.ids)
    assert "indexing errors" not in caplog.text


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_a_large_models_range_test_autocasts_to_bf16_and_its_run_trains_in_fp32(
    precision: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the hardware computes bf16, an fp32 fit of a model of `BF16_TEST_PARAMETERS` or more
    (lowered here to a tiny BERT's size) runs its range test and the evaluations along the run in
    bf16 autocast, and trains and scores its last evaluation (the reported metrics) in fp32, and
    the notes say so; ``--precision fp32`` given keeps everything in fp32. Every forward pass of a
    linear layer is watched for the autocast it ran under: with gradients on (the test's, then
    the run's) and off (the evaluations')."""
    from lrpilot.autopilot import _search
    from lrpilot.tasks._device import native_bf16

    monkeypatch.setattr(_search, "BF16_TEST_PARAMETERS", 0)
    model = _tiny_classifier(tmp_path / "clf", {0: "neg", 1: "pos"})
    data = write_rows(tmp_path / "train.csv", [{"text": f"t {i}", "label": ["neg", "pos"][i % 2]} for i in range(64)])
    seen: dict[bool, list[torch.dtype]] = {True: [], False: []}

    def watch(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, torch.nn.Linear):
            autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
            seen[torch.is_grad_enabled()].append(autocast)

    handle = torch.nn.modules.module.register_module_forward_hook(watch)
    try:
        result = fit(
            model=model,
            data=data,
            budget=BUDGET,
            finder_steps=FINDER_STEPS,
            precision=precision,
            out=tmp_path / "run",
            report=False,
        )
    finally:
        handle.remove()
    in_bf16 = precision is None and native_bf16(torch.device("cpu"))
    first = [torch.bfloat16] if in_bf16 else []
    assert [mode for mode, _ in itertools.groupby(seen[True])] == [*first, torch.float32]
    assert [mode for mode, _ in itertools.groupby(seen[False])] == [*first, torch.float32]
    assert result.record.precision == "fp32"
    said = "range test and the evaluations along the run in bf16 autocast, the run and its last evaluation"
    assert any(said in note for note in result.record.notes) == in_bf16


def test_a_resumed_fit_measures_its_evaluations_in_the_precision_the_fit_began_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit whose evaluations along the run are in bf16 (its range test's), stopped after step 4
    and resumed, evaluates the rest of the way in bf16 too: its curve is the uninterrupted fit's
    to the bit (a resume that took the run's fp32 for them drew a curve of mixed precisions)."""
    from lrpilot.autopilot import _search
    from lrpilot.tasks._device import native_bf16

    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU computes no bf16: fit evaluates in the run's fp32 throughout")
    monkeypatch.setattr(_search, "BF16_TEST_PARAMETERS", 0)
    options: dict[str, Any] = {
        "model": _tiny_classifier(tmp_path / "clf", {0: "neg", 1: "pos"}),
        "data": write_rows(
            tmp_path / "train.csv", [{"text": f"t {i}", "label": ["neg", "pos"][i % 2]} for i in range(64)]
        ),
        "budget": 12,
        "finder_steps": FINDER_STEPS,
        "report": False,
    }
    whole = fit(**options, out=tmp_path / "whole")

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 4:
            raise KeyboardInterrupt

    assert fit(**options, out=tmp_path / "run", callback=stop).status == "interrupted"
    resumed = fit(resume=tmp_path / "run", report=False)
    assert resumed.status == "finished"
    assert resumed.record.history.eval_steps == whole.record.history.eval_steps == [3, 6, 9, 12]
    assert resumed.record.history.eval_loss == whole.record.history.eval_loss
