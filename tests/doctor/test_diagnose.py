"""Diagnoses and advice on logs whose story is known, and the doctor agreeing with the guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lrpilot import guard
from lrpilot.detect import DetectConfig, scan
from lrpilot.doctor import RULES, Series, diagnose, examine, fitted_config
from lrpilot.schedules import parse
from tests.detect import curves
from tests.doctor import logs


def series_of(
    loss: np.ndarray, lr: np.ndarray | float = 1e-3, steps: np.ndarray | None = None, grads: np.ndarray | None = None
) -> Series:
    steps = np.arange(loss.size) if steps is None else steps
    lrs = np.full(loss.size, lr) if isinstance(lr, float) else lr
    logged = None if grads is None else np.ones(loss.size, dtype=bool)
    loss = np.asarray(loss, dtype=np.float64)
    return Series(steps=steps.astype(np.int64), loss=loss, lr=lrs, grad_norm=grads, grad_logged=logged)


def test_a_nan_tail_is_a_divergence_and_the_advice_is_to_halve_the_lr(tmp_path: Path) -> None:
    run = logs.run_arrays(n=300, every=10, nan_from=250)
    _, d = examine(logs.write_trainer_state(tmp_path / "trainer_state.json", run))
    assert d.verdict == "diverged"
    assert [(f.kind, f.start, f.end, f.count) for f in d.findings] == [("non_finite", 2510, 3000, 50)]
    assert d.findings[0].message == "loss is NaN/Inf at 50 steps from step 2510 to 3000"
    halve = d.advice[0]
    assert (halve.action, halve.rule) == ("halve_lr", "halve")
    assert halve.lr == pytest.approx(1.5e-4, rel=1e-4)  # the peak logged at step 310 of a 10-step log
    assert halve.rule_text == RULES["halve"].text
    assert "0.0003 → 0.00015" in halve.reason
    assert d.schedule is not None
    assert d.schedule.startswith("cosine(peak=0.0003, total_steps=3000, warmup_steps=300")
    assert halve.schedule == d.schedule.replace("peak=0.0003", "peak=0.00015")
    json.dumps(d.to_dict(), allow_nan=False)


def test_a_flat_start_is_a_too_low_lr_and_the_advice_is_to_triple_it() -> None:
    rng = np.random.default_rng(0)
    loss = 2.3 * (1 + 0.01 * rng.standard_normal(1000))
    d = diagnose(series_of(loss, 1e-5))
    assert d.verdict == "lr_too_low"
    assert [f.kind for f in d.findings] == ["flat_start"]
    advice = d.advice[0]
    assert (advice.action, advice.rule, advice.lr) == ("raise_lr", "raise", pytest.approx(3e-5))
    assert "×3–5" in advice.reason
    assert advice.schedule == "constant(peak=3e-05)"


def test_a_collapse_to_chance_is_never_advised_a_higher_lr() -> None:
    rng = np.random.default_rng(1)
    learned = 2.3 * np.exp(-np.arange(600) / 100) + 0.3
    loss = np.concatenate([learned, np.full(400, math.log(10))]) * (1 + 0.01 * rng.standard_normal(1000))
    d = diagnose(series_of(loss, 0.1), DetectConfig.for_classes(10))
    assert d.verdict == "collapsed"
    assert {a.action for a in d.advice} == {"halve_lr"}
    assert d.advice[0].rule == "collapse"
    assert d.advice[0].lr == pytest.approx(0.05)


def test_early_trouble_without_warmup_adds_one() -> None:
    loss = curves.clean(n=2000, seed=2)
    loss[60:63] = math.nan
    d = diagnose(series_of(loss, 1e-3))
    assert d.verdict == "unstable"
    assert [a.action for a in d.advice] == ["halve_lr", "add_warmup"]
    warm = d.advice[1]
    assert (warm.rule, warm.warmup_steps, warm.lr) == ("warmup", 120, pytest.approx(5e-4))
    assert warm.schedule == "constant(peak=0.0005, warmup_steps=120)"


def test_trouble_right_after_a_resume_asks_for_a_fresh_warmup() -> None:
    loss = curves.clean(n=2000, seed=3)
    loss[1010:1014] *= 3.0  # the resumed run spikes: Adam restarted from zero moments
    steps = np.arange(2000)
    s = Series(steps=steps, loss=loss, lr=np.full(2000, 2e-4), resumes=(1000,))
    d = diagnose(s)
    fresh = d.advice[0]
    assert (fresh.action, fresh.rule) == ("fresh_warmup", "resume")
    assert fresh.schedule is not None
    assert parse(fresh.schedule).to_string() == fresh.schedule
    assert fresh.schedule.startswith("rewarmup(base=constant(peak=0.0002), at=1000, steps=100")
    assert d.advice[1].action == "halve_lr"


def test_a_log_resumed_many_times_asks_for_a_fresh_warmup_once() -> None:
    """Each resume in reach of the trouble had added the same advice again."""
    loss = curves.clean(n=2000, seed=3)
    loss[1010:1014] *= 3.0
    s = Series(steps=np.arange(2000), loss=loss, lr=np.full(2000, 2e-4), resumes=(960, 980, 1000))
    fresh = [a for a in diagnose(s).advice if a.action == "fresh_warmup"]
    assert len(fresh) == 1
    assert "right after the run resumed at step 1000" in fresh[0].reason


def test_oscillation_asks_for_a_lower_lr() -> None:
    rng = np.random.default_rng(4)
    loss = 1.0 + 0.1 * (-1.0) ** np.arange(600) + 0.01 * rng.standard_normal(600)
    d = diagnose(series_of(loss, 0.5))
    assert d.verdict == "oscillating"
    assert (d.advice[0].action, d.advice[0].rule, d.advice[0].lr) == ("lower_lr", "factors", 0.25)


def test_a_healthy_run_keeps_its_lr_and_a_log_without_lr_still_gets_advice() -> None:
    d = diagnose(series_of(curves.clean(n=1500, seed=5), 3e-4))
    assert (d.verdict, d.findings, d.advice[0].action, d.advice[0].lr) == ("healthy", (), "keep", 3e-4)
    loss = curves.clean(n=1500, seed=6)
    loss[800] = math.inf
    bare = diagnose(Series(steps=np.arange(1500), loss=loss))
    assert bare.advice[0].lr is None
    assert "the log has no learning rate" in bare.advice[0].reason


def test_the_doctor_finds_exactly_what_the_guard_acted_on() -> None:
    loss = curves.clean(n=1500, seed=7)
    loss[500] = math.nan
    loss[900] *= 2.5
    grads = curves.clean_grads(n=1500, seed=8)
    grads[1200] *= 50
    offline = scan(range(1500), loss, grads)
    state, online = guard.init(), []
    for step in range(1500):
        action, state = guard.update(state, loss=float(loss[step]), grad_norm=float(grads[step]), lr=1e-3, step=step)
        online.extend(action.findings)
    assert [(f.kind, f.metric, f.step) for f in offline] == [
        ("non_finite", "loss", 500),
        ("spike", "loss", 900),
        ("spike", "grad_norm", 1200),
    ]
    assert [f.to_dict() for f in online] == [f.to_dict() for f in offline]  # NaN evidence: compare as JSON


def test_a_clipped_run_is_judged_on_the_gradient_its_updates_applied() -> None:
    """Logs record the norm before clipping; with the run's clip the doctor judges what the update
    applied, as the guard does, and finds what the guard acted on: nothing, where the clip bounded
    the growth, and a spike the clip left outsized."""
    loss = curves.clean(n=600, seed=7)
    grads = curves.confident_classifier_grads()
    raw = diagnose(series_of(loss, grads=grads))
    assert raw.verdict == "unstable"
    assert {(f.kind, f.metric) for f in raw.findings} == {("spike", "grad_norm")}
    assert any("--max-grad-norm" in note for note in raw.series["notes"])  # says what to pass
    clipped = diagnose(series_of(loss, grads=grads), max_grad_norm=1.0)
    assert (clipped.verdict, clipped.findings) == ("healthy", ())
    assert not any("--max-grad-norm" in note for note in clipped.series["notes"])
    state, actions = guard.init(), []
    for step in range(600):
        action, state = guard.update(state, loss=float(loss[step]), grad_norm=min(grads[step], 1.0), lr=1e-3, step=step)
        actions.append(action.kind)
    assert set(actions) == {"continue"}
    loose = diagnose(series_of(loss, grads=grads), max_grad_norm=100.0)
    assert loose.verdict == "unstable"
    with pytest.raises(ValueError, match=r"max_grad_norm.*> 0.*-1"):
        diagnose(series_of(loss), max_grad_norm=-1.0)


def test_a_log_mostly_spent_building_the_baseline_says_its_verdict_says_little() -> None:
    """A 46-step LoRA fit fell to 0.3 and climbed back to chance within its first 30 steps, all of
    them before the detectors' 32-loss baseline was complete: "healthy" needs that caveat."""
    rise = np.concatenate([np.linspace(0.69, 0.3, 12), np.linspace(0.3, 0.7, 18), np.full(16, 0.7)])
    short = diagnose(Series(np.arange(46), rise, source="short", format="lrpilot"))
    assert short.verdict == "healthy"
    assert any("the first 32 (70%) were not judged" in note for note in short.series["notes"])
    long = diagnose(Series(np.arange(200), np.full(200, 0.5) + 0.01 * np.sin(np.arange(200)), source="long"))
    assert not any("were not judged" in note for note in long.series["notes"])


def test_a_run_json_that_records_its_classes_is_judged_against_their_chance_level(tmp_path: Path) -> None:
    """fit writes the task's classes into run.json; the doctor reads the chance level from there,
    as the guard had it during the run, and `--num-classes` is no longer needed."""
    from typer.testing import CliRunner

    from lrpilot.cli._app import app
    from lrpilot.doctor import read

    rng = np.random.default_rng(1)
    learned = 2.3 * np.exp(-np.arange(600) / 100) + 0.3
    loss = np.concatenate([learned, np.full(400, math.log(10))]) * (1 + 0.01 * rng.standard_normal(1000))
    doc = {"history": {"steps": list(range(1000)), "loss": loss.tolist(), "lr": [0.1] * 1000}, "classes": 10}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    assert diagnose(read(path)).verdict == "collapsed"
    out = CliRunner().invoke(app, ["doctor", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["verdict"] == "collapsed"
    del doc["classes"]
    path.write_text(json.dumps(doc))
    assert diagnose(read(path)).verdict != "collapsed"  # without a chance level it is not told apart
    out = CliRunner().invoke(app, ["doctor", str(path), "--json", "--num-classes", "10"])
    assert json.loads(out.stdout)["verdict"] == "collapsed"


def test_a_run_json_that_records_its_batch_is_judged_as_its_guard_judged_it(tmp_path: Path) -> None:
    """fit writes its batch into run.json; a batch-8 run's overshoot that came back by itself
    (`curves.LORA_BATCH8_OVERSHOOTS`) is then no collapse, as it was none to its guard. Without
    the batch the 8-loss short median reads one; an explicit batch wins over the recorded one."""
    from lrpilot.doctor import read

    loss = curves.LORA_BATCH8_OVERSHOOTS[0]
    doc = {"history": {"steps": list(range(loss.size)), "loss": loss.tolist(), "lr": [1e-3] * loss.size}}
    path = tmp_path / "run.json"
    kinds = []
    for extra in ({"classes": 2}, {"classes": 2, "batch_size": 8}):
        path.write_text(json.dumps({**doc, **extra}))
        kinds.append({f.kind for f in diagnose(read(path)).findings})
    assert "collapse" in kinds[0]
    assert "collapse" not in kinds[1]
    series = read(path)
    assert fitted_config(series).div_short == 32
    assert fitted_config(series, batch_size=64).div_short == 8
    assert fitted_config(series, classes=10).chance_loss == pytest.approx(math.log(10))


def _noisy(level: np.ndarray, seed: int, rel: float = 0.02) -> np.ndarray:
    return level * (1 + rel * np.random.default_rng(seed).standard_normal(level.size))


@pytest.mark.parametrize("classes", [None, 3])
def test_a_loss_that_blew_up_at_once_and_stayed_up_is_never_called_flat(classes: int | None) -> None:
    """A user's log: 1.1 for five steps, then ~8 at LR 3 for 600 (the flat test once read the rise as
    a fall of −617 % and advised tripling the LR)."""
    loss = _noisy(np.concatenate([np.full(5, 1.1), np.full(595, 8.0)]), seed=2, rel=0.3)
    d = diagnose(series_of(loss, 3.0), fitted_config(series_of(loss, 3.0), classes))
    assert d.verdict == "collapsed"
    collapse = next(f for f in d.findings if f.kind == "collapse")
    assert collapse.evidence["rose"] is True
    assert collapse.message.startswith("loss stands at 8.4")
    assert "it started from" in collapse.message
    assert all(a.action != "raise_lr" for a in d.advice)
    assert d.advice[0].lr is not None
    assert d.advice[0].lr < 3.0


def test_a_blow_up_inside_the_unjudged_start_that_ends_worse_than_chance_is_a_collapse() -> None:
    """A Hugging Face run at LR 3 (3 classes): 1.1, 1.1, then 10–55 within the first losses the
    baseline is built from, ending at ~1.8 after 250 steps — once read as healthy."""
    rng = np.random.default_rng(3)
    blown = np.concatenate([[1.1, 1.1], rng.uniform(10, 55, 8), rng.uniform(4, 12, 120), rng.uniform(1.5, 2.1, 120)])
    d = diagnose(series_of(blown, 3.0), fitted_config(series_of(blown, 3.0), 3))
    assert d.verdict == "collapsed"
    assert "(worse than chance, 1.099: the model predicts confidently wrong)" in d.findings[-1].message
    assert diagnose(series_of(blown[:60], 3.0), fitted_config(series_of(blown[:60], 3.0), 3)).verdict == "collapsed"


def test_a_blow_up_from_the_second_step_that_ends_three_times_its_start_is_a_collapse() -> None:
    """A real Hugging Face Trainer log (a tiny GPT-2 at LR 3, linear decay, 160 steps, a loss logged
    every step, rounded here): 9.6 at step 1, then 286, 566, up to 1,710, back down to 32. The start
    was the median of the first three losses, 286, which the blow-up had lifted from the second step
    on: the run was called healthy. It is measured from the first loss now."""
    loss = np.array([9.636, 286, 566, 488, 418, 507, 864, 867, 1023, 1043, 868, 831, 933, 902, 1113, 1222, 1220,
        1529, 1254, 1418, 1710, 1608, 1209, 1084, 1365, 1233, 1358, 1255, 983, 747, 824, 875, 901, 921, 892,
        1004, 808, 897, 769, 875, 671, 676, 654, 692, 663, 672, 526, 691, 579, 597, 518, 486, 548, 489, 497, 456,
        501, 425, 432, 413, 415, 393, 305, 372, 398, 360, 389, 391, 341, 266, 254, 291, 247, 270, 261, 324, 306,
        326, 322, 318, 261, 342, 314, 304, 317, 262, 307, 320, 302, 313, 328, 315, 352, 321, 311, 339, 323, 333,
        317, 276, 288, 284, 260, 254, 221, 215, 191, 187, 210, 206, 196, 164, 175, 183, 192, 157, 167, 165, 147,
        128, 139, 135, 158, 155, 142, 161, 133, 149, 142, 141, 142, 134, 126, 133, 143, 130, 140, 129, 92, 116,
        125, 94, 88, 95, 96, 90, 78, 67, 65, 67, 59, 58, 43, 43, 43, 39, 36, 32, 33, 32])  # fmt: skip
    lr = np.linspace(3.0, 3.0 / 160, loss.size)
    d = diagnose(series_of(loss, lr, steps=np.arange(1, loss.size + 1)))
    assert d.verdict == "collapsed"
    collapse = next(f for f in d.findings if f.kind == "collapse")
    assert (collapse.evidence["start"], collapse.evidence["rose"]) == (9.636, True)
    assert d.advice[0].lr is not None
    assert d.advice[0].lr < 3.0


@pytest.mark.parametrize(
    ("maker", "spec"),
    [
        ("get_linear_schedule_with_warmup", "linear(peak=5e-05, total_steps=200, warmup_steps=20, floor_ratio=0)"),
        ("get_cosine_schedule_with_warmup", "cosine(peak=5e-05, total_steps=200, warmup_steps=20, floor_ratio=0)"),
    ],
)
def test_a_trainers_lr_column_reads_as_the_schedule_it_ran(maker: str, spec: str) -> None:
    """The LR a Trainer logs at step N is the one update N used, its scheduler's value at N - 1: a
    decay to zero trains its last step at 1/200 of the peak, and a warmup of 20 reaches the peak at
    logged step 21. Read as the schedule's own value at N, a linear decay to zero had a floor of
    0.005 and its warmup 21 steps."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=5e-5)
    scheduler = getattr(transformers, maker)(optimizer, num_warmup_steps=20, num_training_steps=200)
    lrs = []
    for _ in range(200):
        lrs.append(scheduler.get_last_lr()[0])  # the LR this update uses, logged after it
        optimizer.step()
        scheduler.step()
    loss = _noisy(np.linspace(2.0, 0.5, 200), seed=6)
    d = diagnose(series_of(loss, np.array(lrs), steps=np.arange(1, 201)))
    assert d.schedule == spec


def test_a_short_flat_log_is_judged_at_its_end_and_a_shorter_one_says_it_cannot_be() -> None:
    flat = _noisy(np.full(299, math.log(2)), seed=4)
    assert diagnose(series_of(flat, 1e-7)).verdict == "lr_too_low"  # the default window is 300 steps
    short = diagnose(series_of(flat[:100], 1e-7))
    assert short.verdict == "healthy"
    assert any("the log spans 99 steps: too few to tell a flat start" in note for note in short.series["notes"])
    slow = np.concatenate([np.full(40, 1.1), np.linspace(1.1, 1.04, 20)])  # a good LR's slow start (60 steps)
    assert diagnose(series_of(_noisy(slow, seed=5), 5e-4)).verdict == "healthy"


def test_a_loss_rising_past_chance_diverged_and_is_not_stuck() -> None:
    """Falls to 0.6, then rises steadily to 5.6 with 10 classes (chance 2.30): it passes chance on
    its way up, so a collapse is seen there, but the run ended diverged, and nothing says "stuck"."""
    loss = _noisy(np.concatenate([np.linspace(2.3, 0.6, 300), np.linspace(0.6, 5.6, 300)]), seed=6, rel=0.01)
    d = diagnose(series_of(loss, 0.03), fitted_config(series_of(loss, 0.03), 10))
    assert d.verdict == "diverged"
    assert not any("stuck" in f.message for f in d.findings)
    assert d.findings[-1].kind == "divergence" or max(d.findings, key=lambda f: int(f.end or 0)).kind == "divergence"


def test_examine_takes_the_loss_column_read_does(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    rows = "\n".join(f"{i},{2.3 - 0.002 * i},0.001" for i in range(200))
    path.write_text("step,objective,lr\n" + rows + "\n", encoding="utf-8")
    series, d = examine(path, loss_column="objective")
    assert len(series) == 200
    assert d.verdict == "healthy"


def test_the_losses_of_a_rise_that_stays_up_are_its_divergence_not_spikes() -> None:
    """A loss spike to 9 at step 300, then a rise from step 400 that stays up to the end: the spike
    test's baseline keeps no spiking loss, so each loss of the rise was a spike against the ones
    before it, and the doctor said "189 spikes from step 411 to 599" beside the divergence and
    advised on a run that had "diverged and spiked (190 spikes)". Those are the divergence's."""
    rng = np.random.default_rng(0)
    steps = np.arange(600)
    loss = 2.3 * np.exp(-steps / 80) + 0.5 + rng.normal(0, 0.03, 600)
    loss[300] = 9.0
    loss[400:] = np.linspace(0.55, 4.5, 200) + rng.normal(0, 0.03, 200)
    d = diagnose(series_of(loss, 3e-3))
    assert d.verdict == "diverged"
    assert [(f.kind, f.start, f.count) for f in d.findings] == [("spike", 300, 1), ("divergence", 402, 24)]
    assert d.advice[0].reason.startswith("the run diverged and spiked (1 spike) (first at step 300)")


def test_early_trouble_under_a_warmup_past_a_quarter_of_the_run_is_not_told_to_shorten_it() -> None:
    """A Lightning OneCycleLR run at LR 3 (its warmup 112 of 400 steps) that blew up at step 51 was
    told to "lengthen the warmup from 112 to 100 steps": the cap of a quarter of the run was below
    the warmup it had. The advice is to halve the LR alone; a shorter warmup is still lengthened."""
    for warmup, advised in ((112, ["halve_lr"]), (30, ["halve_lr", "lengthen_warmup"])):
        steps = np.arange(400)
        lr = np.where(steps < warmup, 3.0 * (steps + 1) / warmup, 3.0 * (1 - (steps - warmup) / 400))
        loss = curves.clean(n=400, seed=3)
        loss[51:] = 500.0 + 10 * np.sin(steps[51:])
        d = diagnose(series_of(loss, lr))
        assert d.verdict == "diverged"
        assert [a.action for a in d.advice] == advised
        if len(advised) == 2:
            assert d.advice[1].warmup_steps == 2 * d.advice[0].warmup_steps


def test_a_schedule_that_decays_to_zero_is_read_with_floor_ratio_0() -> None:
    steps = np.arange(400)
    lr = 1e-3 * (1 - steps / 399)  # to zero at the last step, as a OneCycleLR or a linear decay ends
    d = diagnose(series_of(curves.clean(n=400, seed=1), lr))
    assert d.schedule == "linear(peak=0.001, total_steps=400, floor_ratio=0)"
    assert d.advice[0].schedule == d.schedule
