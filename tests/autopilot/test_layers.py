"""Per-layer update ratios ‖Δw‖/‖w‖, checked against a step computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrpilot.autopilot import UpdateRatioTracker, layer_groups, layer_update_ratios


def _model() -> nn.Module:
    """Two layers with known weights: ‖w‖ is easy to compute by hand."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # ‖W0‖ = 5
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 1.0]]))  # ‖W2‖ = √2
    return model


def test_groups_are_layers_with_their_type_when_only_indexed() -> None:
    groups = layer_groups(_model())
    assert list(groups) == ["0 (Linear)", "2 (Linear)"]
    assert [len(ps) for ps in groups.values()] == [2, 1]


def test_nested_names_group_at_the_first_index_and_skip_frozen_params() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(4, 2)
            self.blocks = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 2))
            self.head = nn.Linear(2, 1)

    net = Net()
    net.embed.weight.requires_grad_(False)
    assert list(layer_groups(net)) == ["blocks.0", "blocks.1", "head"]


def test_ratio_of_one_sgd_step_matches_the_hand_computed_one() -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = UpdateRatioTracker(model, every=1)
    x = torch.tensor([[1.0, 1.0]])
    model(x).sum().backward()
    # by hand: h = relu(W0 x + b) = (3, 4); y = W2 h. dy/dW2 = h = (3, 4); dy/dh = W2 = (1, 1), h > 0,
    # so dy/dW0 = outer((1, 1), x) = [[1, 1], [1, 1]] and dy/db = (1, 1).
    # SGD: Δw = -0.1 g. Layer 0: ‖Δ‖ = 0.1 · √(4 + 2) over ‖(W0, b)‖ = 5; layer 2: 0.1 · 5 / √2.
    tracker.before(0)
    optimizer.step()
    tracker.after(applied=True)
    assert tracker.steps == [0]
    assert tracker.names == ["0 (Linear)", "2 (Linear)"]
    expected = [0.1 * math.sqrt(6) / 5, 0.1 * 5 / math.sqrt(2)]
    assert tracker.ratios[0] == pytest.approx(expected, rel=1e-6)


def test_only_every_kth_applied_step_is_recorded() -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = UpdateRatioTracker(model, every=2)
    for step in range(5):
        model(torch.ones(1, 2)).sum().backward()
        tracker.before(step)
        if step != 2:  # step 2: the guard skipped this update
            optimizer.step()
        tracker.after(applied=step != 2)
        optimizer.zero_grad()
    assert tracker.steps == [0, 4]


def test_zero_weights_give_ratio_zero_rather_than_a_division_by_zero() -> None:
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    groups = layer_groups(layer)
    before = {k: [p.detach().clone() for p in ps] for k, ps in groups.items()}
    assert layer_update_ratios(before, groups) == [0.0, 0.0]  # a bare layer: each tensor is its own group


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every must be"):
        UpdateRatioTracker(_model(), every=0)
