"""A classifier that pools the token states the way its checkpoint was trained to: the head `fit`
puts on a sentence-transformers model.

Hugging Face's ``AutoModelForSequenceClassification`` reads a BERT-like model's [CLS] state through
the checkpoint's pooler (dense + tanh) and puts a fresh linear layer on it. A sentence-transformers
checkpoint was trained to be read another way: its ``modules.json`` names a Pooling module whose
``config.json`` says how (all-MiniLM-L6-v2: the mean of the token states over the attention mask),
and its pooler is a leftover of the base model's pretraining (all-MiniLM-L6-v2's dense weights have a
standard deviation of 0.009). On 1,600 SST-2 texts, LoRA at batch 16 (``benchmarks/fit_user_path.py``,
6 seeds), the Hugging Face head's best LR of a 5-point grid averaged a validation loss of 0.443, and
1.5× and 2.2× that LR 0.507 and 0.600 (runs at chance among them); read through the checkpoint's
mean pooling, with a fresh linear head (as sentence-transformers, SetFit and lrpilot's own sst2
tasks read the model), the best averaged 0.417 and every LR from 1e-3 to 4.64e-3 stayed within
0.417–0.435.

`PooledClassifier` is that model: the encoder (``AutoModel``, with LoRA adapters or not), the
checkpoint's pooling, a linear head. It answers like a Hugging Face classifier (``.loss``,
``.logits``, ``.hidden_states``), saves with ``save_pretrained`` (the encoder or its adapter as
Hugging Face saves it, the head beside it) and loads back with `load_classifier`.
"""

from __future__ import annotations

import json
from pathlib import Path

from lrpilot._optional import require
from lrpilot.tasks._pooling import HEAD_CONFIG, HEAD_WEIGHTS, POOLING_MODES, PooledClassifier

__all__ = [
    "HEAD_CONFIG",
    "HEAD_WEIGHTS",
    "POOLING_MODES",
    "PooledClassifier",
    "checkpoint_pooling",
    "head_note",
    "load_classifier",
]


def checkpoint_pooling(model_dir: Path) -> tuple[str, ...]:
    """The pooling a sentence-transformers checkpoint declares (``modules.json`` → its Pooling
    module's ``config.json``: a ``pooling_mode`` name or list, or the older ``pooling_mode_*``
    flags), in the order it concatenates them; ``()`` for any other model, and for a pooling this
    head does not reproduce (weighted mean, last token): those keep the Hugging Face head."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return ()
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        folder = next(m["path"] for m in modules if str(m.get("type", "")).endswith(".Pooling"))
        config = json.loads((model_dir / folder / "config.json").read_text(encoding="utf-8"))
        if "pooling_mode" in config:
            named = config["pooling_mode"]
            modes = (named,) if isinstance(named, str) else tuple(named)
        else:  # the flags, in the order sentence-transformers concatenates them (an unknown one: a mode we lack)
            flags = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
            modes = tuple(mode for key, mode in POOLING_MODES.items() if key in flags)
            modes += tuple(key for key in flags if key not in POOLING_MODES)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return ()
    known = set(POOLING_MODES.values())
    return modes if modes and all(mode in known for mode in modes) else ()


def head_note(pooling: tuple[str, ...]) -> str:
    """What fit's notes say about the head it put on a sentence-transformers checkpoint."""
    return (
        f"classification head: the checkpoint's own sentence-transformers pooling ({' + '.join(pooling)} of the "
        "token states) and a fresh linear layer, not the [CLS] pooler AutoModelForSequenceClassification reads; "
        "load the saved model with lrpilot.autopilot.load_classifier"
    )


def load_classifier(folder: str | Path, base_model: str | Path | None = None) -> PooledClassifier:
    """A classifier `fit` saved with a pooled head (its ``model/`` or ``adapter/`` folder), in eval
    mode. An adapter is put on `base_model`, by default the model it was trained on (its
    ``adapter_config.json`` names it)."""
    path = Path(folder)
    if not (path / HEAD_CONFIG).is_file():
        raise FileNotFoundError(
            f"load_classifier: {path} has no {HEAD_CONFIG}: not a folder fit saved with a pooled head"
        )
    head = json.loads((path / HEAD_CONFIG).read_text(encoding="utf-8"))
    transformers = require("transformers", "hf", "load_classifier")
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        peft = require("peft", "hf", "load_classifier")
        base = base_model or json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
        encoder = peft.PeftModel.from_pretrained(transformers.AutoModel.from_pretrained(base), path)
    else:
        encoder = transformers.AutoModel.from_pretrained(path)
    model = PooledClassifier(encoder, tuple(head["pooling"]), int(head["num_labels"]))
    weights = require("safetensors.torch", "hf", "load_classifier").load_file(path / HEAD_WEIGHTS)
    model.classifier.load_state_dict(weights)
    return model.eval()
