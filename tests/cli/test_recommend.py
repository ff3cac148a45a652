"""`lrpilot recommend` through the real typer app."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from lrpilot.cli._app import app
from lrpilot.rules import RULES, recommend, to_axolotl, to_hf, to_pytorch

runner = CliRunner()
LORA = ["recommend", "--params", "135M", "--method", "lora", "--batch-size", "32", "--steps", "1000"]


def test_table_shows_the_peak_range_schedule_warmup_floor_lora_plus_and_reasons() -> None:
    result = runner.invoke(app, LORA)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for fragment in (
        "lora · 135,000,000 parameters · adamw · batch 32 · 1,000 steps",
        "peak LR 0.000462 range 0.000154 – 0.00139, confidence medium",
        "schedule cosine(peak=0.000462, total_steps=1000, warmup_steps=100)",
        "warmup 100 steps",
        "floor 0 (decay to 0)",
        "LoRA+ optional: lora_B at 16× the LR of lora_A",
        "note: the LoRA peak 0.000462 is above the seeds' typical 1e-4–3e-4",
    ):
        assert fragment in text
    for rule_id in ("full-ft-size", "lora-10x", "cosine-lora", "warmup-finetuning", "lora-plus", "band"):
        assert rule_id in result.output
    assert "Schulman" in result.output
    assert "Hayou" in result.output


def test_reference_lr_is_scaled_to_the_batch() -> None:
    result = runner.invoke(app, [*LORA, "--ref-batch-size", "8", "--ref-lr", "2e-4", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["peak_lr"] == pytest.approx(4e-4)
    assert payload["confidence"] == "high"
    assert [r["rule"] for r in payload["reasons"]][:2] == ["reference", "sqrt-batch"]
    assert payload["reasons"][1]["effect"] == "×√(32/8) = ×2"


def test_json_is_the_recommendation_dict() -> None:
    result = runner.invoke(app, [*LORA, "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = recommend("135M", "lora", batch_size=32, steps=1000).to_dict()
    assert payload == json.loads(json.dumps(expected))
    assert all(r["source"] for r in payload["reasons"])


def test_pretraining_with_a_token_budget() -> None:
    args = ["recommend", "-p", "1B", "-m", "pretraining", "--tokens", "20B", "-b", "256", "--seq-len", "2048"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["total_steps"] == 38147  # ceil(20e9 / (256 × 2048))
    assert [r["rule"] for r in payload["reasons"]][:2] == ["deepseek-compute", "sqrt-batch"]
    assert payload["floor_ratio"] == 0.1


@pytest.mark.parametrize("fmt", ["hf", "trl"])
def test_hf_and_trl_formats_print_the_kwargs(fmt: str) -> None:
    result = runner.invoke(app, [*LORA, "--format", fmt])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == to_hf(recommend("135M", "lora", batch_size=32, steps=1000))


def test_axolotl_format_prints_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    result = runner.invoke(app, [*LORA, "-f", "axolotl"])
    assert result.exit_code == 0, result.output
    rec = recommend("135M", "lora", batch_size=32, steps=1000)
    assert result.stdout == to_axolotl(rec)
    assert yaml.safe_load(result.stdout)["learning_rate"] == rec.peak_lr


def test_torchtune_format_prints_overrides() -> None:
    result = runner.invoke(app, [*LORA, "-f", "torchtune"])
    assert result.exit_code == 0, result.output
    overrides = shlex.split(result.stdout)
    assert overrides[:2] == ["optimizer._component_=torch.optim.AdamW", "optimizer.lr=0.000462"]
    assert "max_steps_per_epoch=1000" in overrides


def test_llama_cpp_format_prints_flags() -> None:
    result = runner.invoke(app, [*LORA, "-f", "llama-cpp", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert shlex.split(result.stdout) == ["--learning-rate", "0.000462", "--optimizer", "adamw", "--epochs", "2"]


def test_pytorch_format_prints_code_that_compiles() -> None:
    result = runner.invoke(app, [*LORA, "-f", "pytorch"])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_pytorch(recommend("135M", "lora", batch_size=32, steps=1000))
    compile(result.stdout, "<recommend>", "exec")


def test_rules_lists_every_rule_with_its_source() -> None:
    result = runner.invoke(app, ["recommend", "--rules"])
    assert result.exit_code == 0, result.output
    for r in RULES:
        assert r.id in result.output
    assert "Goyal" in result.output
    assert "Malladi" in result.output
    as_json = runner.invoke(app, ["recommend", "--rules", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [{"id": r.id, "text": r.text, "source": r.source} for r in RULES]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "--method", "lora", "-n", "10"], "recommend: --params needed (or --rules to list the rules)"),
        (["recommend"], "recommend: --params and --method needed"),
        (["recommend", "-p", "7B", "-m", "lroa", "-n", "10"], "got 'lroa' (did you mean 'lora'?)"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--optimizer", "sdg"], "(did you mean 'sgd'?)"),
        (["recommend", "-p", "0", "-m", "lora", "-n", "10"], "params must be a number ≥ 1"),
        (["recommend", "-p", "7B", "-m", "lora"], "the run's length is needed for the schedule: give steps"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "-b", "0"], "batch_size must be an integer in [1, ∞]"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--ref-batch-size", "8"], "needs ref_lr"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "-f", "hff"], "(did you mean 'hf'?)"),
        (["recommend", "-p", "7B", "-m", "full", "-n", "10", "-f", "torchtune"], "use recommend(..., decay='cosine')"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
