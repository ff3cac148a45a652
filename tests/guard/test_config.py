"""`GuardConfig.for_run`: the knobs counted in steps, fitted to the run."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from lrpilot.detect import DetectConfig
from lrpilot.guard import GuardConfig


@pytest.mark.parametrize(
    ("steps", "every", "rewarm"),
    [(20, 5, 5), (150, 6, 6), (250, 10, 10), (400, 16, 16), (1000, 40, 20), (100_000, 50, 20)],
)
def test_snapshots_and_rewarmups_are_a_25th_of_the_run_within_the_defaults(steps: int, every: int, rewarm: int) -> None:
    config = GuardConfig.for_run(steps)
    assert (config.snapshot_every, config.rewarmup_steps) == (every, rewarm)
    assert config.snapshot_every <= GuardConfig().snapshot_every
    assert config.rewarmup_steps <= GuardConfig().rewarmup_steps
    assert config.confirm_steps == GuardConfig().confirm_steps  # everything else is the default


@pytest.mark.parametrize(("steps", "history"), [(20, 16), (60, 16), (100, 16), (150, 25), (192, 32), (100_000, 32)])
def test_the_detectors_judge_after_a_sixth_of_a_short_run(steps: int, history: int) -> None:
    config = GuardConfig.for_run(steps)
    assert config.detect.min_history == history
    assert config.detect == replace(DetectConfig(), min_history=history)  # only the warm-up changes


def test_a_detect_config_given_keeps_its_thresholds_and_its_warmup_is_fitted() -> None:
    given = DetectConfig(spike_z=8.0, min_history=24)
    assert GuardConfig.for_run(60, detect=given).detect == replace(given, min_history=16)
    assert GuardConfig.for_run(1000, detect=given).detect == given  # never longer than asked
    with pytest.raises(ValueError, match="detect must be a DetectConfig, got 3"):
        GuardConfig.for_run(60, detect=3)


@pytest.mark.parametrize(("batch", "short", "confirm"), [(8, 32, 44), (16, 16, 28), (32, 8, 20), (64, 8, 20)])
def test_a_small_batch_widens_the_short_median_and_waits_longer_to_confirm_a_snapshot(
    batch: int, short: int, confirm: int
) -> None:
    config = GuardConfig.for_run(200, batch_size=batch, detect=DetectConfig.for_classes(2))
    assert (config.detect.div_short, config.confirm_steps) == (short, confirm)
    assert config.confirm_steps >= config.detect.div_short + config.detect.div_patience  # the test can fire first
    unscaled = GuardConfig.for_run(200, detect=DetectConfig.for_classes(2))
    assert config == replace(unscaled, confirm_steps=confirm, detect=replace(unscaled.detect, div_short=short))
    assert GuardConfig.for_run(200, batch_size=8, confirm_steps=30).confirm_steps == 30  # an override wins


def test_a_run_of_unknown_length_keeps_the_defaults_step_counts() -> None:
    """None (an endless stream): the defaults, sized for long runs; the batch still fits the detectors."""
    assert GuardConfig.for_run(None) == GuardConfig()
    small = GuardConfig.for_run(None, batch_size=8)
    assert small == replace(GuardConfig(), confirm_steps=44, detect=DetectConfig().scaled_to_batch(8))


def test_overrides_win_and_a_bad_length_is_named() -> None:
    config = GuardConfig.for_run(150, snapshot_every=3, raise_on_flat=True)
    assert (config.snapshot_every, config.rewarmup_steps, config.raise_on_flat) == (3, 6, True)
    with pytest.raises(ValueError, match=r"total_steps must be an integer in \[1, ∞\], got 0"):
        GuardConfig.for_run(0)


def test_fit_guards_its_run_with_the_config_fitted_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lrpilot

    built: list[GuardConfig] = []
    real = GuardConfig.for_run.__func__  # type: ignore[attr-defined]

    def recording(cls: type[GuardConfig], total_steps: int, **overrides: object) -> GuardConfig:
        built.append(real(cls, total_steps, **overrides))
        return built[-1]

    monkeypatch.setattr(GuardConfig, "for_run", classmethod(recording))
    lrpilot.fit("digits", budget=100, out=tmp_path / "run", report=False)
    assert [(c.snapshot_every, c.rewarmup_steps, c.detect.min_history) for c in built] == [(5, 5, 16)]  # 100 steps
    assert built[0].detect.chance_loss == pytest.approx(math.log(10))  # digits: a collapse to chance is one
    assert built[0].detect.div_short == DetectConfig().div_short  # 64 digits a step: the calibrated windows
