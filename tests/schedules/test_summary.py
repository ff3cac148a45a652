"""`key_points`: the labelled steps `lrpilot schedule` tabulates and its plots mark."""

from __future__ import annotations

from lrpilot.schedules import Cosine, key_points


def test_a_long_runs_peak_is_its_warmups_end_not_the_next_sample() -> None:
    """A trillion-step cosine with 1,000 warmup steps: runs beyond 200,000 steps are sampled, the
    warmup's end was not among the samples, and "peak" was put at step 5,000,025, where the cosine
    had already begun to fall."""
    schedule = Cosine(peak=3e-4, total_steps=10**12, warmup_steps=1000)
    points = {p.label: p for p in key_points(schedule, 10**12)}
    assert "peak" not in points  # the peak is the end of the warmup, labelled once
    assert points["end of warmup"].step == 1000
    assert points["end of warmup"].lr == 3e-4
    assert points["end of warmup"].fraction_of_peak == 1.0
    quarters = [q * 10**12 // 4 for q in (1, 2, 3)]
    assert [p.step for p in key_points(schedule, 10**12)] == [0, 1000, *quarters, 10**12 - 1]
