"""``--lora-rank``, ``--lora-alpha`` and ``--lora-targets`` (`lrpilot.autopilot._lora`): checked
before anything loads, on the adapters of tiny random Llama, GPT-2 and BERT checkpoints, in the
saved ``adapter_config.json`` and a reload with peft, and rebuilt by a resumed fit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.autopilot import fit
from lrpilot.autopilot._hf import load_hf_task
from lrpilot.autopilot._lora import LoraOptions, lora_options
from tests.autopilot.conftest import chat_tokenizer, minilm_dir, tiny_bert_dir, write_rows

# peft 0.21 calls a name transformers 5 deprecates when it loads an adapter (lrpilot's own calls filter it)
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

BUDGET = 6
FINDER_STEPS = 12
LLAMA_BLOCK = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
LLAMA_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-block Llama with a byte-level BPE tokenizer, saved as a user's model."""
    transformers = pytest.importorskip("transformers")
    tokenizer = chat_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer (no sentence-transformers pooling:
    Hugging Face's classification head), saved as a user's model."""
    return tiny_bert_dir(tmp_path_factory.mktemp("models") / "tiny-bert", layers=2, head=False)


def _lines(path: Path) -> Path:
    rows = [json.dumps({"text": f"the quick brown fox number {i} jumps over the lazy dog"}) for i in range(40)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _reviews(path: Path) -> Path:
    return write_rows(
        path, [{"text": f"{['a dull', 'a witty'][i % 2]} film, number {i}", "label": i % 2} for i in range(40)]
    )


def _adapted(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The modules carrying an adapter, by name."""
    return {name: module for name, module in model.named_modules() if hasattr(module, "lora_A")}


def _llama_model(folder: Path, data: Path, **options: Any) -> torch.nn.Module:
    lora = lora_options("fit", "lora", **options)
    return load_hf_task(folder, data, kind="causal-lm", method="lora", lora=lora).build_model(0)


def test_the_rank_and_alpha_reach_the_adapters(tiny_llama: Path, tmp_path: Path) -> None:
    """A's rows and B's columns are the rank; peft's scale is alpha / rank: 2 by default at any rank."""
    data = _lines(tmp_path / "train.jsonl")
    for options, rank, scale in (({}, 8, 2.0), ({"rank": 4}, 4, 2.0), ({"rank": 4, "alpha": 3.0}, 4, 0.75)):
        adapted = _adapted(_llama_model(tiny_llama, data, **options))
        assert len(adapted) == 2 * 4
        for module in adapted.values():
            assert module.lora_A["default"].weight.shape[0] == rank
            assert module.lora_B["default"].weight.shape[1] == rank
            assert module.scaling["default"] == pytest.approx(scale)


def test_the_targets_attention_all_linear_or_named(tiny_llama: Path, tmp_path: Path) -> None:
    data = _lines(tmp_path / "train.jsonl")

    def targets(**options: Any) -> list[str]:
        names = _adapted(_llama_model(tiny_llama, data, **options))
        return sorted(name.removeprefix("base_model.model.model.layers.") for name in names)

    def expected(*kinds: str) -> list[str]:
        return sorted(f"{i}.{kind}" for i in (0, 1) for kind in kinds)

    assert targets() == expected(*LLAMA_BLOCK)
    assert targets(targets="all-linear") == expected(*LLAMA_BLOCK, *LLAMA_MLP)  # never the LM head
    assert targets(targets="q_proj,v_proj") == expected("self_attn.q_proj", "self_attn.v_proj")
    assert targets(targets=["mlp.down_proj"]) == expected("mlp.down_proj")
    choices = ", ".join((*LLAMA_BLOCK, *LLAMA_MLP))
    with pytest.raises(ValueError, match=rf"--lora-targets: 'qproj' is none of .* are {re.escape(choices)} \("):
        targets(targets="q_proj,qproj")
    with pytest.raises(ValueError, match=r"'lm_head' is none of this model's projections"):
        targets(targets="lm_head")  # a head is no block's projection


def test_all_linear_on_a_classifier_leaves_its_head_and_pooler_to_train_in_full(
    tiny_bert: Path, tmp_path: Path
) -> None:
    lora = lora_options("fit", "lora", 4, None, "all-linear")
    model = load_hf_task(tiny_bert, _reviews(tmp_path / "train.csv"), method="lora", lora=lora).build_model(0)
    kinds = {name.split(".layer.")[1].split(".", 1)[1] for name in _adapted(model)}
    assert kinds == {"attention.self.query", "attention.self.key", "attention.self.value"} | {
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    trained = {name for name, p in model.named_parameters() if p.requires_grad and "lora_" not in name}
    assert trained
    assert all(".classifier." in name for name in trained)  # the fresh head (peft's SEQ_CLS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "full", "rank": 4}, "fit: --lora-rank applies to --method lora (adapters), and this run is "),
        (
            {"method": "full", "alpha": 8.0, "targets": "all-linear"},
            "fit: --lora-alpha, --lora-targets apply to --method lora",
        ),
        ({"rank": 0}, "fit: --lora-rank must be an integer in [1, ∞], got 0"),
        ({"rank": 2.5}, "fit: --lora-rank must be an integer in [1, ∞], got 2.5"),
        ({"alpha": 0.0}, "fit: --lora-alpha must be a finite number > 0, got 0.0"),
        ({"targets": "q_proj,,v_proj"}, "fit: --lora-targets must be attention or all-linear, or module names"),
        ({"targets": ["attention", "mlp"]}, "--lora-targets must be attention or all-linear, or module names"),
        ({"targets": ""}, "--lora-targets must be attention or all-linear"),
    ],
)
def test_bad_lora_options_are_refused(options: dict[str, Any], message: str) -> None:
    method = options.pop("method", "lora")
    with pytest.raises(ValueError, match=re.escape(message)):
        lora_options("fit", method, **options)


def test_the_defaults_are_rank_8_alpha_16_on_attention() -> None:
    assert lora_options("fit", "lora") == LoraOptions(8, None, "attention")
    assert LoraOptions().lora_alpha == 16
    assert lora_options("fit", "lora", targets=" q_proj, v_proj,q_proj").targets == ("q_proj", "v_proj")
    assert lora_options("fit", "lora", targets=["all-linear"]).targets == "all-linear"


def test_fit_refuses_lora_options_of_a_built_in_task_or_a_full_fine_tune_before_anything(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"fit: --lora-rank applies to --model \(your own model\)"):
        fit("sst2-lora", lora_rank=16, out=tmp_path / "run")
    data = _lines(tmp_path / "train.jsonl")
    with pytest.raises(ValueError, match=r"fit: --lora-targets applies to --method lora"):
        fit(model=tiny_llama, data=data, task_type="causal-lm", lora_targets="all-linear", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits  # type: ignore[no-any-return]


def test_a_fit_saves_the_adapters_it_was_given_and_peft_reloads_them(tiny_llama: Path, tmp_path: Path) -> None:
    """Rank 4, alpha 12 on every block projection: in the notes (with the calibration's caveat),
    in ``adapter_config.json``, and reloaded by peft to the same predictions."""
    peft = pytest.importorskip("peft")
    result = fit(
        model=tiny_llama,
        data=_lines(tmp_path / "train.jsonl"),
        task_type="causal-lm",
        method="lora",
        lora_rank=4,
        lora_alpha=12,
        lora_targets="all-linear",
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    kinds = ", ".join((*LLAMA_BLOCK, *LLAMA_MLP))
    notes = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["notes"]
    assert any(note.startswith(f"LoRA: rank 4 (alpha 12) adapters on 14 projections ({kinds}); ") for note in notes)
    assert any(note.startswith("--lora-targets all-linear: fit's LR choice for causal LMs") for note in notes)
    config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"]) == (4, 12)
    assert sorted(config["target_modules"]) == sorted(
        f"model.layers.{i}.{kind}" for i in (0, 1) for kind in (*LLAMA_BLOCK, *LLAMA_MLP)
    )
    reloaded = peft.AutoPeftModelForCausalLM.from_pretrained(result.model_path)
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    assert result.model is not None
    assert torch.allclose(_logits(reloaded, ids), _logits(result.model, ids), atol=1e-5)


def test_a_classifiers_named_targets_saved_and_reloaded_by_peft(tiny_bert: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    result = fit(
        model=tiny_bert,
        data=_reviews(tmp_path / "train.csv"),
        method="lora",
        lora_rank=2,
        lora_targets=["query", "value"],
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"]) == (2, 4)
    assert sorted(config["target_modules"]) == sorted(
        f"bert.encoder.layer.{i}.attention.self.{kind}" for i in (0, 1) for kind in ("query", "value")
    )
    assert not any(note.startswith("--lora-targets") for note in result.record.notes)  # a classifier: no caveat
    reloaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(result.model_path)
    batch = transformers.AutoTokenizer.from_pretrained(result.model_path)(["a witty film"], return_tensors="pt")
    assert result.model is not None
    reloaded.eval()
    result.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, result.model(**batch).logits, atol=1e-5)


def test_a_resumed_fit_rebuilds_the_same_adapters(tiny_llama: Path, tmp_path: Path) -> None:
    """Stopped after step 2 and resumed from its folder, a rank-4 fit on two named projections
    ends with the weights of the fit never stopped (a resume rebuilding the default rank-8
    attention adapters would not even load its state); a resume given LoRA options is refused."""
    options: dict[str, Any] = {
        "model": tiny_llama,
        "data": _lines(tmp_path / "train.jsonl"),
        "task_type": "causal-lm",
        "method": "lora",
        "lora_rank": 4,
        "lora_targets": "q_proj,down_proj",
        "budget": BUDGET,
        "finder_steps": FINDER_STEPS,
        "report": False,
    }
    whole = fit(**options, out=tmp_path / "whole")

    def stop(step: int, lr: float, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    assert fit(**options, out=tmp_path / "run", callback=stop).status == "interrupted"
    with pytest.raises(ValueError, match=r"--resume takes the interrupted fit's own settings; drop lora_rank"):
        fit(resume=tmp_path / "run", lora_rank=8)
    resumed = fit(resume=tmp_path / "run", report=False)
    assert resumed.status == "finished"
    assert resumed.model is not None
    assert whole.model is not None
    for (name, a), (_, b) in zip(resumed.model.named_parameters(), whole.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    config = json.loads((resumed.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == 4
    assert sorted(config["target_modules"]) == sorted(
        f"model.layers.{i}.{kind}" for i in (0, 1) for kind in ("self_attn.q_proj", "mlp.down_proj")
    )


def test_tune_trains_the_adapters_given_and_continues_a_study_only_with_them(tiny_llama: Path, tmp_path: Path) -> None:
    from lrpilot.tuning import tune

    common: dict[str, Any] = {
        "model": tiny_llama,
        "data": _lines(tmp_path / "train.jsonl"),
        "task_type": "causal-lm",
        "method": "lora",
        "steps": 9,
        "finder_steps": 12,
        "budget": 3.0,
        "out": tmp_path / "run",
        "report": False,
    }
    result = tune(**common, lora_rank=4, lora_targets="q_proj,v_proj")
    assert result.model_path is not None
    config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == 4
    assert sorted(config["target_modules"]) == sorted(
        f"model.layers.{i}.self_attn.{kind}" for i in (0, 1) for kind in ("q_proj", "v_proj")
    )
    tune(**common, lora_rank=4, lora_targets=["q_proj", "v_proj"])  # the same adapters, spelled otherwise
    with pytest.raises(ValueError, match=r"was created with other settings \(target: stored .*'lora_rank': 4"):
        tune(**common, lora_rank=8, lora_targets="q_proj,v_proj")


def test_find_builds_the_adapters_given_and_says_what_fit_would(tiny_llama: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lrpilot.cli._app import app

    args = ["find", "--model", str(tiny_llama), "--data", str(_lines(tmp_path / "train.jsonl"))]
    more = ["--task-type", "causal-lm", "--method", "lora", "--lora-targets", "all-linear", "--steps", "12", "--json"]
    result = CliRunner().invoke(app, [*args, *more])
    assert result.exit_code == 0, result.output
    assert any(note.startswith("--lora-targets all-linear: fit's LR") for note in json.loads(result.stdout)["notes"])


def test_a_sentence_transformers_classifiers_adapters_reload_with_load_classifier(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 read with its own pooling (`PooledClassifier`): its encoder's adapters, rank 4
    on every block projection, are saved and put back on the encoder by `load_classifier`."""
    from lrpilot.autopilot import load_classifier

    transformers = pytest.importorskip("transformers")
    result = fit(
        model=minilm_dir(),
        data=_reviews(tmp_path / "train.csv"),
        method="lora",
        lora_rank=4,
        lora_targets="all-linear",
        budget=BUDGET,
        finder_steps=FINDER_STEPS,
        out=tmp_path / "run",
        report=False,
    )
    config = json.loads((result.model_path / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert "intermediate.dense" in config["target_modules"]  # peft condenses the 36 names to their ends
    assert any(" adapters on 36 projections (attention.self.query, " in note for note in result.record.notes)
    batch = transformers.AutoTokenizer.from_pretrained(result.model_path)(["a witty film"], return_tensors="pt")
    reloaded = load_classifier(result.model_path)
    assert result.model is not None
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, result.model(**batch).logits, atol=1e-5)
