"""The baselines (fastai, Lightning, torch-lr-finder) on hand-written curves with known answers,
and against the real tools where they are installed.

Each baseline smooths the raw curve the way its tool does, so the curves here are written in the
tool's *smoothed* space and turned into the raw losses that produce them exactly (`raw_for`)."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from lrpilot.finder import (
    fastai_minimum,
    fastai_slide,
    fastai_steep,
    fastai_valley,
    lightning,
    torch_lr_finder,
)

N = 100
LRS = np.geomspace(1e-7, 10.0, N)
Array = npt.NDArray[np.float64]


def raw_for(smoothed: Array, tool: str) -> Array:
    """Raw losses whose smoothing by `tool` is exactly `smoothed`."""
    s = np.asarray(smoothed, dtype=np.float64)
    out = np.empty_like(s)
    if tool == "torch_lr_finder":  # s_t = 0.05 x_t + 0.95 s_{t-1}, s_0 = x_0
        out[0] = s[0]
        out[1:] = (s[1:] - 0.95 * s[:-1]) / 0.05
        return out
    beta, lag = 0.98, (2 if tool == "lightning" else 1)  # Lightning debiases one step late
    m = s * (1 - beta ** (np.arange(len(s)) + lag))
    out[0] = m[0] / (1 - beta)
    out[1:] = (m[1:] - beta * m[:-1]) / (1 - beta)
    return out


def _parabola(center: int) -> Array:
    return 1.0 + 1e-3 * (np.arange(N) - center) ** 2


def test_fastai_minimum_is_a_tenth_of_the_lowest_point() -> None:
    s = fastai_minimum(LRS, raw_for(_parabola(60), "fastai"))
    assert s.index == 60
    assert s.lr == pytest.approx(LRS[60] / 10)


def test_fastai_steep_is_the_biggest_fall_per_log_lr() -> None:
    curve = np.full(N, 3.0)
    curve[31:] -= 0.3
    curve[41:] -= 1.0
    curve[51:] -= 0.5
    s = fastai_steep(LRS, raw_for(curve, "fastai"))
    assert s.index == 40
    assert s.lr == pytest.approx(LRS[40])


def test_fastai_valley_is_about_the_middle_of_the_longest_fall() -> None:
    """Rising slowly to 29, falling 30..69, rising after. After the trim [10:95] the longest decreasing run
    ends at local 59 with length 41, so fastai's start is 59 - 41 = 18 and the pick is
    18 + ⌊41/3⌋ + ⌊41/6⌋ = 37, i.e. global point 47."""
    rising = 3.0 + 1e-3 * np.arange(30)  # not flat: round-off must not make a decreasing run in it
    curve = np.concatenate([rising, np.linspace(2.9, 1.0, 40), np.linspace(1.05, 2.5, 30)])
    s = fastai_valley(LRS, raw_for(curve, "fastai"))
    assert s.index == 47
    assert s.lr == pytest.approx(LRS[47])


def test_fastai_slide_walks_left_until_the_gradient_settles() -> None:
    """Linear fall (gradient -0.01) to local 60, then a parabola. The 15-point window slides left
    while the gradients at its ends differ by > 0.005; the last window that still differed has its
    right end at local 60 (gradient 0) and its left end at local 45, i.e. global point 55."""
    k = np.arange(N - 10)
    local = np.where(k <= 60, 3.0 - 0.01 * k, 2.4 + 0.01 * (k - 60) ** 2 / 2)
    curve = np.concatenate([np.full(10, 3.0), local])
    s = fastai_slide(LRS, raw_for(curve, "fastai"))
    assert s.index == 55
    assert s.lr == pytest.approx(LRS[55])


def _two_falls() -> Array:
    """A fall of 0.5 between points 20 and 21 and one of 1.0 between 60 and 61."""
    curve = np.full(N, 3.0)
    curve[21:] -= 0.5
    curve[61:] -= 1.0
    return curve


def test_lightning_uses_d_loss_d_lr_which_favours_tiny_lrs() -> None:
    """Per unit of LR (not of log LR) the small fall at 1e-6 is steeper than the big one at 1e-2,
    so Lightning picks the former (Lightning #14248, #21141); per log-LR fastai picks the latter."""
    assert lightning(LRS, raw_for(_two_falls(), "lightning")).index == 21
    assert fastai_steep(LRS, raw_for(_two_falls(), "fastai")).index == 60


def test_torch_lr_finder_uses_index_spacing() -> None:
    s = torch_lr_finder(LRS, raw_for(_two_falls(), "torch_lr_finder"))
    assert s.index == 60
    assert s.lr == pytest.approx(LRS[60])


def test_nan_tails() -> None:
    """fastai cuts at the first NaN (PR #3477) and Lightning drops non-finite points, so their
    answers do not change; torch-lr-finder does not filter NaN, and its argmin lands on one."""
    clean = _parabola(60)
    for fn, tool in ((fastai_minimum, "fastai"), (lightning, "lightning"), (torch_lr_finder, "torch_lr_finder")):
        raw = raw_for(clean, tool)
        tail = raw.copy()
        tail[85:] = math.nan
        if fn is torch_lr_finder:
            assert fn(LRS, tail).index == 84  # the gradient next to the first NaN is NaN
        else:
            assert fn(LRS, tail).index == fn(LRS, raw).index


def test_an_early_spike_stops_fastai_and_lightning_before_anything_was_learnt() -> None:
    """One bad batch at the third step lifts the debiased average (still a mean of three points)
    above 4× its best, so fastai and Lightning stop there (Lightning #1767); torch-lr-finder's
    undebiased average goes on, but the spike's slow decay reads as the steepest fall, so it
    suggests the first LR after its trim."""
    raw = raw_for(_parabola(60), "fastai")
    raw[2] = 50.0
    for fn in (fastai_valley, fastai_minimum, lightning):
        with pytest.raises(ValueError, match=r"too few points|at least 2"):
            fn(LRS, raw)
    assert torch_lr_finder(LRS, raw).index == 10


def test_negative_losses_break_every_ratio_stop() -> None:
    """``smooth > 4 * best`` is true at once for a negative loss (fastai #962): the tools stop after
    a point or two and have nothing left to suggest from."""
    raw = raw_for(_parabola(60) - 10.0, "fastai")
    for fn in (fastai_valley, fastai_minimum, lightning, torch_lr_finder):
        with pytest.raises(ValueError, match=r"too few points|at least 2"):
            fn(LRS, raw)


@pytest.mark.parametrize("fn", [fastai_valley, fastai_slide, fastai_steep, fastai_minimum, lightning, torch_lr_finder])
def test_bad_curves(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        fn(LRS[::-1], _parabola(50))
    with pytest.raises(ValueError, match="same length"):
        fn(LRS, _parabola(50)[:-1])
    with pytest.raises(ValueError, match=r"too few|at least|more than"):
        fn(LRS[:6], _parabola(5)[:6])


# ------------------------------------------------------------------ against the real tools
def _mlp_and_loader() -> tuple[torch.nn.Module, Any]:
    from tests.finder.tiny import loader, mlp

    return mlp(), loader()


@pytest.mark.slow
def test_matches_the_real_torch_lr_finder() -> None:
    pytest.importorskip("torch_lr_finder")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder

    model, dl = _mlp_and_loader()
    raw: list[float] = []

    def criterion(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(out, y)
        raw.append(loss.item())
        return loss

    finder = LRFinder(model, torch.optim.AdamW(model.parameters(), lr=1e-7), criterion, device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(dl, end_lr=10, num_iter=100)
        fig, ax = plt.subplots()
        _, expected = finder.plot(suggest_lr=True, ax=ax)
        plt.close(fig)
    lrs = finder.history["lr"]
    assert np.allclose(raw_for(np.asarray(finder.history["loss"]), "torch_lr_finder"), raw[: len(lrs)])
    assert torch_lr_finder(lrs, raw[: len(lrs)]).lr == expected


@pytest.mark.slow
def test_matches_the_real_lightning_tuner(tmp_path: Any) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.tuner import Tuner

    model, dl = _mlp_and_loader()

    class Module(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.raw: list[float] = []

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.raw.append(loss.item())
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    module = Module()
    trainer = pl.Trainer(
        max_epochs=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        found = Tuner(trainer).lr_find(module, train_dataloaders=dl, num_training=100, update_attr=False)
    lrs = found.results["lr"]
    assert np.allclose(raw_for(np.asarray(found.results["loss"]), "lightning"), module.raw[: len(lrs)])
    assert lightning(lrs, module.raw[: len(lrs)]).lr == found.suggestion()
