"""`key_points`: the labelled steps `lrpilot schedule` tabulates and its plots mark."""

from __future__ import annotations

from lrpilot.schedules import WSD, Cosine, key_points


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


def test_a_wsd_shows_where_its_decay_starts() -> None:
    """The README's WSD preview showed the peak at every quartile, then the floor: not when the LR
    begins to fall (step 18,000 of 20,000)."""
    schedule = WSD(peak=1e-3, total_steps=20_000, warmup_steps=200, decay_fraction=0.1)
    points = {p.label: p for p in key_points(schedule, 20_000)}
    assert (points["decay starts"].step, points["decay starts"].lr) == (18_000, 1e-3)
    assert points["last step"].step == 19_999
    assert "decay starts" not in {p.label for p in key_points(Cosine(peak=1e-3, total_steps=100), 100)}
    held = Cosine(peak=1e-3, total_steps=100, warmup_steps=10, hold_steps=30)
    assert {p.step: p.label for p in key_points(held, 100)}[40] == "decay starts"


def test_the_last_step_of_a_short_run_is_labelled_as_such() -> None:
    """In a 4-step run the last step, 3, was labelled "75% of run"."""
    assert [p.label for p in key_points(Cosine(peak=1e-3, total_steps=4), 4)] == [
        "start",
        "25% of run",
        "50% of run",
        "last step",
    ]


def test_a_run_past_2_to_the_53_steps_keeps_its_step_counts_exact() -> None:
    """Step counts were checked through a float: a WSD's stable phase of 89,999,999,999,999,998,000
    steps became 90,000,000,000,000,000,000, and `lrpilot schedule -n 10**20` put the decay's start
    2,000 steps late."""
    schedule = WSD(peak=1e-3, total_steps=10**20, warmup_steps=2000)
    points = {p.label: p.step for p in key_points(schedule, 10**20)}
    assert points["decay starts"] == 9 * 10**19
