"""The range-test picture draws the curve lrpilot's rule reads, not the stop rule's lagging EMA."""

from __future__ import annotations

import numpy as np
import pytest

from lrpilot.finder import RangeTestRecord, curve_features, smooth_curve
from lrpilot.report.finder_plots import _smoothed

from .tiny_run import range_test


def test_the_smoothed_line_is_the_zero_phase_curve_whose_minimum_the_rule_reads() -> None:
    record = range_test().record
    drawn = _smoothed(record)
    lrs, losses = np.asarray(record.lrs), np.asarray(record.losses)
    usable = curve_features(lrs, losses).usable
    np.testing.assert_allclose(drawn[:usable], smooth_curve(lrs[:usable], losses[:usable]))
    assert int(np.nanargmin(drawn)) == curve_features(lrs, losses).i_min
    # the EMA the stop rule watched bottoms out later: drawing it put the minimum at another LR
    assert int(np.nanargmin(record.smoothed)) > curve_features(lrs, losses).i_min


def test_points_after_the_first_non_finite_loss_are_not_drawn() -> None:
    lrs = np.geomspace(1e-5, 1.0, 12)
    losses = [2.0, 1.9, 1.8, 1.6, 1.3, 1.0, 0.8, 0.9, 1.5, float("nan"), 3.0, 4.0]
    ema = list(np.linspace(2.0, 1.0, 12))
    record = RangeTestRecord(
        lrs=list(lrs),
        losses=losses,
        smoothed=ema,
        steps=12,
        num_steps=12,
        stop_reason="non-finite",
        start_lr=1e-5,
        end_lr=1.0,
    )
    drawn = _smoothed(record)
    assert np.isnan(drawn[9:]).all()
    np.testing.assert_allclose(drawn[:9], smooth_curve(lrs[:9], losses[:9]))


@pytest.mark.parametrize("usable", [1, 4])
def test_a_curve_too_short_to_smooth_falls_back_to_the_ema(usable: int) -> None:
    losses = [*[2.0, 1.9, 1.8, 1.7][:usable], float("nan")]
    n = len(losses)
    record = RangeTestRecord(
        lrs=list(np.geomspace(1e-5, 1e-3, n)),
        losses=losses,
        smoothed=[2.0] * n,
        steps=n,
        num_steps=n,
        stop_reason="non-finite",
        start_lr=1e-5,
        end_lr=1e-3,
    )
    drawn = _smoothed(record)
    assert list(drawn[:usable]) == [2.0] * usable
    assert np.isnan(drawn[usable])


def test_a_run_trained_at_another_peak_than_the_suggestion_is_drawn_with_why() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrpilot.report.finder_plots import _trained_at

    fig, ax = plt.subplots()
    try:
        _trained_at(ax, 0.00541, "the horizon law: 100 steps")
        (line,) = ax.lines
        assert list(line.get_xdata()) == [0.00541, 0.00541]
        assert line.get_linestyle() == ":"
        assert line.get_label() == "trained at 0.00541 (the horizon law: 100 steps)"
    finally:
        plt.close(fig)


def test_a_suggestion_moved_to_the_runs_length_stars_the_curves_answer_and_dots_the_run_peak() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrpilot.finder import analyze
    from lrpilot.report.finder_plots import _answer

    record = range_test().record
    result = analyze([record], total_steps=20_000)
    found = result.details["horizon"]["found"]
    fig, ax = plt.subplots()
    try:
        _answer(ax, result, _smoothed(record))
        (star,) = ax.collections
        assert star.get_offsets()[0][0] == pytest.approx(found)
        assert star.get_label() == f"the test's peak {found:.3g} (for 1000 steps)"
        dotted = ax.lines[-1]
        assert list(dotted.get_xdata()) == [result.peak_lr, result.peak_lr]
        assert dotted.get_linestyle() == ":"
        assert dotted.get_label() == f"suggested peak {result.peak_lr:.3g} (the horizon law: 20000 steps)"
    finally:
        plt.close(fig)


def test_a_loss_above_the_axis_is_a_triangle_at_its_top() -> None:
    """The y-axis fits the fall; the jump that stopped the test (0.91 after 0.63, a LoRA classifier
    fitted on 720 SST-2 texts) lies above it and is drawn at the top edge, not left out unseen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrpilot.report.finder_plots import _curve

    lrs = np.geomspace(1e-5, 1e-2, 12)
    losses = [0.69, 0.69, 0.70, 0.69, 0.69, 0.68, 0.68, 0.67, 0.66, 0.64, 0.63, 0.91]
    record = RangeTestRecord(
        lrs=list(lrs), losses=losses, smoothed=losses, steps=12, num_steps=30, stop_reason="diverged"
    )
    fig, ax = plt.subplots()
    try:
        _curve(ax, record, _smoothed(record), label=True, top=0.72)
        (above,) = ax.collections
        np.testing.assert_allclose(above.get_offsets(), [[lrs[-1], 0.72]])
        assert above.get_label() == "loss above the axis"
    finally:
        plt.close(fig)


def test_the_title_names_every_range_test_of_a_thorough_result() -> None:
    """With thorough mode's 2-4 curves drawn, the title used to name the first test alone."""
    from dataclasses import replace

    from lrpilot.report.finder_plots import _title

    one = range_test()
    record = one.record
    assert _title(one) == f"range test: {record.steps} of 100 steps ({record.stop_reason}), {one.method}"
    short = replace(record, lrs=record.lrs[:40], losses=record.losses[:40], smoothed=record.smoothed[:40], steps=40)
    short = replace(short, train_losses=short.train_losses[:40], stop_reason="interrupted")
    two = replace(one, records=(record, short))
    expected = f"2 range tests: {record.steps} ({record.stop_reason}), 40 (interrupted) of 100 steps, {one.method}"
    assert _title(two) == expected
