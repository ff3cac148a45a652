"""The exports build real configs: Hugging Face ``TrainingArguments`` (and TRL's ``SFTConfig`` where
TRL is installed), axolotl YAML that parses, torchtune overrides, llama.cpp flags, and PyTorch code
that runs the recommended schedule exactly."""

from __future__ import annotations

import dataclasses
import math
import shlex
from pathlib import Path
from typing import Any

import pytest

from lrpilot.integrations.transformers import from_training_args
from lrpilot.rules import (
    FORMATS,
    OPTIMIZER_NAMES,
    Recommendation,
    export_notes,
    recommend,
    to_axolotl,
    to_hf,
    to_llama_cpp,
    to_pytorch,
    to_torchtune,
    to_trl,
    torchtune_blockers,
)
from lrpilot.rules._exports import _yaml_float

CASES = {
    "lora": recommend("135M", "lora", batch_size=32, steps=200),
    "qlora-sgd": recommend("1B", "qlora", optimizer="sgd", batch_size=64, steps=150),
    "full": recommend("7B", "full", steps=300),
    "pretraining": recommend("125M", "pretraining", steps=250),
    "rl-adam": recommend("8B", "dpo", optimizer="adam", steps=120),
}


def test_formats_are_listed() -> None:
    assert FORMATS == ("hf", "trl", "axolotl", "torchtune", "llama-cpp", "pytorch")


@pytest.mark.parametrize("name", list(CASES))
def test_hf_kwargs_build_training_arguments(name: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    rec = CASES[name]
    kwargs = to_hf(rec)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), **kwargs)
    assert args.learning_rate == rec.peak_lr
    assert args.max_steps == rec.total_steps
    assert args.warmup_steps == rec.warmup_steps
    assert str(getattr(args.optim, "value", args.optim)) == ("sgd" if rec.setup.optimizer == "sgd" else "adamw_torch")
    assert args.weight_decay == 0.0  # Adam is AdamW without it; to_hf says so for Adam
    # The Trainer's schedule is the recommendation's, with Hugging Face's warmup from 0.
    rebuilt = from_training_args(args)
    expected = dataclasses.replace(rec.schedule, warmup_offset=0.0)  # type: ignore[type-var]
    steps = range(rec.total_steps + 1)
    assert [rebuilt(s) for s in steps] == pytest.approx([expected(s) for s in steps], rel=1e-12, abs=1e-18)


def test_hf_sgd_gets_the_momentum_the_rule_assumes() -> None:
    kwargs = to_hf(CASES["qlora-sgd"])
    assert kwargs["optim"] == "sgd"
    assert kwargs["optim_args"] == "momentum=0.9"


def test_hf_pretraining_keeps_its_floor() -> None:
    kwargs = to_hf(CASES["pretraining"])
    assert kwargs["lr_scheduler_type"] == "cosine_with_min_lr"
    assert kwargs["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # SFTConfig's own default
def test_trl_kwargs_build_an_sft_config(tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    rec = CASES["lora"]
    config = trl.SFTConfig(output_dir=str(tmp_path), bf16=False, **to_trl(rec))  # TRL's bf16 default needs a GPU
    assert config.learning_rate == rec.peak_lr
    assert config.max_steps == rec.total_steps


def test_trl_kwargs_are_the_training_arguments() -> None:
    for rec in CASES.values():
        assert to_trl(rec) == to_hf(rec)


@pytest.mark.parametrize("name", list(CASES))
def test_axolotl_yaml_parses_to_the_recommendation(name: str) -> None:
    yaml = pytest.importorskip("yaml")
    rec = CASES[name]
    config: dict[str, Any] = yaml.safe_load(to_axolotl(rec))
    assert isinstance(config["learning_rate"], float)
    assert config["learning_rate"] == rec.peak_lr
    assert config["lr_scheduler"] == rec.schedule.name
    assert config["warmup_steps"] == rec.warmup_steps
    assert config["max_steps"] == rec.total_steps
    assert config["optimizer"] == ("sgd" if rec.setup.optimizer == "sgd" else "adamw_torch")
    if rec.floor_ratio:
        assert config["cosine_min_lr_ratio"] == rec.floor_ratio
    else:
        assert "cosine_min_lr_ratio" not in config
    assert "loraplus_lr_ratio" not in config  # an option: written as a comment
    assert ("# loraplus_lr_ratio: 16.0" in to_axolotl(rec)) is (rec.lora_plus_ratio is not None)


def _axolotl_trainer_lrs(config: dict[str, Any], tmp_path: Path) -> list[float]:
    """The LR of each step of the run, from axolotl's YAML as axolotl hands it to Hugging Face: its
    ``lr_scheduler`` and ``lr_scheduler_kwargs`` become ``TrainingArguments``' (``cosine`` with a
    ``cosine_min_lr_ratio`` is axolotl's own scheduler, not covered here)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=config["learning_rate"],
        lr_scheduler_type=config["lr_scheduler"],
        lr_scheduler_kwargs=config.get("lr_scheduler_kwargs") or {},
        warmup_steps=config["warmup_steps"],
        max_steps=config["max_steps"],
    )
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=args.learning_rate)
    scheduler = transformers.get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(args.max_steps),
        num_training_steps=args.max_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    lrs = []
    for _ in range(args.max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("shape", ["linear", "wsd"])
def test_axolotl_writes_a_floor_axolotl_has_no_key_for_as_hugging_face_scheduler_kwargs(
    shape: str, tmp_path: Path
) -> None:
    """Pretraining with --decay linear (a linear decay to 10 %) was refused ("axolotl has no
    lr_scheduler"), though the torchtune refusal sends users to axolotl for the floor: axolotl takes
    any Hugging Face lr_scheduler with its lr_scheduler_kwargs."""
    yaml = pytest.importorskip("yaml")
    from lrpilot.schedules import WSD

    rec = recommend("1B", "pretraining", steps=300, decay="linear")
    if shape == "wsd":  # `lrpilot tune` may pick WSD and print it through the same exports
        wsd = WSD(peak=rec.peak_lr, total_steps=300, warmup_steps=0, decay_steps=60, floor_ratio=0.1)
        rec = dataclasses.replace(rec, schedule=wsd, warmup_steps=0)
    config: dict[str, Any] = yaml.safe_load(to_axolotl(rec))
    assert config["lr_scheduler"] == to_hf(rec)["lr_scheduler_type"]
    assert config["lr_scheduler_kwargs"] == to_hf(rec)["lr_scheduler_kwargs"]
    assert "cosine_min_lr_ratio" not in config
    expected = dataclasses.replace(rec.schedule, warmup_offset=0.0)  # type: ignore[type-var]
    lrs = _axolotl_trainer_lrs(config, tmp_path)
    assert lrs == pytest.approx([expected(s) for s in range(rec.total_steps)], rel=1e-12, abs=1e-18)
    assert lrs[-1] > 0.1 * rec.peak_lr  # the floor is kept


@pytest.mark.parametrize("x", [1e-05, 2e-4, 0.0003, 5e-06, 1e-10, 16.0, 0.1, 123456789.0, 1e20])
def test_yaml_floats_read_back_as_floats(x: float) -> None:
    yaml = pytest.importorskip("yaml")
    value = yaml.safe_load(f"x: {_yaml_float(x)}")["x"]
    assert isinstance(value, float)
    assert value == x


def test_torchtune_overrides_for_a_cosine_run() -> None:
    rec = CASES["lora"]
    overrides = to_torchtune(rec)
    assert overrides == [
        "optimizer._component_=torch.optim.AdamW",
        f"optimizer.lr={rec.peak_lr!r}",
        "lr_scheduler._component_=torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
        "lr_scheduler.num_warmup_steps=20",
        "epochs=1",
        "max_steps_per_epoch=200",
    ]
    assert all("=" in o and " " not in o for o in overrides)
    sgd = to_torchtune(CASES["qlora-sgd"])
    assert "optimizer._component_=torch.optim.SGD" in sgd
    assert "optimizer.momentum=0.9" in sgd


def test_torchtune_refuses_a_linear_decay_and_names_the_cosine_option() -> None:
    assert torchtune_blockers(CASES["full"]) == {"decay": "has a linear decay"}
    with pytest.raises(ValueError, match=r"torchtune's only built-in LR scheduler \(get_cosine_schedule") as e:
        to_torchtune(CASES["full"])
    assert "linear(peak=" in str(e.value)
    assert "has a linear decay" in str(e.value)
    assert "recommend(..., decay='cosine')" in str(e.value)


def test_torchtune_refuses_pretrainings_floor_by_name_not_its_decay() -> None:
    """A cosine pretraining run is blocked by its 10 % floor only: decay='cosine' would not help."""
    rec = recommend("1B", "pretraining", steps=100)
    assert list(torchtune_blockers(rec)) == ["floor"]
    with pytest.raises(ValueError) as e:  # noqa: PT011 - the fragments below are the match
        to_torchtune(rec)
    message = str(e.value)
    assert "keeps a floor of 10 % of the peak (2.23e-05)" in message
    assert "to_pytorch(rec)" in message
    assert "decay=" not in message
    both = recommend("1B", "pretraining", steps=100, decay="linear")
    assert list(torchtune_blockers(both)) == ["decay", "floor"]


def test_torchtune_takes_a_cosine_full_fine_tuning_run() -> None:
    rec = recommend("7B", "full", steps=300, decay="cosine")
    assert f"optimizer.lr={rec.peak_lr!r}" in to_torchtune(rec)


def test_llama_cpp_flags() -> None:
    rec = CASES["full"]
    assert to_llama_cpp(rec) == ["--learning-rate", "1e-05", "--optimizer", "adamw"]
    assert to_llama_cpp(rec, epochs=3)[-2:] == ["--epochs", "3"]
    # llama.cpp's SGD has no momentum: 10× the LR of momentum-0.9 SGD is the same effective step.
    sgd = CASES["qlora-sgd"]
    flags = to_llama_cpp(sgd)
    assert flags[2:] == ["--optimizer", "sgd"]
    assert float(flags[1]) == pytest.approx(10 * sgd.peak_lr, rel=1e-2)
    assert shlex.split(shlex.join(flags)) == flags
    with pytest.raises(ValueError, match=r"to_llama_cpp: epochs must be an integer ≥ 1, got 0"):
        to_llama_cpp(rec, epochs=0)


def _run_pytorch(rec: Recommendation, model: Any, *, lora_plus: float | None = None) -> list[list[float]]:
    """Exec the exported code on `model`, train for the whole run, return each step's group LRs."""
    torch = pytest.importorskip("torch")
    code = to_pytorch(rec)
    if lora_plus is not None:
        code = code.replace("LORA_PLUS_RATIO = 1.0", f"LORA_PLUS_RATIO = {lora_plus!r}")
    namespace: dict[str, Any] = {"model": model}
    exec(compile(code, "<to_pytorch>", "exec"), namespace)
    optimizer, scheduler = namespace["optimizer"], namespace["scheduler"]
    x = torch.randn(8, 4)
    seen = []
    for _ in range(rec.total_steps + 1):
        seen.append([g["lr"] for g in optimizer.param_groups])
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return seen


@pytest.mark.parametrize("name", list(CASES))
def test_pytorch_code_runs_the_recommended_schedule_exactly(name: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rec = CASES[name]
    seen = _run_pytorch(rec, torch.nn.Linear(4, 2))
    assert [lrs[0] for lrs in seen] == pytest.approx([rec.schedule(s) for s in range(len(seen))], rel=1e-12)
    code = to_pytorch(rec)
    assert "lrpilot" not in code.replace("# lrpilot recommend:", "")  # plain torch, no lrpilot import
    expected = {"sgd": "torch.optim.SGD(params, lr=PEAK_LR, momentum=0.9)", "adam": "torch.optim.Adam(params"}
    assert expected.get(rec.setup.optimizer, "torch.optim.AdamW(params") in code


def test_pytorch_code_puts_lora_b_in_a_lora_plus_group() -> None:
    torch = pytest.importorskip("torch")

    class TinyLoRA(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.base = torch.nn.Linear(4, 2).requires_grad_(False)
            self.lora_A = torch.nn.Linear(4, 1, bias=False)
            self.lora_B = torch.nn.Linear(1, 2, bias=False)

        def forward(self, x: Any) -> Any:
            return self.base(x) + self.lora_B(self.lora_A(x))

    rec = CASES["lora"]
    assert "LORA_PLUS_RATIO = 1.0  # LoRA+ (optional" in to_pytorch(rec)
    plain = _run_pytorch(rec, TinyLoRA())
    assert all(b == a for a, b in plain)
    plus = _run_pytorch(rec, TinyLoRA(), lora_plus=rec.lora_plus_ratio)
    assert [b for _, b in plus] == pytest.approx([16.0 * a for a, _ in plus], rel=1e-12)
    assert [a for a, _ in plus] == pytest.approx([rec.schedule(s) for s in range(len(plus))], rel=1e-12)


@pytest.mark.parametrize("decay_shape", ["1-sqrt", "linear", "cosine"])
def test_pytorch_code_runs_a_wsd_schedule_exactly(decay_shape: str) -> None:
    """`lrpilot tune --search decay` can pick WSD: the plain-PyTorch export holds the peak and decays
    over the last steps as lrpilot's WSD does, step for step."""
    torch = pytest.importorskip("torch")
    from lrpilot.schedules import WSD

    base = CASES["pretraining"]
    wsd = WSD(
        peak=base.peak_lr,
        total_steps=base.total_steps,
        warmup_steps=base.warmup_steps,
        decay_steps=50,
        decay_shape=decay_shape,
        floor_ratio=0.1,
    )
    rec = dataclasses.replace(base, schedule=wsd)
    seen = _run_pytorch(rec, torch.nn.Linear(4, 2))
    assert [lrs[0] for lrs in seen] == pytest.approx([wsd(s) for s in range(len(seen))], rel=1e-12)
    assert "DECAY_START = 200" in to_pytorch(rec)


# --- the optimizer asked for, in every export --------------------------------------------------

_TORCHTUNE = {
    "adamw": ["optimizer._component_=torch.optim.AdamW"],
    "adam": ["optimizer._component_=torch.optim.Adam", "optimizer.weight_decay=0.0"],
    "sgd": ["optimizer._component_=torch.optim.SGD", "optimizer.momentum=0.9"],
    "adamw_torch": ["optimizer._component_=torch.optim.AdamW"],
    "adamw_torch_fused": ["optimizer._component_=torch.optim.AdamW", "optimizer.fused=True"],
    "adamw_8bit": ["optimizer._component_=bitsandbytes.optim.AdamW8bit"],
    "adamw_bnb_8bit": ["optimizer._component_=bitsandbytes.optim.AdamW8bit"],
    "paged_adamw_8bit": ["optimizer._component_=bitsandbytes.optim.PagedAdamW8bit"],
    "paged_adamw_32bit": ["optimizer._component_=bitsandbytes.optim.PagedAdamW"],
}
_HF = {"adamw": "adamw_torch", "adam": "adamw_torch"}


def _with(name: str) -> Recommendation:
    return recommend("7B", "qlora", optimizer=name, batch_size=16, steps=200)


def test_every_optimizer_name_has_every_exports_spelling() -> None:
    assert set(_TORCHTUNE) == set(OPTIMIZER_NAMES)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_hf_and_trl_carry_the_optimizer_and_training_arguments_accept_it(name: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    rec = _with(name)
    kwargs = to_hf(rec)
    assert kwargs["optim"] == _HF.get(name, name)
    assert to_trl(rec) == kwargs
    args = transformers.TrainingArguments(output_dir=str(tmp_path), **kwargs)
    assert str(getattr(args.optim, "value", args.optim)) == _HF.get(name, name)
    assert args.learning_rate == rec.peak_lr


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # SFTConfig's own default
def test_trl_sft_config_takes_a_paged_8bit_optimizer(tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    config = trl.SFTConfig(output_dir=str(tmp_path), bf16=False, **to_trl(_with("paged_adamw_8bit")))
    assert str(getattr(config.optim, "value", config.optim)) == "paged_adamw_8bit"


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_axolotl_and_torchtune_carry_the_optimizer(name: str) -> None:
    yaml = pytest.importorskip("yaml")
    rec = _with(name)
    assert yaml.safe_load(to_axolotl(rec))["optimizer"] == _HF.get(name, name)
    overrides = to_torchtune(rec)
    expected = _TORCHTUNE[name]
    assert overrides[: len(expected) + 1] == [expected[0], f"optimizer.lr={rec.peak_lr!r}", *expected[1:]]


def test_torchtune_adam_overrides_the_configs_weight_decay() -> None:
    """torchtune's configs set optimizer.weight_decay: 0.01 for AdamW (decoupled); with the component
    swapped to torch.optim.Adam it became an L2 term, while every other export makes Adam exactly
    Adam (weight_decay=0.0)."""
    overrides = to_torchtune(_with("adam"))
    assert "optimizer.weight_decay=0.0" in overrides
    assert not any("weight_decay" in o for o in to_torchtune(_with("adamw")))
    assert "torch.optim.Adam(params, lr=PEAK_LR, weight_decay=0.0)" in to_pytorch(_with("adam"))


def test_axolotl_adam_is_adamw_without_weight_decay() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(to_axolotl(_with("adam")))
    assert (config["optimizer"], config["weight_decay"]) == ("adamw_torch", 0.0)
    assert "weight_decay" not in yaml.safe_load(to_axolotl(_with("adamw")))


@pytest.mark.parametrize("name", ["adamw_torch", "adamw_torch_fused"])
def test_pytorch_code_runs_a_torch_implementation_exactly(name: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rec = _with(name)
    seen = _run_pytorch(rec, torch.nn.Linear(4, 2))
    assert [lrs[0] for lrs in seen] == pytest.approx([rec.schedule(s) for s in range(len(seen))], rel=1e-12)
    assert ("fused=True" in to_pytorch(rec)) is (name == "adamw_torch_fused")


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("adamw_8bit", "optimizer = bitsandbytes.optim.AdamW8bit(params, lr=PEAK_LR)"),
        ("paged_adamw_8bit", "optimizer = bitsandbytes.optim.PagedAdamW8bit(params, lr=PEAK_LR)"),
        ("paged_adamw_32bit", "optimizer = bitsandbytes.optim.PagedAdamW(params, lr=PEAK_LR)"),
    ],
)
def test_pytorch_code_imports_bitsandbytes_for_its_optimizers(name: str, line: str) -> None:
    code = to_pytorch(_with(name))
    compile(code, "<to_pytorch>", "exec")
    assert f"import bitsandbytes  # {name}\n" in code
    assert line in code.splitlines()
    assert f"qlora, 7B parameters, {name} (adamw rules)" in code
    assert "import bitsandbytes" not in to_pytorch(_with("adamw"))


def test_llama_cpp_states_its_optimizer_fallback() -> None:
    assert to_llama_cpp(_with("paged_adamw_8bit"))[2:] == ["--optimizer", "adamw"]
    notes = export_notes(_with("paged_adamw_8bit"), "llama-cpp")
    assert (
        "llama-finetune has only the optimizers adamw and sgd: paged_adamw_8bit is exported as --optimizer adamw"
        in notes
    )
    assert not any("only the optimizers" in n for n in export_notes(_with("adamw"), "llama-cpp"))
    assert any("no momentum" in n for n in export_notes(_with("sgd"), "llama-cpp"))
    for fmt in ("hf", "trl", "axolotl", "pytorch"):
        assert export_notes(_with("paged_adamw_8bit"), fmt) == []


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_torchtune_notes_that_its_configs_fused_breaks_a_bitsandbytes_optimizer(name: str) -> None:
    """torchtune's own QLoRA configs (llama3_1/8B_qlora_single_device.yaml) set optimizer.fused: True;
    with optimizer._component_=bitsandbytes.optim.PagedAdamW8bit the overrides built
    PagedAdamW8bit(fused=True, ...), a TypeError, and nothing said so."""
    notes = export_notes(_with(name), "torchtune")
    if to_torchtune(_with(name))[0].startswith("optimizer._component_=bitsandbytes."):
        assert len(notes) == 1
        assert "optimizer.fused: True" in notes[0]
        assert "add ~optimizer.fused to the overrides" in notes[0]
    else:
        assert notes == []


@pytest.mark.parametrize(
    ("name", "cls", "defaults"),
    [
        ("sgd", "SGD", {"momentum": 0.9, "weight_decay": 0.0}),
        ("adam", "AdamW", {"weight_decay": 0.0}),
        ("adamw", "AdamW", {}),
    ],
)
def test_hf_kwargs_give_a_real_trainer_the_optimizer_the_rules_assume(
    name: str, cls: str, defaults: dict[str, float], tmp_path: Path
) -> None:
    """`optim_args="momentum=0.9"` must reach torch.optim.SGD through the Trainer, not only sit in
    TrainingArguments: Goyal et al.'s LR is for momentum-0.9 SGD."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    rec = _with(name)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], **to_hf(rec))
    optimizer = transformers.Trainer(model=torch.nn.Sequential(torch.nn.Linear(4, 2)), args=args).create_optimizer()
    assert type(optimizer).__name__ == cls
    for group in optimizer.param_groups:  # the Trainer puts weight_decay in each group (torch's default is 0.01)
        assert group["lr"] == rec.peak_lr
        assert {k: group[k] for k in defaults} == defaults


@pytest.mark.parametrize("config", ["SFTConfig", "DPOConfig", "GRPOConfig"])
@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL's own defaults warn about transformers' deprecations
def test_trl_kwargs_build_every_trl_config_an_rl_run_uses(config: str, tmp_path: Path) -> None:
    """`to_trl` says DPOConfig and GRPOConfig take its kwargs, as SFTConfig does."""
    trl = pytest.importorskip("trl")
    rec = recommend("8B", "grpo", optimizer="paged_adamw_8bit", steps=120)
    built = getattr(trl, config)(output_dir=str(tmp_path), bf16=False, **to_trl(rec))
    assert (built.learning_rate, built.max_steps, built.warmup_steps) == (5e-6, 120, rec.warmup_steps)
    assert str(getattr(built.optim, "value", built.optim)) == "paged_adamw_8bit"


def test_export_keys_are_the_ones_the_tools_read() -> None:
    """The tools that are not installed here, pinned to the names their sources read (checked by hand;
    a rename there must be made here too):

    * axolotl: ``src/axolotl/utils/schemas/training.py`` (HyperparametersConfig: ``learning_rate``,
      ``optimizer`` of transformers' OptimizerNames, ``optim_args``, ``weight_decay``, ``lr_scheduler``
      of SchedulerType, ``lr_scheduler_kwargs``, ``cosine_min_lr_ratio``), ``utils/schemas/config.py``
      (``max_steps``, ``warmup_steps``), ``utils/schemas/peft.py`` (``loraplus_lr_ratio``),
      ``core/builders/base.py`` (``_configure_scheduler`` passes ``lr_scheduler_kwargs`` to
      TrainingArguments) and ``core/trainers/mixins/scheduler.py`` (``lr_scheduler: cosine`` with
      ``cosine_min_lr_ratio`` is its cosine to ``ratio × lr``);
    * torchtune: ``torchtune/training/lr_schedulers.py`` (``get_cosine_schedule_with_warmup(optimizer,
      num_warmup_steps, num_training_steps)``, from 0 to 0), ``recipes/configs/llama3_1/8B_lora.yaml``
      and ``8B_qlora_single_device.yaml`` (``optimizer._component_``, ``optimizer.lr``,
      ``lr_scheduler.num_warmup_steps``, ``epochs``, ``max_steps_per_epoch``); overrides are OmegaConf
      dotlist entries, whose YAML loader (``omegaconf/_utils.py`` get_yaml_loader) reads ``1e-05`` as a
      float;
    * llama.cpp: ``common/arg.cpp`` (LLAMA_EXAMPLE_FINETUNE: ``-lr/--learning-rate``,
      ``-opt/--optimizer`` taking ``adamw`` or ``sgd``, ``-epochs/--epochs``).
    """
    yaml = pytest.importorskip("yaml")
    axolotl_keys = {
        "learning_rate",
        "lr_scheduler",
        "lr_scheduler_kwargs",
        "cosine_min_lr_ratio",
        "warmup_steps",
        "max_steps",
        "optimizer",
        "optim_args",
        "weight_decay",
    }
    for rec in (*CASES.values(), recommend("1B", "pretraining", steps=300, decay="linear")):
        assert set(yaml.safe_load(to_axolotl(rec))) <= axolotl_keys
    assert "# loraplus_lr_ratio: 16.0" in to_axolotl(CASES["lora"])
    torchtune_keys = {
        "optimizer._component_",
        "optimizer.lr",
        "optimizer.momentum",
        "optimizer.weight_decay",
        "optimizer.fused",
        "lr_scheduler._component_",
        "lr_scheduler.num_warmup_steps",
        "epochs",
        "max_steps_per_epoch",
    }
    for name in OPTIMIZER_NAMES:
        overrides = dict(o.split("=", 1) for o in to_torchtune(_with(name)))
        assert set(overrides) <= torchtune_keys
        assert (
            overrides["lr_scheduler._component_"] == "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup"
        )
    assert {f for f in to_llama_cpp(CASES["qlora-sgd"], epochs=2) if f.startswith("-")} == {
        "--learning-rate",
        "--optimizer",
        "--epochs",
    }
    assert {to_llama_cpp(_with(name))[3] for name in OPTIMIZER_NAMES} == {"adamw", "sgd"}


def test_axolotl_notes_that_it_runs_a_one_step_warmup_as_two() -> None:
    """axolotl's trainer builder turns ``warmup_steps == 1`` into 2 (core/builders/base.py), so a
    short run's one-step warmup was exported as if axolotl kept it."""
    short = recommend("7B", "full", steps=12)
    assert short.warmup_steps == 1
    assert export_notes(short, "axolotl") == [
        "axolotl runs warmup_steps: 1 as 2 steps (its trainer builder raises a one-step warmup to two)"
    ]
    assert export_notes(CASES["full"], "axolotl") == []


def test_axolotl_cosine_floor_runs_the_recommended_schedule_in_axolotls_own_scheduler() -> None:
    """axolotl runs ``lr_scheduler: cosine`` with ``cosine_min_lr_ratio`` in its own scheduler, not
    transformers': ``get_cosine_schedule_with_min_lr`` (src/axolotl/utils/schedulers.py), whose factor
    is step / warmup in the warmup, then ``(1 - ratio) * 0.5 * (1 + cos(pi * progress)) + ratio``.
    That formula, copied here as axolotl writes it, on the exported YAML gives the recommended
    schedule (warming up from 0) at every step."""
    yaml = pytest.importorskip("yaml")
    rec = CASES["pretraining"]
    config = yaml.safe_load(to_axolotl(rec))
    warmup, total, ratio = config["warmup_steps"], config["max_steps"], config["cosine_min_lr_ratio"]

    def axolotl_factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return (1 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)) + ratio

    expected = dataclasses.replace(rec.schedule, warmup_offset=0.0)  # type: ignore[type-var]
    lrs = [config["learning_rate"] * axolotl_factor(s) for s in range(total)]
    assert lrs == pytest.approx([expected(s) for s in range(total)], rel=1e-12, abs=1e-18)
