"""fit's range test (`lrpilot.autopilot._search`): a fall that is noise, a ramp that starts too high,
its step time, and a weak answer outside the rules' band."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lrpilot.autopilot._search import (
    BF16_TEST_PARAMETERS,
    MIN_TIMED_STEPS,
    RAMP_DENSITY,
    RETRY_BELOW,
    SECOND_TEST_BELOW,
    SECOND_TEST_MAX_SHARE,
    finder_precision,
    peak_at_horizon,
    ramp,
    ramp_density,
    range_test,
    repeated_batches,
    seconds_per_step,
    too_high,
    weak_fall,
)
from lrpilot.finder import CLEAR_FALL
from lrpilot.rules import recommend
from lrpilot.tasks import get_task
from lrpilot.tasks._device import Precision, native_bf16
from lrpilot.tasks._digits import DigitsTask
from tests.autopilot.conftest import tiny_bert_dir, write_rows


@dataclasses.dataclass(frozen=True)
class _NothingToLearn(DigitsTask):
    """digits' model and batches, but a loss that is noise around 2.3 whatever the weights (their
    gradient is zero): a range test over it has no minimum to find."""

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, _ = batch
        return model(inputs).sum() * 0.0 + 2.3 + 0.05 * torch.randn(())  # the draws are the seed's


def test_a_range_test_whose_fall_is_noise_never_trains_outside_the_rules_band() -> None:

    digits = get_task("digits")
    task = _NothingToLearn(digits.name, digits.description, digits.recipe)
    for seed in range(3):
        model = task.build_model(seed)
        rec = recommend(model, "pretraining", batch_size=64, steps=250)
        search = range_test(task, model, task.recipe, rec, seed=seed, steps=60, progress=lambda *a: None)
        assert search.finder is not None  # the curve is kept for the report
        assert min(search.finder.details["drop_sigma"]) < CLEAR_FALL
        assert rec.low * 0.999 <= search.peak <= rec.high * 1.001
        if search.from_rules:
            assert any("too weak a measurement to overrule the rules" in note for note in search.notes)
            assert peak_at_horizon(search, 10_000, (250, 250)) == (search.peak, 1.0)  # the rules read the length


def test_a_range_test_past_its_deadline_stops_and_the_run_trains_at_the_rules_peak() -> None:
    """A time budget's share for the test spent (here: before it began), the test stops after its
    first few steps, its model as it found it, and says so; the step time it measured is kept
    for turning the rest of the budget into steps."""
    digits = get_task("digits")
    model = digits.build_model(0)
    before = [p.detach().clone() for p in model.parameters()]
    rec = recommend(model, "pretraining", batch_size=64, steps=250)
    search = range_test(
        digits,
        model,
        digits.recipe,
        rec,
        seed=0,
        steps=None,
        progress=lambda *a: None,
        for_fit=True,
        deadline=time.perf_counter(),
    )
    assert (search.peak, search.finder, search.from_rules) == (rec.peak_lr, None, True)
    assert search.step_seconds is not None
    assert search.step_seconds > 0
    assert search.notes == [
        f"range test stopped after {MIN_TIMED_STEPS} steps at the time budget's share for it (50%); trained at "
        f"the rules' peak {rec.peak_lr:.3g} instead (a larger budget lets the test finish)"
    ]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_weak_fall_is_measured_again_on_other_batches_and_the_peak_is_both_tests_mean() -> None:
    """fit's test whose loss fell by under `SECOND_TEST_BELOW` noise levels runs a second one from
    the same state on other batches and dropout draws; the peak is the geometric mean of the two
    tests' answers, both curves are kept and both tests' steps counted. A clear fall (digits), or
    a test that is not fit's (tune's), runs one."""
    digits = get_task("digits")
    task = _NothingToLearn(digits.name, digits.description, digits.recipe)
    model = task.build_model(2)
    before = [p.detach().clone() for p in model.parameters()]
    rec = recommend(model, "pretraining", batch_size=64, steps=250)
    search = range_test(task, model, task.recipe, rec, seed=2, steps=60, progress=lambda *a: None, for_fit=True)
    assert search.finder is not None
    first, second = search.finder.records
    assert min(search.finder.details["drop_sigma"]) < SECOND_TEST_BELOW
    assert first.losses != second.losses  # other batches, other noise draws
    assert search.finder.steps_used == first.steps + second.steps
    peaks = search.finder.details["peaks"]
    assert search.peak == float(f"{math.sqrt(peaks[0] * peaks[1]):.3g}")
    assert any("so a second test ran on other batches" in note for note in search.notes)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    tune_like = range_test(task, model, task.recipe, rec, seed=2, steps=60, progress=lambda *a: None)
    assert tune_like.finder is not None
    assert len(tune_like.finder.records) == 1
    clear = range_test(
        digits, digits.build_model(0), digits.recipe, rec, seed=0, steps=None, progress=lambda *a: None, for_fit=True
    )
    assert clear.finder is not None
    assert len(clear.finder.records) == 1
    assert min(clear.finder.details["drop_sigma"]) >= SECOND_TEST_BELOW
    assert not any("second test" in note for note in clear.notes)


def test_a_weak_fall_is_not_measured_again_where_a_second_test_costs_a_large_share_of_the_run() -> None:
    """A second test repeats the first's ramp: where that is more than `SECOND_TEST_MAX_SHARE` of the
    run's steps (a 60-step test before a 100-step run), the first test's answer stands, as it would
    with a clear fall, and the notes say why no second test ran."""
    digits = get_task("digits")
    short = dataclasses.replace(digits.recipe, total_steps=100, warmup_steps=10)
    task = _NothingToLearn(digits.name, digits.description, short)
    model = task.build_model(2)
    rec = recommend(model, "pretraining", batch_size=64, steps=100)
    alone = range_test(task, model, short, rec, seed=2, steps=60, progress=lambda *a: None)
    search = range_test(task, model, short, rec, seed=2, steps=60, progress=lambda *a: None, for_fit=True)
    assert search.finder is not None
    assert alone.finder is not None
    assert min(search.finder.details["drop_sigma"]) < SECOND_TEST_BELOW  # weak: the cost alone decides
    assert SECOND_TEST_MAX_SHARE < 60 / 100
    assert len(search.finder.records) == 1
    assert search.finder.steps_used == alone.finder.steps_used
    assert search.peak == alone.peak
    assert any("would cost another 60% of the run's steps (over 50%): not run" in note for note in search.notes)
    said = [note for note in search.notes if "fell by only" in note and "(a clear fall is" in note]  # the finder's
    assert said, search.notes
    assert all(note.startswith("the range test's loss fell") for note in said)  # not "range test: the range test's"


def test_a_second_test_that_reaches_the_time_budgets_deadline_leaves_the_first() -> None:
    """With a time budget, the second test stops at the test's deadline too, and the first test's
    answer stands (its steps alone counted), as the run still needs its share of the budget."""
    digits = get_task("digits")
    task = _NothingToLearn(digits.name, digits.description, digits.recipe)
    model = task.build_model(2)
    rec = recommend(model, "pretraining", batch_size=64, steps=250)
    alone = range_test(task, model, task.recipe, rec, seed=2, steps=60, progress=lambda *a: None)
    deadline = time.perf_counter() + 2.0

    def slow_second(phase: str, *_: object) -> None:
        if phase == "second range test":
            time.sleep(max(0.0, deadline - time.perf_counter()) + 0.01)

    search = range_test(
        task, model, task.recipe, rec, seed=2, steps=60, progress=slow_second, for_fit=True, deadline=deadline
    )
    assert search.finder is not None
    assert alone.finder is not None
    assert len(search.finder.records) == 1
    assert search.finder.records[0].losses == alone.finder.records[0].losses
    assert search.finder.steps_used == alone.finder.steps_used
    assert search.peak == alone.peak
    assert any("a second test on other batches reached the time budget's share for it" in n for n in search.notes)


def test_a_weak_fall_outside_the_rules_band_moves_to_its_nearest_end() -> None:

    rec = recommend(22_700_000, "lora", steps=150, batch_size=8)  # band 5e-05 – 0.005
    chosen, note = weak_fall(0.36, 1.5, rec, max_stable=0.7)  # type: ignore[misc]
    assert chosen == pytest.approx(rec.high)
    assert "fell by only 1.5× its noise" in note
    assert "above their band" in note
    chosen, note = weak_fall(0.36, 1.5, rec, max_stable=0.002)  # type: ignore[misc]
    assert chosen == 0.002
    assert "held at the test's max stable LR" in note
    assert weak_fall(1e-7, 2.0, rec, max_stable=1.0)[0] == pytest.approx(rec.low)  # type: ignore[index]
    assert weak_fall(0.36, 2.6, rec, max_stable=0.7) is None  # a clear fall stands, however far out
    assert weak_fall(1e-3, 1.5, rec, max_stable=0.7) is None  # within the band: nothing to overrule


def test_the_range_tests_step_time_is_not_moved_by_a_slow_first_step() -> None:

    assert seconds_per_step([0.0, 2.8, 2.801, 2.802, 2.803, 2.804]) == pytest.approx(0.001)
    assert seconds_per_step([1.0]) is None
    stalled = [0.001 * i for i in range(20)] + [0.72 + 0.001 * i for i in range(10)]  # a stall in the second half
    assert seconds_per_step(stalled) < 0.002


@dataclasses.dataclass(frozen=True)
class _Stiff(DigitsTask):
    """digits' MLP with every weight stored `scale`× smaller and multiplied back in the forward
    pass: the same function at the start, but each Adam step (about its LR in every weight) moves
    it `scale`× further, so its best LR is `scale`× lower than digits' — below the band the rules
    give for its size, which they read off the parameter count alone."""

    scale: float = 1.0

    def build_model(self, seed: int) -> torch.nn.Module:
        model = super().build_model(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.div_(self.scale)
        return model

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        weights = {name: p * self.scale for name, p in model.named_parameters()}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, weights, (inputs,)), targets)


def _stiff_search(scale: float, seed: int = 0) -> tuple[object, float]:

    digits = get_task("digits")
    task = _Stiff(digits.name, digits.description, digits.recipe, scale=scale)
    model = task.build_model(seed)
    rec = recommend(model, "pretraining", batch_size=task.recipe.batch_size, steps=250)
    return range_test(task, model, task.recipe, rec, seed=seed, steps=None, progress=lambda *a: None), rec.low


@pytest.mark.parametrize(
    ("scale", "why"),
    [(100.0, "decades above its start"), (1000.0, "noise over its first five steps")],
)
def test_a_model_whose_best_lr_is_far_below_the_rules_band_is_measured_from_lower(scale: float, why: str) -> None:
    """The ramp starts at the rules' band's low end; a model whose minimum lies within a decade of
    it (100× stiffer than digits) or that a start above its usable LRs throws out at once (1000×)
    is tested again from 100× lower, and the answer is digits' own peak scaled down."""

    digits, low = _stiff_search(1.0)
    assert digits.finder.record.start_lr == pytest.approx(low)  # type: ignore[attr-defined]
    assert not any("run again" in note for note in digits.notes)  # type: ignore[attr-defined]
    stiff, _ = _stiff_search(scale)
    assert stiff.finder.record.start_lr == pytest.approx(low / RETRY_BELOW)  # type: ignore[attr-defined]
    assert why in stiff.notes[0]  # type: ignore[attr-defined]
    assert f"run again from {low / RETRY_BELOW:.3g}" in stiff.notes[0]  # type: ignore[attr-defined]
    assert 0.6 < stiff.peak * scale / digits.peak < 1.6  # type: ignore[attr-defined]


def test_a_ramp_that_is_non_finite_at_once_or_healthy_is_read_as_such() -> None:

    lrs = [1e-5 * 10 ** (i / 12.5) for i in range(40)]
    noise = np.random.default_rng(0).normal(0.0, 0.02, 40)
    healthy = [2.3 - 1.5 / (1 + math.exp(-(i - 25) / 3)) + e for i, e in enumerate(noise)]
    assert too_high([SimpleNamespace(lrs=lrs, losses=healthy)]) is None
    blown = [2.3, 9.0, math.nan, math.nan] + [math.nan] * 36
    assert "non-finite within five steps" in str(too_high([SimpleNamespace(lrs=lrs, losses=blown)]))
    assert too_high([]) is None  # a test that failed before its first point: nothing to read


def test_a_small_batch_range_test_sees_as_many_examples_a_decade_as_the_calibration_suite() -> None:
    """Below the calibration batch (`lrpilot._batch.CALIBRATED_BATCH`) the ramp is denser (fewer
    examples a step, so more steps a decade); at and above it, and for a user's explicit step count,
    it is as it was."""
    assert [ramp_density(b) for b in (64, 32, 16, 8, 2)] == [RAMP_DENSITY, RAMP_DENSITY, 25.0, 50.0, 50.0]
    digits = get_task("digits")
    for batch, per_decade in [(64, RAMP_DENSITY), (16, 2 * RAMP_DENSITY)]:
        job = dataclasses.replace(digits, recipe=dataclasses.replace(digits.recipe, batch_size=batch))
        model = job.build_model(0)
        rec = recommend(model, "pretraining", batch_size=batch, steps=250)
        search = range_test(job, model, job.recipe, rec, seed=0, steps=None, progress=lambda *a: None, for_fit=True)
        assert search.finder is not None
        lrs = search.finder.records[-1].lrs
        assert 1 / math.log10(lrs[1] / lrs[0]) == pytest.approx(per_decade, rel=0.02)
    assert ramp(rec, 40, batch_size=16)[2] == 40


def test_a_large_models_fp32_run_tests_in_bf16_where_the_hardware_computes_it_and_nothing_else_does() -> None:
    """The range test autocasts to bf16 only for an fp32 run of a model of `BF16_TEST_PARAMETERS` or
    more, on hardware with bf16 (on a machine without it, every case keeps the run's precision)."""
    cpu, fp32 = torch.device("cpu"), Precision("fp32", "cpu")
    large = torch.nn.Linear(BF16_TEST_PARAMETERS // 1000, 1000)
    small = get_task("digits").build_model(0)
    tested, note = finder_precision(fp32, large, cpu, chosen=False, timed=False, from_ramp=False)
    if native_bf16(cpu):
        assert tested == Precision("bf16", "cpu")
        assert note is not None
        assert "bf16 autocast, the run in fp32" in note
        assert "--precision fp32" in note
    else:
        assert (tested, note) == (fp32, None)
    for model, options in [
        (small, {}),  # autocast's casts cost a small model more than its matrix products save
        (large, {"chosen": True}),  # --precision fp32 given: the test too
        (large, {"timed": True}),  # a time budget: the test's step time forecasts the run's
        (large, {"from_ramp": True}),  # the run goes on from the test's weights
    ]:
        given = {"chosen": False, "timed": False, "from_ramp": False, **options}
        assert finder_precision(fp32, model, cpu, **given) == (fp32, None)
    fp16 = Precision("fp16", "cpu")  # a run in half precision tests in it
    assert finder_precision(fp16, large, cpu, chosen=False, timed=False, from_ramp=False) == (fp16, None)


@pytest.mark.parametrize(("rows", "seed", "said"), [(40, 0, True), (400, 1, False)])  # seeds whose tests answer
def test_a_range_test_that_went_past_the_end_of_a_users_data_is_noted(
    tmp_path: Path, rows: int, seed: int, said: bool
) -> None:
    """fit's range test draws a user's batches endlessly, each epoch reshuffled: on 36 training texts
    in batches of 8 its 22 steps went over the same 4 batches 5.5 times without a word (a loss read
    on batches already trained on is lower, which can place the peak high). A built-in task's
    (digits: 22 batches, ~60 steps a test) is left alone: the rule is calibrated on those curves."""
    from lrpilot.autopilot import fit

    texts = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(rows)]
    result = fit(
        model=tiny_bert_dir(tmp_path / "bert"),
        data=write_rows(tmp_path / "train.csv", texts),
        batch_size=8,
        budget=6,
        finder_steps=30,
        seed=seed,
        out=tmp_path / "run",
        report=False,
    )
    first = result.finder.records[0]  # a weak fall runs a second test, on its own stream: the note is the first's
    drawn = first.steps + first.skipped_steps
    noted = [note for note in result.record.notes if "fewer than the range test took" in note]
    assert noted == (
        [
            f"range test: the training data has 4 batches of 8, fewer than the range test took ({drawn} steps): it "
            f"went over them {drawn / 4:.1f} times, and a loss read on batches the model has already trained on is "
            "lower than on fresh ones, which can place the peak high; more training data or a smaller --batch-size "
            "gives it fresh ones"
        ]
        if said
        else []
    )
    assert drawn > 4 if said else drawn <= 45  # 360 texts: 45 batches
    digits = get_task("digits")
    assert repeated_batches(digits, 100) is None
