"""The after-run checks: a model clearly better part-way through than at the end gets a note, whatever
the task (`worse_at_end`: its loss, and a classifier's accuracy); so does a causal LM worse than a
uniform guess (`above_uniform`), and a classifier that gives one answer whatever the input."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from lrpilot.autopilot._outcome import (
    MIN_DROP,
    MIN_LOSS_GAP,
    MIN_LOSS_RISE,
    ONE_ANSWER,
    above_uniform,
    one_answer,
    worse_at_end,
)

STEPS = [13, 26, 39, 50]
STEADY = [0.69, 0.60, 0.55, 0.54]
"""A loss that keeps falling: the accuracy tests' runs are judged on their accuracy alone."""


def test_a_run_that_learnt_and_fell_back_to_chance_is_named_with_where_it_was_best() -> None:
    # a 50-step LoRA fit of MiniLM at batch 8 on 320 SST-2 texts (seed 1): 0.71 at step 26, chance at the end
    note = worse_at_end(STEPS, STEADY, [0.547, 0.711, 0.492, 0.5], examples=128)
    assert note is not None
    assert note.startswith(
        "the model got worse after step 26: validation accuracy 0.71 there, 0.50 at the end "
        "(the same 128 examples scored each time)"
    )
    assert "a budget near 26 steps (where it was best) or more data" in note
    assert "lrpilot tune" in note


@pytest.mark.parametrize(
    "accuracies",
    [
        [0.80, 0.84, 0.85, 0.83],  # the best is within noise of the end
        [0.50, 0.62, 0.70, 0.78],  # still improving
        [0.90, 0.95, 0.93, 0.87],  # 0.08 lower: below MIN_DROP, however many examples
        [0.55, 0.71, math.nan, 0.50],  # an evaluation that failed: nothing to compare on
        [0.71],  # one evaluation: nothing to compare with
    ],
)
def test_no_note_without_a_clear_drop(accuracies: list[float]) -> None:
    steps, losses = STEPS[-len(accuracies) :], STEADY[-len(accuracies) :]
    for examples in (128, 10_000):
        assert worse_at_end(steps, losses, accuracies, examples=examples) is None


def test_clear_means_beyond_the_noise_of_evaluations_of_that_size() -> None:
    drop = [0.60, 0.85, 0.80, 0.70]  # 0.15 below the best: 4.1 standard errors on 256 examples, 1.8 on 50
    assert worse_at_end(STEPS, STEADY, drop, examples=256) is not None
    assert worse_at_end(STEPS, STEADY, drop, examples=50) is None
    assert MIN_DROP == 0.1


def test_a_causal_lm_that_over_trained_is_named_with_by_how_much_and_where_it_was_best() -> None:
    """The user-testing run: 643 steps on ~135 chats (~76 epochs) had no note."""
    note = worse_at_end([161, 322, 483, 643], [4.68, 6.35, 7.47, 7.95], examples=128, epochs=76.2)
    assert note is not None
    assert note.startswith(
        "the model got worse after step 161: validation loss 4.68 there, 7.95 at the end, 70% higher"
    )
    assert "the run went over its training data 76 times and over-fitted: a budget near 161 steps" in note
    assert "or more data" in note


def test_a_classifier_is_judged_on_its_loss_too_and_both_are_said() -> None:
    note = worse_at_end(STEPS, [0.62, 0.40, 0.52, 0.61], [0.60, 0.85, 0.80, 0.70], examples=256)
    assert note is not None
    assert "validation loss 0.4 there, 0.61 at the end, 52% higher; validation accuracy 0.85 there" in note
    over_confident = worse_at_end(STEPS, [0.62, 0.40, 0.52, 0.61], [0.60, 0.85, 0.86, 0.86], examples=256)
    assert over_confident is not None  # the accuracy held; the loss says it over-fitted
    assert "accuracy" not in over_confident.split(";")[0]


@pytest.mark.parametrize(
    "losses",
    [
        [2.0, 1.5, 1.2, 1.25],  # 4 % above the best: within a run's wobble
        [0.20, 0.10, 0.08, 0.12],  # 50 % above, but 0.04 nats: no prediction changes for that
        [2.0, 1.5, 1.2, 1.1],  # still improving
        [2.0, 1.5, math.inf, 3.0],  # an evaluation that diverged: nothing to compare on
        [2.0],  # one evaluation
    ],
)
def test_no_note_without_a_clear_rise_of_the_loss(losses: list[float]) -> None:
    assert worse_at_end(STEPS[-len(losses) :], losses, examples=128) is None
    assert (MIN_LOSS_RISE, MIN_LOSS_GAP) == (0.1, 0.05)


def test_a_loss_above_a_uniform_guess_is_named() -> None:
    note = above_uniform(7.95, 2000)
    assert note is not None
    assert note.startswith("the final validation loss 7.95 is above ln(2000) = 7.6, the loss of a uniform guess")
    assert above_uniform(math.log(2000) - 1e-9, 2000) is None
    assert above_uniform(7.95, None) is None
    assert above_uniform(math.nan, 2000) is None


def test_an_over_trained_causal_lm_gets_both_notes(tmp_path: Path) -> None:
    """A real run: the tiny chat GPT-2 fine-tuned on 32 chats that all give one answer, 10 epochs at
    an LR that memorises it, evaluated on chats answered otherwise: its validation loss falls, then
    climbs past the uniform guess's ln(600)."""
    from lrpilot.autopilot._pipeline import _epochs
    from lrpilot.autopilot._progress import Clock, quiet
    from lrpilot.autopilot._target import TargetSpec, resolve_target
    from lrpilot.autopilot._training import after_run, train_guarded
    from lrpilot.schedules import Cosine
    from tests.autopilot.conftest import save_chat_lm

    def chats(answer: str, n: int) -> str:
        def chat(i: int) -> list[dict[str, str]]:
            return [{"role": "user", "content": f"Who art thou, number {i}?"}, {"role": "assistant", "content": answer}]

        return "".join(json.dumps({"messages": chat(i)}) + "\n" for i in range(n))

    (tmp_path / "train.jsonl").write_text(chats("A poor player.", 32), encoding="utf-8")
    (tmp_path / "val.jsonl").write_text(chats("Tis I, the ghost of Hamlet's father.", 8), encoding="utf-8")
    target = resolve_target(
        TargetSpec(
            model=save_chat_lm(tmp_path / "model"),
            data=tmp_path / "train.jsonl",
            eval_data=tmp_path / "val.jsonl",
            task_type="causal-lm",
            method="full",
            batch_size=8,
            max_length=48,
        )
    )
    recipe = dataclasses.replace(target.task.recipe, total_steps=40, warmup_steps=2)
    task = target.task.with_recipe(recipe)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    schedule = Cosine(peak=1e-2, total_steps=40, warmup_steps=2)
    trained = train_guarded(
        task,
        task.build_model(0),
        recipe,
        schedule,
        seed=0,
        run_dir=run_dir,
        progress=quiet,
        callback=None,
        clock=Clock(),
    )
    assert trained.status == "finished"
    assert trained.vocab == 600
    losses, steps = trained.history.eval_loss, trained.history.eval_steps
    best = min(losses[:-1])
    notes = after_run(trained, _epochs(task, trained))
    assert len(notes) == 2
    worse, uniform = notes
    at = steps[losses.index(best)]
    assert worse.startswith(f"the model got worse after step {at}: validation loss {best:.3g} there, {losses[-1]:.3g}")
    assert "the run went over its training data 10 times and over-fitted" in worse
    assert re.match(rf"the final validation loss {trained.final['val_loss']:.3g} is above ln\(600\) = 6.4", uniform)


def test_a_classifier_that_answers_one_class_whatever_the_input_is_named() -> None:
    """On 90 % / 10 % labels a model collapsed onto the majority class scores 0.90
    (`benchmarks/guard_unbalanced.py`): its accuracy is the class's share, which the note says."""
    note = one_answer(1.0, 0.9)
    assert note is not None
    assert "100% of the validation examples" in note
    assert "its accuracy (0.90) is that class's share of the labels" in note
    assert one_answer(0.995, 0.5) is not None  # balanced labels, one answer: at chance


@pytest.mark.parametrize(
    ("top_share", "accuracy"),
    [
        (0.92, 0.93),  # a healthy model on unbalanced labels answers the majority often, not always
        (1.0, 1.0),  # the labels are all that class: one answer is right
        (None, 0.9),  # not a classifier
        (1.0, None),
    ],
)
def test_no_one_answer_note_for_a_model_that_discriminates(top_share: float | None, accuracy: float | None) -> None:
    assert one_answer(top_share, accuracy) is None


def test_the_digits_task_counts_its_answers() -> None:
    """A real evaluation: the untrained MLP spreads its answers; one whose output bias favours a
    class by a mile answers it for every image."""
    import torch

    from lrpilot.tasks import get_task

    task = get_task("digits")
    model = task.build_model(0)
    untrained = task.metrics(model)
    assert untrained.top_share is not None
    assert untrained.top_share < ONE_ANSWER
    with torch.no_grad():
        model[-1].bias[3] += 1e4
    stuck = task.metrics(model)
    assert stuck.top_share == 1.0
    assert one_answer(stuck.top_share, stuck.accuracy) is not None
