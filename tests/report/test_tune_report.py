"""The report's Tuning section: a run `lrpilot.tune` chose (the tiny real run, with a search of five
trials written by hand as `tune_dict` writes it) shows its figure, a sentence and a table of the
trials; a run without a search has no such section; ``run.json`` keeps the search."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from lrpilot.report import RunRecord, read_run, write_report
from lrpilot.report.tune_plots import STOPPED_LABEL, plot_tune, rung_losses, trial_kind
from tests.report import tiny_run
from tests.report.test_report import _assert_figure_png, _loaded_images, _minimal, _parse, browser

RUN = tiny_run.TOTAL_STEPS  # 240 steps a run; the rung is a third of it
RUNG = RUN // 3


def _trial(number: int, state: str, lr: float, **extra: Any) -> dict[str, Any]:
    """One trial as ``TrialSummary.to_dict`` writes it."""
    base: dict[str, Any] = {
        "number": number,
        "state": state,
        "peak_lr": lr,
        "warmup": None,
        "decay": None,
        "value": None,
        "steps": RUNG,
        "intermediate": {},
        "stopped": None,
        "retry_of": None,
        "continues": None,
        "promoted_to": None,
    }
    return {**base, **extra}


def tune_section() -> dict[str, Any]:
    """Five rung trials around a range-test peak near 1e-2 — two promoted, two pruned at the rung,
    the highest LR diverged at its rung run — and the two promotions' full runs (trial 5, the
    full run of trial 2, the better one)."""
    trials = [
        _trial(0, "PRUNED", 0.0101, intermediate={str(RUNG): 0.583}, stopped="promoted", promoted_to=6),
        _trial(1, "PRUNED", 0.00337, intermediate={str(RUNG): 0.712}, stopped="pruned"),
        _trial(2, "PRUNED", 0.0303, intermediate={str(RUNG): 0.551}, stopped="promoted", promoted_to=5),
        _trial(3, "PRUNED", 0.101, stopped="diverged"),
        _trial(4, "PRUNED", 0.00152, intermediate={str(RUNG): 0.774}, stopped="pruned"),
        _trial(5, "COMPLETE", 0.0303, value=0.387, steps=RUN, intermediate={str(RUNG): 0.551}, continues=2),
        _trial(6, "COMPLETE", 0.0101, value=0.412, steps=RUN, intermediate={str(RUNG): 0.583}, continues=0),
    ]
    finder_steps = 100
    spent = finder_steps + sum(t["steps"] for t in trials)
    return {
        "trials": trials,
        "space": {"low": 0.001, "high": 0.3, "warmups": [], "decays": []},
        "best": 5,
        "run_equivalents": spent / RUN,
    }


@pytest.fixture(scope="module")
def record() -> RunRecord:
    run = tiny_run.realistic_record(title="blobs MLP, tuned")
    run.tune = tune_section()
    return run


@pytest.fixture(scope="module")
def report(record: RunRecord, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(record, tmp_path_factory.mktemp("tune-report"))


def _rows(page: str) -> list[str]:
    """The Tuning section's table rows, as HTML."""
    section = page.split('<section id="tune">', 1)[1].split("</section>", 1)[0]
    return section.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]


def test_the_hand_written_search_is_what_tune_writes() -> None:
    tune = tune_section()
    kinds = [trial_kind(t) for t in tune["trials"]]
    assert kinds == ["stopped", "stopped", "stopped", "diverged", "stopped", "complete", "complete"]
    assert rung_losses(tune["trials"][0]) == [(RUNG, 0.583)]
    assert 4.0 < tune["run_equivalents"] < 4.2  # 100 + 5 × 80 + 2 × 240 steps over 240


def test_the_tuning_section_follows_the_range_test(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    doc = _parse(report)
    assert doc.errors == []
    assert doc.stack == []
    assert (
        page.index('id="range-test"') < page.index('<section id="tune"><h2>Tuning</h2>') < page.index('id="schedule"')
    )
    assert "tune.png" in doc.images
    for src in doc.images:
        assert (report.parent / src).is_file()


def test_the_tuning_figure_is_a_png(report: Path) -> None:
    _assert_figure_png(report.parent / "tune.png")


def test_the_sentence_and_the_table_tell_the_search(report: Path, record: RunRecord) -> None:
    assert record.tune is not None
    text = _parse(report).words()
    equivalents = f"{record.tune['run_equivalents']:.2f}"
    assert f"7 trials, 2 completed, compute {equivalents} run-equivalents (range test included)." in text
    for header in ("trial", "peak LR", "rung loss @ step", "final val loss", "steps", "why it stopped"):
        assert header in text
    assert "warmup" not in text.split("Tuning", 1)[1].split("Schedule", 1)[0]  # only the peak LR was searched
    rows = _rows(report.read_text(encoding="utf-8"))
    assert len(rows) == 7
    best = rows[5]
    assert best.count("<b>") == best.count("<td") == 6  # every cell of the winner's row in bold
    assert "pruned" not in rows[2]  # Optuna's state for a rung that won: the table says what happened instead
    assert "0.0303" in best
    assert "0.387" in best
    assert "best: the model of this report" in best
    assert all("<b>" not in row for i, row in enumerate(rows) if i != 5)
    assert "won its rung: trained in full as trial 5" in rows[2]
    assert "the full run of trial 0" in rows[6]
    assert "0.712 @ 80" in rows[1]
    assert "worse than the others at the rung" in rows[1]
    assert "diverged" in rows[3]
    assert "0.101" in rows[3]
    assert "240" in rows[6]  # the full run's steps (its rung's were trial 0's)


def test_a_searched_warmup_and_decay_get_their_columns(tmp_path: Path) -> None:
    tune = tune_section()
    tune["space"].update(warmups=[0.0, 0.05, 0.1], decays=["cosine", "linear"])
    for t in tune["trials"]:
        t.update(warmup=0.05, decay="cosine")
    index = write_report(_minimal(tune=tune), tmp_path)
    rows = _rows(index.read_text(encoding="utf-8"))
    assert "5.0%" in rows[0]
    assert "cosine" in rows[0]
    assert "warmup decay" in _parse(index).words()


def test_a_run_without_a_search_has_no_tuning_section(tmp_path: Path) -> None:
    index = write_report(_minimal(), tmp_path)
    page = index.read_text(encoding="utf-8")
    assert 'id="tune"' not in page
    assert "Tuning" not in _parse(index).words()
    assert not (tmp_path / "tune.png").exists()


def test_run_json_keeps_the_search(report: Path, record: RunRecord) -> None:
    raw = json.loads((report.parent / "run.json").read_text(encoding="utf-8"))
    assert raw["tune"] == record.tune
    back = read_run(report.parent)
    assert back.tune == record.tune
    assert back.to_dict() == record.to_dict()


def test_non_finite_numbers_in_the_search_round_trip_as_null(tmp_path: Path) -> None:
    tune = tune_section()
    tune["trials"].append(_trial(7, "PRUNED", math.nan, steps=0, stopped="skipped"))  # skipped: never suggested
    tune["trials"][1]["intermediate"]["40"] = math.nan
    index = write_report(_minimal(tune=tune), tmp_path)
    raw = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert raw["tune"]["trials"][7]["peak_lr"] is None
    back = read_run(tmp_path)
    assert back.tune is not None
    assert back.tune["trials"][7]["peak_lr"] is None
    again = write_report(back, tmp_path / "again")
    for page in (index, again):
        text = _parse(page).words()
        assert "7 trials, 2 completed" in text  # the skipped trial never ran
        assert "1 more trial was skipped" in text
        assert len(_rows(page.read_text(encoding="utf-8"))) == 7


def test_a_search_with_nothing_to_draw_keeps_its_table(tmp_path: Path) -> None:
    tune = tune_section()
    tune["trials"] = [_trial(0, "RUNNING", 0.01)]
    tune["best"] = None
    with pytest.raises(ValueError, match="no trial to draw"):
        plot_tune(tune, tmp_path / "t.png")
    index = write_report(_minimal(tune=tune), tmp_path)
    text = _parse(index).words()
    assert "figure not drawn" in text
    assert "1 trial, 0 completed" in text
    assert len(_rows(index.read_text(encoding="utf-8"))) == 1


def test_the_plot_labels_the_rung_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrpilot.report import tune_plots

    labels: list[str] = []
    save = tune_plots._save

    def keep_labels(fig: Any, path: str | Path) -> Path:
        labels.extend(fig.axes[0].get_legend_handles_labels()[1])
        labels.append(fig.axes[0].get_title())
        return save(fig, path)

    monkeypatch.setattr(tune_plots, "_save", keep_labels)
    plot_tune(copy.deepcopy(tune_section()), tmp_path / "t.png")
    assert STOPPED_LABEL in labels
    assert "searched 0.001 – 0.3" in labels
    assert "best: trial 5" in labels
    assert "diverged" in labels
    assert any(label.startswith("7 trials, 2 completed, 4.08 run-equivalents") for label in labels)


@browser
def test_chromium_loads_the_tuning_figure(report: Path, tmp_path: Path) -> None:
    _, status = _loaded_images(report, tmp_path)
    assert [s[0] for s in status][:2] == ["range_test.png", "tune.png"]
    for src, complete, width in status:
        assert complete, src
        assert width > 500, src
