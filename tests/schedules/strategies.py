"""Hypothesis strategies that draw valid schedules of every kind."""

from __future__ import annotations

from hypothesis import strategies as st

from lrpilot.schedules import (
    WSD,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    Guarded,
    InverseSqrt,
    InverseTime,
    Join,
    Linear,
    OneCycle,
    Polynomial,
    Rewarmup,
    Schedule,
    StepDecay,
)

peaks = st.floats(1e-7, 10.0)
ratios = st.floats(0.0, 1.0)
shapes = st.sampled_from(["linear", "cosine", "poly", "1-sqrt"])
offsets = st.sampled_from([0.0, 1.0])


@st.composite
def warmups(draw: st.DrawFn, total: int | None = None, peak: float = 1.0) -> dict[str, object]:
    high = 10_000 if total is None else total
    return {
        "warmup_steps": draw(st.integers(0, min(high, 10_000))),
        "warmup_start": draw(st.floats(0.0, 1.0)) * peak,
        "warmup_shape": draw(shapes),
        "warmup_offset": draw(offsets),
    }


@st.composite
def decay_schedules(draw: st.DrawFn) -> Schedule:
    """Warmup (optional hold), then a decay to a floor at total_steps."""
    peak = draw(peaks)
    total = draw(st.integers(1, 10**7))
    warm = draw(warmups(total, peak))
    floor_ratio = draw(ratios)
    kind = draw(st.sampled_from(["cosine", "linear", "polynomial", "wsd"]))
    left = total - int(warm["warmup_steps"])  # type: ignore[call-overload]
    if kind == "wsd":
        if left < 1:
            warm["warmup_steps"] = total - 1
            left = 1
        decay = draw(st.integers(1, left))
        shape = draw(st.sampled_from(["1-sqrt", "linear", "cosine", "exp"]))
        if shape == "exp":
            floor_ratio = max(floor_ratio, 1e-3)
        # the decay's length as a count, or as the fraction of the run that rounds to one that fits
        length: dict[str, float] = {"decay_steps": decay}
        if draw(st.booleans()):
            length = {"decay_fraction": min(1.0, decay / total)}
        return WSD(peak=peak, total_steps=total, decay_shape=shape, floor_ratio=floor_ratio, **length, **warm)  # type: ignore[arg-type]
    hold = draw(st.integers(0, left))
    if kind == "polynomial":
        power = draw(st.floats(0.1, 5.0))
        return Polynomial(peak=peak, total_steps=total, power=power, hold_steps=hold, floor_ratio=floor_ratio, **warm)  # type: ignore[arg-type]
    cls = Cosine if kind == "cosine" else Linear
    return cls(peak=peak, total_steps=total, hold_steps=hold, floor_ratio=floor_ratio, **warm)  # type: ignore[arg-type]


@st.composite
def open_ended_schedules(draw: st.DrawFn) -> Schedule:
    """Warmup, then a decay that never ends (clipped at a floor)."""
    peak = draw(peaks)
    warm = draw(warmups(None, peak))
    floor_ratio = draw(ratios)
    kind = draw(st.sampled_from(["constant", "exponential", "step", "inverse_sqrt", "inverse_time", "restarts"]))
    if kind == "constant":
        return Constant(peak=peak, **warm)  # type: ignore[arg-type]
    if kind == "exponential":
        gamma = draw(st.floats(1e-3, 1.0))
        return Exponential(
            peak=peak,
            gamma=gamma,
            every=draw(st.floats(1.0, 1e4)),
            staircase=draw(st.booleans()),
            floor_ratio=floor_ratio,
            **warm,
        )  # type: ignore[arg-type]
    if kind == "step":
        start = int(warm["warmup_steps"])  # type: ignore[call-overload]
        gaps = draw(st.lists(st.integers(1, 10_000), max_size=5))
        milestones = []
        at = max(start, 1)
        for gap in gaps:
            milestones.append(at)
            at += gap
        return StepDecay(
            peak=peak, factor=draw(st.floats(1e-3, 1.0)), milestones=tuple(milestones), floor_ratio=floor_ratio, **warm
        )  # type: ignore[arg-type]
    if kind == "inverse_sqrt":
        return InverseSqrt(peak=peak, timescale=draw(st.none() | st.floats(1.0, 1e5)), floor_ratio=floor_ratio, **warm)  # type: ignore[arg-type]
    if kind == "inverse_time":
        return InverseTime(
            peak=peak,
            rate=draw(st.floats(1e-4, 10.0)),
            every=draw(st.floats(1.0, 1e4)),
            floor_ratio=floor_ratio,
            **warm,
        )  # type: ignore[arg-type]
    return CosineRestarts(
        peak=peak,
        period=draw(st.floats(1.0, 1e4)),
        period_mult=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        peak_decay=draw(st.floats(0.1, 1.0)),
        floor_ratio=floor_ratio,
        **warm,  # type: ignore[arg-type]
    )


@st.composite
def cyclic_schedules(draw: st.DrawFn) -> Schedule:
    kind = draw(st.sampled_from(["cyclic", "one_cycle"]))
    if kind == "cyclic":
        low = draw(peaks)
        return Cyclic(
            low=low,
            high=low * draw(st.floats(1.0, 100.0)),
            up_steps=draw(st.floats(1.0, 1e4)),
            down_steps=draw(st.none() | st.floats(1.0, 1e4)),
            mode=draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
            gamma=draw(st.floats(0.5, 1.0)),
        )
    total = draw(st.integers(10, 10**6))
    convention = draw(st.sampled_from(["torch", "optax"]))
    return OneCycle(
        peak=draw(peaks),
        total_steps=total,
        pct_start=draw(st.floats(0.15, 0.45)),
        div_factor=draw(st.floats(1.0, 1e3)),
        final_div_factor=draw(st.floats(1.0, 1e5)),
        anneal=draw(st.sampled_from(["cosine", "linear"])),
        three_phase=convention == "torch" and draw(st.booleans()),
        convention=convention,
    )


@st.composite
def any_schedules(draw: st.DrawFn) -> Schedule:
    schedule = draw(st.one_of(decay_schedules(), open_ended_schedules(), cyclic_schedules()))
    wrap = draw(st.integers(0, 9))
    if wrap == 0:
        schedule = Rewarmup(base=schedule, at=draw(st.integers(0, 10**6)), steps=draw(st.integers(1, 10**4)))
    elif wrap == 1:  # the guard's view of a running schedule: scaled, capped, re-warmed up
        schedule = Guarded(
            schedule,
            scale=draw(st.floats(0.01, 2.0)),
            cap=draw(st.none() | st.floats(1e-7, 10.0)),
            at=draw(st.integers(0, 10**6)),
            steps=draw(st.integers(0, 10**4)),
        )
    elif wrap == 2:  # segments in sequence, each from its own step 0
        later = draw(st.lists(st.one_of(decay_schedules(), open_ended_schedules()), min_size=1, max_size=2))
        boundaries = sorted(draw(st.sets(st.integers(1, 10**6), min_size=len(later), max_size=len(later))))
        schedule = Join((schedule, *later), tuple(boundaries))
    return schedule
