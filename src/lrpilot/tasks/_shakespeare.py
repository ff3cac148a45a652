"""``shakespeare``: a small character-level GPT on tiny shakespeare (shipped in ``lrpilot/data``).

The pretraining regime in miniature: a causal transformer trained from scratch with warmup,
cosine decay to 10 % and gradient clipping, as nanoGPT's ``shakespeare_char`` does, shrunk until a
full run takes well under a minute on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 -- the usual torch alias
from torch import nn

from lrpilot.tasks._base import Metrics, Task, evaluating, seeded, spread
from lrpilot.tasks._device import device_of, to_device
from lrpilot.tasks._recipe import Recipe

__all__ = ["ShakespeareTask", "corpus"]

_TRAIN_FRACTION = 0.9  # nanoGPT's split: the first 90 % of characters train, the last 10 % validate


def corpus() -> str:
    """The tiny shakespeare text (1,115,394 characters, public domain) as shipped in the package."""
    return resources.files("lrpilot").joinpath("data", "tinyshakespeare.txt").read_text(encoding="ascii")


@cache
def _encoded() -> tuple[torch.Tensor, torch.Tensor, int]:
    raw = np.frombuffer(corpus().encode("ascii"), dtype=np.uint8)
    vocab = np.unique(raw)  # the 65 characters, in code-point order
    lookup = np.zeros(256, dtype=np.int64)
    lookup[vocab] = np.arange(len(vocab))
    ids = torch.from_numpy(lookup[raw])
    cut = int(_TRAIN_FRACTION * len(ids))
    return ids[:cut], ids[cut:], len(vocab)


class _Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            part.view(b, t, self.heads, c // self.heads).transpose(1, 2) for part in self.qkv(self.ln1(x)).split(c, 2)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(attended)
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class CharGPT(nn.Module):
    """Token + learned position embeddings, `layers` blocks, final LayerNorm, linear read-out."""

    def __init__(self, vocab: int, context: int, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(_Block(width, heads) for _ in range(layers)))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.head(self.ln(self.blocks(self.token(ids) + self.position(positions))))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ShakespeareTask(Task):
    """Next-character prediction with windows of `context` characters.

    Training windows start at random offsets of the training split (drawn from the run's seed);
    validation uses `val_windows` fixed, evenly spaced windows of the validation split, and the
    loss is the mean cross-entropy (nats) over every predicted character.
    """

    context: int = 64
    width: int = 64
    heads: int = 4
    layers: int = 2
    val_windows: int = 512

    def build_model(self, seed: int) -> nn.Module:
        _, _, vocab = _encoded()
        with seeded(seed):
            return CharGPT(vocab, self.context, self.width, self.heads, self.layers)

    @property
    def classes(self) -> int:
        return _encoded()[2]

    def batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        train, _, _ = _encoded()
        generator = torch.Generator().manual_seed(seed)
        span = torch.arange(self.context + 1)
        while True:
            starts = torch.randint(len(train) - self.context, (self.recipe.batch_size,), generator=generator)
            windows = train[starts[:, None] + span]
            yield windows[:, :-1], windows[:, 1:]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = to_device(batch, device_of(model))
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def _validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, val, _ = _encoded()
        starts = torch.linspace(0, len(val) - self.context - 1, self.val_windows).long()
        windows = val[starts[:, None] + torch.arange(self.context + 1)]
        return windows[:, :-1], windows[:, 1:]

    def metrics(self, model: nn.Module, limit: int | None = None) -> Metrics:
        inputs, targets = self._validation()
        index = torch.tensor(spread(len(inputs), limit))
        inputs, targets = inputs[index], targets[index]
        with evaluating(model):
            loss = self.loss(model, (inputs, targets)).item()
        return Metrics(loss, None, len(inputs))


SHAKESPEARE = ShakespeareTask(
    name="shakespeare",
    description="char-level GPT (2 layers, d=64, 4 heads, context 64, 0.11M params) on tiny shakespeare, 90/10 split",
    # 1,000 steps x 32 windows x 64 characters = 2M characters (~2 passes over the training split):
    # far from converged, so the LR decides how far the run gets; ~30 s on one CPU thread.
    # nanoGPT's choices otherwise: weight decay 0.1, beta2 0.99 for a small model, clip at 1.
    recipe=Recipe(
        batch_size=32,
        total_steps=1000,
        warmup_steps=100,
        decay="cosine",
        floor_ratio=0.1,
        weight_decay=0.1,
        betas=(0.9, 0.99),
        grad_clip=1.0,
    ),
)
