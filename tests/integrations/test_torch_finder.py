"""The PyTorch range-test runner on real small training problems (digits MLP, a BatchNorm CNN)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrpilot.finder import (
    PROGRESS_REF,
    FinderResult,
    RangeTestError,
    RangeTestInterrupted,
    RangeTestWarning,
    curve_features,
    learnt_share,
    peak_factor,
    ramp_schedule,
)
from lrpilot.integrations.torch_finder import _calibrated, find_lr, range_test
from lrpilot.rules import CALIBRATED_STEPS, horizon_factor
from lrpilot.schedules import Cosine
from tests.finder.tiny import assert_same, cnn, digits, endless, loader, mlp, rng_draws, snapshot

pytestmark = pytest.mark.usefixtures("torch_one_thread")


ce = nn.functional.cross_entropy


def _seed_all(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _expected_draws() -> tuple[float, float, float]:
    """What the generators will produce next, without consuming it. The digits are loaded first:
    the first load imports scikit-learn, whose import draws from Python's generator (rich, through
    its progress bars), and the tests build their loaders after this call."""
    digits()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    draws = rng_draws()
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    return draws


def _cycled(batches: int, steps: int | None = None, runs: str = "the range test took") -> Any:
    """The warning of a test that went past the end of its loader (digits' is 57 batches of 32, and
    a 100-step test takes ~80), naming the loader's batches, what took them and, where given, the steps."""
    took = "" if steps is None else f".*\\({steps} optimizer steps"
    return pytest.warns(RangeTestWarning, match=f"^data has {batches} batches, fewer than {runs}{took}")


def _counting(fn: Any) -> tuple[Any, list[int]]:
    calls = [0]

    def wrapped(*args: Any) -> Any:
        calls[0] += 1
        return fn(*args)

    return wrapped, calls


def test_the_peak_is_for_the_run_the_user_gives() -> None:
    """The same test (same seed and batches): a 10,000-step run gets the horizon law's share of the
    answer a 1,000-step run gets, in its ready schedule too; ``calibrated_steps=None`` keeps it."""

    def found(**kwargs: Any) -> FinderResult:
        _seed_all()
        model = mlp()
        return find_lr(model, torch.optim.AdamW(model.parameters(), lr=1e-3), loader(), ce, **kwargs)

    with _cycled(57):
        base, long = found(total_steps=1000), found(total_steps=10_000)
        kept = found(total_steps=10_000, calibrated_steps=None)
    assert long.peak_lr == pytest.approx(base.peak_lr * horizon_factor(10_000))
    assert isinstance(long.schedule, Cosine)
    assert long.schedule.peak == long.peak_lr
    assert long.details["horizon"]["found"] == pytest.approx(base.peak_lr)
    assert kept.peak_lr == pytest.approx(base.peak_lr)
    with pytest.raises(ValueError, match=r"find_lr: calibrated_steps\[0\] must be an integer in \[1, ∞\], got 0"):
        found(total_steps=10_000, calibrated_steps=(0, 10))


def test_the_calibrated_range_stretches_to_one_epoch_of_the_data() -> None:
    """A single pass longer than 1000 steps keeps the test's peak up to its epoch's length, as
    fit does for a user's data; an explicit range, None, or data without a length are kept."""
    assert _calibrated(CALIBRATED_STEPS, range(2500), 1) == (150, 2500)
    assert _calibrated(CALIBRATED_STEPS, range(2500), 2) == (150, 1250)  # optimizer steps, not batches
    assert _calibrated(CALIBRATED_STEPS, range(500), 1) == CALIBRATED_STEPS
    assert _calibrated((200, 300), range(2500), 1) == (200, 300)
    assert _calibrated(None, range(2500), 1) is None
    assert _calibrated(CALIBRATED_STEPS, iter(range(2500)), 1) == CALIBRATED_STEPS


def test_curve_falls_then_rises_and_everything_is_restored() -> None:
    _seed_all()
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dl = loader()
    before = snapshot(model, optimizer)
    draws = _expected_draws()
    with _cycled(57):
        result = find_lr(model, optimizer, dl, ce, total_steps=1000)
    assert rng_draws() == draws
    assert_same(before, snapshot(model, optimizer))
    record = result.record
    assert record.stop_reason == "diverged"
    assert record.steps == len(record) < 100
    smoothed = np.asarray(record.smoothed)
    low = int(np.argmin(smoothed))
    assert smoothed[low] < 0.5 * smoothed[0]  # it learnt
    assert smoothed[-1] > smoothed[low] + 0.4 * (smoothed[0] - smoothed[low])  # then blew up
    assert 1e-4 < result.peak_lr < 1e-1
    assert result.band[0] <= result.peak_lr <= result.band[1]
    assert result.peak_lr < result.max_stable_lr
    assert isinstance(result.schedule, Cosine)
    assert result.schedule.peak == result.peak_lr
    assert result.schedule.total_steps == 1000
    assert result.steps_used == record.steps


def test_trained_adam_state_comes_back_bit_for_bit() -> None:
    model = cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = digits()
    for i in range(3):  # moments, step counts and BatchNorm statistics that are not the defaults
        optimizer.zero_grad()
        ce(model(x[i * 16 : (i + 1) * 16]), y[i * 16 : (i + 1) * 16]).backward()
        optimizer.step()
    model.eval()
    model[2].train()
    before = snapshot(model, optimizer)
    find_lr(model, optimizer, loader(), ce, num_steps=30)
    assert_same(before, snapshot(model, optimizer))


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_exception_in_the_loss_restores_state(storage: str, tmp_path: Path) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(model, optimizer)
    draws = _expected_draws()
    calls = [0]

    def step(batch: Any) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 8:
            raise ValueError("user bug")
        x, y = batch
        return ce(model(x), y)

    with pytest.raises(ValueError, match="user bug"):
        find_lr(model, optimizer, loader(), step=step, storage=storage, tmp_dir=str(tmp_path))
    assert_same(before, snapshot(model, optimizer))
    assert rng_draws() == draws
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_restores_state_and_keeps_the_partial_curve() -> None:
    model = cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    draws = _expected_draws()

    def step(batch: Any) -> torch.Tensor:
        if len(seen) == 30:
            raise KeyboardInterrupt
        seen.append(1)
        x, y = batch
        return ce(model(x), y)

    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt) as info:
        find_lr(model, optimizer, loader(), step=step)
    assert isinstance(info.value, RangeTestInterrupted)
    record = info.value.record
    assert record.stop_reason == "interrupted"
    assert len(record) == 30
    assert_same(before, snapshot(model, optimizer))
    assert rng_draws() == draws


def test_ctrl_c_in_a_later_range_test_keeps_the_completed_ones() -> None:
    """Thorough mode: Ctrl-C during the second range test used to hand back that partial curve
    alone; the first, complete one was lost with the time it took."""
    model, optimizer, before = _setup()
    calls = [0]

    def step(batch: Any) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 130:
            raise KeyboardInterrupt
        x, y = batch
        return ce(model(x), y)

    with pytest.raises(RangeTestInterrupted, match=r"range test \(test 2\) interrupted after") as info:
        find_lr(model, optimizer, loader(), step=step, mode="thorough", total_steps=5000)
    first, second = info.value.records
    assert second is info.value.record
    assert second.stop_reason == "interrupted"
    assert first.stop_reason != "interrupted"
    assert first.steps + second.steps == 129
    assert_same(before, snapshot(model, optimizer))


@pytest.mark.filterwarnings("ignore::lrpilot.finder.RangeTestWarning")
def test_ctrl_c_in_thorough_modes_probe_runs_keeps_the_completed_range_tests() -> None:
    """Ctrl-C in the probe runs, after every range test had finished, raised a bare
    KeyboardInterrupt: the completed curves, minutes of a large model's time, were lost, where the
    README promises `RangeTestInterrupted` with them."""
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    whole = find_lr(model, optimizer, loader(), ce, total_steps=500, mode="thorough", probe_budget=100)
    tests = sum(r.steps + r.skipped_steps for r in whole.records)
    calls = [0]

    def step(batch: Any) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == tests + 5:  # in the first probe run
            raise KeyboardInterrupt
        x, y = batch
        return ce(model(x), y)

    with pytest.raises(RangeTestInterrupted, match=r"interrupted in its probe runs, after its 2 range tests") as info:
        find_lr(model, optimizer, loader(), step=step, total_steps=500, mode="thorough", probe_budget=100)
    assert [r.losses for r in info.value.records] == [r.losses for r in whole.records]
    assert info.value.record is info.value.records[-1]
    assert_same(before, snapshot(model, optimizer))


def test_a_curve_still_falling_is_warned_of_at_the_users_line_for_every_model() -> None:
    """The warning named lrpilot's own line, where Python's default filter shows a warning once per
    line and text: a second model's test, still falling at its end_lr in the same process (a
    notebook), said nothing. It now names the line that called find_lr, for each call."""
    import warnings

    def short(seed: int) -> None:  # ends at 5e-3, below where digits' loss turns up: still falling
        model = mlp(seed)
        optimizer = torch.optim.AdamW(model.parameters())
        find_lr(model, optimizer, endless(seed=seed), ce, start_lr=1e-4, end_lr=5e-3, num_steps=40)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        short(0)
        short(1)
    still = [w for w in caught if "still falling at end_lr" in str(w.message)]
    assert [(w.filename, w.category) for w in still] == [(__file__, RangeTestWarning)] * 2


def test_accumulation_counts_optimizer_steps_not_micro_batches() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = [0]
    optimizer.register_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    loss_fn, calls = _counting(ce)
    record = range_test(
        model, optimizer, endless(), loss_fn, start_lr=1e-5, end_lr=1e-3, num_steps=20, accumulation_steps=3
    )
    assert record.stop_reason == "completed"
    assert record.steps == 20
    assert calls[0] == 60
    assert steps[0] == 20
    ramp = ramp_schedule(1e-5, 1e-3, 20)
    assert record.lrs == tuple(ramp(i) for i in range(20))
    assert record.lrs[-1] == pytest.approx(1e-3, rel=1e-12)


def test_fp16_overflow_step_is_skipped_without_advancing_the_ramp() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    optimizer_steps = [0]
    optimizer.register_step_post_hook(lambda *_: optimizer_steps.__setitem__(0, optimizer_steps[0] + 1))
    backward_calls = [0]

    def poison(grad: torch.Tensor) -> torch.Tensor:
        backward_calls[0] += 1
        return grad * math.inf if backward_calls[0] == 6 else grad  # an overflow at the 6th backward

    hook = model[0].weight.register_hook(poison)
    record = range_test(
        model, optimizer, endless(), ce, start_lr=1e-4, end_lr=1e-2, num_steps=15, amp="fp16", scaler=scaler
    )
    hook.remove()
    assert record.skipped_steps == 1
    assert record.steps == 15
    assert backward_calls[0] == 16
    assert optimizer_steps[0] == 15
    ramp = ramp_schedule(1e-4, 1e-2, 15)
    assert record.lrs == tuple(ramp(i) for i in range(15))  # the skipped step did not use up a rung
    assert scaler.get_scale() == 2.0**10  # the user's scaler is restored too


def test_bf16_autocast() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    record = range_test(model, optimizer, loader(), ce, num_steps=40, amp="bf16")
    assert record.skipped_steps == 0
    assert len(record) > 10
    assert_same(before, snapshot(model, optimizer))


def test_validation_mode_every_k_steps() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    record = range_test(
        model, optimizer, loader(), ce, start_lr=1e-6, end_lr=1e-3, num_steps=50, val_data=loader(64), val_every=5
    )
    assert record.metric == "val"
    assert record.stop_reason == "completed"
    assert len(record) == 10
    assert len(record.train_losses) == 50
    ramp = ramp_schedule(1e-6, 1e-3, 50)
    assert record.lrs == tuple(ramp(i) for i in range(4, 50, 5))


class _HFStyle(nn.Module):
    """``model(**batch)`` returning an object with ``.loss`` (or a dict), as Hugging Face models do."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.net = mlp()
        self.as_dict = as_dict

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor) -> Any:
        loss = ce(self.net(pixels), labels)
        return {"loss": loss} if self.as_dict else SimpleNamespace(loss=loss)


@pytest.mark.parametrize("as_dict", [False, True])
def test_dict_batches(as_dict: bool) -> None:
    x, y = digits()
    batches = [{"pixels": x[i : i + 32], "labels": y[i : i + 32]} for i in range(0, 320, 32)]
    model = _HFStyle(as_dict)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    with _cycled(10):
        record = range_test(model, optimizer, batches, num_steps=30)  # 10 batches, cycled
    assert len(record) > 5
    assert_same(before, snapshot(model, optimizer))


def test_short_loader_is_cycled_and_the_users_iterator_is_not_advanced() -> None:
    dl, reference = loader(n=64, seed=5), loader(n=64, seed=5)
    live, ref_live = iter(dl), iter(reference)
    next(live), next(ref_live)
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with _cycled(2) as caught:
        record = range_test(model, optimizer, dl, ce, start_lr=1e-6, end_lr=1e-3, num_steps=20)  # 2 batches per pass
    assert record.steps == 20
    assert str(caught[0].message).startswith(
        "data has 2 batches, fewer than the range test took (20 optimizer steps, 20 batches): it went over them "
        "10.0 times"
    )
    assert caught[0].filename == __file__  # it points at the user's call
    assert torch.equal(next(live)[1], next(ref_live)[1])  # the live iterator goes on where it was
    assert torch.equal(next(iter(dl))[1], next(iter(reference))[1])  # the loader's generator was restored


def test_a_loader_as_long_as_the_test_is_not_warned_about_and_a_shorter_one_is() -> None:
    """A loader shorter than the test used to be cycled without a word, its batches seen again
    lowering the loss the test reads; the warning counts micro-batches against the loader's length."""
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dl = loader(n=640)  # 20 batches
    kwargs: dict[str, Any] = {"start_lr": 1e-6, "end_lr": 1e-4, "accumulation_steps": 2}
    assert range_test(model, optimizer, dl, ce, num_steps=10, **kwargs).steps == 10  # 20 batches: no warning
    with _cycled(20, 12) as caught:
        range_test(model, optimizer, dl, ce, num_steps=12, **kwargs)
    assert "(12 optimizer steps, 24 batches): it went over them 1.2 times" in str(caught[0].message)


def test_thorough_modes_tests_are_counted_together_in_the_warning_not_as_one_test() -> None:
    """Each thorough test goes on where the last one stopped: two tests of at most 40 steps over
    digits' 57 batches were reported as "fewer than the range test took (65 optimizer steps", a test
    that never ran."""
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.warns(RangeTestWarning, match="^data has 57 batches, fewer than the 2 range tests took together") as w:
        result = find_lr(model, optimizer, loader(), ce, num_steps=40, start_lr=1e-5, total_steps=800, mode="thorough")
    assert len(result.records) == 2
    assert max(r.steps for r in result.records) < 57 < result.steps_used  # each test fits, not both
    assert f"({result.steps_used} optimizer steps, {result.steps_used} batches)" in str(w[0].message)


# The workers are forked: where an earlier test in the process imported JAX, its at-fork hook warns
# that JAX in a child may deadlock (these children never touch JAX), and the error filter made that an
# unraisable exception
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_a_loop_over_a_loader_with_persistent_workers_is_not_rewound() -> None:
    """A DataLoader with persistent workers gives every iter() its one iterator, reset: the finder's
    passes used to rewind the epoch the user's loop was in, which then saw batch 1 again."""
    x = torch.arange(320.0).unsqueeze(1).repeat(1, 64) / 1000  # row i starts with i / 1000
    dl = DataLoader(
        TensorDataset(x, torch.zeros(320, dtype=torch.int64)), batch_size=32, num_workers=1, persistent_workers=True
    )
    live = iter(dl)
    assert [round(next(live)[0][0, 0].item() * 1000) for _ in range(2)] == [0, 32]
    model = mlp()
    flat = lambda batch: model(batch[0]).sum() * 0.0 + 1.0  # noqa: E731  (never stops the test)
    with _cycled(10, 25):
        record = range_test(model, torch.optim.SGD(model.parameters()), dl, step=flat, end_lr=1e-3, num_steps=25)
    assert record.steps == 25  # 2.5 passes over its 10 batches
    assert [round(batch[0][0, 0].item() * 1000) for batch in live] == [32 * i for i in range(2, 10)]
    assert dl._iterator is live  # the user's loader keeps its own workers


def test_a_one_shot_iterator_is_consumed_and_running_out_is_an_error() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    stream = endless()
    range_test(model, optimizer, stream, ce, start_lr=1e-6, end_lr=1e-4, num_steps=10)
    x, y = digits()
    finite = iter([(x[:32], y[:32])] * 7)
    with pytest.raises(RangeTestError, match="ran out after 7 batches"):
        range_test(model, optimizer, finite, ce, num_steps=10)
    assert_same(before, snapshot(model, optimizer))


def test_non_finite_loss_mid_test_stops_it() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch: Any) -> torch.Tensor:
        seen.append(1)
        x, y = batch
        loss = ce(model(x), y)
        return loss * math.nan if len(seen) == 12 else loss

    seen: list[int] = []
    record = range_test(model, optimizer, loader(), step=step, start_lr=1e-6, end_lr=1e-4, num_steps=30)
    assert record.stop_reason == "non-finite"
    assert len(record) == 12
    assert math.isnan(record.losses[-1])


def test_param_groups_keep_their_ratio() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters(), "lr": 1e-3}]
    )
    ratios: list[float] = []

    def watch(point: int, lr: float, loss: float) -> None:
        ratios.append(optimizer.param_groups[1]["lr"] / optimizer.param_groups[0]["lr"])

    range_test(model, optimizer, loader(), ce, start_lr=1e-5, end_lr=1e-2, num_steps=10, callback=watch)
    assert ratios == pytest.approx([0.1] * 10)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-3]


def test_shifting_the_loss_changes_nothing_but_the_level() -> None:
    """Sign-safe divergence: a loss of CE - 10 (negative) gives the same test. The rule reads the
    share of the loss the test learnt against the loss's zero, which CE - 10 lacks: it gets the
    reference factor, so its peak differs from CE's by exactly the ratio of the two factors."""
    results: list[FinderResult] = []
    for shift in (0.0, -10.0):
        model = mlp()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(0)
        results.append(find_lr(model, optimizer, endless(), lambda out, y, s=shift: ce(out, y) + s))
    a, b = (r.record for r in results)
    assert a.stop_reason == b.stop_reason == "diverged"
    assert len(a) == len(b)
    assert np.allclose(np.asarray(b.losses) + 10.0, a.losses, atol=1e-5)
    f = curve_features(a.lrs, a.losses)
    factors = peak_factor(PROGRESS_REF) / peak_factor(learnt_share(f.loss_start, f.loss_min))
    assert results[1].peak_lr == pytest.approx(results[0].peak_lr * factors, rel=0.05)


def test_the_answer_does_not_swing_with_the_number_of_steps() -> None:
    """torch-lr-finder #68: 100 vs 1,000 steps gave suggestions 36× apart. lrpilot corrects for the
    ramp's speed: 100 and 300 steps agree within 1.5× (torch-lr-finder's rule moves 3-6× here)."""
    peaks = []
    for steps in (100, 300):
        model = mlp(1)
        result = find_lr(model, torch.optim.AdamW(model.parameters(), lr=1e-3), endless(seed=1), ce, num_steps=steps)
        peaks.append(result.peak_lr)
    assert 1 / 1.5 < peaks[1] / peaks[0] < 1.5


def test_linear_ramp() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    record = range_test(model, optimizer, loader(), ce, start_lr=1e-4, end_lr=1e-2, num_steps=20, ramp="linear")
    assert record.ramp == "linear"
    assert np.allclose(np.diff(record.lrs), (1e-2 - 1e-4) / 19)


def test_disk_snapshot_lives_in_a_private_directory_that_is_removed(tmp_path: Path) -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    during: list[list[str]] = []

    def watch(point: int, lr: float, loss: float) -> None:
        during.append([p.name for p in tmp_path.iterdir()])

    range_test(model, optimizer, loader(), ce, num_steps=10, storage="disk", tmp_dir=str(tmp_path), callback=watch)
    assert len(during[0]) == 1
    assert during[0][0].startswith("lrpilot-state-")
    assert list(tmp_path.iterdir()) == []


def test_thorough_mode_runs_probes_from_the_same_start() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    draws = _expected_draws()
    with _cycled(57, runs="the 2 range tests and 6 probe runs took together"):  # probes replay the tests' batches
        result = find_lr(model, optimizer, loader(), ce, total_steps=500, mode="thorough", probe_budget=100)
    # 100 steps: 3 long probes of 100 / (3 · 1.4) → 23 steps, 3 short ones of 23 / 2.5 → 9 steps.
    assert [p.steps for p in result.probes] == [23, 23, 23, 9, 9, 9]
    assert len(result.records) == 2  # thorough_tests(500)
    assert result.steps_used == sum(r.steps for r in result.records) + 96
    assert result.method == "lrpilot+probes"
    assert 0.0 <= result.details["horizon_exponent"] <= 1.0
    assert_same(before, snapshot(model, optimizer))
    assert rng_draws() == draws


def test_thorough_mode_averages_repeated_range_tests() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot(model, optimizer)
    draws = _expected_draws()
    with _cycled(57, runs="the 2 range tests took together"):  # two tests of ~80 steps
        result = find_lr(model, optimizer, loader(), ce, total_steps=500, mode="thorough")
    assert len(result.records) == 2
    assert [r.seed for r in result.records] == [0, 1]
    assert result.records[0].losses != result.records[1].losses  # fresh batches for the second test
    assert result.probes == ()
    assert result.method == "lrpilot"
    assert result.steps_used == sum(r.steps for r in result.records)
    peaks = result.details["peaks"]
    assert result.peak_lr == pytest.approx(math.sqrt(peaks[0] * peaks[1]))
    assert_same(before, snapshot(model, optimizer))
    assert rng_draws() == draws


# ---------------------------------------------------------------------------------------- bad input
def _setup() -> tuple[nn.Module, torch.optim.Optimizer, dict[str, Any]]:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, optimizer, snapshot(model, optimizer)


def test_empty_loader() -> None:
    model, optimizer, before = _setup()
    empty = DataLoader(TensorDataset(torch.zeros(0, 64), torch.zeros(0, dtype=torch.int64)), batch_size=8)
    with pytest.raises(RangeTestError, match="data yielded no batches"):
        find_lr(model, optimizer, empty, ce)
    assert_same(before, snapshot(model, optimizer))


def test_no_trainable_parameters() -> None:
    model, optimizer, _ = _setup()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        find_lr(model, optimizer, loader(), ce)


@pytest.mark.parametrize(("start", "end"), [(1e-2, 1e-2), (1.0, 1e-3)])
def test_start_not_below_end(start: float, end: float) -> None:
    model, optimizer, _ = _setup()
    with pytest.raises(ValueError, match=r"^find_lr: start_lr must be < end_lr"):  # it named ramp_schedule
        find_lr(model, optimizer, loader(), ce, start_lr=start, end_lr=end)


def test_nan_at_the_first_step() -> None:
    model, optimizer, before = _setup()
    with pytest.raises(RangeTestError, match=r"loss at the first step \(lr=1e-07\) is nan"):
        find_lr(model, optimizer, loader(), lambda out, y: ce(out, y) * math.nan)
    assert_same(before, snapshot(model, optimizer))


def test_a_nan_loss_before_the_curve_has_an_answer_is_named_as_the_cause() -> None:
    """A bad batch (a NaN input) ends the test at step 12, at lr 8e-7, before the loss has fallen.
    The error used to say only that the range starts above every usable LR (lower start_lr), which
    sends the user the wrong way; it now says where the test stopped and what to look at."""
    model, optimizer, before = _setup()
    calls: list[int] = []

    def step(batch: Any) -> torch.Tensor:
        calls.append(1)
        x, y = batch
        loss = ce(model(x), y) * 0.0 + 2.3 + 1e-4 * len(calls)  # nothing learnt yet
        return loss * math.nan if len(calls) == 12 else loss

    with pytest.raises(RangeTestError, match=r"stopped at step 12 of 100 on a non-finite loss") as caught:
        find_lr(model, optimizer, loader(), step=step)
    assert "look at the data and the model" in str(caught.value)
    assert caught.value.records[0].stop_reason == "non-finite"
    assert_same(before, snapshot(model, optimizer))


def test_scheduler_already_attached() -> None:
    model, optimizer, _ = _setup()
    torch.optim.lr_scheduler.LinearLR(optimizer)
    with pytest.raises(ValueError, match="scheduler is already attached"):
        find_lr(model, optimizer, loader(), ce)


def test_loss_that_does_not_reach_the_parameters() -> None:
    model, optimizer, before = _setup()
    with pytest.raises(RangeTestError, match="does not require grad"):
        find_lr(model, optimizer, loader(), lambda out, y: ce(out.detach(), y))
    assert_same(before, snapshot(model, optimizer))


@pytest.mark.parametrize(
    ("loss_fn", "message"),
    [
        (lambda out, y: ce(out, y, reduction="none"), r"got a tensor of shape \(32,\); reduce it"),
        (lambda out, y: {"loss": ce(out, y)}, r"got dict \(return the loss tensor itself"),
        (lambda out, y: (ce(out, y), out), r"got tuple \(return the loss tensor itself"),
        (lambda out, y: ce(out, y).item(), r"got float \(a number has no gradient: return the tensor"),
    ],
)
def test_a_loss_that_is_not_a_scalar_is_named(loss_fn: Any, message: str) -> None:
    """A per-sample loss used to be reported as "must be a scalar tensor, got Tensor": it was one."""
    model, optimizer, before = _setup()
    with pytest.raises(RangeTestError, match=message):
        find_lr(model, optimizer, loader(), loss_fn)
    assert_same(before, snapshot(model, optimizer))


def test_a_model_on_the_meta_device_is_refused_before_anything_runs() -> None:
    """A model built under torch.device("meta") used to fail in the snapshot with torch's
    "Cannot copy out of meta tensor; no data!", which names neither the model nor the fix."""
    with torch.device("meta"):
        model = nn.Linear(64, 10)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match=r"on the 'meta' device \(2, e.g. 'weight'\).*to_empty"):
        find_lr(model, optimizer, loader(), ce)


def test_batch_layout_errors() -> None:
    model, optimizer, _ = _setup()
    x, _ = digits()
    with pytest.raises(RangeTestError, match=r"must be \(inputs, targets\)"):
        find_lr(model, optimizer, [x[:8]], ce)
    with pytest.raises(RangeTestError, match="must be a dict"):
        find_lr(model, optimizer, loader())
    with pytest.raises(ValueError, match="loss_fn or step, not both"):
        find_lr(model, optimizer, loader(), ce, step=lambda b: b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_steps": 3}, "num_steps must be an integer in"),
        ({"ramp": "log"}, "ramp must be one of"),
        ({"amp": "fp8"}, "amp must be one of"),
        ({"mode": "thorough"}, "needs total_steps"),
        ({"mode": "slow"}, "mode must be one of"),
        ({"accumulation_steps": 0}, "accumulation_steps must be"),
        ({"total_steps": 0}, "total_steps must be"),
        # the ramp's and the recipe's checks named ramp_schedule and recipe_schedule, not find_lr
        ({"start_lr": 0.0}, r"^find_lr: start_lr must be a finite number > 0, got 0.0"),
        ({"end_lr": float("nan")}, r"^find_lr: end_lr must be a finite number > 0, got nan"),
        ({"total_steps": 100, "warmup_ratio": 1.5}, r"^find_lr: warmup_ratio must be in \[0.0, 1.0\), got 1.5"),
        ({"total_steps": 100, "decay": "step"}, r"^find_lr: decay must be one of \['cosine', 'linear'\]"),
        ({"beta": 1.0}, "beta must be in"),
        ({"probe_budget": 50}, r"probe_budget must be an integer in \[84, "),
        # 100 steps validated every 30: 4 points, fewer than a curve needs; it used to run all 100 first
        ({"val_data": [], "val_every": 30}, r"val_every=30 gives 4 validation point\(s\) .* val_every at most 24"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    model, optimizer, _ = _setup()
    with pytest.raises(ValueError, match=message):
        find_lr(model, optimizer, loader(), ce, **kwargs)
