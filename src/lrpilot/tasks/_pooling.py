"""`PooledClassifier`: an encoder read through a sentence-transformers pooling, and a linear head.

The built-in SST-2 tasks read all-MiniLM-L6-v2 this way (its own mean pooling), as sentence-transformers
and SetFit do; `lrpilot fit` puts the same head on any sentence-transformers checkpoint, with the
pooling its ``modules.json`` declares (`lrpilot.autopilot._pooled`, which also loads a saved one back).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpilot._optional import require

__all__ = ["HEAD_CONFIG", "HEAD_WEIGHTS", "POOLING_MODES", "PooledClassifier"]

POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}
"""sentence-transformers' Pooling modes this head reproduces: their legacy flags (in the order it
concatenates them) and their names (which its newer ``pooling_mode`` key lists)."""
HEAD_CONFIG = "classifier.json"
HEAD_WEIGHTS = "classifier.safetensors"


def pool(states: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
    """The token states (batch × tokens × width) pooled over the attention mask, each mode in turn,
    concatenated, as sentence-transformers' Pooling does (its "cls" is the first attended token)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            parts.append(states[torch.arange(states.shape[0], device=states.device), first])
        elif mode == "max":
            parts.append(states.masked_fill(weights == 0, float("-inf")).amax(dim=1))
        elif mode == "mean":
            parts.append((states * weights).sum(dim=1) / counts)
        else:  # mean_sqrt_len_tokens
            parts.append((states * weights).sum(dim=1) / counts.sqrt())
    return torch.cat(parts, dim=-1)


class PooledClassifier(nn.Module):
    """Encoder → the checkpoint's pooling → a linear head over `num_labels` classes."""

    def __init__(self, encoder: nn.Module, pooling: tuple[str, ...], num_labels: int) -> None:
        super().__init__()
        if not pooling or any(mode not in POOLING_MODES.values() for mode in pooling):
            raise ValueError(
                f"PooledClassifier: pooling must be one or more of {sorted(POOLING_MODES.values())}, got {pooling!r}"
            )
        self.encoder = encoder
        self.pooling = tuple(pooling)
        width = int(encoder.config.hidden_size)  # type: ignore[union-attr, arg-type]
        self.classifier = nn.Linear(width * len(self.pooling), num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> Any:
        """A Hugging Face ``SequenceClassifierOutput``: the cross-entropy ``loss`` when `labels` are
        given, the ``logits``, and the encoder's ``hidden_states`` when asked for. Takes what a
        tokenizer returns (``token_type_ids`` too, for a BERT-like encoder)."""
        outputs = require("transformers", "hf", "a pooled classifier").modeling_outputs
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=output_hidden_states, **extra)
        logits = self.classifier(pool(out.last_hidden_state, mask, self.pooling))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return outputs.SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    def save_pretrained(self, folder: str | Path) -> None:
        """The encoder (or, with LoRA, its adapter) as ``save_pretrained`` writes it, and the head
        beside it: `HEAD_CONFIG` (its pooling and classes) and `HEAD_WEIGHTS`."""
        target = Path(folder)
        self.encoder.save_pretrained(target)  # type: ignore[operator]
        head = {"pooling": list(self.pooling), "num_labels": self.classifier.out_features}
        (target / HEAD_CONFIG).write_text(json.dumps(head, indent=1) + "\n", encoding="utf-8")
        weights = {k: v.detach().cpu().contiguous() for k, v in self.classifier.state_dict().items()}
        require("safetensors.torch", "hf", "saving a pooled classifier").save_file(weights, target / HEAD_WEIGHTS)
