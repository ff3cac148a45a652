"""``fit --model DIR --data FILE``: a local Hugging Face model and the user's own data, as a `Task`.

Everything about the user's input is checked here, before a weight is loaded or a step is taken:
the directory must hold a model config and a tokenizer, and the data files what
`lrpilot.autopilot._data` checks (rows, the columns the task type needs with no empty values,
labels that are class ids in ``[0, num_labels)`` or names). The result is an `HfTask`, which the
fit pipeline trains exactly like a built-in task (same guard, same finder, same report).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lrpilot import _validate as check
from lrpilot._optional import require
from lrpilot.autopilot._chat import encode_lm, encode_text, needs_template
from lrpilot.autopilot._data import (
    LM_MAX_LENGTH,
    MAX_LENGTH,
    Encoded,
    check_file,
    check_labels,
    column_map,
    encode,
    fit_as_ids,
    label_ids,
    label_names,
    label_spellings,
    numeric_names,
    read_lm,
    read_roles,
    single_class,
    split_rows,
    wanted_columns,
)
from lrpilot.autopilot._loading import pretrained
from lrpilot.autopilot._lora import LoraOptions, with_lora
from lrpilot.autopilot._pooled import PooledClassifier, checkpoint_pooling
from lrpilot.detect import DetectConfig
from lrpilot.rules import Recommendation
from lrpilot.tasks import Metrics, Recipe, Task
from lrpilot.tasks._base import Answers, SubsetTally, epoch_order, evaluating, seeded, spread
from lrpilot.tasks._device import device_of, to_device

__all__ = [
    "LABELS_FILE",
    "METHODS",
    "TASK_TYPES",
    "HfTask",
    "check_hf_options",
    "load_hf_task",
]

TASK_TYPES = ("classification", "causal-lm")
METHODS = ("full", "lora")
LABELS_FILE = "labels.json"
"""Beside a saved classifier whose labels were names: ``{"id2label": {"0": name, ...}}``."""
MIN_DEFAULT_STEPS = 50
"""The default budget is one epoch, but at least this many steps: a tiny data set still gets a warmup and a decay."""
GGUF_HINT = (
    "fit trains a Hugging Face folder: load it with transformers (AutoModelForCausalLM.from_pretrained(folder, "
    "gguf_file=name), which dequantizes it; needs the gguf package), copy its state dict into "
    "AutoModelForCausalLM.from_config(its config) and save_pretrained that with the tokenizer "
    "(transformers will not save a GGUF-loaded model itself)"
)
"""What to do with a GGUF file, which `fit --model` cannot read (benchmarks/fit_llm.py does it)."""
_EVAL_BATCH = 32
"""Texts per evaluation batch, sorted by length, so that each batch pads little (see the built-in
SST-2 task's `_EVAL_BATCH`)."""


# --- the model directory ----------------------------------------------------------------------


@contextmanager
def quiet_transformers() -> Iterator[Any]:
    """transformers without its progress bars and load reports (a fresh head's "newly initialized"
    notice is expected here), restored afterwards."""
    transformers = require("transformers", "hf", "fit --model")
    logging = transformers.utils.logging
    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()


def _check_model_path(model_dir: Path) -> None:
    """`model_dir` a folder with a config.json (not a GGUF file, nor a folder of them), or an error."""
    inside = sorted(model_dir.glob("*.gguf")) if model_dir.is_dir() else []
    gguf = [model_dir] if model_dir.is_file() and model_dir.suffix == ".gguf" else inside
    if gguf and not (model_dir / "config.json").is_file():
        raise ValueError(f"--model: {gguf[0]} is a GGUF file (llama.cpp's format); {GGUF_HINT}")
    if model_dir.is_file():  # had been "no such directory", of a path that exists
        raise ValueError(
            f"--model: {model_dir} is a file; give the folder that holds the model (its config.json, weights and "
            "tokenizer, as save_pretrained writes them)"
        )
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--model: no such directory {str(model_dir)!r}")
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"--model: {model_dir} is not a Hugging Face model directory (no config.json); give a folder saved "
            "with save_pretrained, holding config.json, the weights and the tokenizer"
        )


def _load_config_and_tokenizer(model_dir: Path, **options: str) -> tuple[Any, Any]:
    """The model's config and tokenizer (from a folder `_check_model_path` passed; `options` for the
    tokenizer, which it saves with itself), or a ValueError saying why `model_dir` is not a model."""
    with quiet_transformers() as transformers:
        try:
            config = transformers.AutoConfig.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--model: {model_dir}/config.json is not a model config: {exc}") from None
        weights = [p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth")]
        if not weights:
            raise ValueError(f"--model: {model_dir} has a config but no weights (*.safetensors or *.bin)")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, **options)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--model: no usable tokenizer in {model_dir}: {exc}") from None
    _check_vocabulary(config, tokenizer, model_dir)
    return config, tokenizer


def _check_vocabulary(config: Any, tokenizer: Any, model_dir: Path) -> None:
    """A tokenizer far smaller than the model's vocabulary is not the model's: transformers builds
    a placeholder one (a handful of special tokens, every word ``[UNK]``) for a folder saved without
    its tokenizer files, and training on that would quietly learn nothing."""
    vocabulary = getattr(config.get_text_config(), "vocab_size", None)
    if isinstance(vocabulary, int) and len(tokenizer) < vocabulary // 2:
        raise ValueError(
            f"--model: the tokenizer in {model_dir} has {len(tokenizer)} tokens for a model of {vocabulary}: the "
            "folder holds no tokenizer of its own (tokenizer.json, vocab.txt, tokenizer.model, ...); save it beside "
            "the model (tokenizer.save_pretrained(folder))"
        )


def _context(config: Any) -> int | None:
    """The longest sequence the model's position embeddings take, where its config says."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config.get_text_config(), name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _length(max_length: int | None, default: int, config: Any, model_dir: Path) -> int:
    """Tokens per example: `max_length` as given (no more than the model's context), else `default`
    or the context where that is shorter."""
    context = _context(config)
    if max_length is None:
        return default if context is None else min(default, context)
    if context is not None and max_length > context:
        raise ValueError(
            f"--max-length: {max_length} tokens is longer than the model in {model_dir} takes (its config's "
            f"context: {context} positions); give at most {context}"
        )
    return max_length


ENCODER_LM_TYPES = frozenset(
    {
        "bert",
        "big_bird",
        "camembert",
        "data2vec-text",
        "electra",
        "ernie",
        "megatron-bert",
        "rembert",
        "roberta",
        "roberta-prelayernorm",
        "roc_bert",
        "roformer",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
        "distilbert",
        "albert",
        "deberta",
        "deberta-v2",
        "mpnet",
        "modernbert",
        "xlnet",
        "funnel",
        "mobilebert",
        "squeezebert",
    }
)
"""Encoders (bidirectional attention): as a causal LM each token would see the ones it predicts."""


def _check_decoder(config: Any, model_dir: Path) -> None:
    """A causal LM must attend only to earlier tokens; an encoder's next-token loss reads the answer.
    An encoder-decoder (T5, BART, Whisper) is no causal LM either: transformers loads BART's decoder
    alone, without the encoder it reads, and for T5 it has no causal LM at all, which it said at
    load in a list of some 200 model classes. A model type transformers has no causal LM for is
    refused here, before anything loads."""
    decoder = "give a decoder (GPT-2, Llama, Qwen, SmolLM, ...) for --task-type causal-lm"
    if config.model_type in ENCODER_LM_TYPES and not getattr(config, "is_decoder", False):
        raise ValueError(
            f"--model: {model_dir} is a {config.model_type} encoder (each token attends to the ones after it), so as a "
            f"causal LM its next-token loss would see the tokens it predicts; {decoder}, or train this one as a "
            "classifier"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"--model: {model_dir} is a {config.model_type} encoder-decoder (its decoder reads what the encoder "
            f"made of the input), and fit trains decoder-only causal LMs; {decoder}"
        )
    causal = require("transformers.models.auto.modeling_auto", "hf", "fit --model").MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if config.model_type not in causal:
        raise ValueError(
            f"--model: transformers has no causal LM for {model_dir}'s model type {config.model_type!r}; {decoder}"
        )


def _is_classifier(config: Any) -> bool:
    """Whether the checkpoint already is a sequence classifier (its own head is kept)."""
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def _num_labels(config: Any, labels: list[int]) -> int:
    """A classifier's own label count if the model already is one; else one more than the largest label
    in the training data (a fresh head is sized to the data)."""
    if _is_classifier(config):
        return int(config.num_labels)
    return max(2, max(labels) + 1)


# --- the task -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HfTask(Task):
    """A local Hugging Face model fine-tuned on the user's data: classification (a sequence
    classification head, cross-entropy over `num_labels` classes) or causal LM (next-token loss)."""

    model_dir: Path = Path()
    kind: str = "classification"
    method: str = "full"
    lora: LoraOptions = field(default_factory=LoraOptions)
    """The adapters' rank, alpha and targets where `method` is ``"lora"``."""
    num_labels: int | None = None
    train_data: Encoded = field(default_factory=lambda: Encoded([], None))
    val_data: Encoded = field(default_factory=lambda: Encoded([], None))
    tokenizer: Any = None
    pad_id: int = 0
    pooling: tuple[str, ...] = ()
    """A classifier's pooling when the checkpoint declares one (`checkpoint_pooling`): the model is
    then a `PooledClassifier`; ``()``: Hugging Face's sequence-classification head."""
    label_names: tuple[str, ...] = ()
    """A classifier's class names by id, where the data gives labels as names (`label_names`);
    ``()`` for integer class ids."""
    label_match: str | None = None
    """Where the data's labels are numbers and the checkpoint already is a classifier whose label
    names are numbers too, every label one of them (`numeric_names`): ``"names"``, each label read
    as the name of an output (the data's ``1`` trains the output named ``"1"``), or ``"ambiguous"``,
    so read though the labels would also fit as class ids, of other outputs; None otherwise."""
    label_spellings: tuple[tuple[str, ...], ...] = ()
    """The classes whose name the data spells more than one way (case, spaces: `name_key`), each
    with its spellings, most frequent first: read as one class, which the notes say."""
    stored_dtype: str | None = None
    """The dtype the checkpoint's weights are stored in (its config's), where it says; the model
    trains them in float32 (`lrpilot.tasks._device.Precision.master`)."""
    lm_format: str | None = None
    """A causal LM's data format (`lrpilot.autopilot._data.LM_FORMATS`); None for a classifier."""
    left_out: tuple[int, int] = (0, 0)
    """Training and evaluation rows left out because the length limit cut off every token their
    loss counts (a completion's, an assistant turn's: `lrpilot.autopilot._chat.encode_lm`)."""
    cut: int = 0
    """A causal LM's training sequences the length limit cut short (their ends are not trained)."""
    split: tuple[int, int] = (0, 0)
    """Of the training chats kept, how many became more than one sequence, and how many there are: a
    template that renders earlier turns differently once a later one follows trains each such turn
    in the context the model writes it in (`lrpilot.autopilot._chat.encode_lm`)."""
    max_length: int = MAX_LENGTH
    """Tokens per example; longer ones are truncated at the end."""

    @property
    def classes(self) -> int | None:
        """A classifier's `num_labels`; None for a causal LM (its vocabulary's chance level is
        far above any loss a pretrained model starts from)."""
        return self.num_labels if self.kind == "classification" else None

    @property
    def chance_loss(self) -> float | None:
        """A classifier's: the entropy of its training labels' frequencies (ln `num_labels` when they
        are balanced; a model collapsed onto the majority class of unbalanced labels sits there)."""
        labels = self.train_data.labels
        if self.kind != "classification" or labels is None or self.num_labels is None:
            return None
        counts = torch.bincount(labels, minlength=self.num_labels).tolist()
        if sum(c > 0 for c in counts) < 2:
            return super().chance_loss
        return DetectConfig.for_label_counts(counts).chance_loss

    @property
    def epoch_steps(self) -> int:
        """Optimizer steps of one pass over the training data at the batch size."""
        return math.ceil(len(self.train_data.ids) / self.recipe.batch_size)

    @property
    def epoch_batches(self) -> int:
        """Distinct batches `batches` draws before it starts over (reshuffled): an incomplete last
        batch is dropped (`epoch_order`), and the batch size is never above the examples."""
        return len(self.train_data.ids) // self.recipe.batch_size

    @property
    def default_steps(self) -> int:
        """One epoch at the batch size, at least `MIN_DEFAULT_STEPS`."""
        return max(MIN_DEFAULT_STEPS, self.epoch_steps)

    def build_model(self, seed: int) -> nn.Module:
        """The checkpoint with its head (or LoRA adapters), in the dtype transformers loads it in (in
        transformers 5 the stored one: bf16 for most LLMs); `lrpilot.tasks._device.Precision.master`
        then gives the trainable weights float32. The model is loaded by its absolute path, which it
        keeps as its name: a LoRA adapter's config names its base by it (``base_model_name_or_path``,
        which peft's ``AutoPeftModel*`` and `load_classifier` load), and a relative ``--model ./my-llm``
        sent them to the Hugging Face Hub from any other directory."""
        model: nn.Module
        source = self.model_dir.resolve()
        with quiet_transformers() as transformers, seeded(seed):
            if self.kind == "classification" and self.pooling:
                encoder, _ = pretrained(transformers.AutoModel, source)
                if self.method == "lora":
                    encoder = with_lora(encoder, None, self.lora)
                model = PooledClassifier(encoder, self.pooling, cast(int, self.num_labels))
            elif self.kind == "classification":
                model, _ = pretrained(
                    transformers.AutoModelForSequenceClassification, source, num_labels=self.num_labels
                )
                _pool_past(model, self.pad_id)
            else:
                model = _causal_lm(transformers, source)
            if self.method == "lora" and not self.pooling:
                model = with_lora(model, self.kind, self.lora)
        model.train()
        return model

    def batches(self, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        data = self.train_data
        for index in epoch_order(len(data.ids), self.recipe.batch_size, seed):
            yield data.batch(index.tolist(), self.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**to_device(batch, device_of(model))).loss  # type: ignore[no-any-return]

    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        """Mean loss per text (classification, with accuracy) or per predicted token (causal LM)."""
        return self._evaluate(model, spread(len(self.val_data.ids), limit), ())[0]

    def metrics_and_subset(self, model: nn.Module, limit: int) -> tuple[Metrics, Metrics]:
        """One pass over the whole set: a user's evaluation set may cost a good share of a run."""
        n = len(self.val_data.ids)
        return self._evaluate(model, list(range(n)), spread(n, limit))

    def _evaluate(self, model: nn.Module, indices: list[int], subset: Sequence[int]) -> tuple[Metrics, Metrics]:
        """The metrics of `indices` (length-sorted batches: little padding), and of the `subset` of them."""
        data = self.val_data
        order = sorted(indices, key=lambda i: len(data.ids[i]))
        total, count, correct = 0.0, 0, 0
        part, answers = SubsetTally(subset), Answers()
        device = device_of(model)
        with evaluating(model):
            for start in range(0, len(order), _EVAL_BATCH):
                index = order[start : start + _EVAL_BATCH]
                batch = to_device(data.batch(index, self.pad_id), device)
                out = model(**batch)
                if data.labels is None:
                    tokens = int((batch["labels"][:, 1:] != -100).sum())
                    total, count = total + out.loss.item() * tokens, count + tokens
                    part.add_tokens(index, out.logits, batch["labels"])
                else:
                    labels = batch["labels"]
                    total += torch.nn.functional.cross_entropy(out.logits, labels, reduction="sum").item()
                    correct += int((answers.add(out.logits) == labels).sum())
                    count += len(index)
                    part.add_classified(index, out.logits, labels)
        loss = total / max(count, 1)
        accuracy = None if data.labels is None else correct / max(count, 1)
        whole = Metrics(loss, accuracy, len(order), answers.top_share())
        return whole, part.metrics()

    def save(self, model: nn.Module, out_dir: Path) -> Path:
        """``save_pretrained`` into ``out_dir/adapter`` (LoRA: the adapter and the trained head) or
        ``out_dir/model`` (full), with the tokenizer beside it so the folder loads on its own (a
        pooled head's with `lrpilot.autopilot.load_classifier`). Labels given as names are saved as
        the config's ``id2label`` and in `LABELS_FILE`."""
        target = out_dir / ("adapter" if self.method == "lora" else "model")
        names = dict(enumerate(self.label_names))
        config = getattr(model.encoder if isinstance(model, PooledClassifier) else model, "config", None)
        if names and config is not None:  # a full fine-tune's config.json then names its classes
            config.id2label, config.label2id = names, {name: i for i, name in names.items()}
        with quiet_transformers():
            model.save_pretrained(target)  # type: ignore[operator]
            self.tokenizer.save_pretrained(target)
        if names:  # an adapter's folder holds no config: the names go beside it either way
            (target / LABELS_FILE).write_text(json.dumps({"id2label": names}, indent=1) + "\n", encoding="utf-8")
        return target

    def with_recipe(self, recipe: Recipe) -> HfTask:
        return replace(self, recipe=recipe)


def _causal_lm(transformers: Any, source: Path) -> nn.Module:
    """The checkpoint as a causal LM, refused where its weights hold no LM head: a model saved
    without one (``AutoModel``'s, an embedding model's such as gte-Qwen2 or e5-mistral, a base
    saved from ``model.model``) loaded with a random head that transformers reports only in the load
    report fit keeps quiet, and trained on (under LoRA, frozen) as if it predicted the text.

    Its loss is named for transformers where its class name does not say it (GPT-2's
    ``GPT2LMHeadModel``, which transformers derives no ``loss_type`` from): the first step of every
    GPT-2 fit logged "`loss_type=None` was set in the config but it is unrecognized. Using the
    default loss: `ForCausalLMLoss`", the loss it then uses, and that a causal LM is."""
    model, info = pretrained(transformers.AutoModelForCausalLM, source)
    head = model.get_output_embeddings()
    names = [
        f"{name}.{param}"
        for name, module in model.named_modules()
        if module is head
        for param, _ in module.named_parameters(recurse=False)
    ]
    missing = sorted(set(names) & set(info["missing_keys"]))
    if missing:
        raise ValueError(
            f"--model: {source} holds no LM head ({', '.join(missing)} is not in its weights: saved as "
            f"{', '.join(getattr(model.config, 'architectures', None) or ['a bare model'])}, without the head that "
            "predicts tokens), so as a causal LM it would start from a random one; give the checkpoint saved with "
            "its head (AutoModelForCausalLM's save_pretrained)"
        )
    if hasattr(model, "loss_type") and model.loss_type is None:
        model.loss_type = "ForCausalLM"
    return model  # type: ignore[no-any-return]


def recipe_from(rec: Recommendation, batch_size: int) -> Recipe:
    """The recommendation's schedule as a recipe: its warmup, decay shape and floor; AdamW with
    weight decay 0.01 and clipping at 1.0, the Hugging Face fine-tuning defaults."""
    decay = "cosine" if rec.schedule.to_dict()["name"] == "cosine" else "linear"
    return Recipe(
        batch_size=batch_size,
        total_steps=rec.total_steps,
        warmup_steps=rec.warmup_steps,
        decay=decay,
        floor_ratio=rec.floor_ratio,
        weight_decay=0.01,
        grad_clip=1.0,
    )


def _stored_dtype(config: Any) -> str | None:
    """The dtype a checkpoint's config says its weights are stored in (``"bfloat16"``), or None.

    transformers 5 names it ``dtype``, and its ``torch_dtype`` is a deprecated alias that logs a
    warning when read, which every fit of a config without a dtype (all-MiniLM-L6-v2's) printed;
    transformers 4 has ``torch_dtype`` only."""
    dtype = config.dtype if hasattr(config, "dtype") else getattr(config, "torch_dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _own_labels(config: Any) -> dict[str, int] | None:
    """A checkpoint that already is a classifier: its ``label2id``; None otherwise, and None where
    its names are the ``LABEL_0``, ``LABEL_1`` … transformers writes when a classifier was saved
    without any: a user's own classifier fine-tuned again on data labelled ``negative`` and
    ``positive`` had been refused for names no one chose (the data's names then number its classes
    in sorted order, as for a fresh head)."""
    if not _is_classifier(config):
        return None
    own = {str(name): int(i) for name, i in (getattr(config, "label2id", None) or {}).items()}
    if all(re.fullmatch(r"LABEL_\d+", name) for name in own):
        return None
    return own


def _classes(
    config: Any, rows: list[dict[str, Any]], data: Path, eval_rows: list[dict[str, Any]] | None = None
) -> tuple[tuple[str, ...], int, str | None]:
    """The class names (for labels given as names) and the number of classes, read from all the
    training rows (before any is held out), every label checked; and `HfTask.label_match`: numbers
    that are all the checkpoint's own label names (`numeric_names`, in the training and the
    evaluation rows, `eval_rows`) are read as those names, not as class ids."""
    own = _own_labels(config)
    names = label_names(rows, data, "--data", own)
    match = None
    if not names:
        every = rows + (eval_rows or [])
        names = numeric_names(every, own)
        if names:
            match = "ambiguous" if fit_as_ids(every, len(names)) else "names"
    ids = label_ids(rows, data, "--data", names)
    single_class(ids, names, data, "--data")
    count = _num_labels(config, [max(0, x) for x in ids])
    if len(names) > count:  # an unnamed classifier's (`_own_labels`), of fewer classes than the data's names
        raise ValueError(
            f"--data: {data.name} has {len(names)} classes ({', '.join(names)}), and the model already is a "
            f"classifier of {count}"
        )
    check_labels(ids, count, data, "--data")
    return names, count, match


def check_hf_options(
    model_dir: Path,
    data: Path,
    eval_data: Path | None,
    *,
    kind: str,
    method: str,
    batch_size: int,
    columns: Mapping[str, str] | None,
    max_length: int | None,
    owner: str = "fit",
) -> dict[str, str]:
    """`load_hf_task`'s checks that read no file and load nothing: the options, and the paths of
    the model and the data files; the roles' columns (`column_map`). fit runs them before anything
    (``lrpilot fit`` before it prints its plan); what the files hold is checked as they are read.
    Its errors name `owner`, the command given the options (fit, or tune through fit's checks)."""
    check.choice(owner, "--task-type", kind, TASK_TYPES)
    check.choice(owner, "--method", method, METHODS)
    check.step_count(owner, "--batch-size", batch_size, 1)
    if max_length is not None:
        check.step_count(owner, "--max-length", max_length, 8)
    mapped = column_map(columns, owner)
    _check_model_path(model_dir)
    wanted = wanted_columns(kind, mapped)
    check_file(data, wanted, "--data")
    if eval_data is not None:
        check_file(eval_data, wanted, "--eval")
    return mapped


def load_hf_task(
    model_dir: Path,
    data: Path,
    eval_data: Path | None = None,
    *,
    kind: str = "classification",
    method: str = "full",
    batch_size: int = 16,
    columns: Mapping[str, str] | None = None,
    max_length: int | None = None,
    lora: LoraOptions | None = None,
    owner: str = "fit",
) -> HfTask:
    """Check everything about the user's model and data and tokenize the data; no weights are loaded
    yet (`HfTask.build_model` does that). The recipe is a placeholder until the recommendation
    sets it (`recipe_from`). `columns`: the roles' columns where they are not named for them
    (`lrpilot.autopilot._data.column_map`); a classifier's data with a ``text_pair`` column is one
    of pairs of texts, encoded together; a causal LM's is text, prompt and completion, or chat
    messages (`lrpilot.autopilot._data.LM_FORMATS`). Examples longer than `max_length` tokens are
    truncated (None: `MAX_LENGTH` for a classifier, `LM_MAX_LENGTH` for a causal LM, or its
    context where that is shorter). `lora`: the adapters of ``method="lora"`` (`lora_options`
    checks them; default rank 8, alpha 16, on the attention projections). `owner`: the command
    whose options' errors it raises (`check_hf_options`)."""
    lora = lora or LoraOptions()
    mapped = check_hf_options(
        model_dir,
        data,
        eval_data,
        kind=kind,
        method=method,
        batch_size=batch_size,
        columns=columns,
        max_length=max_length,
        owner=owner,
    )
    if kind == "causal-lm":
        return _causal_lm_task(
            model_dir,
            data,
            eval_data,
            method=method,
            batch_size=batch_size,
            columns=mapped,
            max_length=max_length,
            lora=lora,
        )
    asked = True if columns and "text_pair" in columns else None
    roles = ("text", "label")
    train_rows = read_roles(data, roles, mapped, "--data", pairs=asked)
    pairs = "text_pair" in train_rows[0]
    eval_rows = read_roles(eval_data, roles, mapped, "--eval", pairs=pairs) if eval_data is not None else None
    # fit pads a classifier's batches on the right, and its saved tokenizer pads as fit did: a left-padding one
    # (Llama's, Gemma's and Mistral's by their class, many chat models' by their config) moved GPT-2's
    # absolute positions, and the saved GPT-2 classifier predicted otherwise than fit had evaluated it
    config, tokenizer = _load_config_and_tokenizer(model_dir, padding_side="right")
    names, num_labels, match = _classes(config, train_rows, data, eval_rows)
    spellings = label_spellings(train_rows + (eval_rows or [])) if names and match is None else {}
    held, what = (eval_data, "--eval") if eval_rows is not None and eval_data is not None else (data, "--data")
    if eval_rows is None:
        kept, held_out = split_rows(len(train_rows), "--data", label_ids(train_rows, data, "--data", names))
        train_rows, eval_rows = [train_rows[i] for i in kept], [train_rows[i] for i in held_out]
    train_labels = label_ids(train_rows, data, "--data", names)
    eval_labels = label_ids(eval_rows, held, what, names)
    check_labels(eval_labels, num_labels, held, what)
    if eval_data is not None and not _is_classifier(config):  # a fresh head learns only the classes it sees
        _check_seen(eval_labels, train_labels, eval_data)
    max_length = _length(max_length, MAX_LENGTH, config, model_dir)
    train = encode(tokenizer, train_rows, train_labels, max_length)
    val = encode(tokenizer, eval_rows, eval_labels, max_length)
    _check_embedded(config, tokenizer, model_dir, train, val)
    pad_id = _pad_id(tokenizer, config)
    _pads_with(tokenizer, pad_id)
    return HfTask(
        name=model_dir.name or "model",
        description=f"{method} fine-tuning of {model_dir} for {kind}{' of text pairs' if pairs else ''} on {data.name}",
        recipe=_placeholder_recipe(batch_size, len(train_rows)),
        model_dir=model_dir,
        kind=kind,
        method=method,
        lora=lora,
        num_labels=num_labels,
        train_data=train,
        val_data=val,
        tokenizer=tokenizer,
        pad_id=pad_id,
        pooling=checkpoint_pooling(model_dir) if not _is_classifier(config) else (),
        label_names=names,
        label_match=match,
        label_spellings=tuple(found for found in spellings.values() if len(found) > 1),
        stored_dtype=_stored_dtype(config),
        max_length=max_length,
    )


def _check_seen(eval_labels: list[int], train_labels: list[int], path: Path) -> None:
    """Every evaluation class is one the training data has: a fresh head never learns another."""
    seen = set(train_labels)
    for row, label in enumerate(eval_labels, start=1):
        if label not in seen:
            known = ", ".join(map(str, sorted(seen)))
            raise ValueError(
                f"--eval: {path.name}, row {row}: label {label} never occurs in the training data (its labels: "
                f"{known}); a fresh head cannot learn it"
            )


def _causal_lm_task(
    model_dir: Path,
    data: Path,
    eval_data: Path | None,
    *,
    method: str,
    batch_size: int,
    columns: Mapping[str, str],
    max_length: int | None,
    lora: LoraOptions,
) -> HfTask:
    """`load_hf_task` for a causal LM: its data in the training file's format, the evaluation file's
    in the same one; prompts and chats encoded with the tokens their loss counts."""
    form, train_rows = read_lm(data, columns, "--data")
    eval_rows = read_lm(eval_data, columns, "--eval", form)[1] if eval_data is not None else None
    config, tokenizer = _load_config_and_tokenizer(model_dir)
    chats = needs_template(train_rows, form) or (eval_rows is not None and needs_template(eval_rows, form))
    if chats and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"--model: the data is a chat, and the tokenizer in {model_dir} has no chat template to render it "
            "(chat_template in tokenizer_config.json, or chat_template.jinja); give it one, or give the data as "
            "prompt and completion text"
        )
    held, what = (eval_data, "--eval") if eval_data is not None else (data, "--data")
    train_numbers = eval_numbers = None  # each row's number in its file, for encode_lm's messages
    if eval_rows is None:
        kept, held_out = split_rows(len(train_rows), "--data")
        train_numbers, eval_numbers = [i + 1 for i in kept], [i + 1 for i in held_out]
        train_rows, eval_rows = [train_rows[i] for i in kept], [train_rows[i] for i in held_out]
    _check_decoder(config, model_dir)
    max_length = _length(max_length, LM_MAX_LENGTH, config, model_dir)
    with quiet_transformers():  # each text is tokenized whole, then cut (the notes say how many): no warning of
        # a sequence longer than the tokenizer's model_max_length, which "will result in indexing errors"
        if form == "text":
            train, val = encode_text(tokenizer, train_rows, max_length), encode_text(tokenizer, eval_rows, max_length)
        else:
            train = encode_lm(
                tokenizer, train_rows, form, max_length=max_length, path=data, what="--data", numbers=train_numbers
            )
            val = encode_lm(
                tokenizer, eval_rows, form, max_length=max_length, path=held, what=what, numbers=eval_numbers
            )
    _check_embedded(config, tokenizer, model_dir, train.data, val.data)
    return HfTask(
        name=model_dir.name or "model",
        description=f"{method} fine-tuning of {model_dir} as a causal LM on {data.name} ({form})",
        recipe=_placeholder_recipe(batch_size, len(train.data.ids)),
        model_dir=model_dir,
        kind="causal-lm",
        method=method,
        lora=lora,
        train_data=train.data,
        val_data=val.data,
        tokenizer=tokenizer,
        pad_id=_pad_id(tokenizer, config),
        stored_dtype=_stored_dtype(config),
        lm_format=form,
        left_out=(train.left_out, val.left_out),
        split=(train.split, len(train_rows) - train.left_out),
        cut=train.cut,
        max_length=max_length,
    )


def _check_embedded(config: Any, tokenizer: Any, model_dir: Path, *encoded: Encoded) -> None:
    """Every token id of the data has an embedding in the model. A tokenizer given tokens after the
    model was saved (a chat template's markers, tool tags) and saved without
    ``resize_token_embeddings`` numbers them past the model's vocabulary: the first batch holding
    one failed in the range test, after the weights loaded, with torch's "index out of range in self"."""
    vocabulary = getattr(config.get_text_config(), "vocab_size", None)
    largest = max((max(ids) for data in encoded for ids in data.ids if ids), default=-1)
    if not isinstance(vocabulary, int) or largest < vocabulary:
        return
    token = tokenizer.convert_ids_to_tokens(largest)
    raise ValueError(
        f"--model: the data holds the token {token!r} (id {largest}), past the {vocabulary} embeddings of the model "
        f"in {model_dir}: its tokenizer has {len(tokenizer)} tokens, some added after the model was saved; give the "
        "model room for them (model.resize_token_embeddings(len(tokenizer))) and save the two together again"
    )


def _placeholder_recipe(batch_size: int, examples: int) -> Recipe:
    """The recipe until the recommendation sets it (`recipe_from`): only its batch size is real."""
    return Recipe(
        batch_size=min(batch_size, examples),
        total_steps=1,
        warmup_steps=0,
        decay="linear",
        floor_ratio=0.0,
        weight_decay=0.01,
        grad_clip=1.0,
    )


def _pad_id(tokenizer: Any, config: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-text, beginning or
    unknown token, else 0, the first of them the model has an embedding for. Which token pads does
    not matter to fit's loss (a batch is padded at its end, where causal attention does not look and
    the labels are masked), only that it is embedded: a pad token added to the tokenizer without
    ``resize_token_embeddings`` (the usual recipe for GPT-2 and Llama) failed the first batch with
    torch's "index out of range", and a tokenizer with a beginning-of-text token but neither a pad
    nor an end-of-text one was refused."""
    vocabulary = getattr(config.get_text_config(), "vocab_size", None)
    limit = vocabulary if isinstance(vocabulary, int) else math.inf
    found = (getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "eos", "bos", "unk"))
    return next((int(i) for i in found if isinstance(i, int) and 0 <= i < limit), 0)


def _pads_with(tokenizer: Any, pad_id: int) -> None:
    """A classifier's tokenizer names as its pad token the one fit pads with (`_pad_id`), so that the
    folder fit saves pads as fit did: one without a pad token (Llama 3's, Mistral's, GPT-2's) could not
    pad a batch at all, and one whose pad token the model has no embedding for would fail it. Only a
    special token is made the pad token (its end-of-text, beginning or unknown one): a word made
    special would be split out of every text that holds it. The texts are encoded unpadded, so
    nothing fit trains on changes."""
    for name in ("pad", "eos", "bos", "unk"):
        if getattr(tokenizer, f"{name}_token_id", None) == pad_id:
            tokenizer.pad_token = getattr(tokenizer, f"{name}_token")
            return


def _pool_past(model: nn.Module, pad_id: int) -> None:
    """A decoder's sequence-classification head (Llama's, Qwen's, GPT-2's, ...) reads the last token
    that is not its config's ``pad_token_id``, and refuses a batch of several texts without one: a
    Llama 3, Mistral or GPT-2 checkpoint (whose configs name none) failed the range test's first
    batch with "Cannot handle batch sizes > 1 if no padding token is defined", and one whose config
    names another token than the tokenizer's pad read a pad of every shorter text. The config (its
    text model's too, which Gemma 3's head reads) names the token fit pads with, and is saved so."""
    config: Any = model.config
    for part in {id(c): c for c in (config, config.get_text_config())}.values():
        part.pad_token_id = pad_id
