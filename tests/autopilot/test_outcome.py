"""The after-run check: a classifier clearly better part-way through than at the end gets a note."""

from __future__ import annotations

import math

import pytest

from lrpilot.autopilot._outcome import MIN_DROP, ONE_ANSWER, accuracy_drop, one_answer

STEPS = [13, 26, 39, 50]


def test_a_run_that_learnt_and_fell_back_to_chance_is_named_with_where_it_was_best() -> None:
    # a 50-step LoRA fit of MiniLM at batch 8 on 320 SST-2 texts (seed 1): 0.71 at step 26, chance at the end
    note = accuracy_drop(STEPS, [0.547, 0.711, 0.492, 0.5], examples=128)
    assert note is not None
    assert note.startswith("the model got worse after step 26: validation accuracy 0.71 there (on 128 examples), 0.50")
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
    for examples in (128, 10_000):
        assert accuracy_drop(STEPS[-len(accuracies) :], accuracies, examples=examples) is None


def test_clear_means_beyond_the_noise_of_evaluations_of_that_size() -> None:
    drop = [0.60, 0.85, 0.80, 0.70]  # 0.15 below the best: 4.1 standard errors on 256 examples, 1.8 on 50
    assert accuracy_drop(STEPS, drop, examples=256) is not None
    assert accuracy_drop(STEPS, drop, examples=50) is None
    assert MIN_DROP == 0.1


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
