"""Each detector on hand-written curves whose answer is known in advance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lrpilot.detect import DetectConfig, DetectState, Finding, init, merge, observe, robust_baseline, scan
from tests.detect import curves


def kinds(findings: list[Finding]) -> list[tuple[str, str, int]]:
    return [(f.kind, f.metric, f.step) for f in findings]


@pytest.mark.parametrize("seed", range(5))
def test_clean_runs_raise_nothing(seed: int) -> None:
    loss = curves.clean(seed=seed)
    grads = curves.clean_grads(seed=seed + 100)
    assert scan(range(loss.size), loss, grads) == []


def test_a_clean_run_with_a_falling_then_flat_tail_raises_nothing() -> None:
    loss = curves.clean(n=3000, seed=9, noise=0.005, start=2.0, end=0.05)
    assert scan(range(loss.size), loss) == []


def test_a_single_spike_is_found_at_its_step_with_its_evidence() -> None:
    loss = curves.with_spike(curves.clean(seed=1), at=700, factor=2.0)
    found = scan(range(loss.size), loss)
    assert kinds(found) == [("spike", "loss", 700)]
    e = found[0].evidence
    assert e["value"] == pytest.approx(loss[700])
    assert e["z"] > e["threshold"] == 6.0
    assert e["window"] == 128
    assert "robust sigmas above the median" in found[0].message


def test_no_spike_is_judged_during_the_warm_up() -> None:
    loss = curves.with_spike(curves.clean(seed=2), at=20, factor=5.0)
    assert [f for f in scan(range(loss.size), loss) if f.kind == "spike"] == []


def test_a_drop_is_never_a_spike() -> None:
    loss = curves.clean(seed=3)
    loss[800] *= 0.1
    assert scan(range(loss.size), loss) == []


def test_nan_and_inf_are_reported_and_kept_out_of_the_window() -> None:
    loss = curves.clean(seed=4)
    for i in range(300, 400, 10):
        loss[i] = math.nan
    loss[500] = math.inf
    loss[600] *= 2.0
    state = init()
    found: list[Finding] = []
    for i, v in enumerate(loss[:599]):
        f, state = observe(state, step=i, loss=v)
        found.extend(f)
    assert np.isfinite(state.losses).all()
    assert state.count == 599
    assert state.finite == 599 - 11
    f, state = observe(state, step=599, loss=loss[599])
    f, state = observe(state, step=600, loss=loss[600])
    assert kinds(found) == [("non_finite", "loss", i) for i in [*range(300, 400, 10), 500]]
    assert kinds(list(f)) == [("spike", "loss", 600)]
    assert found[-1].message == "loss is inf at step 500"


def test_a_non_finite_grad_norm_is_its_own_finding() -> None:
    found, _ = observe(init(), step=3, loss=1.0, grad_norm=math.nan)
    assert kinds(list(found)) == [("non_finite", "grad_norm", 3)]


def test_grad_norm_spikes_are_judged_in_log_space() -> None:
    loss = curves.clean(seed=5)
    grads = curves.clean_grads(seed=6)
    grads[900] *= 100.0
    assert kinds(scan(range(loss.size), loss, grads)) == [("spike", "grad_norm", 900)]


def test_spikes_work_whatever_the_sign_of_the_loss() -> None:
    loss = curves.clean(seed=7) - 10.0  # a negative log-likelihood that goes below 0
    loss[1000] += 4.0
    assert kinds(scan(range(loss.size), loss)) == [("spike", "loss", 1000)]


def test_a_slow_sustained_rise_is_a_divergence_found_soon_after_it_starts() -> None:
    loss = curves.rising_from(curves.clean(seed=8), at=1000, per_step=0.002)
    found = scan(range(loss.size), loss)
    first = found[0]
    assert first.kind == "divergence"
    assert 1000 <= first.start <= first.step < 1150
    assert first.evidence["short_median"] > first.evidence["best"]
    assert "stayed up" in first.message


def test_a_jump_made_of_spikes_is_also_a_divergence() -> None:
    loss = curves.clean(seed=10)
    loss[1200:] *= 3.0
    found = scan(range(loss.size), loss)
    assert found[0].kind == "spike"
    assert found[0].step == 1200
    divergence = [f for f in found if f.kind == "divergence"]
    assert divergence
    assert divergence[0].step < 1200 + 20


def test_a_flat_start_is_a_too_low_learning_rate() -> None:
    rng = np.random.default_rng(11)
    loss = 2.3 * (1.0 + 0.01 * rng.standard_normal(400)) - np.arange(400) * 1e-5
    found = scan(range(400), loss, config=DetectConfig.for_classes(10))
    assert kinds(found) == [("flat_start", "loss", 300)]
    assert found[0].evidence["at_chance"] is True
    assert found[0].evidence["drop"] < 0.02


def test_flat_at_chance_after_a_blow_up_is_a_collapse_not_a_low_learning_rate() -> None:
    rng = np.random.default_rng(12)
    loss = math.log(10) * (1.0 + 0.002 * rng.standard_normal(400))
    loss[1] = 80.0
    found = scan(range(400), loss, config=DetectConfig.for_classes(10))
    assert [f.kind for f in found] == ["collapse"]
    assert found[0].evidence["blew_up"] is True
    assert "after a blow-up" in found[0].message


def test_flat_with_gradients_that_died_is_a_collapse() -> None:
    loss = np.full(400, 2.302585)
    grads = np.concatenate([np.full(10, 1.0), np.full(390, 1e-9)])
    found = scan(range(400), loss, grads)
    assert [f.kind for f in found] == ["collapse"]
    assert found[0].evidence["grads_died"] is True


def test_a_loss_that_learned_then_collapsed_to_chance_is_a_collapse() -> None:
    rng = np.random.default_rng(13)
    learned = 2.3 * np.exp(-np.arange(600) / 100) + 0.3
    chance = math.log(10) * np.ones(400)
    loss = np.concatenate([learned, chance]) * (1.0 + 0.01 * rng.standard_normal(1000))
    with_chance = scan(range(1000), loss, config=DetectConfig.for_classes(10))
    assert with_chance[0].kind == "spike"
    collapse = [f for f in with_chance if f.kind == "collapse"]
    assert collapse
    assert 600 <= collapse[0].step < 620
    assert "chance level" in collapse[0].message
    without = scan(range(1000), loss)
    assert "collapse" not in {f.kind for f in without}
    assert "divergence" in {f.kind for f in without}


def test_a_noisy_drift_back_to_chance_after_learning_is_a_collapse() -> None:
    """The real LoRA run of `curves.LORA_RELAPSE`: its rise is too noisy for the divergence test,
    but with the chance level known, a short median back at ln 2 after 0.53 is a collapse."""
    loss = curves.LORA_RELAPSE
    config = DetectConfig.for_classes(2, min_history=16)
    found = scan(range(4, 4 + loss.size), loss, config=config)
    assert [f.kind for f in found] == ["collapse", "collapse"]  # once per `div_patience` in a row
    first = found[0]
    assert first.evidence["relapsed"] is True
    assert first.evidence["rise"] < config.div_z  # the divergence test alone would not have fired
    assert 35 <= first.step <= 40
    assert first.evidence["best"] <= 0.8 * math.log(2)
    assert "loss rose from 0.5285 (step 20) back to 0.7329 (chance level 0.6931" in first.message
    assert scan(range(loss.size), loss, config=DetectConfig(min_history=16)) == []  # no chance level: no verdict


@pytest.mark.parametrize(("batch", "short"), [(1, 32), (8, 32), (12, 21), (16, 16), (32, 8), (64, 8), (4096, 8)])
def test_the_short_median_spans_as_many_examples_as_at_the_calibration_batch(batch: int, short: int) -> None:
    scaled = DetectConfig.for_classes(2, div_short=8).scaled_to_batch(batch)
    assert scaled.div_short == short
    assert scaled == DetectConfig.for_classes(2, div_short=short)  # nothing else moves


def test_the_short_median_stays_inside_the_window_and_a_bad_batch_is_named() -> None:
    small_window = DetectConfig(window=16, min_history=16, osc_window=16)
    assert small_window.scaled_to_batch(8).div_short == 16  # never past the baseline window
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, ∞\], got 0"):
        DetectConfig().scaled_to_batch(0)


@pytest.mark.parametrize("index", [0, 1])
def test_a_batch_8_overshoot_that_came_back_is_no_collapse_on_a_median_of_32_losses(index: int) -> None:
    """`curves.LORA_BATCH8_OVERSHOOTS`: on 8 losses the short median fell to 0.33–0.35 on a lucky
    stretch and read the overshoot after it as a collapse to chance; on as many texts as 8 losses
    of a batch of 32 hold, it does not."""
    loss = curves.LORA_BATCH8_OVERSHOOTS[index]
    config = DetectConfig.for_classes(2, min_history=16)
    unscaled = scan(range(loss.size), loss, config=config)
    assert [f.kind for f in unscaled if f.kind != "spike"] == ["collapse"]
    assert unscaled[-1].step == loss.size - 1  # where fit's guard rolled back
    assert unscaled[-1].evidence["best"] < 0.36
    assert [f.kind for f in scan(range(loss.size), loss, config=config.scaled_to_batch(8))] in ([], ["spike"] * 2)


def test_a_batch_8_run_that_slid_back_to_chance_is_still_a_collapse() -> None:
    """`curves.LORA_BATCH8_COLLAPSE`, at 4.64e-3 without a guard: found on a median of 32 losses
    too, 17 steps after a median of 8 found it."""
    loss = curves.LORA_BATCH8_COLLAPSE
    config = DetectConfig.for_classes(2, min_history=32)
    unscaled = [f for f in scan(range(loss.size), loss, config=config) if f.kind == "collapse"]
    scaled = [f for f in scan(range(loss.size), loss, config=config.scaled_to_batch(8)) if f.kind == "collapse"]
    assert unscaled[0].step == 155
    assert scaled[0].step == 172
    assert scaled[0].evidence["relapsed"] is True


def test_a_loss_that_never_learned_is_not_a_relapse() -> None:
    """Noise around chance that dips 10 % below it now and then has learned nothing."""
    rng = np.random.default_rng(14)
    loss = math.log(2) * (1.0 + 0.06 * rng.standard_normal(300))
    loss[100:110] *= 0.9
    config = DetectConfig.for_classes(2, min_history=16, flat_steps=10_000)
    assert scan(range(300), loss, config=config) == []


def test_oscillation_is_a_bounce_on_alternate_steps() -> None:
    rng = np.random.default_rng(14)
    n = 600
    loss = 1.0 + 0.1 * (-1.0) ** np.arange(n) + 0.01 * rng.standard_normal(n)
    found = scan(range(n), loss)
    assert found
    assert {f.kind for f in found} == {"oscillation"}  # flat too, but because it bounces: not "LR too low"
    assert found[0].evidence["autocorr"] < -0.5
    assert found[0].step == 64 - 1 + 7  # a full window at step 63, then patience


def test_iid_noise_is_not_an_oscillation() -> None:
    rng = np.random.default_rng(15)
    loss = 1.0 + 0.1 * rng.standard_normal(5000)
    assert [f for f in scan(range(5000), loss) if f.kind == "oscillation"] == []


def test_merge_turns_a_nan_tail_into_one_event() -> None:
    loss = curves.clean(seed=16, n=600)
    loss[400:] = math.nan
    events = merge(scan(range(600), loss))
    assert len(events) == 1
    assert (events[0].kind, events[0].start, events[0].end, events[0].count) == ("non_finite", 400, 599, 200)
    assert json.loads(json.dumps(events[0].to_dict()))["evidence"] == {"value": "nan"}


def test_state_dict_resumes_bit_for_bit() -> None:
    loss = curves.rising_from(curves.clean(seed=17), at=1500, per_step=0.004)
    grads = curves.clean_grads(seed=18)
    state = init(DetectConfig.for_classes(10))
    first: list[Finding] = []
    for i in range(800):
        f, state = observe(state, step=i, loss=loss[i], grad_norm=grads[i])
        first.extend(f)
    resumed = DetectState.from_state_dict(json.loads(json.dumps(state.state_dict())))
    assert resumed.state_dict() == state.state_dict()
    a, b = [], []
    for i in range(800, loss.size):
        fa, state = observe(state, step=i, loss=loss[i], grad_norm=grads[i])
        fb, resumed = observe(resumed, step=i, loss=loss[i], grad_norm=grads[i])
        a.extend(fa)
        b.extend(fb)
    assert a == b
    assert a
    assert state.state_dict() == resumed.state_dict()


def test_observe_does_not_touch_its_input() -> None:
    state = init()
    for i in range(50):
        _, state = observe(state, step=i, loss=1.0 + 0.01 * i)
    before = state.state_dict()
    observe(state, step=50, loss=99.0)
    assert state.state_dict() == before
    with pytest.raises(ValueError, match="read-only"):
        state.losses[0] = 0.0


def test_robust_baseline_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(19)
    x = rng.standard_normal(128) * 0.2 + 3.0
    med, sigma = robust_baseline(x, 0.0, 1e-12)
    assert med == float(np.median(x))
    assert sigma == pytest.approx(1.4826 * float(np.median(np.abs(x - np.median(x)))))
    assert robust_baseline(np.full(10, 5.0), 0.01, 1e-6) == (5.0, 0.05)


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"window": 4}, ("window", "[8, 100000]", "4")),
        ({"min_history": 200}, ("min_history", "[4, 128]", "200")),
        ({"spike_z": 0.5}, ("spike_z", "[1.0, 1000000.0]", "0.5")),
        ({"spike_z": math.nan}, ("spike_z", "nan")),
        ({"flat_rel": 0.0}, ("flat_rel", "(0.0, 1.0)", "0.0")),
        ({"chance_loss": -1.0}, ("chance_loss", "> 0", "-1.0")),
        ({"osc_corr": 0.3}, ("osc_corr", "(-1.0, 0.0)", "0.3")),
        ({"div_patience": 0}, ("div_patience", "[1, ∞]", "0")),
        ({"learned_rel": 0.01}, ("learned_rel", "(0.05, 1.0)", "0.01")),
    ],
)
def test_bad_config_names_the_parameter_the_range_and_the_value(
    kwargs: dict[str, float], fragments: tuple[str]
) -> None:
    with pytest.raises(ValueError, match="DetectConfig") as info:
        DetectConfig(**kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_config_keys_get_a_did_you_mean() -> None:
    with pytest.raises(ValueError, match="did you mean 'spike_z'"):
        DetectConfig.from_dict({"spike_zz": 3.0})


def test_num_classes_sets_the_chance_level() -> None:
    assert DetectConfig.for_classes(10).chance_loss == pytest.approx(math.log(10))
    with pytest.raises(ValueError, match="num_classes"):
        DetectConfig.for_classes(1)


def test_for_classes_without_a_count_has_no_chance_level() -> None:
    assert DetectConfig.for_classes(None, min_history=16) == DetectConfig(min_history=16)
    assert DetectConfig.for_classes(10).chance_loss == pytest.approx(math.log(10))
    with pytest.raises(ValueError, match="num_classes"):
        DetectConfig.for_classes(1)


def test_a_collapse_onto_the_majority_class_is_seen_against_the_labels_entropy() -> None:
    """`curves.LORA_UNBALANCED_COLLAPSE`: 90 % / 10 % labels, a model that learned (short median
    down to ~0.2) and collapsed onto "negative" (back at 0.33–0.4, the labels' entropy 0.325). Against
    ln 2 that reads as a model that learned; against the entropy it is a collapse, as fit's guard
    (100 steps, batch 16) judges it. The same fine-tune at a good LR is left alone either way."""
    entropy = DetectConfig.for_label_counts([1440, 160], min_history=16).scaled_to_batch(16)
    found = scan(range(100), curves.LORA_UNBALANCED_COLLAPSE, config=entropy)
    assert [f.kind for f in found] == ["collapse"] * 3
    assert found[0].step == 80
    assert found[0].evidence["best"] <= 0.8 * entropy.chance_loss  # it had learned beyond the prior
    balanced = DetectConfig.for_classes(2, min_history=16).scaled_to_batch(16)
    assert scan(range(100), curves.LORA_UNBALANCED_COLLAPSE, config=balanced) == []
    assert scan(range(100), curves.LORA_UNBALANCED_LEARNED, config=entropy) == []


def test_the_labels_entropy_is_ln_classes_when_balanced_and_bad_counts_are_named() -> None:
    assert DetectConfig.for_label_counts([5, 5, 5]).chance_loss == pytest.approx(math.log(3))
    assert DetectConfig.for_label_counts([900, 100, 0]).chance_loss == pytest.approx(0.3251, abs=1e-4)
    assert DetectConfig.for_label_counts([3, 1], div_short=16).div_short == 16
    with pytest.raises(ValueError, match=r"counts must hold at least two classes with examples, got \[7, 0\]"):
        DetectConfig.for_label_counts([7, 0])
    with pytest.raises(ValueError, match=r"counts\[1\] must be an integer in \[0, ∞\], got -1"):
        DetectConfig.for_label_counts([3, -1])
