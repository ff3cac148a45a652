"""The report's Forgetting trade-off section: a run ``lrpilot fit --forgetting-weight`` trained (the
tiny real run, with four probes around its range test's peak written by hand as `_trade` writes them,
the highest one diverged) shows a sentence, its figure and a table of the probes; a run without a
trade-off has no such section; ``run.json`` keeps the trade-off."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrpilot.report import RunRecord, read_run, write_report
from lrpilot.report.tradeoff_plots import is_chosen, plot_tradeoff
from tests.report import tiny_run
from tests.report.test_report import _assert_figure_png, _Document, _loaded_images, _minimal, _parse, browser
from tests.report.test_tune_report import tune_section

WEIGHT = 2.0
FACTORS = (1.0, 0.5, 0.25, 0.125)  # lrpilot.autopilot._forgetting.PROBE_FACTORS (torch-free here)


def _point(peak_lr: float, val_loss: float, drift: float) -> dict[str, Any]:
    """One probe as ``dataclasses.asdict(TradeoffPoint)`` writes it: a non-finite loss scores inf."""
    finite = math.isfinite(val_loss) and math.isfinite(drift)
    return {
        "peak_lr": peak_lr,
        "val_loss": val_loss,
        "drift": drift,
        "score": val_loss + WEIGHT * drift if finite else math.inf,
    }


def tradeoff_section(peak: float) -> dict[str, Any]:
    """Probes at 1, 1/2, 1/4 and 1/8 of `peak` (rounded to 3 digits, as `tradeoff` does): the highest
    diverged (NaN loss and drift), the next fits best but drifts most, the lowest drifts least but
    fits worst; 1/4 has the lowest score and is trained."""
    lrs = [float(f"{peak * f:.3g}") for f in FACTORS]
    points = [
        _point(lrs[0], math.nan, math.nan),
        _point(lrs[1], 0.402, 0.087),  # score 0.576
        _point(lrs[2], 0.431, 0.041),  # score 0.513: the lowest
        _point(lrs[3], 0.498, 0.019),  # score 0.536
    ]
    best = min(points, key=lambda p: p["score"])
    return {"weight": WEIGHT, "probe_share": 0.2, "points": points, "chosen": best["peak_lr"]}


@pytest.fixture(scope="module")
def record() -> RunRecord:
    run = tiny_run.realistic_record(title="blobs MLP, forgetting-aware")
    assert run.finder is not None
    run.tradeoff = tradeoff_section(run.finder["peak_lr"])
    return run


@pytest.fixture(scope="module")
def report(record: RunRecord, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(record, tmp_path_factory.mktemp("tradeoff-report"))


def _section(page: str) -> str:
    return page.split('<section id="tradeoff">', 1)[1].split("</section>", 1)[0]


def _rows(page: str) -> list[str]:
    """The trade-off section's table rows, as HTML."""
    return _section(page).split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]


def _parse_words(fragment: str) -> str:
    """The visible text of an HTML fragment."""
    doc = _Document()
    doc.feed(fragment)
    doc.close()
    return doc.words()


def test_the_hand_written_tradeoff_is_what_fit_writes(record: RunRecord) -> None:
    assert record.tradeoff is not None
    assert record.finder is not None
    points = record.tradeoff["points"]
    assert [p["peak_lr"] for p in points] == sorted((p["peak_lr"] for p in points), reverse=True)
    assert points[0]["peak_lr"] == float(f"{record.finder['peak_lr']:.3g}")
    assert math.isinf(points[0]["score"])
    assert record.tradeoff["chosen"] == points[2]["peak_lr"]
    assert [is_chosen(p, record.tradeoff) for p in points] == [False, False, True, False]


def test_the_tradeoff_section_follows_the_range_test(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    doc = _parse(report)
    assert doc.errors == []
    assert doc.stack == []
    assert (
        page.index('id="range-test"')
        < page.index('<section id="tradeoff"><h2>Forgetting trade-off</h2>')
        < page.index('id="schedule"')
    )
    assert "tradeoff.png" in doc.images
    assert 'src="tradeoff.png"' in _section(page)
    for src in doc.images:
        assert (report.parent / src).is_file()


def test_the_tradeoff_follows_the_tuning_section(tmp_path: Path) -> None:
    index = write_report(_minimal(tune=tune_section(), tradeoff=tradeoff_section(0.01)), tmp_path)
    page = index.read_text(encoding="utf-8")
    assert page.index('<section id="tune">') < page.index('<section id="tradeoff">') < page.index('id="schedule"')
    assert _parse(index).images == ["tune.png", "tradeoff.png", "training.png"]
    assert "⅛ of 0.01 (the rules' peak) and was scored" in _parse(index).words()  # no range test in this record


def test_the_tradeoff_figure_is_a_png(report: Path) -> None:
    _assert_figure_png(report.parent / "tradeoff.png")


def test_the_sentence_and_the_table_tell_the_tradeoff(report: Path, record: RunRecord) -> None:
    assert record.tradeoff is not None
    text = _parse(report).words()
    assert (
        "Each probe trained the recipe for 20% of the run at 1, ½, ¼ and ⅛ of "
        f"{record.tradeoff['points'][0]['peak_lr']:.3g} (the range test's peak) and was "
        "scored score = val loss + 2 × drift, drift being the mean cosine distance" in text
    )
    assert "the lowest score was trained." in text
    section = _parse_words(_section(report.read_text(encoding="utf-8")))
    assert "peak LR val loss drift score" in section
    rows = _rows(report.read_text(encoding="utf-8"))
    assert len(rows) == 4
    lrs = [f"{p['peak_lr']:.3g}" for p in record.tradeoff["points"]]
    chosen = rows[2]
    assert chosen.count("<b>") == chosen.count("<td") == 4  # every cell of the trained row in bold
    for cell in (lrs[2], "0.431", "0.041", "0.513"):
        assert cell in chosen
    assert all("<b>" not in row for i, row in enumerate(rows) if i != 2)
    assert lrs[0] in rows[0]
    assert "(diverged)" in rows[0]
    assert rows[0].count("—") == 3  # no loss, drift or score for the diverged probe
    assert all("diverged" not in row for row in rows[1:])
    for cell in (lrs[1], "0.402", "0.087", "0.576"):
        assert cell in rows[1]
    assert "0.536" in rows[3]


def test_a_run_without_a_tradeoff_has_no_tradeoff_section(tmp_path: Path) -> None:
    index = write_report(_minimal(), tmp_path)
    page = index.read_text(encoding="utf-8")
    assert 'id="tradeoff"' not in page
    assert "Forgetting trade-off" not in _parse(index).words()
    assert not (tmp_path / "tradeoff.png").exists()


def test_run_json_keeps_the_tradeoff(report: Path, record: RunRecord) -> None:
    assert record.tradeoff is not None
    raw = json.loads((report.parent / "run.json").read_text(encoding="utf-8"))
    diverged = raw["tradeoff"]["points"][0]
    assert diverged["val_loss"] is None  # strict JSON: NaN and inf are null
    assert diverged["score"] is None
    assert raw["tradeoff"]["points"][1:] == record.tradeoff["points"][1:]
    assert raw["tradeoff"]["chosen"] == record.tradeoff["chosen"]
    back = read_run(report.parent)
    assert back.tradeoff == raw["tradeoff"]
    assert back.to_dict() == record.to_dict()


def test_a_re_read_tradeoff_renders_the_same(report: Path, tmp_path: Path) -> None:
    again = write_report(read_run(report.parent), tmp_path)
    first, second = report.read_text(encoding="utf-8"), again.read_text(encoding="utf-8")
    assert _rows(second) == _rows(first)
    assert (tmp_path / "tradeoff.png").is_file()


def test_a_tradeoff_with_nothing_to_draw_keeps_its_table(tmp_path: Path) -> None:
    trade = tradeoff_section(0.01)
    trade["points"] = [_point(0.01, math.nan, math.nan)]
    trade["chosen"] = 0.01
    with pytest.raises(ValueError, match="no probe to draw"):
        plot_tradeoff(trade, tmp_path / "t.png")
    index = write_report(_minimal(tradeoff=trade), tmp_path)
    text = _parse(index).words()
    assert "figure not drawn" in text
    assert len(_rows(index.read_text(encoding="utf-8"))) == 1


def test_the_plot_shows_why_the_chosen_peak_won(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrpilot.report import tradeoff_plots

    trade = tradeoff_section(0.01)
    seen: dict[str, Any] = {}
    save = tradeoff_plots._save

    def keep(fig: Any, path: str | Path) -> Path:
        ax = fig.axes[0]
        seen["labels"] = ax.get_legend_handles_labels()[1]
        seen["title"] = ax.get_title()
        seen["texts"] = [t.get_text() for t in ax.texts]
        seen["lines"] = [(line.get_xdata(), line.get_ydata(), line.get_linestyle()) for line in ax.get_lines()]
        return save(fig, path)

    monkeypatch.setattr(tradeoff_plots, "_save", keep)
    plot_tradeoff(trade, tmp_path / "t.png")
    assert seen["title"] == "4 probes of 20% of the run, score = val loss + 2 × drift (1 diverged, not drawn)"
    assert "trained: LR 0.0025" in seen["labels"]
    assert "equal score 0.513 (trained)" in seen["labels"]
    assert seen["labels"].count("equal score through the other probes") == 1
    assert seen["texts"] == ["LR 0.005", "LR 0.0025", "LR 0.00125"]  # the diverged 0.01 is left out
    assert len(seen["lines"]) == 3  # one line of equal score per drawn probe
    for xs, ys, style in seen["lines"]:
        assert style == "--"
        levels = np.asarray(ys) + WEIGHT * np.asarray(xs)
        assert levels[0] == pytest.approx(levels[1])
    levels = sorted(float(ys[0] + WEIGHT * xs[0]) for xs, ys, _ in seen["lines"])
    assert levels == pytest.approx([0.513, 0.536, 0.576])  # the trained probe's is the lowest
    plot_tradeoff(trade, tmp_path / "t.png", title="mine")
    assert seen["title"] == "mine (1 diverged, not drawn)"


@browser
def test_chromium_loads_the_tradeoff_figure(report: Path, tmp_path: Path) -> None:
    _, status = _loaded_images(report, tmp_path)
    assert [s[0] for s in status] == [
        "range_test.png",
        "tradeoff.png",
        "schedule.png",
        "training.png",
        "layer_ratios.png",
    ]
    for src, complete, width in status:
        assert complete, src
        assert width > 500, src


def test_probes_below_a_peak_the_horizon_law_scaled_say_so(record: RunRecord, tmp_path: Path) -> None:
    """fit probes fractions of the peak it would train, the range test's scaled to the run's length:
    a tiny GPT-2's probes at 0.031 … 0.00387 (its test's peak 0.0155, ×2 for a 40-step run) were
    said to be fractions of the range test's peak."""
    assert record.finder is not None
    found = record.finder["peak_lr"]
    horizon = {"found": found, "factor": 2.0, "reference_steps": 150, "steps": 40, "capped": False}
    scaled = dataclasses.replace(record, horizon=horizon, tradeoff=tradeoff_section(2.0 * found))
    text = _parse(write_report(scaled, tmp_path)).words()
    assert (
        f"at 1, ½, ¼ and ⅛ of {2.0 * found:.3g} (the range test's peak {found:.3g} scaled to the run's length "
        "by the horizon law) and was scored" in text
    )
