"""Per-layer update ratios ‖Δw‖/‖w‖, checked against a step computed by hand."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

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


# --- LoRA: the ratio of the effective weight W0 + scale · B A -------------------------------------


def _lora_sequential() -> tuple[nn.Module, list[str]]:
    """An MLP with a LoRA adapter (peft, r=4, alpha=8: scale 2) on its first linear layer and its
    head trained in full: one adapted layer, one plain one."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    model.base_model.model[2].weight.requires_grad_(True)
    return model, ["base_model.model.0"]


def _lora_gpt2() -> tuple[nn.Module, list[str]]:
    """A 2-layer GPT-2 with LoRA on its attention's Conv1D (which stores W transposed: peft's
    ``fan_in_fan_out``), as fit puts it on a GPT-2."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)
    with warnings.catch_warnings():  # peft 0.21 calls a name transformers 5 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.get_peft_model(transformers.GPT2LMHeadModel(config), lora)
    return model, ["base_model.model.transformer.h.0", "base_model.model.transformer.h.1"]


@torch.no_grad()
def _effective(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """By hand, per layer: every adapted module's W0 + scale · B A (W0 transposed where peft says
    fan_in_fan_out), and every other trainable tensor as it is, in float64."""
    out: dict[str, list[torch.Tensor]] = {}
    adapted = set()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            w0 = module.get_base_layer().weight.double()
            w0 = w0.T if module.fan_in_fan_out else w0
            layer = name.split(".h.")[0] + ".h." + name.split(".h.")[1].split(".")[0] if ".h." in name else name
            out.setdefault(layer, []).append(w0 + module.scaling["default"] * (b.double() @ a.double()))
            adapted |= {id(a), id(b)}
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in adapted:
            out.setdefault(name.rsplit(".", 1)[0], []).append(param.detach().double().clone())
    return out


@pytest.mark.parametrize("make", [_lora_sequential, _lora_gpt2])
def test_a_lora_layers_ratio_is_its_effective_weights_as_computed_by_hand(make: Any) -> None:
    model, adapted = make()
    tracker = UpdateRatioTracker(model, every=1)
    assert tracker.adapted == adapted
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = torch.randn(4, 8) if make is _lora_sequential else torch.randint(0, 40, (2, 6))
    for step in range(4):  # B is zero before the first step and not after it
        before = _effective(model)
        loss = model(inputs).square().mean() if make is _lora_sequential else model(inputs, labels=inputs).loss
        loss.backward()
        tracker.before(step)
        optimizer.step()
        tracker.after(applied=True)
        optimizer.zero_grad()
        after = _effective(model)
        assert list(before) == tracker.names
        expected = [
            math.sqrt(sum(float((n - o).square().sum()) for n, o in zip(after[k], before[k], strict=True)))
            / math.sqrt(sum(float(o.square().sum()) for o in before[k]))
            for k in tracker.names
        ]
        assert tracker.ratios[step] == pytest.approx(expected, rel=1e-6)


def test_a_lora_fit_at_a_sane_lr_flags_no_layer(sst2_files: tuple[Path, Path], tmp_path: Path) -> None:
    """fit's LoRA on all-MiniLM-L6-v2: its adapters' own ratios flagged every layer (B starts at
    zero); the effective weights' sit within the band at the peak fit picks, and the report says
    what they are of."""
    from lrpilot.autopilot import fit
    from lrpilot.report import read_run
    from lrpilot.report.run_plots import layer_verdicts
    from tests.autopilot.conftest import minilm_dir

    train, val = sst2_files
    args = {"data": train, "eval_data": val, "method": "lora", "budget": 12, "finder_steps": 12}
    result = fit(model=minilm_dir(), **args, out=tmp_path / "run")  # type: ignore[arg-type]
    assert 1e-4 <= result.peak_lr <= 1e-2
    stats = result.record.layer_stats
    assert stats.adapted == [f"encoder.base_model.model.encoder.layer.{i}" for i in range(6)]
    assert [verdict for _, _, verdict in layer_verdicts(stats)] == ["ok"] * 7  # and the head, trained in full
    assert read_run(result.run_dir).layer_stats.adapted == stats.adapted
    html = (result.run_dir / "index.html").read_text(encoding="utf-8")
    assert "6 of these 7 layers are LoRA-adapted" in html
    assert "0 of 7 layers flagged" in html
