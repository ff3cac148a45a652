"""What a worker runs next: synchronous successive halving with restarts, on an Optuna study.

Optuna's pruners promote asynchronously (ASHA): a trial that reaches a rung is compared with the
trials that reached it before, and the first ones, with too few to lose to, go on ("Optuna does not
support suspending or resuming ongoing trials", its `SuccessiveHalvingPruner` says). On a budget of
a few runs that first promotion alone spends a full run before anything is compared: the range
test's peak then won every study of `benchmarks/tune_vs_baselines.py`, including one where ×2 had
the better rung and the budget could not train it.

So here a trial's rung is a trial of its own (a *rung trial*: a short run that reports its loss and
is pruned), and a promotion is a new trial that *continues* it (``user_attrs["continues"]``: the
full run, no rung trained twice). Rungs run while the budget can still pay for the promotions they
earn; then the best ``1 / reduction`` of them (at least one) are trained in full, best first.

Where to look: the design (the range test's peak, ×½, ×2), then a line search in log LR: while the
best rung is the lowest (highest) LR tried, the next point is half (twice) it; once the best is
inside, the geometric midpoints towards its neighbours, down to steps of √2; then Optuna's TPE
sampler (given three rungs, TPE proposed an LR within 10 % of the best on every one of the 9 digits
seeds of 12 where it was asked: a rung that tells nothing). Every decision that depends on results
waits for the trials still running, so the design, the line search and the promotions come out the
same on one machine or many.
"""

from __future__ import annotations

import enum
import math
import statistics
from typing import TYPE_CHECKING, Any

from lrpilot.tuning._space import Space
from lrpilot.tuning._study import StudyConfig, counted, is_replacement

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "Move",
    "committed_steps",
    "continued",
    "fitted_lr",
    "next_move",
    "next_trial_steps",
    "overhead_steps",
    "owed",
    "rung_value",
    "trial_cap",
    "trial_lr",
    "unpaid_winners",
]

CONTINUES = "continues"
"""A promoted trial's user attribute: the number of the rung trial whose full run it trains."""


class Move(enum.Enum):
    RUN = "run"
    """Run the queued trial (a design point, line-search step, promotion or retry)."""
    SAMPLE = "sample"
    """Run a trial the sampler proposes."""
    WAIT = "wait"
    """The next decision needs the results of trials still running (on other workers)."""
    DONE = "done"
    """The budget is spent (or the trial cap reached) and every promotion it pays is made."""


def owed(rungs: int, reduction: int) -> int:
    """Full runs that `rungs` rung results earn: the best ``1 / reduction`` of them, at least one."""
    return max(1, rungs // reduction) if rungs else 0


def trial_cap(
    budget_steps: int, run_steps: int, rung_steps: int | None, reduction: int, *, overhead: float = 0.0
) -> int:
    """The most trials `budget_steps` can pay for: rung trials with the full runs they earn
    (halving), else full runs, each costing `overhead` steps besides its own (`overhead_steps`);
    at least one."""
    if rung_steps is None:
        return max(1, int(budget_steps // (run_steps + overhead)))
    n = 1
    while (n + 1) * (rung_steps + overhead) + owed(n + 1, reduction) * (run_steps + overhead) <= budget_steps:
        n += 1
    return n


def overhead_steps(trials: list[FrozenTrial], config: StudyConfig) -> float:
    """What a trial costs a time budget besides its training steps, in steps at the range test's
    pace: the median, over the trials that recorded their wall time (``seconds``: choosing the
    trial, building the model, evaluating, checkpoints, the study's database), of that time less
    their steps at the range test's step time. A time budget became steps at that pace alone, and a
    20 s digits tune, whose 83-step rungs cost 20-60 steps' worth more each, trained rungs until
    the deadline left 7 of their winners without the full run they had earned. The median, not the
    mean: a process's first trial pays torch's one-off costs (a re-run's first digits rung took 7 s
    where the others took 0.2), which the mean spread over every trial to come. 0 for a budget in
    runs (compute in steps), before any trial has finished, and for a study stored without the
    range test's step time."""
    pace = config.finder.get("step_seconds")
    if config.deadline is None or not pace:
        return 0.0
    extra = [
        float(t.user_attrs["seconds"]) - int(t.user_attrs.get("steps", 0)) * pace
        for t in trials
        if "seconds" in t.user_attrs
    ]
    return max(0.0, statistics.median(extra)) / pace if extra else 0.0


def continued(trial: FrozenTrial) -> int | None:
    """The rung trial this trial promotes, if it is a promotion."""
    number = trial.user_attrs.get(CONTINUES)
    return None if number is None else int(number)


def _live(trial: FrozenTrial) -> bool:
    """A trial that counts: not failed (its retry stands for it), not skipped."""
    return trial.state.name != "FAIL" and not trial.user_attrs.get("skipped")


def rung_value(trial: FrozenTrial, config: StudyConfig) -> float | None:
    """What a finished rung trial scored (its short run's validation loss; a full run's without
    halving; inf when it diverged), None while it has not finished."""
    if trial.user_attrs.get("stopped") == "diverged":
        return math.inf
    if config.prune and config.rungs:
        value = trial.intermediate_values.get(config.rungs[0])
        return None if value is None or trial.state.name in ("RUNNING", "WAITING") else float(value)
    return float(trial.value) if trial.state.name == "COMPLETE" and trial.value is not None else None


def _planned(trial: FrozenTrial, config: StudyConfig) -> int:
    """The steps `trial` trains in all: its rung, or the full run (a promotion, or without halving)."""
    halving = config.prune and bool(config.rungs)
    return config.rungs[0] if halving and continued(trial) is None else config.run_steps


def _rungs(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if _live(t) and continued(t) is None)


def _promotions(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if _live(t) and continued(t) is not None)


def committed_steps(study: optuna.Study, config: StudyConfig, *, earned: bool = True) -> int:
    """Steps the study's trials have spent or promised (each trial's measured overhead included,
    `overhead_steps`), with `earned` the full runs their rungs earn."""
    return _committed(study.get_trials(deepcopy=False), config, earned=earned)


def _committed(
    trials: list[FrozenTrial], config: StudyConfig, *, extra_rungs: int = 0, extra_runs: int = 0, earned: bool = True
) -> int:
    """Steps spent or promised: those trained so far, what running and queued trials will train,
    and (with `earned`) the full runs their rungs earn that are not queued yet, counting
    `extra_rungs` more rung trials and `extra_runs` more full runs; each of those trials costs
    `overhead_steps` more."""
    steps, paid = 0, 0
    for t in trials:
        done = int(t.user_attrs.get("steps", 0)) if t.state.name != "WAITING" else 0  # a retry copies its original's
        remaining = _planned(t, config) - done if t.state.name in ("RUNNING", "WAITING") else 0
        steps += done + max(0, remaining)
        paid += done + remaining > 0  # a trial skipped before training costs (next to) nothing
    halving = config.prune and bool(config.rungs)
    steps += extra_rungs * (config.rungs[0] if halving else config.run_steps) + extra_runs * config.run_steps
    paid += extra_rungs + extra_runs
    if halving and earned:
        runs = max(0, owed(_rungs(trials) + extra_rungs, config.reduction) - _promotions(trials))
        steps += runs * config.run_steps
        paid += runs
    return steps + round(paid * overhead_steps(trials, config))


def _results(trials: list[FrozenTrial], config: StudyConfig) -> list[tuple[float, FrozenTrial]]:
    """Finished rung trials (full runs without halving) by score, best first."""
    scored = []
    for t in trials:
        if _live(t) and continued(t) is None and (value := rung_value(t, config)) is not None:
            scored.append((value, t))
    return sorted(scored, key=lambda pair: (pair[0], pair[1].number))


def unpaid_winners(study: optuna.Study, config: StudyConfig) -> list[int]:
    """Rung trials that earned a full run the study has not queued (the budget could not pay it)."""
    if not (config.prune and config.rungs):
        return []
    trials = study.get_trials(deepcopy=False)
    promoted = {continued(t) for t in trials if _live(t)}
    best = [t.number for v, t in _results(trials, config) if math.isfinite(v)][: owed(_rungs(trials), config.reduction)]
    return [n for n in best if n not in promoted]


def _params(trial: FrozenTrial) -> dict[str, Any]:
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def trial_lr(trial: FrozenTrial) -> float:
    """The peak LR `trial` was queued or sampled with (NaN before it has one)."""
    return float(_params(trial).get("lr", math.nan))


def _line_search(trials: list[FrozenTrial], config: StudyConfig) -> dict[str, Any] | None:
    """The next point of a line search in log LR around the best result: past it by ×½ (×2) while
    the lowest (highest) LR tried wins; then (when only the LR is searched) the geometric midpoint
    between it and its better neighbour, down to steps of √2 (finer than the rungs' noise can tell
    apart). A step past the interval stops at its edge (the edges are the range test's peak ÷ 4
    and × 4 rounded, so ×2 of the design's ×2 can land a hair outside). None when done: the
    sampler's turn — with the warmup or decay searched, as soon as the LR is bracketed, so that the
    budget reaches them."""
    results = [(v, t) for v, t in _results(trials, config) if math.isfinite(v)]
    if not results:
        return None
    best = _params(results[0][1])
    lr = float(best["lr"])
    scores = {float(_params(t)["lr"]): v for v, t in results}
    tried = sorted({float(_params(t)["lr"]) for t in trials if _live(t) and continued(t) is None})
    below = [x for x in tried if x < lr]
    above = [x for x in tried if x > lr]
    space = Space.from_dict(config.space)
    if not below or not above:  # the best is an end: go past it
        steps = [lr * 0.5] if not below else [lr * 2.0]
    elif space.warmups or space.decays:  # the LR is bracketed: the sampler's turn to search the rest too
        return None
    else:  # inside: halve the gap to the better neighbour first, then to the other
        low, high = below[-1], above[0]
        sides = sorted((low, high), key=lambda x: scores.get(x, math.inf))
        steps = [math.sqrt(lr * x) for x in sides if max(x, lr) / min(x, lr) > 1.9]  # ×2 gaps (3 digits kept)
    for step in (float(f"{min(max(x, space.low), space.high):.3g}") for x in steps):  # the interval's edge at most
        if max(step, lr) / min(step, lr) > 1.3 and step not in tried:
            return {**best, "lr": step}
    return None


NEIGHBOUR_SPAN = 2.0
"""The best rung's neighbours a parabola goes through lie at most this factor from it: the line
search leaves them ×2 or ×√2 apart, and over that span the loss against log LR is close to a
parabola."""


def fitted_lr(scores: dict[float, float], low: float, high: float) -> float | None:
    """The bottom of the parabola through the best rung and its nearest neighbour on each side
    (`scores`: LR → rung loss, against log LR), for the first full run; None where the best rung
    itself should go (a best rung at an end of what was tried, a neighbour more than
    `NEIGHBOUR_SPAN` away, or a bottom within 10 % of the best rung's LR).

    A rung's loss differs from its neighbours' (×√2 to ×2 apart) by 1–4 % of noise, as much as
    the curve's own change there, so the lowest rung is often not the one nearest the bottom.
    Three points with the lowest in the middle give a convex parabola whose bottom lies between
    the outer two (Brent's parabolic step): no extrapolation. Only the bracket: a least-squares
    parabola through every rung within ×4 was tried and dropped, because the loss rises much
    faster above the best LR than below it, and one rung that blew up (sst2-lora: chance, 0.69, at
    ×2.8 the best) dragged the bottom onto the lower neighbour. Kept inside [`low`, `high`], to
    three significant digits.

    >>> fitted_lr({1e-3: 0.50, 2e-3: 0.46, 4e-3: 0.47, 8e-3: 0.55}, 1e-4, 1e-1)
    0.00246
    >>> fitted_lr({1e-3: 0.50, 2e-3: 0.46}, 1e-4, 1e-1) is None  # not bracketed: no parabola
    True
    """
    finite = {lr: v for lr, v in scores.items() if math.isfinite(v)}
    if not finite:
        return None
    best = min(finite, key=lambda lr: (finite[lr], lr))
    below = [lr for lr in finite if lr < best]
    above = [lr for lr in finite if lr > best]
    if not below or not above:
        return None
    left, right = max(below), min(above)
    if best / left > NEIGHBOUR_SPAN * (1 + 1e-9) or right / best > NEIGHBOUR_SPAN * (1 + 1e-9):
        return None
    x0, x1, x2 = math.log(left), math.log(best), math.log(right)
    y0, y1, y2 = finite[left], finite[best], finite[right]
    # the vertex of the parabola through the three points (y1 lowest: convex, between x0 and x2)
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if den == 0:
        return None
    bottom = x1 - 0.5 * num / den
    lr = float(f"{min(max(math.exp(bottom), low), high):.3g}")
    return None if max(lr, best) / min(lr, best) < 1.1 else lr


def next_move(study: optuna.Study, config: StudyConfig) -> Move:
    """Decide (and queue) what this worker does next."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state.name == "WAITING" for t in trials):
        return Move.RUN  # a design point, line-search step, promotion or retry already queued
    running = any(t.state.name == "RUNNING" for t in trials)
    late = config.late()  # a time budget spent: no new point, and only the first full run still owed
    fits = counted(study) < config.max_trials and _committed(trials, config, extra_rungs=1) <= config.budget_steps
    if fits and not (late and counted(study)):
        return _next_point(study, trials, config, running)
    halving = config.prune and bool(config.rungs)
    owes = owed(_rungs(trials), config.reduction) > _promotions(trials)
    if halving and owes and not (late and _promotions(trials)):
        return _promote(study, trials, config)
    if halving and not late and _spare_full_run(study, trials, config):
        return _promote(study, trials, config)
    return Move.WAIT if running else Move.DONE


def _spare_full_run(study: optuna.Study, trials: list[FrozenTrial], config: StudyConfig) -> bool:
    """Whether the budget left once no further rung fits still pays a full run, and a finished rung
    is not trained in full yet: then the next-best rung trains in full too. Without this, budget
    between a full run and a rung with the full run it earns was never spent: a re-run with one
    more run of budget (``--budget 6`` after 5) ran nothing."""
    if config.trials_given and counted(study) >= config.max_trials:
        return False  # the user's --max-trials: that many rungs, the best one's full run, nothing more
    fits = _committed(trials, config, extra_runs=1, earned=False) <= config.budget_steps
    return fits and bool(_untrained_rungs(trials, config))


def _untrained_rungs(trials: list[FrozenTrial], config: StudyConfig) -> list[FrozenTrial]:
    """Finished rung trials that did not diverge and are not trained in full yet, best first."""
    promoted = {continued(t) for t in trials if _live(t)}
    return [t for v, t in _results(trials, config) if math.isfinite(v) and t.number not in promoted]


def next_trial_steps(study: optuna.Study, config: StudyConfig, *, capped: bool = True) -> int | None:
    """The steps spent or promised once the cheapest next trial is queued: another rung with the
    full runs it earns (while under the trial cap, where `capped`: a cap the budget set grows with
    it), or the full run of a rung not yet trained in full; None when neither is left (the cap
    reached, every rung trained in full). A continued study whose raised budget is below this runs
    nothing, and says what budget would."""
    trials = study.get_trials(deepcopy=False)
    options = []
    if not capped or counted(study) < config.max_trials:
        options.append(_committed(trials, config, extra_rungs=1))
    spare = not (config.trials_given and counted(study) >= config.max_trials)  # as `_spare_full_run`
    if spare and config.prune and config.rungs and _untrained_rungs(trials, config):
        options.append(_committed(trials, config, extra_runs=1, earned=False))
    return min(options, default=None)


def _next_point(study: optuna.Study, trials: list[FrozenTrial], config: StudyConfig, running: bool) -> Move:
    """Queue the next design point or line-search step (or leave the choice to the sampler)."""
    tried = [_params(t) for t in trials if continued(t) is None]
    for point in config.design:
        if point not in tried:
            study.enqueue_trial(point)
            return Move.RUN
    # a retry of a queued trial is not the sampler's; nor is one skipped (sampled in a race, never run)
    sampled = any(not is_replacement(t) and not t.user_attrs.get("skipped") for t in trials)
    if not sampled:  # still in the line search: its next point needs every result in
        if running:
            return Move.WAIT
        if (step := _line_search(trials, config)) is not None:
            study.enqueue_trial(step)
            return Move.RUN
    return Move.SAMPLE


def _promote(study: optuna.Study, trials: list[FrozenTrial], config: StudyConfig) -> Move:
    """Queue the full run of the best rung trial not yet promoted, once every rung is in (other
    workers' full runs may still be running: promotions run side by side). When only the LR is
    searched, the first full run trains at the rungs' fitted bottom (`fitted_lr`) instead of the
    best rung's own LR; it is still that rung's promotion."""
    if any(t.state.name == "RUNNING" and continued(t) is None for t in trials):
        return Move.WAIT
    waiting = _untrained_rungs(trials, config)
    over = _committed(trials, config, extra_runs=1, earned=False) > config.budget_steps
    first = config.deadline is not None and not _promotions(trials)  # a time budget's result: it always runs
    if not waiting or (over and not first):
        return Move.DONE
    best = waiting[0]
    params = _params(best)
    space = Space.from_dict(config.space)
    if not _promotions(trials) and not (space.warmups or space.decays):
        scores = {trial_lr(t): v for v, t in _results(trials, config)}
        if (lr := fitted_lr(scores, space.low, space.high)) is not None:
            params = {**params, "lr": lr}
    study.enqueue_trial(params, user_attrs={CONTINUES: best.number})
    return Move.RUN
