"""The guard's state machine on scripted sequences whose right answers are known."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from lrpilot import guard
from lrpilot.detect import DetectConfig
from lrpilot.guard import Action, AuditLog, GuardConfig, GuardState, summarize
from lrpilot.schedules import Cosine
from tests.detect import curves


def run(
    state: GuardState, losses: np.ndarray, lrs: np.ndarray | float = 1e-3, start: int = 0
) -> tuple[list[Action], GuardState]:
    """Feed losses one step at a time, following rollbacks (the step goes back; the losses go on)."""
    actions = []
    step = start
    lr_at = (lambda i: float(lrs[i])) if isinstance(lrs, np.ndarray) else (lambda i: float(lrs))
    for i, loss in enumerate(losses):
        action, state = guard.update(state, loss=float(loss), lr=lr_at(i), step=step)
        actions.append(action)
        if action.kind == "give_up":
            break
        step = action.rollback_to if action.kind == "rollback" else step + 1
    return actions, state


def kinds(actions: list[Action]) -> dict[str, int]:
    return summarize(a.record() for a in actions)


def test_a_healthy_run_only_continues_and_keeps_one_confirmed_snapshot() -> None:
    actions, state = run(guard.init(), curves.clean(n=1000, seed=0))
    assert kinds(actions) == {"continue": 1000}
    assert [a.step for a in actions if a.snapshot] == list(range(49, 1000, 50))
    assert state.snapshot_steps == (950, 1000)  # the confirmed one and a pending one (< 10 steps old)
    assert state.snapshots[-1].confirmed is False
    assert state.target is not None
    assert state.target.step == 950
    assert (state.rollbacks, state.cuts, state.skips, state.scale, state.cap) == (0, 0, 0, 1.0, None)


def test_one_nan_is_skipped_and_nothing_else_happens() -> None:
    loss = curves.clean(n=600, seed=1)
    loss[300] = math.nan
    actions, state = run(guard.init(), loss)
    assert kinds(actions) == {"continue": 599, "skip": 1}
    skip = actions[300]
    assert (skip.kind, skip.applies_update) == ("skip", False)
    assert "loss is nan at step 300" in skip.reason
    assert state.skips == 1
    assert state.level(1e-3) == 1e-3


def test_a_pending_snapshot_is_dropped_when_trouble_comes_before_it_is_confirmed() -> None:
    loss = curves.clean(n=400, seed=2)
    loss[302] = math.nan  # a snapshot resumes at 300; confirmation needs 10 healthy steps
    actions, state = run(guard.init(), loss[:303])
    assert actions[299].snapshot
    assert state.snapshot_steps == (250,)


def test_nans_in_a_row_roll_back_to_the_confirmed_snapshot_and_halve_the_lr() -> None:
    loss = curves.clean(n=800, seed=3)
    loss[420:424] = math.nan
    actions, state = run(guard.init(), loss)
    assert [a.kind for a in actions[420:424]] == ["skip", "skip", "skip", "rollback"]
    rollback = actions[423]
    assert rollback.rollback_to == 400
    assert rollback.lr_before == pytest.approx(1e-3)
    assert rollback.lr_after == pytest.approx(5e-4)
    assert "4 bad steps in a row" in rollback.reason
    assert "rolled back to step 400" in rollback.reason
    assert actions[424].step == 400  # the run goes on from the snapshot
    assert state.cap == pytest.approx(5e-4)
    assert state.rewarm_at == 400
    assert state.effective_lr(1e-3, 400) == pytest.approx(5e-4 / 21)
    assert state.effective_lr(1e-3, 420) == pytest.approx(5e-4)


def test_a_divergence_rolls_back_before_it_began() -> None:
    loss = curves.rising_from(curves.clean(n=1500, seed=4), at=1000, per_step=0.004)
    actions, state = run(guard.init(), loss)
    rollback = next(a for a in actions if a.kind == "rollback")
    assert rollback.findings[0].kind in ("divergence", "spike")
    assert rollback.rollback_to is not None
    assert rollback.rollback_to <= 1000 + 50
    assert state.rollbacks >= 1


def test_a_hundredfold_lr_jump_is_cut_back_to_half_the_lr_before_the_jump() -> None:
    n, k = 505, 500  # stops at the first rollback: after it this script's losses mean nothing
    loss = curves.clean(n=n, seed=5)
    loss[k + 1 :] = loss[k + 1 :] * 50.0  # the first update at the jumped LR wrecks the next losses
    lrs = np.full(n, 1e-3)
    lrs[k:] = 0.1
    actions, state = run(guard.init(), loss, lrs)
    rollback = actions[-1]
    assert [a.kind for a in actions[501:]] == ["skip", "skip", "skip", "rollback"]
    assert rollback.rollback_to == 450
    assert rollback.lr_after == pytest.approx(5e-4)  # half the LR before the jump, not half of 0.1
    assert state.effective_lr(0.1, 480) == pytest.approx(5e-4)
    assert state.effective_lr(0.01, 600) == pytest.approx(5e-4)  # the cap: flat while the jumped LR stays above it
    _, auto = run(guard.init(GuardConfig(cut_mode="auto")), loss, lrs)
    assert auto.scale == pytest.approx(5e-3)  # the LR had jumped: "auto" scales the schedule down too...
    assert auto.effective_lr(0.01, 600) == pytest.approx(5e-5)  # ...so it keeps decaying below the cap


def test_cut_modes_cap_scale_and_both() -> None:
    sched = Cosine(peak=1e-2, total_steps=2000, warmup_steps=1000)
    lrs = sched.values(np.arange(2000))
    loss = curves.clean(n=2000, seed=6)
    loss[600:604] = math.nan
    _, capped = run(guard.init(GuardConfig(rewarmup_steps=0, cut_mode="cap")), loss, lrs)
    _, scaled = run(guard.init(GuardConfig(rewarmup_steps=0, cut_mode="scale")), loss, lrs)
    _, both = run(guard.init(GuardConfig(rewarmup_steps=0, cut_mode="both")), loss, lrs)
    _, auto = run(guard.init(GuardConfig(rewarmup_steps=0)), loss, lrs)
    stable = float(sched(600 - 8))  # the highest LR at least settle_steps before the trouble began
    level, ratio = 0.5 * stable, 0.5 * stable / float(sched(603))
    assert capped.cap == pytest.approx(level)
    assert capped.effective_lr(float(sched(1000)), 1000) == pytest.approx(level)  # held at the peak
    assert capped.effective_lr(float(sched(1999)), 1999) == pytest.approx(float(sched(1999)))  # untouched below L
    assert scaled.cap is None
    assert scaled.effective_lr(float(sched(1000)), 1000) == pytest.approx(float(sched(1000)) * ratio)  # climbs
    assert both.effective_lr(float(sched(1000)), 1000) == pytest.approx(level)  # held at the peak...
    assert both.effective_lr(float(sched(1999)), 1999) == pytest.approx(float(sched(1999)) * ratio)  # ...decays
    assert (auto.scale, auto.cap) == (capped.scale, capped.cap)  # the LR had not jumped: "auto" caps


def test_the_guarded_schedule_is_the_lr_the_guard_runs() -> None:
    sched = Cosine(peak=3e-3, total_steps=1200, warmup_steps=100)
    loss = curves.clean(n=1200, seed=7)
    loss[700:704] = math.inf
    _, state = run(guard.init(), loss, sched.values(np.arange(1200)))
    guarded = state.schedule(sched)
    steps = np.arange(0, 1400)
    expected = [state.effective_lr(float(sched(t)), int(t)) for t in steps]
    assert guarded.values(steps) == pytest.approx(expected, rel=1e-12)
    assert [guarded(int(t)) for t in steps[::97]] == pytest.approx(expected[::97], rel=1e-12)
    from lrpilot.schedules import parse

    assert parse(guarded.to_string()) == guarded
    assert guarded.to_string().startswith("guarded(base=cosine(")


def _bursts(seed: int) -> np.ndarray:
    """A clean run's losses with bursts of four NaN from its 300th on, each after a few more healthy
    losses than the one before: every rollback's replay trains before the next burst, at other steps
    than the last one's, so each burst is a fresh sign of trouble (not one of `_not_the_lr`'s)."""
    loss = curves.clean(n=3000, seed=seed)
    at = 300
    for gap in range(30, 60):
        loss[at : at + 4] = math.nan
        at += 4 + gap
    return loss


def test_give_up_after_max_rollbacks_with_a_report_and_it_sticks() -> None:
    actions, state = run(guard.init(GuardConfig(max_rollbacks=2)), _bursts(8))
    assert kinds(actions) == {"continue": 300 + 30 + 31, "skip": 9, "rollback": 2, "give_up": 1}
    last = actions[-1]
    assert last.kind == "give_up"
    assert last.rollback_to == 250
    assert "2 rollbacks did not help" in last.reason
    assert "look elsewhere" in last.reason
    again, _ = guard.update(state, loss=1.0, lr=1e-3, step=9999)
    assert again.kind == "give_up"


def test_give_up_when_the_lr_would_fall_below_the_floor() -> None:
    actions, _ = run(guard.init(GuardConfig(max_rollbacks=100, min_lr_ratio=0.1)), _bursts(9))
    assert kinds(actions)["rollback"] == 3  # 1/2, 1/4, 1/8 of the LR; 1/16 < 0.1
    assert "below 0.1 × the schedule's peak" in actions[-1].reason


def test_nan_from_the_state_a_rollback_restored_is_skipped_on_never_rolled_back_to_again() -> None:
    """NaN for good from loss 300: one rollback to step 250, whose replay is NaN from its first step,
    computed on the restored weights before any update. Rolling back again restored that same state
    and cut the LR for nothing, eight times over; the guard now skips on for as many steps as its
    skips on, and gives up once the run of NaN is twice the one that called for a rollback, saying the
    LR is not the cause."""
    loss = curves.clean(n=3000, seed=8)
    loss[300:] = math.nan
    actions, state = run(guard.init(GuardConfig(max_rollbacks=2)), loss)
    assert kinds(actions) == {"continue": 300, "skip": 3 + 8, "rollback": 1, "give_up": 1}
    assert state.cuts == 1
    last = actions[-1]
    assert (last.step, last.rollback_to) == (258, 250)
    assert last.reason.startswith("gave up at step 258: steps 250–258 bad in a row, all since the state restored at ")
    assert "The LR is not what is wrong, so look elsewhere: the data of steps 250–258" in last.reason


def test_a_stretch_of_bad_batches_at_the_start_is_skipped_past() -> None:
    """Five NaN losses from the first step (bad batches, a resumed run's next ones): no update was
    applied since the state the guard began from, so a rollback would restore exactly that state and
    cut an LR that entered none of them. They are skipped, and the run goes on at its LR."""
    loss = curves.clean(n=400, seed=3)
    loss[:5] = math.nan
    actions, state = run(guard.init(step=7), loss, start=7)
    assert kinds(actions) == {"continue": 395, "skip": 5}
    assert (state.rollbacks, state.cuts, state.scale, state.cap) == (0, 0, 1.0, None)
    assert "steps 7–10 bad in a row, all since the state restored at step 7, where the guard began" in actions[3].reason


def test_oscillation_cuts_the_lr_without_a_rollback_then_cools_down() -> None:
    rng = np.random.default_rng(10)
    n = 500
    loss = 1.0 + 0.1 * (-1.0) ** np.arange(n) + 0.01 * rng.standard_normal(n)
    actions, state = run(guard.init(GuardConfig(cooldown=200)), loss)
    cuts = [a for a in actions if a.kind == "cut"]
    warns = [a for a in actions if a.kind == "warn"]
    assert [a.step for a in cuts] == [70, 270, 470]
    assert all(a.findings[0].kind == "oscillation" for a in cuts + warns)
    assert warns
    assert state.rollbacks == 0
    assert state.cap == pytest.approx(1e-3 / 8)
    assert cuts[0].applies_update


def test_a_flat_start_warns_by_default_and_raises_when_asked() -> None:
    rng = np.random.default_rng(11)
    loss = 2.3 * (1.0 + 0.01 * rng.standard_normal(1000))
    actions, _ = run(guard.init(), loss)
    assert [(a.kind, a.step) for a in actions if a.kind != "continue"] == [("warn", 300)]
    assert "try ×3–5" in actions[300].reason
    actions, state = run(guard.init(GuardConfig(raise_on_flat=True)), loss)
    acted = [(a.kind, a.step) for a in actions if a.kind != "continue"]
    assert acted == [("raise", 300), ("raise", 601), ("warn", 902)]  # max_raises=2
    assert state.scale == pytest.approx(9.0)
    assert state.effective_lr(1e-3, 700) == pytest.approx(9e-3)


def test_a_collapse_is_rolled_back_never_raised() -> None:
    rng = np.random.default_rng(12)
    loss = math.log(10) * (1.0 + 0.002 * rng.standard_normal(400))
    loss[1] = 80.0
    config = GuardConfig(raise_on_flat=True, detect=DetectConfig.for_classes(10))
    actions, state = run(guard.init(config), loss)
    acted = [a for a in actions if a.kind != "continue"]
    assert acted[0].kind == "rollback"
    assert acted[0].findings[0].kind == "collapse"
    assert state.raises == 0


def test_a_snapshot_taken_after_a_fall_back_to_chance_is_never_the_rollback_target() -> None:
    """A binary classifier learns a little (0.69 → 0.57 over 24 steps), is thrown back to chance
    and sits there, noisily enough (3 %) that the snapshot taken there passes `confirm_steps` before
    the collapse test fires (the shape of a LoRA run on a cliff, `benchmarks/fit_user_path.py` seed
    5). The rollback goes to the snapshot from before the fall, not to one of the collapse (before
    the fix: to step 45, twice, and the run ended at chance)."""
    rng = np.random.default_rng(9)
    chance = math.log(2)
    curve = np.concatenate([np.linspace(chance, 0.57, 24), np.full(76, chance)])
    loss = curve * (1.0 + 0.03 * rng.standard_normal(100))
    config = GuardConfig.for_run(100, detect=DetectConfig.for_classes(2))  # fit's guard for a 100-step run
    actions, _ = run(guard.init(config), loss)
    rollbacks = [a for a in actions if a.kind == "rollback"]
    assert rollbacks
    assert all(a.findings[0].kind == "collapse" for a in rollbacks)
    assert all(a.rollback_to is not None and a.rollback_to < 24 for a in rollbacks)


def test_without_rewind_the_step_keeps_counting_and_the_rewarmup_starts_next_step() -> None:
    loss = curves.clean(n=500, seed=13)
    loss[300:304] = math.nan
    state = guard.init(GuardConfig(rewind=False))
    for step in range(304):
        action, state = guard.update(state, loss=float(loss[step]), lr=1e-3, step=step)
    assert action.kind == "rollback"
    assert action.rollback_to == 250
    assert state.step == 303
    assert state.rewarm_at == 304


def test_state_dict_resumes_bit_for_bit() -> None:
    loss = curves.clean(n=1500, seed=14)
    loss[500:505] = math.nan
    loss[900] *= 4.0
    config = GuardConfig(detect=DetectConfig.for_classes(10), snapshot_every=40)
    first, state = run(guard.init(config), loss[:700])
    blob = json.dumps(state.state_dict())
    resumed = GuardState.from_state_dict(json.loads(blob))
    assert resumed.state_dict() == state.state_dict()
    start = state.step + 1
    a, state = run(state, loss[700:], start=start)
    b, resumed = run(resumed, loss[700:], start=start)
    assert [x.record() for x in a] == [x.record() for x in b]
    assert state.state_dict() == resumed.state_dict()
    assert kinds(first + a)["rollback"] == 1
    assert kinds(a)["skip"] == 1


def test_update_is_pure() -> None:
    state = guard.init()
    for step in range(60):
        _, state = guard.update(state, loss=1.0 + 0.01 * math.sin(step), lr=1e-3, step=step)
    before = state.state_dict()
    for loss in (math.nan, 50.0, 1.0):
        guard.update(state, loss=loss, lr=1e-3, step=60)
    assert state.state_dict() == before


def test_audit_records_are_json_lines(tmp_path: pytest.TempPathFactory) -> None:
    loss = curves.clean(n=700, seed=15)
    loss[400:404] = math.nan
    path = tmp_path / "audit" / "guard.jsonl"  # type: ignore[operator]
    log = AuditLog(path)
    actions, _ = run(guard.init(), loss)
    for a in actions:
        log.add(a, rank=0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == log.records
    assert [r["action"] for r in lines] == ["skip", "skip", "skip", "rollback"]
    rollback = lines[-1]
    assert set(rollback) >= {"step", "detector", "evidence", "action", "lr_before", "lr_after", "rollback_to", "rank"}
    assert rollback["detector"] == "non_finite"
    assert rollback["evidence"] == {"value": "nan"}


def test_closed_loop_on_a_noisy_quadratic_recovers_from_a_too_high_lr() -> None:
    """A whole guarded 'training run' in numpy: SGD on ½·h·θ², the LR jumps past 2/h at step 300.

    Unguarded, θ blows up; guarded, the guard rolls θ back and cuts the LR until it is stable.
    """
    rng = np.random.default_rng(16)
    h, steps = 4.0, 1000
    lr_of = lambda t: 0.05 if t < 300 else 0.6  # noqa: E731  (2/h = 0.5: 0.6 diverges)
    theta, state, snaps = 3.0, guard.init(), {0: 3.0}
    t = 0
    batches = 0
    while t < steps and batches < 3 * steps:
        batches += 1
        noise = 0.05 * rng.standard_normal()
        loss = 0.5 * h * theta**2 + 0.01 + abs(noise)
        action, state = guard.update(state, loss=loss, grad_norm=abs(h * theta), lr=lr_of(t), step=t)
        if action.kind in ("rollback", "give_up"):
            theta = snaps[action.rollback_to]  # type: ignore[index]
            t = action.rollback_to  # type: ignore[assignment]
            assert action.kind == "rollback"
            continue
        if action.applies_update:
            theta -= state.effective_lr(lr_of(t), t) * (h * theta + noise)
        if action.snapshot:
            snaps[t + 1] = theta
        t += 1
    assert t == steps
    assert abs(theta) < 0.02  # the noise floor of SGD at the cut LR
    assert state.rollbacks >= 1
    assert state.level(0.6) < 0.5  # below 2/h: stable


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"cut_factor": 1.0}, ("cut_factor", "(0.0, 1.0)", "1.0")),
        ({"cut_mode": "halve"}, ("cut_mode", "['auto', 'both', 'cap', 'scale']", "'halve'")),
        ({"snapshot_every": 0}, ("snapshot_every", "[1, ∞]", "0")),
        ({"raise_factor": 1.0}, ("raise_factor", "(1.0, 100.0]", "1.0")),
        ({"raise_on_flat": 1}, ("raise_on_flat", "True or False", "1")),
        ({"detect": {"spike_z": 3}}, ("detect must be a DetectConfig",)),
        ({"min_lr_ratio": 1.0}, ("min_lr_ratio", "[0.0, 1.0)", "1.0")),
    ],
)
def test_bad_config_names_the_parameter_the_range_and_the_value(
    kwargs: dict[str, object], fragments: tuple[str]
) -> None:
    with pytest.raises(ValueError, match="GuardConfig") as info:
        GuardConfig(**kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_config_round_trips_through_a_dict_and_rejects_typos() -> None:
    config = GuardConfig(detect=DetectConfig(spike_z=8.0), max_skips=1)
    assert GuardConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="did you mean 'max_skips'"):
        GuardConfig.from_dict({"max_skip": 1})


def test_a_bad_lr_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match=r"lr must be a finite number ≥ 0, got nan"):
        guard.update(guard.init(), loss=1.0, lr=math.nan, step=0)
    assert replace(guard.init(), step=4).step == 4
