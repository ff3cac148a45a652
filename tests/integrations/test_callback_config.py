"""`callback_config`: what a trainer's guard callback runs with (the callbacks' own tests train)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig
from lrpilot.integrations._callback_config import callback_config, checked_hints


@pytest.mark.parametrize("length", [None, math.inf, -1, 0])
def test_a_length_the_trainer_does_not_know_keeps_the_defaults(length: float | None) -> None:
    """Lightning reports an endless run as inf (or its max_steps, -1, for an endless iterable)."""
    config = callback_config(None, total_steps=length, batch_size=None, chance_loss=None)
    assert config == replace(GuardConfig(), rewind=False)


def test_what_the_trainer_knows_fits_the_guard() -> None:
    config = callback_config(None, total_steps=300.0, batch_size=8, chance_loss=math.log(2))
    expected = GuardConfig.for_run(300, batch_size=8, detect=DetectConfig.for_classes(2))
    assert config == replace(expected, rewind=False)


def test_a_given_config_wins_but_never_rewinds() -> None:
    given = GuardConfig(snapshot_every=7)
    assert callback_config(given, total_steps=100, batch_size=8, chance_loss=1.0) == replace(given, rewind=False)
    with pytest.raises(ValueError, match="give config or batch_size/classes/label_counts, not both"):
        checked_hints("GuardCallback", given, None, 3, None)
    assert checked_hints("GuardCallback", None, 16.0, None, None) == (16, None)  # type: ignore[arg-type]


def test_the_chance_level_a_callback_is_told() -> None:
    """ln(classes), or for unbalanced labels their entropy; not both, and bad counts are named."""
    assert checked_hints("GuardCallback", None, None, 3, None) == (None, pytest.approx(math.log(3)))
    assert checked_hints("GuardCallback", None, None, None, [900, 100]) == (None, pytest.approx(0.3251, abs=1e-4))
    with pytest.raises(ValueError, match="give classes or label_counts, not both"):
        checked_hints("GuardCallback", None, None, 2, [900, 100])
    with pytest.raises(ValueError, match="counts must hold at least two classes with examples"):
        checked_hints("GuardCallback", None, None, None, [10, 0])
