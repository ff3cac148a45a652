"""The run report: a real (tiny) run through the rules, the range test, the guard and Adam, written
as HTML + PNGs + run.json, checked as a document and in a real headless browser (chromium)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrpilot.report import LayerStats, RunRecord, TrainingHistory, finder_from_dict, read_run, write_report
from lrpilot.report.run_plots import (
    action_labels,
    eval_positions,
    layer_verdicts,
    plot_layer_ratios,
    plot_training,
    positions,
)
from tests.report import tiny_run

HOSTILE = '<script>alert("x")</script> & <b>bold</b>'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BLOCKS = {"p", "div", "h1", "h2", "h3", "li", "td", "th", "tr", "section", "header", "footer", "title", "pre", "table"}
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr", "area", "base", "embed", "track"}


class _Document(HTMLParser):
    """Checks nesting (every end tag closes the innermost open element), collects the images and the
    visible text (a space at block boundaries, the style sheet left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self.scripts += tag == "script"
        if tag in BLOCKS:
            self.text.append(" ")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in BLOCKS:
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        if self.stack[-1:] != ["style"]:
            self.text.append(data)

    def words(self) -> str:
        """The visible text with runs of whitespace folded to one space."""
        return " ".join("".join(self.text).split())


def _parse(page: Path) -> _Document:
    doc = _Document()
    doc.feed(page.read_text(encoding="utf-8"))
    doc.close()
    return doc


@pytest.fixture(scope="module")
def record() -> RunRecord:
    run = tiny_run.realistic_record(title=f"blobs {HOSTILE}")
    run.notes.append(f"a note with {HOSTILE}")
    run.layer_stats.names[0] = f"hidden.weight {HOSTILE}"  # type: ignore[union-attr]
    return run


@pytest.fixture(scope="module")
def report(record: RunRecord, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(record, tmp_path_factory.mktemp("report"))


def test_the_tiny_run_is_real_and_the_guard_acted(record: RunRecord) -> None:
    assert record.finder is not None
    assert record.recommendation is not None
    assert 1e-3 < record.finder["peak_lr"] < 1.0  # Adam on a small MLP: a range test lands near 1e-2
    assert [(a["step"], a["action"], a["detector"]) for a in record.guard_actions] == [(90, "skip", "non_finite")]
    assert math.isnan(record.history.loss[90])
    assert record.metrics["val_accuracy"] > 0.5  # four classes: chance is 0.25
    assert record.history.eval_loss[-1] < record.history.loss[0]


def test_report_writes_html_pngs_and_run_json(report: Path) -> None:
    assert report.name == "index.html"
    names = {p.name for p in report.parent.iterdir()}
    assert {"index.html", "run.json", "range_test.png", "schedule.png", "training.png", "layer_ratios.png"} <= names
    for png in report.parent.glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG")
        assert png.stat().st_size > 10_000


def test_html_is_well_formed_and_every_image_exists(report: Path) -> None:
    doc = _parse(report)
    assert doc.errors == []
    assert doc.stack == []
    assert len(doc.images) == 4
    for src in doc.images:
        assert not src.startswith(("http:", "https:", "/", "data:"))  # relative files, works offline
        assert (report.parent / src).is_file()


def test_user_text_is_escaped_and_the_page_has_no_script(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    doc = _parse(report)
    assert doc.scripts == 0
    assert "<script" not in page
    assert "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert doc.words().count(HOSTILE) >= 4  # title tag, heading, note, layer name: shown as text


def test_report_shows_the_decision_and_what_happened(report: Path, record: RunRecord) -> None:
    text = _parse(report).words()
    assert record.finder is not None
    peak = f"{record.finder['peak_lr']:.3g}"
    assert f"Trained at peak LR {peak}, from the range test." in text
    assert "is above the rules' band" in text  # a 676-parameter MLP is far below GPT-3's table
    assert "gpt3-size" in text
    assert "Brown et al. 2020" in text  # reasons come with their sources
    assert "max stable LR" in text
    assert "What the guard did: 1 × skip" in text
    assert "skipped the update of step 90" in text
    assert "layers flagged" in text
    assert "1e-3" in text
    for cell in ("val_accuracy", "recommend", "total"):
        assert cell in text
    total = sum(record.timings.values())
    assert f"time {total:.1f} s" in text
    assert f"total {total:.2f}" in text


def test_run_json_round_trips(report: Path, record: RunRecord) -> None:
    raw = json.loads((report.parent / "run.json").read_text(encoding="utf-8"))
    assert raw["history"]["loss"][90] is None  # strict JSON: NaN is null
    back = read_run(report.parent)
    assert back.to_dict() == record.to_dict()
    assert math.isnan(back.history.loss[90])
    assert read_run(report.parent / "run.json").title == record.title


def test_finder_dict_rebuilds_the_result(record: RunRecord) -> None:
    assert record.finder is not None
    assert finder_from_dict(record.finder).to_dict() == record.finder


def _minimal(status: str = "finished", **extra: Any) -> RunRecord:
    """A bare record: 50 logged steps and nothing else unless `extra` adds it."""
    history = TrainingHistory(steps=list(range(50)), loss=list(np.linspace(2.0, 0.5, 50)), lr=[1e-3] * 50)
    fields: dict[str, Any] = {"title": "bare run", "task": "someone's model", "total_steps": 50, **extra}
    return RunRecord(history=history, status=status, **fields)


def test_missing_parts_say_not_measured_and_do_not_crash(tmp_path: Path) -> None:
    index = write_report(_minimal("interrupted", notes=["stopped by the user at step 50"]), tmp_path)
    doc = _parse(index)
    assert doc.errors == []
    assert doc.images == ["training.png"]
    text = doc.words()
    for line in (
        "not measured: no range test was run",
        "not used: no recommendation was made",
        "not recorded: no schedule spec",
        "no guard actions recorded",
        "Per-layer effective step (Adam) Adam gives",
        "not measured for this run",
        "no final metrics recorded",
        "no timings recorded",
        "interrupted",
        "stopped by the user at step 50",
    ):
        assert line in text, line


def test_a_range_test_that_ran_without_a_result_is_not_said_to_have_not_run(tmp_path: Path) -> None:
    """fit's range test stopped at a time budget's share for it (or failed) leaves no result: the
    report had said "no range test was run" beside the note that it stopped after 6 steps."""
    stopped = (
        "range test stopped after 6 steps at the time budget's share for it (50%); trained at the rules' peak "
        "5e-05 instead (a larger budget lets the test finish)"
    )
    text = _parse(write_report(_minimal("finished", notes=[stopped]), tmp_path)).words()
    assert "no range test was run" not in text
    assert text.count(f"not measured: {stopped}") == 2  # under "Why this learning rate" and as the figure


def test_a_total_time_entry_is_the_total(tmp_path: Path) -> None:
    index = write_report(_minimal(timings={"find": 1.0, "train": 2.0, "total": 3.5}), tmp_path)
    text = _parse(index).words()
    assert "time 3.5 s" in text
    assert "train 2.00 total 3.50" in text


def test_an_empty_history_still_gives_a_page(tmp_path: Path) -> None:
    record = RunRecord(
        title="failed at once", task="t", total_steps=10, history=TrainingHistory([], [], []), status="failed"
    )
    doc = _parse(write_report(record, tmp_path))
    assert doc.images == []
    assert "not recorded: the run logged no training steps" in doc.words()


def test_without_matplotlib_the_page_says_so_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lrpilot.report import plots

    def missing(module: str, extra: str, purpose: str) -> None:
        raise ImportError(f"{purpose} needs matplotlib, which is not installed: pip install 'lrpilot[{extra}]'")

    monkeypatch.setattr(plots, "require", missing)
    index = write_report(_minimal(schedule="cosine(peak=1e-3, warmup_steps=5)"), tmp_path)
    text = _parse(index).words()
    assert "pip install 'lrpilot[plot]'" in text
    assert "cosine(peak=1e-3, warmup_steps=5)" in text
    assert (tmp_path / "run.json").is_file()


def test_a_bad_finder_dict_costs_its_figure_only(tmp_path: Path) -> None:
    index = write_report(_minimal(finder={"peak_lr": 1e-3}), tmp_path)
    text = _parse(index).words()
    assert "figure not drawn: the run's data could not be read" in text
    assert (tmp_path / "training.png").is_file()


def test_records_keep_the_lists_a_training_loop_appends_to(tmp_path: Path) -> None:
    history = TrainingHistory(steps=[], loss=[], lr=[])
    record = RunRecord(title="live", task="t", total_steps=3, history=history)
    for step in range(3):  # numpy numbers, as a loop would log them
        history.steps.append(step)
        history.loss.append(np.float32(1.0 / (step + 1)))  # type: ignore[arg-type]
        history.lr.append(np.float64(1e-3))
    record.metrics["val_loss"] = np.float32(0.5)  # type: ignore[assignment]
    index = write_report(record, tmp_path)
    assert "val_loss" in _parse(index).words()
    back = read_run(tmp_path)
    assert back.history.steps == [0, 1, 2]
    assert back.metrics == {"val_loss": 0.5}
    history.loss.append(1.0)
    with pytest.raises(ValueError, match="steps, loss, lr must have the same length"):
        record.to_dict()


def test_positions_follow_a_rollback() -> None:
    logged = [0, 1, 2, 3, 4, 5, 3, 4, 5, 6]  # a rollback at step 5 back to the snapshot at 3
    assert positions(logged, [5, 4, 6]).tolist() == [5, 7, 9]
    assert positions([0, 10, 20], [15, 25]).tolist() == [2, -1]  # an evaluation between logged steps


def test_layer_verdicts_flag_a_decade_either_side_of_1e_3() -> None:
    stats = LayerStats(
        names=["frozen-ish", "ok", "hot", "dead", "unused"],
        steps=[0, 1],
        ratios=[[1e-5, 1e-3, 0.05, 0.0, 0.0], [2e-5, 2e-3, 0.02, math.nan, 0.0]],
    )
    assert [v[2] for v in layer_verdicts(stats)] == ["low", "ok", "high", "n/a", "not updated"]


def test_a_lora_runs_layers_say_their_ratio_is_of_the_effective_weights(tmp_path: Path) -> None:
    stats = LayerStats(
        names=["layer.0", "head"], steps=[0, 1], ratios=[[1e-3, 2e-3], [1e-3, 2e-3]], adapted=["layer.0"]
    )
    record = _minimal(layer_stats=stats)
    html = Path(write_report(record, tmp_path)).read_text(encoding="utf-8")
    assert "1 of these 2 layers are LoRA-adapted" in html
    assert read_run(tmp_path).layer_stats == stats
    old = {**stats.to_dict()}
    del old["adapted"]  # a run.json written before adapted layers were recorded
    assert LayerStats.from_dict(old).adapted == []
    assert "LoRA-adapted" not in Path(
        write_report(_minimal(layer_stats=LayerStats.from_dict(old)), tmp_path / "b")
    ).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingHistory(steps=[0, 1], loss=[1.0], lr=[1e-3, 1e-3]), "must have the same length"),
        (
            lambda: TrainingHistory([0], [1.0], [1.0], eval_steps=[0], eval_loss=[1.0], eval_metrics={"acc": []}),
            "eval_metrics",
        ),
        (lambda: LayerStats(names=["a", "b"], steps=[0], ratios=[[1e-3]]), "ratios"),
        (lambda: LayerStats(names=["a"], steps=[0], ratios=[[1e-3]], adapted=["b"]), "adapted names layers not in"),
        (lambda: _minimal("crashed"), "status must be one of"),
        (lambda: _minimal(total_steps=-1), "total_steps"),
        (lambda: _minimal(classes=1), r"classes must be an integer in \[2, ∞\], got 1"),
        (lambda: _minimal(batch_size=0), r"batch_size must be an integer in \[1, ∞\], got 0"),
        (lambda: _minimal(chance_loss=-1.0), r"chance_loss must be a finite number > 0, got -1.0"),
    ],
)
def test_bad_records_name_the_problem(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_read_run_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected a run\.json"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**_minimal().to_dict(), "titel": "typo"}))
    with pytest.raises(ValueError, match="titel"):
        read_run(tmp_path)


# ---------------------------------------------------------------- a real browser

browser = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)")

_PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "img-status";
  out.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]));
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={cwd / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180, cwd=cwd, check=True)


@browser
def test_chromium_renders_a_screenshot(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", report.as_uri(), cwd=tmp_path)
    assert shot.stat().st_size > 50_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # text and figures, not a blank or error page


def _loaded_images(report: Path, tmp_path: Path) -> tuple[str, list[list[Any]]]:
    """The DOM Chromium renders of `report` and, per image, ``[src, complete, naturalWidth]``. The
    probe script goes into a copy of the page (the product HTML has no JavaScript)."""
    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    page = copy / "index.html"
    page.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(
        "--virtual-time-budget=5000",
        "--run-all-compositor-stages-before-draw",
        "--dump-dom",
        page.as_uri(),
        cwd=tmp_path,
    ).stdout
    status = json.loads(dom.split('<pre id="img-status">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    return dom, status


def _assert_figure_png(png: Path) -> None:
    """`png` is a valid 8 × 4.5 in, 120 dpi figure with something drawn on it."""
    from PIL import Image

    assert png.read_bytes().startswith(b"\x89PNG")
    assert png.stat().st_size > 10_000
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.size == (960, 540)  # 8 × 4.5 inches at 120 dpi
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # axes, points and text, not a blank canvas


@browser
def test_chromium_loads_every_image(report: Path, tmp_path: Path) -> None:
    dom, status = _loaded_images(report, tmp_path)
    assert "blobs &lt;script&gt;" in dom  # the headline, still inert text
    assert [s[0] for s in status] == ["range_test.png", "schedule.png", "training.png", "layer_ratios.png"]
    for src, complete, width in status:
        assert complete, src
        assert width > 500, src


def test_a_resume_after_a_rollback_is_marked_at_the_entry_logged_after_it(tmp_path: Path) -> None:
    """Rolled back from step 5 to 3, stopped after step 6 and resumed: step 7 was never logged
    before, but the line goes by the entries logged (the x axis counts them once a rollback sent
    the step back), one stored as bad is refused with what it must be, and the record keeps it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrpilot.report.run_plots import RESUME_COLOR, draw_training

    steps = [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9]
    history = TrainingHistory(steps=steps, loss=[1.0] * 13, lr=[1e-3] * 13)
    resumes = [{"step": 7, "logged": 10}]
    figure = draw_training(history, resumes=resumes)
    try:
        marks = [line for line in figure.axes[1].get_lines() if line.get_color() == RESUME_COLOR]
        assert [list(line.get_xdata()) for line in marks] == [[10, 10]]
        assert [text.get_text() for text in figure.axes[0].texts] == ["resumed at step 7"]
    finally:
        plt.close(figure)
    record = RunRecord(title="t", task="t", total_steps=10, history=history, resumes=resumes)
    assert RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))).resumes == resumes
    with pytest.raises(ValueError, match=r"resumes' logged must be an integer in \[0, ∞\], got -1"):
        RunRecord(title="t", task="t", total_steps=10, history=history, resumes=[{"step": 7, "logged": -1}])
    with pytest.raises(ValueError, match=r"each of resumes must be a dict with 'step' and 'logged', got 7"):
        RunRecord(title="t", task="t", total_steps=10, history=history, resumes=[7])  # type: ignore[list-item]
    page = write_report(record, tmp_path).read_text(encoding="utf-8")
    assert "at step 7: the dotted line marks where it went on" in page


def test_the_steps_a_range_tests_ramp_stood_for_are_shaded(tmp_path: Path) -> None:
    """fit's run went on from the ramp at step 23: steps 0–23 shaded; a record that says nothing
    of a ramp gets no shading, wherever its history starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrpilot.report.run_plots import _mark_ramp_start

    fig, axes = plt.subplots(2, 1)
    try:
        assert _mark_ramp_start(axes, 23)
        assert all(len(ax.patches) == 1 for ax in axes)
        assert axes[0].patches[0].get_label() == "warmup done by the range test's ramp"
        assert not _mark_ramp_start(axes, None)
        assert not _mark_ramp_start(axes, 0)
    finally:
        plt.close(fig)
    history = TrainingHistory(steps=list(range(23, 60)), loss=[1.0] * 37, lr=[1e-3] * 37)
    record = RunRecord(title="t", task="t", total_steps=60, history=history, resumed={"start_step": 23})
    assert RunRecord.from_dict(record.to_dict()).resumed == {"start_step": 23}
    write_report(record, tmp_path)
    assert (tmp_path / "training.png").is_file()


def test_a_peak_scaled_to_the_runs_length_is_explained(record: RunRecord, tmp_path: Path) -> None:
    """fit trained above the range test's peak because the run is shorter than the length the
    rule is calibrated at: the verdict says so, with the numbers, and the record round-trips."""
    assert record.finder is not None
    assert record.schedule is not None
    found = float(f"{record.finder['peak_lr']:.3g}")
    horizon = {"found": found, "factor": 1.78, "reference_steps": 250, "steps": 100, "capped": False}
    peak = float(f"{found * 1.78:.3g}")
    schedule = re.sub(r"peak=[^,)]+", f"peak={peak!r}", record.schedule)
    scaled = dataclasses.replace(record, schedule=schedule, horizon=horizon)
    assert RunRecord.from_dict(scaled.to_dict()).horizon == horizon
    page = write_report(scaled, tmp_path)
    assert (tmp_path / "range_test.png").is_file()  # with the trained peak drawn beside the suggestion
    text = _parse(page).words()
    assert (
        f"Trained at peak LR {peak:.3g}: the range test's peak {found:.3g} is for a run of 250 steps, "
        "and a run of 100 peaks 1.78× as high by the horizon law." in text
    )


def test_a_scaled_peak_beside_an_end_of_the_rules_band_is_credited_to_the_horizon_law(
    record: RunRecord, tmp_path: Path
) -> None:
    """A 30-step LoRA fit scaled the test's 0.00222 by 2.76 and held it at the max stable LR 0.00509;
    the page said "the high end of the rules' band" (0.005, within 2 %), which had no part in it."""
    assert record.finder is not None
    assert record.recommendation is not None
    assert record.schedule is not None
    high = float(record.recommendation["high"])
    stable = float(f"{high * 1.018:.3g}")
    found = float(f"{stable / 3:.3g}")
    finder = {**record.finder, "peak_lr": found, "max_stable_lr": stable}
    horizon = {"found": found, "factor": 3.4, "reference_steps": 150, "steps": 30, "capped": True}
    schedule = re.sub(r"peak=[^,)]+", f"peak={stable!r}", record.schedule)
    scaled = dataclasses.replace(record, finder=finder, schedule=schedule, horizon=horizon)
    text = _parse(write_report(scaled, tmp_path)).words()
    assert "end of the rules' band" not in text
    assert (
        f"Trained at peak LR {stable:.3g}: the range test's peak {found:.3g} is for a run of 150 steps, and a run "
        "of 30 peaks 3.40× as high by the horizon law, held at its max stable LR." in text
    )


def test_a_weak_range_test_outside_the_rules_band_says_the_bands_end_was_used(
    record: RunRecord, tmp_path: Path
) -> None:
    """A test whose loss fell by less than `CLEAR_FALL` times its noise and whose peak lies above the
    rules' band: fit trains at the band's top, and the page says why rather than calling the
    measurement the one to trust."""
    assert record.finder is not None
    assert record.recommendation is not None
    assert record.schedule is not None
    high = float(record.recommendation["high"])
    details = {**record.finder["details"], "drop_sigma": [1.5]}
    finder = {**record.finder, "peak_lr": 30 * high, "details": details}
    schedule = re.sub(r"peak=[^,)]+", f"peak={high!r}", record.schedule)
    weak = dataclasses.replace(record, finder=finder, schedule=schedule)
    text = _parse(write_report(weak, tmp_path)).words()
    assert f"Trained at peak LR {high:.3g}, the high end of the rules' band." in text
    assert "fell by only 1.5× its noise" in text
    assert "the band's nearest end is the one to use" in text
    assert "the measurement is the one to trust" not in text


def test_the_header_counts_the_steps_run_as_the_interruption_note_does(tmp_path: Path) -> None:
    """fit logs a step by its update's index (0 first): a run stopped after 30 of 50 steps logged
    step 29 last, and its note says step 30; the header had said 'last logged step 29'."""
    history = TrainingHistory(steps=list(range(30)), loss=[1.0] * 30, lr=[1e-3] * 30)
    note = "interrupted by the user at step 30 of 50; the weights so far were saved"
    run = RunRecord("stopped", "digits", 50, history, notes=[note], status="interrupted")
    header = _parse(write_report(run, tmp_path)).words().split("Why this learning rate")[0]
    assert "digits · interrupted · 30 of 50 steps" in header
    assert "29" not in header


def test_guard_actions_a_step_apart_share_one_text_over_their_lines(tmp_path: Path) -> None:
    """Three NaN batches in a row (skips at steps 80, 81, 82 of 200) had 'skip' written three times
    over one another; nearby actions now share one text, far ones keep their own."""
    labels = action_labels([80.0, 81.0, 82.0, 103.0, 104.0, 150.0], ["skip"] * 4 + ["rollback", "lr_cut"], span=200.0)
    assert labels == [(80.0, "skip ×3", "skip"), (103.0, "skip, rollback", "skip"), (150.0, "lr cut", "lr_cut")]
    steps = list(range(200))
    history = TrainingHistory(steps=steps, loss=[1.0] * 200, lr=[1e-3] * 200)
    actions = [{"step": s, "action": "skip"} for s in (80, 81, 82)]
    assert plot_training(history, tmp_path / "t.png", guard_actions=actions).stat().st_size > 10_000


def test_evaluations_after_rollbacks_land_on_their_passes_and_the_restored_states_at_the_end() -> None:
    """A guard rolled back from step 6 to 3 twice, evaluating after step 5 in each pass, then gave
    up and scored the restored step 3: the repeated evaluations had piled up on one point, and the
    restored state's on the second pass rather than at the run's end."""
    logged = [0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6]
    assert eval_positions(logged, [5, 5, 5, 3]).tolist() == [4, 8, 12, 14]
    assert eval_positions([0, 10, 20], [15, 30]).tolist() == [2, 2]  # between sparse logged steps; the end


def test_an_evaluation_kept_after_a_rollback_lands_on_the_pass_that_went_on() -> None:
    """fit now keeps one evaluation per step, of the weights the run went on with: rolled back from
    step 15 to 0 after evaluating step 10, it evaluated step 10 again on the second pass, and that
    one was drawn on the first pass, the one the rollback undid."""
    logged = [*range(16), *range(40)]
    assert eval_positions(logged, [10, 20, 30, 40]).tolist() == [25, 35, 45, 55]
    assert eval_positions(logged, [0]).tolist() == [55]  # a guard that gave up: the restored state's at the end


def _pixels_of(png: Path, colour: str) -> int:
    """How many pixels of the PNG's middle third (left of the legends) are `colour` (``#rrggbb``),
    give or take antialiasing."""
    import matplotlib.image

    rgb = matplotlib.image.imread(png)[..., :3]
    third = rgb.shape[1] // 3
    rgb = rgb[:, third : 2 * third]
    target = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.sum(np.all(np.abs(rgb - target) < 0.05, axis=-1)))


def test_a_run_of_one_logged_step_draws_its_loss_and_lr(tmp_path: Path) -> None:
    """A run stopped after its first step logged one point: a line through it drew nothing, so both
    panels were empty; a curve of few points gets a dot on each."""
    history = TrainingHistory(steps=[0], loss=[2.3], lr=[1e-3])
    png = plot_training(history, tmp_path / "one.png")
    assert _pixels_of(png, "#1f6feb") > 10  # the training loss's colour
    assert _pixels_of(png, "#e36209") > 10  # the learning rate's


@pytest.mark.parametrize(
    ("status", "note", "shown"),
    [
        ("finished", "resumed at step 1242 of 3000 (lrpilot fit --resume)", "resumed at step 1242 of 3000"),
        ("interrupted", "interrupted by the user at step 30 of 50; the weights so far were saved", "interrupted by"),
        ("gave_up", "the guard gave up at step 51: 4 bad steps in a row", "the guard gave up at step 51"),
        ("gave_up", None, "The guard gave up on this run and restored its last good state"),  # anyone's loop
    ],
)
def test_how_a_run_ended_or_went_on_is_said_in_the_header(
    status: str, note: str | None, shown: str, tmp_path: Path
) -> None:
    """A resumed fit said so only in its fourth note, below the range test's: how a run ended or
    went on is now the header's, once."""
    notes = ["range test: 39 steps in 8 s", "horizon: the range test's peak 0.0028 ..."] + ([note] if note else [])
    page = _parse(write_report(_minimal(status, notes=notes), tmp_path)).words()
    header = page.split("range test: 39 steps")[0]
    assert shown in header
    assert page.count(shown) == 1


def test_the_ratio_to_the_rules_peak_is_of_the_peak_shown(record: RunRecord, tmp_path: Path) -> None:
    """A tiny GPT-2's test found 0.015453 (shown, and trained from, as 0.0155) against the rules'
    5e-05: fit's note said ×310, the page ×309 beside the 0.0155 it showed."""
    assert record.finder is not None
    assert record.recommendation is not None
    rec = {**record.recommendation, "peak_lr": 5e-05, "low": 5e-06, "high": 5e-04}
    finder = {**record.finder, "peak_lr": 0.015453319133751186, "details": {"drop_sigma": [40.0]}}
    text = _parse(write_report(dataclasses.replace(record, recommendation=rec, finder=finder), tmp_path)).words()
    assert "The range test's peak 0.0155 is above the rules' band 5e-06 – 0.0005 (×310 the rules' peak)" in text


def test_a_peak_just_outside_the_band_is_said_to_all_but_agree(record: RunRecord, tmp_path: Path) -> None:
    """fit's default demo found 0.025 against a band ending at 0.0246: the page called it above the
    band and told the reader to trust the measurement, of a difference within the test's resolution."""
    assert record.finder is not None
    assert record.recommendation is not None
    rec = {**record.recommendation, "peak_lr": 0.0082, "low": 0.00273, "high": 0.0246}
    finder = {**record.finder, "peak_lr": 0.025, "details": {"drop_sigma": [40.0]}}
    text = _parse(write_report(dataclasses.replace(record, recommendation=rec, finder=finder), tmp_path)).words()
    assert "The range test's peak 0.025 is just above the rules' band 0.00273 – 0.0246" in text
    assert "they all but agree" in text


def test_layer_ratios_measured_once_are_drawn(tmp_path: Path) -> None:
    """A run of one measured update drew an empty per-layer plot (a line through one point)."""
    stats = LayerStats(names=["hidden.weight"], steps=[0], ratios=[[3e-3]])
    png = plot_layer_ratios(stats, tmp_path / "layers.png")
    assert _pixels_of(png, "#1f77b4") > 10  # matplotlib's first line colour
