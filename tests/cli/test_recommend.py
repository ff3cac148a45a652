"""`lrpilot recommend` through the real typer app."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

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
        "note: the LoRA peak 0.000462 is above the 1e-4–3e-4 that article 002 calls typical for LoRA; the values "
        "quoted with a model size are for 8B models (2e-4 for Llama 3.1 8B, article 001;",
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


@pytest.mark.parametrize(
    ("args", "floor"),
    [
        ("-p 22.7M -m full -b 32 -n 150", {"floor": 0.0}),
        ("-p 1B -m pretraining -b 256 -n 5000", {"floor_ratio": 0.1}),
    ],
)
def test_the_json_schedule_names_the_one_floor_it_decays_to(args: str, floor: dict[str, float]) -> None:
    """It printed ``"floor": 0.0, "floor_ratio": null`` in the schedule beside a top-level
    ``floor_ratio``: a reader could not tell which one the schedule used."""
    result = runner.invoke(app, ["recommend", *args.split(), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    schedule = payload["schedule"]
    assert {key: schedule[key] for key in ("floor", "floor_ratio") if key in schedule} == floor
    absolute = schedule.get("floor", schedule.get("floor_ratio", 0.0) * payload["peak_lr"])
    assert payload["floor_lr"] == pytest.approx(absolute)


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
        (["recommend", "--method", "lora", "-n", "10"], "recommend: --params (or --model) needed (or --rules to list"),
        (["recommend"], "recommend: --params (or --model) and --method needed"),
        (["recommend", "-p", "7B", "-m", "lroa", "-n", "10"], "got 'lroa' (did you mean 'lora'?)"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--optimizer", "sdg"], "(did you mean 'sgd'?)"),
        (
            ["recommend", "-p", "0", "-m", "lora", "-n", "10"],
            "--params must be a number ≥ 1 or a size like '135M', '7B', got '0'",
        ),
        (["recommend", "-p", "7B", "-m", "lora"], "the run's length is needed for the schedule: give --steps"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "-b", "0"], "--batch-size must be an integer in [1, ∞]"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--ref-batch-size", "8"], "--ref-batch-size 8 needs"),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "-f", "hff"], "(did you mean 'hf'?)"),
        (
            ["recommend", "-p", "7B", "-m", "full", "-n", "10", "-f", "torchtune"],
            "use --decay cosine for a cosine decay",
        ),
        (
            shlex.split("recommend -p 7B -m pretraining --tokens 2B -b 8 --seq-len 4096 -n 100"),
            "--steps 100 and --tokens 2B disagree: 2B tokens at --batch-size 8 × --seq-len 4,096 (32,768 tokens a "
            "step) make 61,035.2 steps; give --steps or --tokens, not both (or --steps 61036)",
        ),
        (["recommend", "-p", "7", "-m", "lora", "-n", "10"], "--params 7 is 7 parameters, below the minimum of 1,000"),
        (["recommend", "-p", "7", "-m", "lora", "-n", "10"], "did you mean 7B or 7M?"),
        (
            ["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--epochs", "3"],
            "--epochs 3 has no effect with --format",
        ),
        (["recommend", "-p", "7B", "-m", "lora", "-n", "10", "--optimizer", "lion_8bit"], "has no sourced LR rule"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "-p 7B -m lora --tokens 2B -b 8",
            "give --steps, or --tokens with --batch-size and --seq-len (got --tokens 2B, --batch-size 8; no --steps, "
            "--seq-len)",
        ),
        ("-p 7B -m lora", "give --steps, or --tokens with --batch-size and --seq-len (got none of them)"),
        ("-p 7B -m lora -n 10 --seq-len 0", "--seq-len must be an integer in [1, ∞], got 0"),
        ("-p 7B -m lora -n 10 --tokens 7x", "--tokens must be a number ≥ 1 or a size like '135M', '7B', got '7x'"),
        ("-p 7B -m lora -n 10 --ref-lr -1", "--ref-lr must be a finite number > 0, got -1.0"),
        ("-p 7B -m lora -n 10 --ref-lr 1e-4 --ref-batch-size 0", "--ref-batch-size must be an integer in [1, ∞]"),
        ("-p 7B -m lora -n 10 --decay cosin", "--decay must be one of ['cosine', 'linear'], got 'cosin'"),
        ("-p 7B -m ful -n 10", "--method must be one of ['pretraining', 'full', 'lora', 'qlora', 'rl']"),
        ("-p 7B -m lora -n 10 --optimizer adamww", "--optimizer must be one of adamw, adam, sgd,"),
        ("-p 7B -m lora -n 10 --optimizer lion", "--optimizer 'lion' (Lion) has no sourced LR rule"),
        (
            "-p 7B -m dpo -n 10 --optimizer sgd",
            "RL fine-tuning with --optimizer sgd; use --optimizer adamw, or give --ref-lr",
        ),
    ],
)
def test_errors_name_the_flags_a_cli_user_typed_not_the_python_parameters(args: str, message: str) -> None:
    """recommend's errors said 'batch_size', 'give steps, or tokens with batch_size and seq_len' and
    'optimizer='sgd'' to someone who typed --batch-size, --steps, --tokens and --optimizer sgd."""
    result = runner.invoke(app, ["recommend", *shlex.split(args)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert message in text
    python_names = ("batch_size", "seq_len", "ref_lr", "ref_batch_size", "steps=", "tokens=", "optimizer=", "params=")
    assert not [name for name in python_names if name in text], text


def test_python_errors_keep_the_keyword_arguments() -> None:
    """The command line's flags are its own: recommend() in Python still names its arguments."""
    with pytest.raises(ValueError, match=r"give steps, or tokens with batch_size and seq_len \(got steps=None, "):
        recommend("7B", "lora", tokens="2B", batch_size=8)
    with pytest.raises(ValueError, match=r"optimizer='sgd'; use optimizer='adamw', or give ref_lr"):
        recommend("7B", "dpo", optimizer="sgd", steps=10)
    with pytest.raises(ValueError, match=r"params must be a number ≥ 1 or a size like '135M', '7B', or a model"):
        recommend("abc", "lora", steps=10)


def test_torchtune_refusal_names_the_floor_and_cli_options_not_python() -> None:
    """-p 1B -m pretraining is already cosine: its floor is what torchtune cannot run."""
    result = runner.invoke(app, ["recommend", "-p", "1B", "-m", "pretraining", "-n", "100", "-f", "torchtune"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "keeps a floor of 10 % of the peak" in message
    assert "use --format pytorch" in message
    assert "recommend(" not in message.replace("recommend --format", "")
    assert "--decay" not in message


@pytest.mark.parametrize(
    ("fmt", "optimizer", "expected"),
    [("hf", "paged_adamw_8bit", "paged_adamw_8bit"), ("trl", "adamw_torch_fused", "adamw_torch_fused")],
)
def test_hf_formats_carry_the_optimizer(fmt: str, optimizer: str, expected: str) -> None:
    result = runner.invoke(
        app, ["recommend", "-p", "7B", "-m", "qlora", "-n", "1000", "--optimizer", optimizer, "-f", fmt]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["optim"] == expected


def test_axolotl_and_the_table_carry_the_optimizer() -> None:
    yaml = pytest.importorskip("yaml")
    args = ["recommend", "-p", "7B", "-m", "qlora", "-n", "1000", "--optimizer", "adamw_8bit"]
    result = runner.invoke(app, [*args, "-f", "axolotl"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["optimizer"] == "adamw_8bit"
    table = runner.invoke(app, args)
    assert "qlora · 7,000,000,000 parameters · adamw_8bit (adamw rules) · 1,000 steps" in table.output


def test_llama_cpp_states_its_fallback_on_stderr() -> None:
    args = ["recommend", "-p", "7B", "-m", "qlora", "-n", "1000", "--optimizer", "paged_adamw_8bit", "-f", "llama-cpp"]
    result = runner.invoke(app, [*args, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert shlex.split(result.stdout) == ["--learning-rate", "0.0001", "--optimizer", "adamw", "--epochs", "2"]
    assert (
        "note: llama-finetune has only the optimizers adamw and sgd: paged_adamw_8bit is exported as --optimizer adamw"
        in (" ".join(result.stderr.split()))
    )


def test_sft_is_full_fine_tuning_and_the_table_says_so() -> None:
    result = runner.invoke(app, ["recommend", "-p", "7B", "-m", "sft", "-n", "1000"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "full · 7,000,000,000 parameters" in text
    assert "note: method 'sft' read as full fine-tuning (all weights trained)" in text


@pytest.mark.parametrize("epochs", ["0", "-2"])
def test_bad_epochs_for_llama_cpp_are_refused_by_the_option_name_before_any_output(epochs: str) -> None:
    """--epochs 0 was refused as 'to_llama_cpp: epochs', after llama.cpp's notes had been printed."""
    args = ["recommend", "-p", "7B", "-m", "lora", "-n", "100", "-f", "llama-cpp", "--epochs", epochs]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert " ".join(result.stderr.split()) == f"error: recommend: --epochs must be an integer in [1, ∞], got {epochs}"


@pytest.mark.parametrize("json_option", [["--json"], ["--format", "json"], ["-f", "json"]])
def test_an_error_with_json_output_is_json_on_stdout_however_json_was_asked_for(json_option: list[str]) -> None:
    """--json is 'the same as --format json': with -f json an error left stdout empty."""
    result = runner.invoke(app, ["recommend", "-p", "7B", "-m", "lora", "-n", "0", *json_option])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": "recommend: --steps must be an integer in [1, ∞], got 0"}


def test_json_with_another_format_is_refused_not_silently_preferred() -> None:
    result = runner.invoke(app, [*LORA, "--json", "-f", "axolotl"])
    assert result.exit_code == 2
    assert "recommend: --json is --format json; it cannot go with --format axolotl: give one" in result.stderr


def test_rules_in_an_export_format_is_refused_not_printed_as_a_table() -> None:
    result = runner.invoke(app, ["recommend", "--rules", "-f", "axolotl"])
    assert result.exit_code == 2
    assert "recommend: --rules prints a table or JSON (--format table or json), not --format axolotl" in result.stderr
    assert result.stdout == ""


def _saved(model: Any, folder: Path) -> tuple[Path, int]:
    """`model` saved as a user's model folder, and its parameter count (tied weights once)."""
    model.save_pretrained(folder)
    return folder, sum(p.numel() for p in model.parameters())


def test_model_dir_counts_the_parameters_of_a_real_local_model(tmp_path: Path) -> None:
    """recommend had no --model: a user with a local model had to count its parameters by hand, though
    fit and find take the folder. A tiny BERT classifier and a GPT-2 with tied embeddings are counted
    as their own parameters() count them, without loading a weight."""
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
        )
    )
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=120, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    )
    for model, name in ((bert, "bert"), (gpt2, "gpt2")):
        folder, count = _saved(model, tmp_path / name)
        result = runner.invoke(app, ["recommend", "--model", str(folder), "-m", "lora", "-n", "100", "--json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["setup"]["params"] == count
        assert out["peak_lr"] == recommend(count, "lora", steps=100).peak_lr
        assert f"--model {folder}: {count:,} parameters, counted from its config.json" in out["notes"]
    assert gpt2.transformer.wte.weight is gpt2.lm_head.weight  # tied: counted once above


def _touched(path: Path) -> Path:
    path.write_bytes(b"GGUF")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "--model: no such directory"),
        (lambda d: d, "is not a Hugging Face model directory (no config.json)"),
        (lambda d: _touched(d / "llama-3.2-1b-q4_k_m.gguf"), "is a GGUF file (llama.cpp's format); --model counts"),
        (lambda d: _touched(d / "llama-3.2-1b-q4_k_m.gguf").parent, "give the size with --params instead"),
    ],
)
def test_model_dir_that_is_not_a_model_is_refused(make: Any, message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["recommend", "--model", str(make(tmp_path)), "-m", "lora", "-n", "100"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_model_dir_and_params_together_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["recommend", "--model", str(tmp_path), "-p", "7B", "-m", "lora", "-n", "100"])
    assert result.exit_code == 2
    assert f"--params 7B and --model {tmp_path} both give the model's size: give one" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("args", "note"),
    [
        ("-p 7B -m full -n 100 --ref-lr 1e-5", "--ref-lr without --ref-batch-size: taken as tuned at this batch size"),
        ("-p 7B -m full -n 100 --ref-lr 1e-5 --ref-batch-size 8", "no --batch-size given: --ref-lr is not scaled"),
        ("-p 7B -m full -n 100 --optimizer sgd", "no --batch-size given: Goyal et al.'s reference batch of 256"),
        ("-p 1B -m pretraining -n 100", "give --tokens (or --steps with --batch-size and --seq-len) to apply DeepSeek"),
        ("-p 1B -m pretraining --tokens 2B -n 100", "tokens: give --batch-size and --seq-len to scale"),
    ],
)
def test_notes_name_the_flags_too(args: str, note: str) -> None:
    """The notes told a CLI user to 'give tokens (or steps with batch_size and seq_len)'."""
    result = runner.invoke(app, ["recommend", *shlex.split(args), "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any(note in n for n in notes), notes
    assert not [n for n in notes if "batch_size" in n or "ref_lr" in n or "seq_len" in n]
