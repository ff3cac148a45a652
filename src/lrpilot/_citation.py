"""`Rule`: a piece of LR advice with the source it comes from, shared by the doctor and recommend.

Every number lrpilot advises (halve the LR, ×√ the batch ratio, LoRA at 10× full fine-tuning) is
tied to a rule a user can look up, so the advice can be checked rather than taken on trust.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rule"]


@dataclass(frozen=True)
class Rule:
    """A rule of thumb or a published law: its id, what it says, and where it comes from."""

    id: str
    text: str
    source: str
