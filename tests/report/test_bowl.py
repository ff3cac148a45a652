"""The quadratic-bowl demo: the regimes follow from the curvature, and the iteration agrees."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lrpilot.demos.bowl import DEFAULT_ETAS, REGIMES, Bowl, contraction, descend, regime, run_bowl, thresholds
from lrpilot.report.bowl_plots import plot_bowl

RNG = np.random.default_rng(2024)
BOWLS = [Bowl()] + [
    Bowl(eigenvalues=(float(lo), float(lo * k)), start=(1.0, -1.0), iterations=int(n))
    for lo, k, n in zip(RNG.uniform(0.05, 2.0, 6), RNG.uniform(1.5, 30.0, 6), RNG.integers(10, 200, 6), strict=True)
]


def test_seed_003s_step_sizes_stall_converge_and_diverge() -> None:
    demo = run_bowl()
    assert [run.eta for run in demo.runs] == list(DEFAULT_ETAS)
    assert [run.regime for run in demo.runs] == ["stalls", "converges", "diverges"]
    stall, good, bad = (run.losses for run in demo.runs)
    start = stall[0]
    assert stall[-1] > 0.1 * start  # barely moved in 40 steps
    assert good[-1] < 1e-4 * start
    assert bad[-1] > 1e4 * start
    assert np.all(np.diff(bad[5:]) > 0)  # once the stiff direction dominates, every step is worse


@pytest.mark.parametrize("bowl", BOWLS)
def test_thresholds_are_the_curvature_formulas(bowl: Bowl) -> None:
    lo, hi = bowl.lam_min, bowl.lam_max
    t = thresholds(bowl)
    assert t.stable_below == pytest.approx(2 / hi)
    assert t.fastest == pytest.approx(2 / (lo + hi))
    kappa = hi / lo
    assert t.best_rate == pytest.approx((kappa - 1) / (kappa + 1))
    assert contraction(bowl, t.fastest) == pytest.approx(t.best_rate)
    grid = np.linspace(1e-4, t.stable_below, 4001)
    assert min(contraction(bowl, float(e)) for e in grid) >= t.best_rate - 1e-12  # η* is the fastest


@pytest.mark.parametrize("bowl", BOWLS)
def test_gradient_descent_is_stable_exactly_below_2_over_lambda_max(bowl: Bowl) -> None:
    edge = 2 / bowl.lam_max
    start = float(bowl.loss(np.asarray(bowl.start)))
    for eta in (0.5 * edge, 0.9 * edge, 0.99 * edge):
        losses = bowl.loss(descend(bowl, eta, 20_000))
        assert regime(bowl, eta) != "diverges"
        assert losses[-1] < 1e-12 * start, eta
    for eta in (1.01 * edge, 1.2 * edge, 2.0 * edge):
        losses = bowl.loss(descend(bowl, eta, 3_000))
        assert regime(bowl, eta) == "diverges"
        assert losses[-1] > 1e6 * start, eta


@pytest.mark.parametrize("bowl", BOWLS)
def test_regimes_match_the_simulated_run_within_the_budget(bowl: Bowl) -> None:
    """Converges iff every direction's loss share fell below `tol` in the budget; the others are
    told apart by the direction that is too slow (the flat one stalls, the steep one bounces)."""
    t = thresholds(bowl)
    lam = np.asarray(bowl.eigenvalues)
    for eta in np.geomspace(t.stable_below / 300, t.stable_below * 0.999, 60):
        path = descend(bowl, float(eta))
        per_direction = (path[-1] / path[0]) ** 2  # each term ½ λ_i x_i² shrinks by this
        slowest = int(np.argmax(per_direction))
        name = regime(bowl, float(eta))
        assert name == "converges" if per_direction.max() <= bowl.tol * (1 + 1e-9) else name != "converges"
        if name == "stalls":
            assert lam[slowest] == bowl.lam_min
            assert path[-1][slowest] * path[0][slowest] > 0  # crept towards the minimum, never crossed
        if name == "oscillates":
            assert lam[slowest] == bowl.lam_max
            assert np.all(np.sign(path[1:, slowest]) != np.sign(path[:-1, slowest]))  # wall to wall


def test_the_regimes_are_ordered_along_eta() -> None:
    bowl = Bowl()
    t = thresholds(bowl)
    names = [regime(bowl, float(e)) for e in np.linspace(0.001, 2 * t.stable_below, 2000)]
    order = [REGIMES.index(n) for n in names]
    assert order == sorted(order)
    assert set(names) == set(REGIMES)
    assert regime(bowl, t.converge_low * 0.99) == "stalls"
    assert regime(bowl, t.converge_low * 1.01) == "converges"
    assert regime(bowl, t.converge_high * 0.99) == "converges"
    assert regime(bowl, t.converge_high * 1.01) == "oscillates"
    assert regime(bowl, t.stable_below) == "oscillates"  # ρ = 1 exactly: it bounces forever
    assert regime(bowl, t.stable_below * 1.001) == "diverges"


def test_a_diverging_run_overflows_quietly_and_reports_no_final_loss() -> None:
    demo = run_bowl([5.0], Bowl(iterations=2000))
    run = demo.runs[0]
    assert run.regime == "diverges"
    assert not math.isfinite(run.final_loss)
    assert run.to_dict()["final_loss"] is None


def test_plot_draws_three_panels(tmp_path: Path) -> None:
    out = plot_bowl(run_bowl(), tmp_path / "bowl.png")
    assert out.read_bytes().startswith(b"\x89PNG")
    assert out.stat().st_size > 30_000


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Bowl(eigenvalues=(0.0, 1.0)), "eigenvalues must be a finite number > 0"),
        (lambda: Bowl(start=(1.0,)), "one coordinate per eigenvalue"),
        (lambda: Bowl(start=(0.0, 0.0)), "not the minimum itself"),
        (lambda: Bowl(iterations=0), "iterations"),
        (lambda: run_bowl([0.5, -1.0]), "eta must be a finite number > 0"),
        (lambda: run_bowl([]), "at least one step size"),
        (lambda: plot_bowl(run_bowl(bowl=Bowl(eigenvalues=(1, 2, 3), start=(1, 1, 1))), "x.png"), "2-D bowl"),
    ],
)
def test_bad_input_names_the_value(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
