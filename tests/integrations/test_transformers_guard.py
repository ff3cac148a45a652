"""`GuardCallback` in real `transformers.Trainer` runs (a 1-layer GPT-2 built from a config, CPU)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.detect import DetectConfig
from lrpilot.doctor import examine, fitted_config, read
from lrpilot.guard import GuardConfig
from lrpilot.integrations.transformers_guard import GuardCallback
from tests.guard.tiny import gradient_times

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def dataset(n: int = 256, seq: int = 16, vocab: int = 64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, vocab, (n, seq), generator=g)
    rows[:, 1::2] = (rows[:, ::2] + 1) % vocab  # something to learn
    return [{"input_ids": r, "labels": r.clone()} for r in rows]


def train(
    tmp_path: Path,
    *,
    bad: Callable[[int], bool],
    guard: GuardConfig | None = None,
    fitted: bool = False,
    steps: int = 60,
    grads_x100: Callable[[int], bool] = lambda s: False,
    nan_grads: Callable[[int], bool] = lambda s: False,
    max_grad_norm: float = 1.0,
    accumulation: int = 1,
    attach: bool = True,
    save_steps: int = 0,
    resume: bool = False,
    **arguments: Any,
) -> tuple[Any, GuardCallback | None]:
    """A short GPT-2 run; a guard with `guard`, or fitted by the callback (`fitted`), or none.

    The guard is attached (`GuardCallback.attach`) or, with `attach` False, passed as a plain
    callback; a checkpoint is saved every `save_steps` (0: none) and `resume` resumes from the last
    one; `arguments` go to ``TrainingArguments``."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        disable_tqdm=True,
        seed=0,
        max_grad_norm=max_grad_norm,
        gradient_accumulation_steps=accumulation,
        **{"logging_steps": 5, **arguments},
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset())

    def inject(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        # a fault inside the model (an fp16-style overflow in the logits) at chosen steps
        step = trainer.state.global_step
        if module.training and bad(step):
            return output * math.nan
        if module.training and grads_x100(step):
            return gradient_times(output, 100)
        if module.training and nan_grads(step):  # the logits as they are, a NaN gradient behind them
            output = output.clone()
            output.register_hook(lambda grad: torch.full_like(grad, math.nan))
            return output
        return None

    model.lm_head.register_forward_hook(inject)
    callback = None
    if guard is not None or fitted:
        callback = GuardCallback(guard, audit=tmp_path / "audit.jsonl")
        if attach:
            callback = GuardCallback.attach(trainer, guard, audit=tmp_path / "audit.jsonl")
        else:
            trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume or None)
    return trainer, callback


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_without_a_guard_the_trainer_hides_the_nan_and_the_weights_are_lost(tmp_path: Path) -> None:
    trainer, _ = train(tmp_path, bad=lambda s: s == 30)
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert all(math.isfinite(x) for x in logged)  # logging_nan_inf_filter: the log looks fine...
    assert not finite(trainer.model)  # ...the weights are NaN
    path = tmp_path / "trainer_state.json"
    trainer.state.save_to_json(str(path))
    _, diagnosis = examine(path)  # the doctor still sees it, through the logged grad norm
    assert diagnosis.verdict in ("diverged", "unstable")
    assert ("non_finite", "grad_norm") in {(f.kind, f.metric) for f in diagnosis.findings}
    assert any("logging_nan_inf_filter" in note for note in diagnosis.series["notes"])


def test_the_guard_skips_the_nan_step_and_shows_it_in_the_logs(tmp_path: Path) -> None:
    trainer, callback = train(tmp_path, bad=lambda s: s == 30, guard=GuardConfig())
    assert callback is not None
    assert finite(trainer.model)
    report = callback.report()
    assert [(r["action"], r["step"], r["detector"]) for r in report["records"]] == [("skip", 30, "non_finite")]
    assert report["non_finite"] == 1
    at_35 = next(e for e in trainer.state.log_history if e.get("step") == 35)
    assert (at_35["guard_non_finite"], at_35["guard_skips"], at_35["guard_rollbacks"]) == (1, 1, 0)
    assert (tmp_path / "audit.jsonl").read_text().count('"action": "skip"') == 1
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0]


def test_repeated_nan_rolls_back_and_cuts_the_lr(tmp_path: Path) -> None:
    trainer, callback = train(tmp_path, bad=lambda s: 30 <= s < 34, guard=GuardConfig(snapshot_every=10))
    assert callback is not None
    assert finite(trainer.model)
    actions = [(r["action"], r["step"]) for r in callback.report()["records"]]
    assert actions == [("skip", 30), ("skip", 31), ("skip", 32), ("rollback", 33)]
    assert callback.report()["records"][-1]["rollback_to"] == 10  # 30 came too late to be confirmed
    logged = [e for e in trainer.state.log_history if "guard_lr_factor" in e]
    assert logged[-1]["guard_rollbacks"] == 1
    after = next(e for e in logged if e["step"] > 33)
    assert after["guard_lr_factor"] < 1.0  # the factor on the LR at that step (1 once the schedule is below the cap)
    assert trainer.state.global_step == 60  # the Trainer's step went on


def test_a_hopeless_run_stops_with_the_last_good_weights_and_says_why(tmp_path: Path) -> None:
    """The Trainer stopped early without a word (only `report()` and the audit log said why): the
    guard's give-up is a RuntimeWarning with its reason."""
    config = GuardConfig(snapshot_every=10, max_rollbacks=1)
    with pytest.warns(RuntimeWarning, match=r"GuardCallback: training stops at step \d+, with the weights of its step"):
        trainer, callback = train(tmp_path, bad=lambda s: s >= 25, guard=config)
    assert callback is not None
    assert callback.report()["gave_up"] is True
    assert trainer.state.global_step < 60
    assert finite(trainer.model)
    assert "look elsewhere" in callback.report()["records"][-1]["reason"]


@pytest.mark.parametrize(("max_grad_norm", "actions"), [(0.0, [("skip", 40, "grad_norm")]), (1.0, [])])
def test_the_guard_judges_the_gradient_as_the_trainer_clipped_it(
    tmp_path: Path, max_grad_norm: float, actions: list[tuple[str, int, str]]
) -> None:
    """The Trainer clips (``max_grad_norm``, 1.0 by default) before the callback sees the gradients:
    a ×100 gradient clipped to the usual norm is an ordinary step; unclipped (0: off) it is skipped."""
    _, callback = train(
        tmp_path, bad=lambda s: False, guard=GuardConfig(), grads_x100=lambda s: s == 40, max_grad_norm=max_grad_norm
    )
    assert callback is not None
    assert [(r["action"], r["step"], r["metric"]) for r in callback.report()["records"]] == actions


def test_without_a_config_the_guard_is_fitted_to_the_trainer_run(tmp_path: Path) -> None:
    """The run's length and the examples behind each judged loss come from the Trainer (8 a device
    × 2 accumulated: 16, so the short median reads 16 losses); a language model has no chance level."""
    _, callback = train(tmp_path, bad=lambda s: False, fitted=True, steps=40, accumulation=2)
    assert callback is not None
    assert callback.config == replace(GuardConfig.for_run(40, batch_size=16), rewind=False)
    assert callback.config.detect.div_short == 16
    assert callback.config.detect.chance_loss is None


@pytest.mark.parametrize(("fitted", "actions"), [(True, [("skip", 20, "grad_norm")]), (False, [])])
def test_the_fitted_guard_judges_a_short_run_from_its_sixth(
    tmp_path: Path, fitted: bool, actions: list[tuple[str, int, str]]
) -> None:
    """A ×100 gradient (clipping off) at step 20 of 60: the fitted guard judges from its 16th loss
    on (a sixth of the run, at least 16) and skips it; the defaults' 32-loss baseline is not ready
    and lets it through."""
    _, callback = train(
        tmp_path,
        bad=lambda s: False,
        guard=None if fitted else GuardConfig(),
        fitted=fitted,
        grads_x100=lambda s: s == 20,
        max_grad_norm=0.0,
    )
    assert callback is not None
    assert [(r["action"], r["step"], r["metric"]) for r in callback.report()["records"]] == actions


def classifier_run(tmp_path: Path, labels: int, **kwargs: Any) -> GuardCallback:
    """Three steps of a tiny BERT classifier with `labels` outputs under a guard fitted to it, a
    checkpoint saved at the end (``out/checkpoint-3``)."""
    torch.manual_seed(0)
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    config = transformers.BertConfig(vocab_size=64, num_labels=labels, **sizes)
    model = transformers.BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (48, 12), generator=g)
    targets = torch.randint(0, max(labels, 2), (48,), generator=g)
    data = [{"input_ids": i, "labels": t if labels > 1 else t.float()} for i, t in zip(ids, targets, strict=True)]
    args = transformers.TrainingArguments(
        str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=16, report_to="none", use_cpu=True,
        save_strategy="steps", save_steps=3, logging_steps=1, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    callback = GuardCallback.attach(trainer, **kwargs)
    trainer.train()
    return callback


def test_a_classifier_guard_knows_its_chance_level(tmp_path: Path) -> None:
    """``num_labels`` gives a sequence classifier's chance level (ln 3), so a loss back at it after
    learning is a collapse; a regression head (one label) has none; ``classes=`` overrides."""
    fitted = classifier_run(tmp_path / "three", 3)
    assert fitted.config == replace(
        GuardConfig.for_run(3, batch_size=16, detect=DetectConfig.for_classes(3)), rewind=False
    )
    assert fitted.config.detect.chance_loss == pytest.approx(math.log(3))
    assert classifier_run(tmp_path / "regression", 1).config.detect.chance_loss is None
    told = classifier_run(tmp_path / "told", 3, classes=5, batch_size=64)
    assert told.config.detect.chance_loss == pytest.approx(math.log(5))
    assert told.config.detect.div_short == DetectConfig().div_short  # 64 examples: as calibrated
    unbalanced = classifier_run(tmp_path / "unbalanced", 3, label_counts=[80, 10, 10])  # its labels' entropy
    assert unbalanced.config.detect.chance_loss == DetectConfig.for_label_counts([80, 10, 10]).chance_loss


def test_the_doctor_reads_a_classifier_checkpoint_as_its_guard_judged_it(tmp_path: Path) -> None:
    """The checkpoint's config.json gives the doctor the chance level the guard had, its
    trainer_state.json the examples behind each logged loss (16 a step, logged every step)."""
    callback = classifier_run(tmp_path, 3)
    series = read(tmp_path / "out")
    assert (series.classes, series.batch_size) == (3, 16)
    assert callback.config is not None
    doctor, guard = fitted_config(series), callback.config.detect
    assert (doctor.chance_loss, doctor.div_short) == (guard.chance_loss, guard.div_short)


def test_a_given_config_is_used_as_given(tmp_path: Path) -> None:
    given = GuardConfig(snapshot_every=7)
    _, callback = train(tmp_path, bad=lambda s: False, guard=given, steps=5)
    assert callback is not None
    assert callback.config == replace(given, rewind=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": GuardConfig(), "batch_size": 8}, "give config or batch_size/classes/label_counts, not both"),
        ({"classes": 2, "label_counts": [9, 1]}, "give classes or label_counts, not both"),
        ({"batch_size": 0}, "batch_size must be an integer in [1, ∞], got 0"),
        ({"classes": 1}, "classes must be an integer in [2, ∞], got 1"),
    ],
)
def test_bad_hints_are_refused_when_the_callback_is_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"GuardCallback: {message}")):
        GuardCallback(**kwargs)


def test_a_resumed_run_keeps_what_the_guard_did(tmp_path: Path) -> None:
    """The guard's memory goes into every checkpoint's trainer_state.json and comes back with
    ``resume_from_checkpoint``: the LR it cut at step 33 stays cut after resuming at 45. A resumed
    guard used to start afresh: the LR back at the one that had blown up, the counters at 0."""
    config = GuardConfig(snapshot_every=10)
    trainer, callback = train(tmp_path / "whole", bad=lambda s: 30 <= s < 34, guard=config, save_steps=45)
    resumed_trainer, resumed = train(tmp_path / "whole", bad=lambda s: False, guard=config, save_steps=45, resume=True)
    assert callback is not None
    assert resumed is not None
    after_45 = [
        {k: v for k, v in e.items() if k.startswith("guard_") or k in ("learning_rate", "step")}
        for e in resumed_trainer.state.log_history
        if "guard_lr_factor" in e and e["step"] > 45
    ]
    whole = [
        {k: v for k, v in e.items() if k.startswith("guard_") or k in ("learning_rate", "step")}
        for e in trainer.state.log_history
        if "guard_lr_factor" in e and e["step"] > 45
    ]
    assert after_45 == whole
    last, cap = after_45[1], callback.report()["lr_cap"]  # step 55: the re-warmup over
    assert last["guard_lr_factor"] == pytest.approx(min(1.0, cap / last["learning_rate"]))  # the factor, not the cap
    assert (resumed.report()["rollbacks"], resumed.report()["skips"], resumed.report()["non_finite"]) == (1, 3, 4)
    assert resumed.report()["lr_cap"] == callback.report()["lr_cap"]


def test_under_accumulation_a_classifier_is_judged_at_its_own_loss(tmp_path: Path) -> None:
    """Hugging Face gives a sequence classifier ``num_items_in_batch``, which it ignores, and then logs
    accumulation × its loss. The guard judges the loss the model returns, at the level of the
    classifier's chance loss (ln 3 untrained), so that a collapse back to chance can be seen."""
    torch.manual_seed(0)
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    model = transformers.BertForSequenceClassification(transformers.BertConfig(vocab_size=64, num_labels=3, **sizes))
    g = torch.Generator().manual_seed(0)
    ids, targets = torch.randint(0, 64, (64, 12), generator=g), torch.randint(0, 3, (64,), generator=g)
    args = transformers.TrainingArguments(
        str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=8, gradient_accumulation_steps=2,
        learning_rate=1e-6, report_to="none", use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    data = [{"input_ids": i, "labels": t} for i, t in zip(ids, targets, strict=True)]
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    callback = GuardCallback.attach(trainer, GuardConfig())
    trainer.train()
    assert callback.guard is not None
    assert callback.guard.history_loss == pytest.approx([math.log(3)] * 3, rel=0.1)


def test_with_label_smoothing_the_attached_guard_judges_the_trainers_loss(tmp_path: Path) -> None:
    """Under ``label_smoothing_factor`` (or ``compute_loss_func``) the Trainer computes the loss
    outside the model, which returns none: the guard judged a loss of 0 at every step, silently.
    Attached it judges the Trainer's loss; as a plain callback it says it cannot."""
    trainer, callback = train(
        tmp_path / "attached", bad=lambda s: False, guard=GuardConfig(), steps=4, logging_steps=1,
        label_smoothing_factor=0.1,
    )  # fmt: skip
    assert callback is not None
    assert callback.guard is not None
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert callback.guard.history_loss == pytest.approx(logged, rel=1e-5)
    with pytest.warns(RuntimeWarning, match="the model returned no loss"):
        train(tmp_path / "plain", bad=lambda s: False, guard=GuardConfig(), steps=4, attach=False,
              label_smoothing_factor=0.1)  # fmt: skip


def test_a_nan_gradient_under_a_finite_loss_counts_as_non_finite(tmp_path: Path) -> None:
    """``guard_non_finite`` counted only non-finite losses; a NaN gradient behind a finite loss
    (an overflow in the backward pass) was skipped but not shown."""
    _, callback = train(tmp_path, bad=lambda s: False, guard=GuardConfig(), nan_grads=lambda s: s == 30)
    assert callback is not None
    assert [(r["action"], r["step"], r["metric"]) for r in callback.report()["records"]] == [("skip", 30, "grad_norm")]
    assert callback.report()["non_finite"] == 1
