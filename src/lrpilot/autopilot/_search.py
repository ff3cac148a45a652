"""fit's range test: its ramp (from the rules' band), a retry from lower when it started too high,
the rules' check of its answer, its step time for a time budget, and the peak moved to the run's
length by the horizon law."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrpilot._batch import CALIBRATED_BATCH, small_batch_scale
from lrpilot.autopilot._hf import HfTask
from lrpilot.autopilot._progress import Progress
from lrpilot.autopilot._resume import RampStates
from lrpilot.rules import Recommendation, at_horizon
from lrpilot.tasks import Recipe, Task, make_optimizer
from lrpilot.tasks._base import seeded
from lrpilot.tasks._device import Precision, native_bf16

__all__ = [
    "BF16_TEST_PARAMETERS",
    "FLAT_START",
    "MIN_TIMED_STEPS",
    "RAMP_DENSITY",
    "RETRY_BELOW",
    "SECOND_STREAM",
    "SECOND_TEST_BELOW",
    "SECOND_TEST_MAX_SHARE",
    "STALL",
    "START_RISE",
    "TEST_SHARE",
    "Search",
    "finder_precision",
    "peak_at_horizon",
    "ramp",
    "ramp_density",
    "range_test",
    "repeated_batches",
    "seconds_per_step",
    "too_high",
    "weak_fall",
]

RAMP_DENSITY = 12.5
"""Range-test steps per decade of LR: `find_lr`'s default (100 steps from 1e-7 to 10), the ramp
rate its rule is calibrated at (a faster ramp moves the loss minimum to higher LRs)."""
RAMP_BELOW_PEAK = 10.0
"""The ramp starts at the rules' band's low end (`Recommendation.low`), and at least this far below
their peak where the band is narrower (pretraining a char-GPT: 3× either side), so that its first
steps leave the loss flat (the rule's baseline). Steps below the band buy nothing: replayed on the
stored range tests (``benchmarks/range_test_budget.py --starts``), cutting each curve from a decade
under the band to its low end moved no SST-2 or digits answer by more than 0.013 decades and saved
12.5 steps a test, a twelfth of a 150-step run."""
FLAT_START = 1.0
"""Decades of LR a range test needs between its start and its loss minimum. Closer, the loss is
already falling at the start, the test reads less of a fall than the model has to take, and the
answer comes out high (a digits MLP reparametrised 100× stiffer, its minimum 0.7 decades in: 1.8×
its best peak). The stored tests of the built-in tasks at their recipes' batch have their minima
1.3–2.4 decades above where fit's ramp starts (``benchmarks/range_test_budget.py --starts``)."""
START_RISE = 4.0
"""Noise levels by which a range test's loss may rise over its first five steps before its ramp
counts as having started too high: at the start the LR barely moves the model, so the losses there
differ by batch noise alone (at most 3.2 noise levels on the 139 stored tests); a start above the
usable LRs throws the model out at once (a digits MLP reparametrised 1000× stiffer: 5.2, and then a
spurious minimum lower down the ramp, after the chaos)."""
RETRY_BELOW = 100.0
"""A test that started too high (`FLAT_START`, `START_RISE`) is run again from this far lower, once
(25 steps more at `RAMP_DENSITY`): it then measures best LRs down to ~1/30 of the band's low end,
where a retry a decade lower would only have reached ~1/3."""
RAMP_END = 10.0


def ramp_density(batch_size: int) -> float:
    """Range-test steps per decade at `batch_size`: `RAMP_DENSITY`, times ``32 / batch_size`` below
    the calibration suite's smallest batch of 32 (at most 4×, `lrpilot._batch.small_batch_scale`), so
    that the test sees as many examples a decade as the calibration suite's did: at a smaller batch
    each step sees fewer examples and the test's loss falls later on the ramp, closer to the noise.
    At batch 16, on 1,600 SST-2 texts with LoRA
    (``benchmarks/fit_user_path.py``, 6 seeds), a test at 12.5 steps a decade fell by 0.3–6.5 noise
    levels and put fit's peak 10× under the flat region of good LRs on two seeds (a minimum placed
    by noise, or a dip the settled stop took for the minimum) and on the cliff above it on two: fit
    ended +23.1 % above the grid's best loss. At 25 steps a decade fit ended +2.1 % (its peaks
    2.3e-3–4.6e-3, all in the flat region), at 1.75× a grid run's wall time instead of 1.45×. The
    rule's own step correction (`lrpilot.finder.STEPS_EXPONENT`) reads the denser ramp.

    >>> ramp_density(64), ramp_density(32), ramp_density(16), ramp_density(1)
    (12.5, 12.5, 25.0, 50.0)
    """
    return RAMP_DENSITY * small_batch_scale("ramp_density", batch_size)


@dataclass
class Search:
    """The outcome of the range test and the choice of the peak."""

    peak: float
    finder: Any
    notes: list[str]
    step_seconds: float | None
    tradeoff: dict[str, Any] | None = None
    """The forgetting trade-off's probes (`lrpilot.report.RunRecord.tradeoff`), when one was made."""
    ramp: RampStates | None = None
    """Snapshots along the ramp, to start the run from (None if the range test failed)."""
    horizon: dict[str, Any] | None = None
    """How the peak was scaled to the run's length (`lrpilot.report.RunRecord.horizon`), when it was."""
    from_rules: bool = False
    """The peak is the rules' (the test failed, or too weak a fall put it outside their band),
    which already reads the run's length: the horizon law leaves it alone."""


def ramp(
    rec: Recommendation, steps: int | None = None, *, below: float = 1.0, batch_size: int = CALIBRATED_BATCH
) -> tuple[float, float, int]:
    """``(start_lr, end_lr, num_steps)`` of fit's range test: from the rules' band's low end (at
    least `RAMP_BELOW_PEAK` under their peak; `below` times lower still for a retry) to `RAMP_END`,
    at `ramp_density` steps per decade for `batch_size` unless `steps` is given (the settled stop
    ends it early, usually a decade above the best LR).

    >>> from lrpilot.rules import recommend
    >>> ramp(recommend(1e6, "pretraining", steps=1000))
    (6e-05, 10.0, 65)
    >>> ramp(recommend(1e6, "pretraining", steps=1000), batch_size=16)
    (6e-05, 10.0, 131)
    """
    start = min(rec.low, rec.peak_lr / RAMP_BELOW_PEAK, RAMP_END / 1e3) / below
    density = ramp_density(batch_size)
    count = steps if steps is not None else round(density * math.log10(RAMP_END / start))
    return float(f"{start:.3g}"), RAMP_END, count


BF16_TEST_PARAMETERS = 10_000_000
"""Parameters from which a model's range test autocasts to bf16 where the hardware computes it
(`finder_precision`): MiniLM's tests (22.7M) took a median 0.64–0.67 of fp32's time in it on an
AVX512-BF16 CPU (``benchmarks/range_test_precision.py``), while the built-in char-GPT's (0.11M) and
digits MLP's (26k) took longer, their matrix products too small to pay for autocast's casts
(``benchmarks/fit_precision.py``). Sizes in between are unmeasured."""


def finder_precision(
    run: Precision,
    model: nn.Module,
    device: torch.device,
    *,
    chosen: bool,
    timed: bool,
    from_ramp: bool,
    evaluations: bool = False,
) -> tuple[Precision, str | None]:
    """The precision fit's range test measures in, and a note where it is not the run's.

    The test reads where a loss curve turns, not the last digits of a loss: in bf16 autocast its
    peak was fp32's to 0.005 decades on 49 of 56 SST-2 seeds and one ramp step (0.08 decades) off on
    the other 7, against the ±0.15–0.2 decades one test's answer spreads between batch orders
    (``benchmarks/range_test_precision.py``). So an fp32 run of a model of at least
    `BF16_TEST_PARAMETERS` on hardware that computes bf16 (`native_bf16`) tests in bf16, unless the
    user named the precision (`chosen`: ``--precision fp32`` keeps the test in fp32 too), the budget
    is a time (`timed`: the test's step time forecasts the run's), or the run goes on from the
    ramp's weights (`from_ramp`: then the test's steps are the run's first). `evaluations`: the
    evaluations along the run but the last one measure in it too, which the note says (their
    figures only draw the report's curve; on MiniLM a bf16 evaluation of 128 SST-2 texts took 0.6
    of fp32's time, its loss 1e-4 from fp32's)."""
    if chosen or timed or from_ramp or run.name != "fp32" or not native_bf16(device):
        return run, None
    size = sum(p.numel() for p in model.parameters())
    if size < BF16_TEST_PARAMETERS:
        return run, None
    where = "this GPU" if device.type == "cuda" else "this CPU (AVX512-BF16/AMX)"
    measured, trained = (
        ("range test", "the run")
        if not evaluations
        else (
            "range test and the evaluations along the run",
            "the run and its last evaluation (the reported metrics)",
        )
    )
    note = (
        f"{measured} in bf16 autocast, {trained} in fp32: {where} computes bf16 faster, and a test's peak "
        "hardly moves with it (benchmarks/range_test_precision.py); --precision fp32 keeps "
        f"{'them' if evaluations else 'the test'} in fp32 too"
    )
    return Precision("bf16", device.type), note


def range_test(
    task: Task,
    model: nn.Module,
    recipe: Recipe,
    rec: Recommendation,
    *,
    seed: int,
    steps: int | None,
    progress: Progress,
    for_fit: bool = False,
    snapshots: bool = True,
    below: float = 1.0,
    amp: str | None = None,
    deadline: float | None = None,
) -> Search:
    """`find_lr` in fast mode on the model as it will train (its AdamW, clipping and recipe) over
    the `ramp` the recommendation sets (`below` it, for a retry); its peak, checked against the
    rules' band.

    A test that started too high (`too_high`: its minimum within `FLAT_START` of its start, or a
    loss thrown out at once) is run again from `RETRY_BELOW` lower, once, at the same steps per
    decade, unless it ramps at under half `RAMP_DENSITY` (a user's few `steps`: too few points in
    its first decade to tell a flat start from noise). A range test that finds nothing falls back
    to the rules. One whose loss fell by less than `CLEAR_FALL` times its noise is kept where it
    agrees with the rules' band (fit's stored SST-2 tests fall by 2.7–9.2 noise levels,
    ``benchmarks/range_test_budget.py --landmarks``, and answer well near the low end) and is moved
    to the band's nearest end where it does not: a minimum the noise may have placed does not
    overrule the rules by more than their own uncertainty (a 12-step test on 100 texts put a LoRA
    peak at 0.36, 724× the rules'). `for_fit`: the test stops once its minimum has settled
    (`lrpilot.finder.SETTLE`; tune's runs to divergence, the whole curve its band reads) and, with
    `snapshots`, keeps snapshots along the ramp to start the run from (`RampStates`). `amp`: the
    run's mixed precision (``"bf16"``, ``"fp16"``; None: fp32), which the test measures in too.
    `deadline` (a `time.perf_counter` time: a time budget's share for the test, `TEST_SHARE`): a test
    still running then, after at least `MIN_TIMED_STEPS` steps, is stopped and the run trains at the
    rules' peak, with the step time it measured (a 2-minute budget on a busy CPU had spent 4.5
    minutes in loading and the test before it said the budget was too small)."""
    from lrpilot.finder import RangeTestError, RangeTestWarning
    from lrpilot.integrations.torch_finder import find_lr

    start_lr, end_lr, count = ramp(rec, steps, below=below, batch_size=recipe.batch_size)
    optimizer = make_optimizer(model, recipe, 1.0)
    decades = math.log10(end_lr / start_lr)
    states = RampStates(model, optimizer, steps=count, decades=decades) if for_fit and snapshots else None

    stamps: list[float] = []

    def advance(point: int, lr: float, loss: float) -> None:
        stamps.append(time.perf_counter())
        if deadline is not None and stamps[-1] > deadline and len(stamps) >= MIN_TIMED_STEPS:
            raise _OutOfTimeError
        if states is not None:
            states.capture(point, lr)
        progress("range test", point + 1, count, lr, loss)

    def again(why: str) -> Search:
        lower = start_lr / RETRY_BELOW
        more = None if steps is None else round(steps * math.log(end_lr / lower) / math.log(end_lr / start_lr))
        search = range_test(
            task,
            model,
            recipe,
            rec,
            seed=seed,
            steps=more,
            progress=progress,
            for_fit=for_fit,
            snapshots=snapshots,
            below=RETRY_BELOW,
            amp=amp,
            deadline=deadline,
        )
        search.notes.insert(0, f"range test from {start_lr:.3g}: {why}; run again from {lower:.3g}")
        if search.finder is not None:  # the steps spent on the model count both tests
            search.finder = dataclasses.replace(search.finder, steps_used=search.finder.steps_used + len(stamps))
        return search

    may_retry = below == 1.0 and count >= RAMP_DENSITY / 2 * decades
    notes: list[str] = []

    settings = functools.partial(  # a fresh settled stop for each test
        _test_settings, task, model, recipe, (start_lr, end_lr, count), for_fit=for_fit, amp=amp
    )

    try:  # the dropout draws are the seed's, so that a fit (and a tune study) repeats exactly
        with seeded(seed), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RangeTestWarning)
            result = find_lr(model, optimizer, task.batches(seed), callback=advance, **settings(), **_analysis(recipe))
    except _OutOfTimeError:
        notes.append(
            f"range test stopped after {len(stamps)} steps at the time budget's share for it ({TEST_SHARE:.0%}); "
            f"trained at the rules' peak {rec.peak_lr:.3g} instead (a larger budget lets the test finish)"
        )
        return Search(rec.peak_lr, None, notes, seconds_per_step(stamps), from_rules=True)
    except RangeTestError as exc:
        why = too_high(exc.records) if may_retry else None
        if why is not None:
            return again(why)
        notes.append(_failed(exc, rec))
        return Search(rec.peak_lr, None, notes, None, from_rules=True)
    why = too_high(result.records) if may_retry else None
    if why is not None:
        return again(why)
    notes.extend(str(w.message) for w in caught if issubclass(w.category, RangeTestWarning))  # "the range test's ..."
    notes.extend(
        f"range test: {repeated}; more training data or a smaller --batch-size gives it fresh ones"
        for repeated in filter(None, [repeated_batches(task, result.steps_used)])
    )
    step_seconds = seconds_per_step(stamps)
    if for_fit:  # a weak fall is measured again
        result = _SecondTest(model, optimizer, settings, recipe, deadline, progress).after(task, result, seed, notes)
    peak = float(f"{result.peak_lr:.3g}")  # the band spans ~4x: more digits are noise
    clarity = max(result.details["drop_sigma"])  # with a second test, the clearer fall
    blew_up = any(r.stop_reason in ("diverged", "non-finite") for r in result.records)
    weak = weak_fall(peak, clarity, rec, result.max_stable_lr if blew_up else math.inf)
    if weak is not None:
        notes.append(weak[1])
        return Search(weak[0], result, notes, step_seconds, ramp=states, from_rules=True)
    notes.append(f"range test peak {peak:.3g} vs the rules: {rec.check(peak).message}")
    return Search(peak, result, notes, step_seconds, ramp=states)


def _failed(exc: Exception, rec: Recommendation) -> str:
    """The note on a range test that failed: the finder's message names the test already ("range
    test failed (range test: ..." had said it twice)."""
    said = str(exc).removeprefix("range test: ")
    return f"range test failed ({said}); trained at the rules' peak {rec.peak_lr:.3g} instead"


def repeated_batches(task: Task, drawn: int, tests: int = 1) -> str | None:
    """What a range test that drew `drawn` batches of a user's data (an `HfTask`) and went past its
    end says of it, or None: its batches come round again (each epoch reshuffled), and a model
    scores lower on batches it has trained on than on fresh ones, so the loss the test reads falls
    further as the LR rises and its minimum, the peak, can come out high. A built-in task's range
    test is left alone: lrpilot's rule is calibrated on those tests' curves, repeats included.
    `tests`: how many range tests drew them, one after the other (``lrpilot find --mode thorough``)."""
    if not isinstance(task, HfTask) or drawn <= task.epoch_batches:
        return None
    have = task.epoch_batches
    took = "the range test took" if tests == 1 else f"the {tests} range tests took together"
    return (
        f"the training data has {have} batches of {task.recipe.batch_size}, fewer than {took} "
        f"({drawn} steps): it went over them {drawn / have:.1f} times, and a loss read on batches the model has "
        "already trained on is lower than on fresh ones, which can place the peak high"
    )


SECOND_TEST_BELOW = 4.0
"""fit's range test whose loss fell by fewer noise levels than this (`CurveFeatures.drop_sigma`) is
followed by a second one on other batches, and the peak is the two tests' geometric mean (as
`find_lr`'s thorough mode averages its tests). The built-in tasks trained from scratch fall by
24–135 noise levels and place their optimum to ±0.02–0.08 decades; the SST-2 fine-tunes fall by
1–9, and one test places theirs to ±0.16–0.2 decades, its worst answers often on the weakest falls
(sst2-full seeds 13, 21 and 23: 2.6, 1.0 and 3.1 noise levels, 0.3–0.5 decades high, 6–12 % excess
loss). Over 50 seeds a task (``benchmarks/range_test_second.py``: the threshold chosen on seeds
0–29, held on 30–49) a second test under 4 ran on 27 of sst2-full's and 18 of sst2-lora's and took
the mean excess of their peaks on the oracles from 1.71 % to 1.28 % and from 1.03 % to 0.86 %, for
0.12 and 0.08 of a run's steps on average (in bf16, about half that in time); on every seed, 0.81 %
and 0.58 % for 0.23 and 0.24."""
SECOND_TEST_MAX_SHARE = 0.5
"""The second test runs only where it costs at most this share of the run's steps (it repeats the
first test's ramp). On the SST-2 recipes, where `SECOND_TEST_BELOW` was chosen, a test takes at most
its whole ramp, 0.43 of the 150-step run (the weakest falls run to its end: sst2-full seeds 21, 36 and
46, 59–65 steps); a user's LoRA fine-tune at batch 16 over 100 steps (``benchmarks/fit_user_path.py``)
ramps at twice the steps a decade, 62–71 steps, 0.62–0.71 of its run, and there a second test, on 10
of 14 seeds, cost ~0.4 of a run in CPU time and moved the final loss by −0.1 % ± 1.1 % (paired, its
``fit-2tests`` rows)."""
SECOND_STREAM = 1000
"""The second test draws its batches and dropout from the seed plus this (the model is the same)."""
TEST_SHARE = 0.5
"""The share of a time budget the range test may take (from the fit's start): past it, the run
would have too little left to be worth the test's answer."""
MIN_TIMED_STEPS = 5
"""Steps a test stopped by its deadline has taken at least: the step time the budget is turned
into steps with is measured over its second half."""


class _OutOfTimeError(Exception):
    """The range test reached its deadline (`range_test`'s `deadline`)."""


def too_high(records: Sequence[Any]) -> str | None:
    """Why a range test's ramp started too high to measure the best LR, or None: its loss went
    non-finite within five points, rose by `START_RISE` noise levels over its first five steps, or
    was lowest within `FLAT_START` decades of its start."""
    from lrpilot.finder._features import curve_features, noise_level

    curve = next((r for r in reversed(records) if r.lrs), None)
    if curve is None:
        return None
    try:
        f = curve_features(curve.lrs, curve.losses)
    except ValueError:  # fewer than five finite points
        return "its loss went non-finite within five steps, so the best LR lies under the rules' band"
    losses = curve.losses[: f.usable]
    noise = noise_level(losses)
    rise = (max(losses[1:6]) - losses[0]) / noise if noise > 0 else 0.0
    above = math.log10(f.lrs[f.i_min] / f.lrs[0])
    if rise >= START_RISE:
        why = f"its loss rose by {rise:.1f}× its noise over its first five steps"
    elif above < FLAT_START:
        why = (
            f"its loss was lowest {above:.2f} decades above its start ({f.lrs[f.i_min]:.3g}), too close to read a fall"
        )
    else:
        return None
    return f"{why}, so the best LR lies under the rules' band"


def weak_fall(peak: float, clarity: float, rec: Recommendation, max_stable: float) -> tuple[float, str] | None:
    """``(peak, note)`` for a range test too weak to overrule the rules: a fall of fewer than
    `CLEAR_FALL` noise levels whose `peak` lies outside their band gets the band's nearest end
    (held below `max_stable`: the caller's inf unless the test ended on a blow-up, since the edge
    of a curve that only wobbled is as arbitrary as its minimum); None keeps the test's peak (a
    clear fall, or one within the band)."""
    from lrpilot.finder import CLEAR_FALL

    agreement = rec.check(peak)
    if clarity >= CLEAR_FALL or agreement.verdict == "agrees":
        return None
    end = rec.high if agreement.verdict == "above" else rec.low
    chosen = float(f"{min(end, max_stable):.3g}")
    held = " (held at the test's max stable LR)" if chosen < float(f"{end:.3g}") else ""
    note = (
        f"range test peak {peak:.3g} not used: its loss fell by only {clarity:.1f}× its noise, too weak a "
        f"measurement to overrule the rules, and it is {agreement.verdict} their band {rec.low:.3g}–{rec.high:.3g}; "
        f"trained at the band's nearest end, {chosen:.3g}{held}, instead"
    )
    return chosen, note


def _test_settings(
    task: Task, model: nn.Module, recipe: Recipe, ramped: tuple[float, float, int], *, for_fit: bool, amp: str | None
) -> dict[str, Any]:
    """`find_lr`'s options for fit's range test: the `ramped` ``(start_lr, end_lr, num_steps)``, the
    recipe's clipping, the settled stop (`for_fit`) and the precision."""
    from lrpilot.finder import SETTLE, DivergenceRule

    start_lr, end_lr, count = ramped
    return {
        "step": lambda batch: task.loss(model, batch),
        "start_lr": start_lr,
        "end_lr": end_lr,
        "num_steps": count,
        "max_grad_norm": recipe.grad_clip,
        "divergence": DivergenceRule(settle=SETTLE) if for_fit else None,
        "amp": amp,
    }


def _analysis(recipe: Recipe) -> dict[str, Any]:
    """`lrpilot.finder.analyze`'s options for fit's range test: the recipe's schedule, and no horizon
    scaling (the caller scales the peak, `peak_at_horizon`, once a time budget is steps)."""
    return {
        "total_steps": recipe.total_steps,
        "calibrated_steps": None,
        "warmup_ratio": recipe.warmup_steps / recipe.total_steps,
        "floor_ratio": recipe.floor_ratio,
        "decay": recipe.decay,
    }


@dataclass
class _SecondTest:
    """A second range test of the same ramp (`options`: `_test_settings`), from the same state, to
    follow one whose loss fell by fewer than `SECOND_TEST_BELOW` noise levels, where it costs at most
    `SECOND_TEST_MAX_SHARE` of the `recipe`'s run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    options: Callable[[], dict[str, Any]]
    recipe: Recipe
    deadline: float | None
    progress: Progress

    def after(self, task: Task, first: Any, seed: int, notes: list[str]) -> Any:
        """`first` (a `FinderResult`), or, where its loss fell by under `SECOND_TEST_BELOW` noise
        levels, with the second test, run on another stream of batches and dropout draws
        (`SECOND_STREAM`): the answer of both (`lrpilot.finder.analyze`, the geometric mean of their
        peaks), their steps counted. A second test that fails, gives no answer, or reaches a time
        budget's deadline leaves `first` as it was, and the notes say so."""
        from lrpilot.finder import RangeTestError, RangeTestWarning, analyze
        from lrpilot.integrations.torch_finder import range_test as one_test

        fell = min(first.details["drop_sigma"])
        if fell >= SECOND_TEST_BELOW:
            return first
        why = f"the range test's loss fell by only {fell:.1f}× its noise (under {SECOND_TEST_BELOW:g})"
        last = first.records[-1]  # a retry's, where the first ramp started too high: the ramp it repeats
        share = (last.steps + last.skipped_steps) / self.recipe.total_steps
        if share > SECOND_TEST_MAX_SHARE:
            notes.append(
                f"{why}; a second test on other batches would cost another {share:.0%} of the run's steps "
                f"(over {SECOND_TEST_MAX_SHARE:.0%}): not run"
            )
            return first
        options = self.options()

        def tick(point: int, lr: float, loss: float) -> None:  # no snapshots: the run goes on from the first's
            if self.deadline is not None and time.perf_counter() > self.deadline:
                raise _OutOfTimeError
            self.progress("second range test", point + 1, options["num_steps"], lr, loss)

        try:
            with seeded(seed + SECOND_STREAM), warnings.catch_warnings():
                warnings.simplefilter("ignore", RangeTestWarning)  # the note below says how clearly each fell
                batches = task.batches(seed + SECOND_STREAM)
                record = one_test(self.model, self.optimizer, batches, callback=tick, **options)
                both = analyze([*first.records, record], **_analysis(self.recipe))
        except _OutOfTimeError:
            notes.append(f"{why}; a second test on other batches reached the time budget's share for it: not used")
            return first
        except (RangeTestError, ValueError) as exc:
            notes.append(f"{why}; a second test on other batches gave no answer ({exc}): not used")
            return first
        first_peak, second_peak = both.details["peaks"]
        notes.append(
            f"{why}, so a second test ran on other batches: it fell by {both.details['drop_sigma'][1]:.1f}× its "
            f"noise and answered {second_peak:.3g} against the first's {first_peak:.3g}; the peak is their "
            f"geometric mean, {both.peak_lr:.3g}"
        )
        used = first.steps_used + record.steps + record.skipped_steps
        return dataclasses.replace(both, steps_used=used, wall_time_s=first.wall_time_s + record.wall_time_s)


STALL = 10.0
"""`seconds_per_step` counts no gap between range-test steps as more than this many typical ones."""


def seconds_per_step(stamps: Sequence[float]) -> float | None:
    """The range test's time per step: the mean gap over its second half, which one-off costs of the
    first steps do not reach (torch imports its compiler on the first optimizer step: nearly all of a
    30-step digits test's 2.8–3.1 s in a fresh process, which made a 10 s budget train 84 steps
    instead of thousands), and which, unlike a median, counts the time the process waits for a busy
    CPU. Neither holds when the load changes between the test and the run: beside two CPU-bound
    processes a digits test's median forecast 0.4× what its training steps then cost (a 10 s budget
    took 22 s), this mean 0.4–1.2× over three runs; `_time_note` says so in the fit's notes. Each gap
    counts at most `STALL` times the half's median: a one-off stall there (0.7 s among 1–4 ms digits
    steps, in a fresh process on the CI machine) forecast 12× what the training steps then cost."""
    if len(stamps) < 2:
        return None
    half = len(stamps) // 2
    gaps = [b - a for a, b in itertools.pairwise(stamps[half - 1 :])]
    cap = STALL * statistics.median(gaps)
    return sum(min(gap, cap) for gap in gaps) / len(gaps)


def peak_at_horizon(search: Search, steps: int, calibrated: tuple[int, int]) -> tuple[float, float]:
    """``(peak, factor)``: the range test's peak scaled from the run length its rule is calibrated
    at to this run's (`lrpilot.rules.horizon_factor`; noted, and kept in `search.horizon`, when
    that moves it), never above the LR where the test's loss turned up (`max_stable_lr`: a short
    run's best LR is higher, but not past the point where a few steps at it stopped helping). The
    rules' fallback peak already reads the run's length and stays as it is (factor 1)."""
    if search.from_rules:
        return search.peak, 1.0
    moved = at_horizon(search.peak, steps, calibrated, ceiling=float(search.finder.max_stable_lr))
    if moved.factor == 1.0:
        return search.peak, 1.0
    peak = float(f"{moved.lr:.3g}")
    search.horizon = moved.to_dict()
    search.notes.append(moved.note())
    return peak, peak / search.peak
