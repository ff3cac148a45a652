"""The detectors as one pure streaming fold: `observe(state, *, step, loss, grad_norm) -> (findings, state)`.

The guard calls it once per optimizer step; the doctor folds it over a log. Both therefore see the
same thing at the same point of the same curve: a finding in a log is exactly what the guard would
have acted on, had it been running (given the gradient norm the guard judges: the clipped one where
the run clips, `lrpilot.doctor.diagnose`'s `max_grad_norm`).

What enters the baseline window: finite values that were not spikes. Non-finite values never enter
(one NaN in a mean/σ window blinds it for a whole window; OLMo-core had to fix exactly that), and
spikes stay out so a run of bad steps is judged against the healthy past rather than against itself.
A separate short buffer of every finite loss, spikes included, feeds the divergence test, so a rise
that is made of spikes still shows as a rise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrpilot.detect._config import DetectConfig
from lrpilot.detect._findings import Finding
from lrpilot.detect._rules import Array, detrended_lag1, evolve, median, robust_baseline, step_noise

__all__ = [
    "DetectState",
    "back_at_chance",
    "init",
    "loss_baseline",
    "observe",
    "rearm_flat",
    "scan",
    "spike_thresholds",
]

WORSE_THAN_CHANCE = 1.5
"""A short median this many times the chance level is worse than predicting the label prior: a
rise there is a divergence (the model predicts confidently wrong), not a collapse back to chance
(a collapse's noisy median sits within ~25 % of it: 0.33–0.4 over an entropy of 0.325)."""
_TINY = 1e-30  # grad norms of exactly 0 (dead networks, zeroed updates) go into log space as this


def _array(values: Any = ()) -> Array:
    out = np.array(values, dtype=np.float64)
    out.flags.writeable = False
    return out


def _push(window: Array, value: float, cap: int) -> Array:
    kept = window[max(0, window.size + 1 - cap) :]
    out = np.empty(kept.size + 1)  # filled in place: cheaper than concatenating with a new 1-array
    out[:-1] = kept
    out[-1] = value
    out.flags.writeable = False
    return out


def _logs(window: Array) -> Array | None:
    """log(`window`) when all its values are positive (a loss window is then judged in log space,
    see `loss_baseline`), else None; one per observation, shared by the spike and divergence tests."""
    return np.log(window) if window.size and float(window.min()) > 0.0 else None


@dataclass(frozen=True)
class DetectState:
    """Everything the detectors remember; immutable, and a `state_dict` away from JSON.

    Attributes:
        losses / log_grads: the baseline windows (healthy values; grad norms in log space).
        recent: the last `div_short` finite losses, spikes included.
        first / first_grads: the first `div_short` finite values, from which `initial` and
            `initial_grad` (their medians) are taken; the start of the run is judged against them.
        best, best_step: the lowest short median so far and where it was.
        highest: the highest finite loss so far (a blow-up before the warm-up ends leaves no
            spike finding, but it leaves this).
        rise_run, rise_start: the current run of short medians above `best` by more than `div_z`.
        troubled: a non-finite value, a spike or a divergence has been seen (a flat stretch after
            one is a collapse, not a too-low LR).
        flat_judged: the start of the run has been judged (once, `flat_steps` after `flat_from`;
            the guard re-arms the test from a later step after raising the LR; `flat_base` is
            the count of finite observations then).
        osc_run, osc_start: the current run of oscillating windows.
    """

    config: DetectConfig = field(default_factory=DetectConfig)
    count: int = 0
    finite: int = 0
    losses: Array = field(default_factory=_array)
    log_grads: Array = field(default_factory=_array)
    recent: Array = field(default_factory=_array)
    first: Array = field(default_factory=_array)
    first_grads: Array = field(default_factory=_array)
    best: float = math.inf
    best_step: int = -1
    highest: float = -math.inf
    rise_run: int = 0
    rise_start: int = -1
    troubled: bool = False
    flat_judged: bool = False
    flat_from: int = 0
    flat_base: int = 0
    osc_run: int = 0
    osc_start: int = -1

    @property
    def initial(self) -> float | None:
        """Median of the first `div_short` finite losses (None until there are that many)."""
        if self.first.size < self.config.div_short:
            return None
        return float(median(self.first))

    @property
    def initial_grad(self) -> float | None:
        if self.first_grads.size < self.config.div_short:
            return None
        return float(median(self.first_grads))

    _ARRAYS = ("losses", "log_grads", "recent", "first", "first_grads")

    def state_dict(self) -> dict[str, Any]:
        """A JSON-ready dict from which `from_state_dict` rebuilds this state bit for bit."""
        out: dict[str, Any] = {"config": self.config.to_dict()}
        for name in self.__dataclass_fields__:
            if name == "config":
                continue
            value = getattr(self, name)
            out[name] = value.tolist() if name in self._ARRAYS else value
        out["best"] = None if math.isinf(self.best) else self.best
        out["highest"] = None if math.isinf(self.highest) else self.highest
        return out

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> DetectState:
        values = dict(data)
        config = DetectConfig.from_dict(dict(values.pop("config")))
        for name in cls._ARRAYS:
            values[name] = _array(values.get(name, ()))
        values["best"] = math.inf if values.get("best") is None else float(values["best"])
        values["highest"] = -math.inf if values.get("highest") is None else float(values["highest"])
        return cls(config=config, **values)


def init(config: DetectConfig | None = None) -> DetectState:
    """The state before the first observation."""
    return DetectState(config=config or DetectConfig())


def spike_thresholds(state: DetectState) -> tuple[float, float]:
    """(loss, grad norm) above which the next value would be a spike; +inf while still warming up.

    A device-side guard compares each step's values with these on the accelerator (no host sync)
    and refreshes them whenever it reads the verdicts back.
    """
    c = state.config
    loss_thr = grad_thr = math.inf
    if state.losses.size >= c.min_history:
        med, sigma, log_space = loss_baseline(state)
        loss_thr = math.exp(min(med + c.spike_z * sigma, 700.0)) if log_space else med + c.spike_z * sigma
    if state.log_grads.size >= c.min_history:
        gmed, gsigma = robust_baseline(state.log_grads, 0.0, c.grad_floor)
        grad_thr = math.exp(min(gmed + c.grad_spike_z * gsigma, 700.0))
    return loss_thr, grad_thr


def rearm_flat(state: DetectState, step: int) -> DetectState:
    """Judge the start of the run again, `flat_steps` from `step`, against a fresh initial level
    (after the guard raised the LR on a flat start)."""
    return evolve(
        state, first=_array(), first_grads=_array(), flat_judged=False, flat_from=step, flat_base=state.finite
    )


def observe(
    state: DetectState, *, step: int, loss: float, grad_norm: float | None = None
) -> tuple[tuple[Finding, ...], DetectState]:
    """Feed one observation (the loss of optimizer step `step`, and its gradient norm if known).

    Returns the findings this observation triggers (usually none) and the next state. Pure: the
    input state is not modified.
    """
    c = state.config
    loss = float(loss)
    gn = None if grad_norm is None else float(grad_norm)
    bad = [("loss", loss)] if not math.isfinite(loss) else []
    if gn is not None and not math.isfinite(gn):
        bad.append(("grad_norm", gn))
    if bad:
        found = tuple(Finding("non_finite", step, metric, {"value": value}) for metric, value in bad)
        return found, evolve(state, count=state.count + 1, troubled=True)

    new: dict[str, Any] = {"count": state.count + 1, "finite": state.finite + 1, "highest": max(state.highest, loss)}
    judged = state.losses.size >= c.min_history
    logs = _logs(state.losses) if judged else None
    log_gn = None if gn is None else math.log(max(gn, _TINY))
    # sigma: the loss baseline's, for the flat test
    found_list, sigma = _spikes(state, step, loss, gn, log_gn, logs=logs)
    spiked = bool(found_list)
    if not spiked:
        new["losses"] = losses = _push(state.losses, loss, c.window)
        if log_gn is not None:
            new["log_grads"] = _push(state.log_grads, log_gn, c.window)
    else:
        losses = state.losses
    if state.first.size < c.div_short:
        new["first"] = _push(state.first, loss, c.div_short)
    if log_gn is not None and state.first_grads.size < c.div_short:
        new["first_grads"] = _push(state.first_grads, log_gn, c.div_short)
    new["recent"] = recent = _push(state.recent, loss, c.div_short)
    troubled = state.troubled or spiked

    if judged and recent.size >= c.div_short:
        found_rise, rise_state = _rise(state, step, float(median(recent)), logs)
        new.update(rise_state)
        found_list.extend(found_rise)
        troubled = troubled or bool(found_rise)

    merged = evolve(state, **new, troubled=troubled)
    enough = merged.finite - state.flat_base >= 2 * c.div_short
    if not state.flat_judged and step >= state.flat_from + c.flat_steps and enough:
        flat = _flat_start(merged, step, sigma if judged else None)
        merged = evolve(merged, flat_judged=True)
        if flat is not None:
            found_list.append(flat)
    if judged and losses.size >= c.osc_window:
        found_osc, osc_state = _oscillation(merged, step, losses[-c.osc_window :])
        merged = evolve(merged, **osc_state)
        found_list.extend(found_osc)
    return tuple(found_list), merged


def loss_baseline(state: DetectState) -> tuple[float, float, bool]:
    """(median, robust sigma, in_log_space) of the loss baseline window.

    Positive losses (cross-entropy and the like) are judged in log space: a classifier's batch
    losses are right-skewed (one misclassified example in a batch of 32 can triple a converged
    batch loss), and on log(loss) that tail is tame while a real spike stays far out; the floor
    `rel_floor` is then a relative one in log units. A window holding a loss ≤ 0 is judged on raw
    values, whatever the sign.
    """
    return _baseline(state, _logs(state.losses))


def _baseline(state: DetectState, logs: Array | None) -> tuple[float, float, bool]:
    """`loss_baseline`, given the window's logs (`_logs`)."""
    c = state.config
    if logs is not None:
        med, sigma = robust_baseline(logs, 0.0, max(c.rel_floor, 1e-12))
        return med, sigma, True
    med, sigma = robust_baseline(state.losses, c.rel_floor, c.abs_floor)
    return med, sigma, False


def _loss_z(loss: float, med: float, sigma: float, log_space: bool) -> float:
    if not log_space:
        return (loss - med) / sigma
    return (math.log(loss) - med) / sigma if loss > 0 else -math.inf


def _spikes(
    state: DetectState, step: int, loss: float, gn: float | None, log_gn: float | None, *, logs: Array | None
) -> tuple[list[Finding], float]:
    """The spike tests (loss, and log grad norm when given) against the baseline windows (`logs`:
    the loss window's, `_logs`); also returns the loss baseline's sigma, which the flat test reuses."""
    c = state.config
    found: list[Finding] = []
    sigma = 0.0
    if state.losses.size >= c.min_history:
        med, sigma, log_space = _baseline(state, logs)
        z = _loss_z(loss, med, sigma, log_space)
        typical = math.exp(med) if log_space else med
        if z > c.spike_z:
            evidence = {"value": loss, "median": typical, "sigma": sigma, "z": z, "threshold": c.spike_z}
            found.append(Finding("spike", step, "loss", {**evidence, "window": state.losses.size, "log": log_space}))
        sigma = sigma * abs(typical) if log_space else sigma  # in loss units, for the flat test
    if gn is not None and log_gn is not None and state.log_grads.size >= c.min_history:
        gmed, gsigma = robust_baseline(state.log_grads, 0.0, c.grad_floor)
        gz = (log_gn - gmed) / gsigma
        if gz > c.grad_spike_z:
            evidence = {"value": gn, "median": math.exp(gmed), "sigma": gsigma, "z": gz, "threshold": c.grad_spike_z}
            found.append(Finding("spike", step, "grad_norm", {**evidence, "window": state.log_grads.size}))
    return found, sigma


def _at_chance(c: DetectConfig, level: float) -> bool:
    return c.chance_loss is not None and abs(level - c.chance_loss) <= c.chance_tol * c.chance_loss


def _rise(state: DetectState, step: int, short: float, logs: Array | None) -> tuple[list[Finding], dict[str, Any]]:
    """The divergence test: the short median stays `div_z` sigmas of step-to-step noise above the
    lowest one so far (in log space for positive losses, like the spike test; `logs`: `_logs`), or,
    with a chance level, back at it after the model had learned (`_relapsed`: a collapse)."""
    c = state.config
    best, best_step = (short, step) if short < state.best else (state.best, state.best_step)
    w = state.losses
    if logs is not None and best > 0.0:
        sigma = step_noise(logs, 1.0, c.rel_floor, 1e-12)
        rise = (math.log(short) - math.log(best)) / sigma
    else:
        sigma = step_noise(w, float(median(w)), c.rel_floor, c.abs_floor)
        rise = (short - best) / sigma
    relapsed = _relapsed(c, short, best)
    if rise <= c.div_z and not relapsed:
        return [], {"best": best, "best_step": best_step, "rise_run": 0, "rise_start": -1}
    run = state.rise_run + 1
    start = state.rise_start if state.rise_run else step
    out = {"best": best, "best_step": best_step, "rise_run": run, "rise_start": start}
    if run % c.div_patience:
        return [], out
    # The short median crosses the line once half its window is up: the rise began about half a
    # window earlier (not before the lowest point, though).
    onset = max(best_step + 1, start - c.div_short // 2)
    above = c.chance_loss is not None and short > WORSE_THAN_CHANCE * c.chance_loss
    kind = "collapse" if _collapsed(c, short, best) and not above else "divergence"
    evidence = {
        "best": best,
        "best_step": best_step,
        "short_median": short,
        "sigma": sigma,
        "rise": rise,
        "threshold": c.div_z,
        "patience": c.div_patience,
        "chance_loss": c.chance_loss,
        "relapsed": relapsed,
        "at_chance": _at_chance(c, short),
    }
    return [Finding(kind, step, "loss", evidence, start=onset)], out


def back_at_chance(state: DetectState) -> bool:
    """Whether the recent losses sit back at the task's chance level after the model had been
    below it — what makes a rise a collapse rather than a divergence — whether or not the rise
    test has fired yet: a snapshot of such a state already holds the collapse, so the guard does
    not confirm one then."""
    c = state.config
    if c.chance_loss is None or state.recent.size < c.div_short:
        return False
    return _collapsed(c, float(median(state.recent)), state.best)


def _collapsed(c: DetectConfig, short: float, best: float) -> bool:
    """A rise to (or back at) chance after the model had learned: `_relapsed` or `_back_at_chance`."""
    return _relapsed(c, short, best) or _back_at_chance(c, short, best)


def _back_at_chance(c: DetectConfig, short: float, best: float) -> bool:
    """Within `chance_tol` of chance now, after a short median more than that below it."""
    return _at_chance(c, short) and best < c.chance_loss * (1 - c.chance_tol)  # type: ignore[operator]


def _relapsed(c: DetectConfig, short: float, best: float) -> bool:
    """Back at chance (or above it) after having been clearly below it (`DetectConfig.learned_rel`)."""
    if c.chance_loss is None:
        return False
    return short >= c.chance_loss * (1 - c.chance_tol) and best <= c.chance_loss * (1 - c.learned_rel)


def _flat_start(s: DetectState, step: int, sigma: float | None) -> Finding | None:
    """Judge the start of the run once: too-low LR (flat from the start) or a collapse (flat after
    a blow-up, after having been lower, or with gradients that died)."""
    c = s.config
    initial = s.initial
    if initial is None:
        return None
    current = float(median(s.recent))
    drop = (initial - current) / max(abs(initial), c.abs_floor)
    # before an early blow-up, which lifts the median of them all (of the first three too, from step 1 on)
    start = min(float(s.first[0]), float(median(s.first[:3])))
    rose = _rose(c, start, current)
    if ((drop >= c.flat_rel or s.rise_run) and not rose) or s.osc_run:
        return None  # falling; rising, which the divergence test reads; or flat because it bounces (LR too high)
    with np.errstate(over="ignore", invalid="ignore"):  # losses near the float limit: an infinite spread
        noise = sigma if sigma is not None else float(np.std(s.recent))
    # "Clearly lower before": 5× the flat threshold (10 % by default) and 4 sigmas, far beyond what
    # the minimum of many noisy short medians of a flat loss reaches by chance.
    was_lower = math.isfinite(s.best) and current - s.best > max(5.0 * c.flat_rel * abs(current), 4.0 * noise)
    grads_died = False
    if s.initial_grad is not None and s.log_grads.size:
        grads_died = float(median(s.log_grads[-c.div_short :])) < s.initial_grad + math.log(1e-3)
    blew_up = s.troubled or s.highest > initial + max(abs(initial), 10.0 * noise)
    evidence = {
        "initial": initial,
        "start": start,
        "rose": rose,
        "current": current,
        "drop": drop,
        "threshold": c.flat_rel,
        "best": s.best if math.isfinite(s.best) else None,
        "highest": s.highest,
        "blew_up": blew_up,
        "was_lower": was_lower,
        "grads_died": grads_died,
        "chance_loss": c.chance_loss,
        "at_chance": _at_chance(c, current),
    }
    kind = "collapse" if blew_up or was_lower or grads_died or rose else "flat_start"
    if kind == "collapse":
        evidence.update(best=s.best if math.isfinite(s.best) else current, best_step=max(s.best_step, 0))
        evidence.update(short_median=current)
    return Finding(kind, step, "loss", evidence, start=s.flat_from)


def _rose(c: DetectConfig, start: float, current: float) -> bool:
    """Whether the loss now stands well above where it started — the opposite of a too-low LR,
    whatever the median of the first losses (lifted by an early blow-up) says: twice its start,
    or, for a classifier, clearly worse than chance (`learned_rel` above it) and a quarter above
    its start. Positive losses only (a ratio of levels)."""
    if start <= 0.0 or current <= 0.0:
        return False
    if current > 2.0 * start:
        return True
    worse_than_chance = c.chance_loss is not None and current > c.chance_loss * (1 + c.learned_rel)
    return worse_than_chance and current > start * (1 + 5.0 * c.flat_rel)


def _oscillation(s: DetectState, step: int, window: Array) -> tuple[list[Finding], dict[str, Any]]:
    c = s.config
    corr, amplitude = detrended_lag1(window, c.abs_floor)
    if not (corr < c.osc_corr and amplitude > c.osc_rel):
        return [], {"osc_run": 0, "osc_start": -1}
    run = s.osc_run + 1
    start = s.osc_start if s.osc_run else step
    out = {"osc_run": run, "osc_start": start}
    if run % c.osc_patience:
        return [], out
    evidence = {"autocorr": corr, "amplitude": amplitude, "threshold": c.osc_corr, "window": c.osc_window}
    return [Finding("oscillation", step, "loss", evidence, start=start)], out


def scan(
    steps: Any,
    losses: Any,
    grad_norms: Any = None,
    *,
    config: DetectConfig | None = None,
) -> list[Finding]:
    """Fold `observe` over a whole series (the doctor's view); every finding, unmerged.

    `grad_norms`, when given, has one entry per step: a number, or None where the log has no grad
    norm for that step (None means "not logged"; a logged NaN is a non-finite gradient).
    """
    state = init(config)
    out: list[Finding] = []
    gn = None if grad_norms is None else list(grad_norms)
    for i, (step, loss) in enumerate(zip(steps, losses, strict=True)):
        g = None if gn is None else gn[i]
        found, state = observe(state, step=int(step), loss=float(loss), grad_norm=g)
        out.extend(found)
    return out
