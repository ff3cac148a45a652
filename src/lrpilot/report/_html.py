"""`write_report`: a run's report as one static HTML page with its figures beside it.

The page is read at a glance and offline: inline CSS, PNGs as relative files, no JavaScript, no
network. Every piece of user text goes through `html.escape`. A part the run did not measure (no
range test, no per-layer ratios, no guard) is one short line, never an error; so is a figure that
cannot be drawn (matplotlib missing, or a record it cannot read), and the rest of the page is kept.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from lrpilot._version import __version__
from lrpilot.finder import CLEAR_FALL
from lrpilot.guard import summarize
from lrpilot.report._run import RunRecord, finder_from_dict
from lrpilot.report.run_plots import RATIO_BAND, layer_verdicts
from lrpilot.report.tradeoff_plots import is_chosen
from lrpilot.report.tune_plots import rung_losses
from lrpilot.rules._recommend import NEAR_EDGE
from lrpilot.schedules import Schedule, parse
from lrpilot.schedules._lint import sample_steps

__all__ = ["write_report"]

FIGURES = {
    "range_test": "range_test.png",
    "tune": "tune.png",
    "tradeoff": "tradeoff.png",
    "schedule": "schedule.png",
    "training": "training.png",
    "layers": "layer_ratios.png",
}
"""The PNGs a report writes beside its ``index.html`` (the ones the run has data for)."""

_MAX_ACTION_ROWS = 40  # the audit table's length in the page; run.json keeps every record
_MAX_LAYER_ROWS = 25  # more layers than this: the table lists the flagged ones only

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#24292e;margin:0;background:#f6f8fa}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #e1e4e8;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}.sub{color:#586069;margin:0 0 16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600;color:#fff}
.finished{background:#28a745}.interrupted{background:#dbab09}.gave_up{background:#d73a49}.failed{background:#b31d28}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 4px}
.card{border:1px solid #e1e4e8;border-radius:6px;padding:8px 14px;min-width:120px}
.card .k{color:#586069;font-size:12px}.card .v{font-size:21px;font-weight:600}
.notes{background:#fff8c5;border:1px solid #e3c74a;border-radius:6px;padding:8px 12px 8px 30px}
.verdict{font-size:16px;padding:8px 12px;border-left:4px solid #1f6feb;background:#f1f8ff}
.interrupted-note{border-left-color:#dbab09;background:#fff8c5}.gave_up-note,.failed-note{border-left-color:#d73a49;background:#ffeef0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:20px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #e1e4e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6a737d;font-size:12px}.missing{color:#6a737d;font-style:italic}
.flag{color:#b31d28;font-weight:600}code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
img{max-width:100%;height:auto;border:1px solid #e1e4e8;border-radius:4px}
footer{margin-top:40px;color:#6a737d;font-size:12px}
"""


def _e(value: object) -> str:
    """User text, escaped for HTML (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _num(x: object, fmt: str = ".4g") -> str:
    """A number for the page (numpy's too): missing as an em dash, NaN and infinities spelled out."""
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, Real):
        return _e(x)
    value = float(x)
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return format(int(x) if isinstance(x, Integral) else value, fmt)


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; columns in `numeric` are right-aligned; no header row when
    every header is empty (a key / value list)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table>{thead}<tbody>{body}</tbody></table>"


# ---------------------------------------------------------------- figures


def _schedule(record: RunRecord) -> Schedule | None:
    return None if record.schedule is None else parse(record.schedule, defaults={"total_steps": record.total_steps})


def _draw_range_test(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.finder_plots import plot_range_test

    if record.finder is None:
        return None
    peak, horizon = _peak(record), record.horizon
    trained = None if horizon is None or peak is None else (peak, f"the horizon law: {horizon.get('steps')} steps")
    return plot_range_test(finder_from_dict(record.finder), path, trained=trained)


def _draw_tune(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.tune_plots import plot_tune

    return None if record.tune is None else plot_tune(record.tune, path)


def _draw_tradeoff(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.tradeoff_plots import plot_tradeoff

    return None if record.tradeoff is None else plot_tradeoff(record.tradeoff, path)


def _draw_schedule(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.plots import plot_schedule

    sched = _schedule(record)
    return None if sched is None else plot_schedule(sched, record.total_steps, path)


def _draw_training(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.run_plots import plot_training

    if len(record.history.steps) == 0:
        return None
    ramp = None if record.resumed is None else int(record.resumed["start_step"])
    return plot_training(
        record.history, path, guard_actions=record.guard_actions, ramp_stood_for=ramp, resumes=record.resumes
    )


def _draw_layers(record: RunRecord, path: Path) -> Path | None:
    from lrpilot.report.run_plots import plot_layer_ratios

    stats = record.layer_stats
    return None if stats is None or len(stats.steps) == 0 else plot_layer_ratios(stats, path)


_DRAW: dict[str, Callable[[RunRecord, Path], Path | None]] = {
    "range_test": _draw_range_test,
    "tune": _draw_tune,
    "tradeoff": _draw_tradeoff,
    "schedule": _draw_schedule,
    "training": _draw_training,
    "layers": _draw_layers,
}


def _figures(record: RunRecord, out: Path) -> dict[str, str]:
    """Draw every figure the run has data for: name -> an ``<img>`` tag, or a line saying why not."""
    tags: dict[str, str] = {}
    for name, draw in _DRAW.items():
        filename = FIGURES[name]
        try:
            written = draw(record, out / filename)
        except ImportError as exc:
            tags[name] = _missing(f"figure not drawn: {exc}")
            continue
        except (ValueError, KeyError) as exc:
            tags[name] = _missing(f"figure not drawn: the run's data could not be read ({exc})")
            continue
        if written is not None:
            tags[name] = f'<img src="{_e(filename)}" alt="{_e(name.replace("_", " "))}">'
    return tags


# ---------------------------------------------------------------- the page's sections


def _peak(record: RunRecord) -> float | None:
    """The peak LR trained with: the schedule's maximum, else the largest LR logged."""
    try:
        sched = _schedule(record)
    except ValueError:
        sched = None
    if sched is not None and record.total_steps > 0:
        return float(np.max(sched.values(sample_steps(record.total_steps))))
    lrs = [v for v in record.history.lr if math.isfinite(v)]
    return max(lrs) if lrs else None


def _total_time(timings: Mapping[str, float]) -> float:
    """The run's wall time: its ``total`` entry when it has one (the phases may overlap or leave
    gaps), else the sum of the phases."""
    if "total" in timings:
        return float(timings["total"])
    return sum(float(v) for v in timings.values() if math.isfinite(v))


_HOW_IT_RAN = ("interrupted by the user", "the guard gave up", "resumed at step")
"""The beginnings of fit's notes on how a run ended or went on: the header shows them, first."""

_ENDED = {
    "interrupted": "The run was stopped before its last step: the metrics and figures are of the weights then.",
    "gave_up": "The guard gave up on this run and restored its last good state: the metrics are of that state.",
    "failed": "The run failed with an error: what it logged before is shown.",
}


def _how_it_ran(record: RunRecord) -> list[str]:
    """fit's notes saying how the run ended or that it was resumed; for a run that did not finish
    and has none (anyone's loop), a sentence for its status."""
    said = [n for n in record.notes if n.startswith(_HOW_IT_RAN)]
    generic = _ENDED.get(record.status)
    return said if said or generic is None else [generic]


def _header(record: RunRecord) -> str:
    ran = f"{record.steps_saved():,} of " if len(record.history.steps) else ""
    status = record.status.replace("_", " ")
    on = "" if record.device is None else f" · on {_e(record.device)}"
    on += "" if record.precision in (None, "fp32") else f" in {_e(record.precision)}"
    cards = [("peak LR", _num(_peak(record), ".3g")), *((k, _num(v)) for k, v in list(record.metrics.items())[:4])]
    cards.append(("guard actions", str(len(record.guard_actions))))
    if record.timings:
        cards.append(("time", f"{_num(_total_time(record.timings), '.1f')} s"))
    card_html = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>' for k, v in cards
    )
    how = "".join(f'<p class="verdict {_e(record.status)}-note">{_e(n)}</p>' for n in _how_it_ran(record))
    return (
        f"<header><h1>{_e(record.title)}</h1>"
        f'<p class="sub">{_e(record.task)} · <span class="badge {_e(record.status)}">{_e(status)}</span>'
        f" · {ran}{record.total_steps:,} steps{on}</p>{how}"
        f'<div class="cards">{card_html}</div></header>'
    )


def _notes(record: RunRecord) -> str:
    notes = [n for n in record.notes if not n.startswith(_HOW_IT_RAN)]  # the header shows those
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<section id="notes"><ul class="notes">{items}</ul></section>'


def _agreement(rec: Mapping[str, Any], finder: Mapping[str, Any]) -> str:
    """Whether the range test's peak falls inside the rules' band, and by what factor it differs;
    for a test whose fall was within its noise and whose peak is outside the band (fit then trains
    at the band's nearest end), that it was too weak to overrule them."""
    peak, low, high = float(finder["peak_lr"]), float(rec["low"]), float(rec["high"])
    # the ratio of the peak as shown (3 digits, the ones fit keeps): fit's note says ×310 for 0.0155
    # over 5e-05, where the test's 0.015453 would give ×309
    ratio = float(f"{peak:.3g}") / float(rec["peak_lr"])
    band = f"{_num(low, '.3g')} – {_num(high, '.3g')}"
    clarity = min(finder.get("details", {}).get("drop_sigma") or [math.inf])
    if clarity < CLEAR_FALL and not low <= peak <= high:
        return (
            f"The range test's loss fell by only {_num(clarity, '.1f')}× its noise, so its peak {_num(peak, '.3g')} "
            f"may be where the noise put the minimum; it is {'above' if peak > high else 'below'} the rules' band "
            f"{band}, and too weak a measurement to overrule them: <b>the band's nearest end is the one to use</b> "
            "(a longer test, a larger batch or more data would measure this model)."
        )
    if low <= peak <= high:
        return f"The range test's peak {_num(peak, '.3g')} is inside the rules' band {band}: <b>they agree</b>."
    side = "above" if peak > high else "below"
    if (peak / high if peak > high else low / peak) <= NEAR_EDGE:
        return (
            f"The range test's peak {_num(peak, '.3g')} is just {side} the rules' band {band}, within a range "
            "test's resolution of its end: <b>they all but agree</b>."
        )
    return (
        f"The range test's peak {_num(peak, '.3g')} is <b>{side}</b> the rules' band {band} "
        f"(×{_num(ratio, '.3g')} the rules' peak). The range test measured this model on this data; the rules "
        "only know its size, method and batch size, so the measurement is the one to trust unless the curve "
        "below looks wrong."
    )


def _chosen(record: RunRecord) -> str:
    """Which source the trained peak came from, as one sentence."""
    peak = _peak(record)
    if peak is None:
        return "No learning rate was recorded."
    if record.tune is not None:
        return f"Trained at peak LR <b>{_num(peak, '.3g')}</b>, the best trial of the search below."
    chosen = None if record.tradeoff is None else _finite(record.tradeoff.get("chosen"))
    if chosen is not None and math.isclose(peak, chosen, rel_tol=0.02):
        return f"Trained at peak LR <b>{_num(peak, '.3g')}</b>, the forgetting trade-off's choice (see below)."
    sources = [
        (name, float(d["peak_lr"]))
        for name, d in (("the range test", record.finder), ("the rules", record.recommendation))
        if d is not None
    ]
    for name, value in sources:
        if math.isclose(peak, value, rel_tol=0.02):
            return f"Trained at peak LR <b>{_num(peak, '.3g')}</b>, from {name}."
    # the horizon law before the band's ends: a scaled peak that lands near one of them (0.00222 ×
    # 2.76, held at the max stable LR 0.00509, beside the band's top 0.005) had been called that end
    h = record.horizon
    if h is not None and _horizon_gave(record, h, peak):
        return _by_horizon(h, peak)
    rec = record.recommendation
    for end in ("low", "high") if rec is not None else ():
        if math.isclose(peak, float(rec[end]), rel_tol=0.02):  # type: ignore[index]
            return f"Trained at peak LR <b>{_num(peak, '.3g')}</b>, the {end} end of the rules' band."
    return _by_horizon(h, peak) if h is not None else f"Trained at peak LR <b>{_num(peak, '.3g')}</b>."


def _by_horizon(h: Mapping[str, Any], peak: float) -> str:
    """The trained peak as the range test's scaled to the run's length, as one sentence."""
    held = ", held at its max stable LR" if h.get("capped") else ""
    return (
        f"Trained at peak LR <b>{_num(peak, '.3g')}</b>: the range test's peak {_num(h.get('found'), '.3g')} "
        f"is for a run of {_e(h.get('reference_steps'))} steps, and a run of {_e(h.get('steps'))} peaks "
        f"{_num(h.get('factor'), '.2f')}× as high by the horizon law{held}."
    )


def _horizon_gave(record: RunRecord, horizon: Mapping[str, Any], peak: float) -> bool:
    """Whether the trained peak is the horizon law's: the test's peak times its factor, or the max
    stable LR that held it."""
    found, factor = _finite(horizon.get("found")), _finite(horizon.get("factor"))
    stable = None if record.finder is None else _finite(record.finder.get("max_stable_lr"))
    scaled = found is not None and factor is not None and math.isclose(peak, found * factor, rel_tol=0.02)
    held = bool(horizon.get("capped")) and stable is not None and math.isclose(peak, stable, rel_tol=0.02)
    return scaled or held


def _rules_block(rec: Mapping[str, Any] | None) -> str:
    if rec is None:
        return (
            "<div><h3>The rules (prior)</h3>" + _missing("not used: no recommendation was made for this run") + "</div>"
        )
    rows = [
        (
            _e(r.get("rule", "")),
            _e(r.get("effect", "")),
            f'{_e(r.get("text", ""))}<div class="muted">{_e(r.get("source", ""))}</div>',
        )
        for r in rec.get("reasons", [])
    ]
    notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in rec.get("notes", []))
    return (
        "<div><h3>The rules (prior)</h3>"
        f"<p>peak <b>{_num(rec.get('peak_lr'), '.3g')}</b>, band {_num(rec.get('low'), '.3g')} – "
        f"{_num(rec.get('high'), '.3g')}, confidence <b>{_e(rec.get('confidence', '?'))}</b></p>"
        f"<p><code>{_e(rec.get('spec', ''))}</code></p>"
        + _table(("rule", "what it did here", "why (source)"), rows)
        + notes
        + "</div>"
    )


_NO_RESULT = ("range test stopped", "range test failed")
"""The beginnings of fit's notes on a range test that ran and gave no result: stopped at a time
budget's share for it, or failed; the run then trained at the rules' peak."""


def _no_test(record: RunRecord) -> str:
    """What the report says where the record has no range test: fit's note on the test that ran
    without a result, else that none was run (a time budget's stopped test had read "no range test
    was run", beside a note saying it stopped after 6 steps)."""
    said = next((n for n in record.notes if n.startswith(_NO_RESULT)), None)
    return f"not measured: {said}" if said is not None else "not measured: no range test was run"


def _finder_block(finder: Mapping[str, Any] | None, missing: str) -> str:
    if finder is None:
        return "<div><h3>The range test</h3>" + _missing(missing) + "</div>"
    low, high = finder.get("band", [None, None])
    first = (finder.get("records") or [{}])[0]
    stop = _e(first.get("stop_reason", "?"))
    rows = [
        ("suggested peak", f"<b>{_num(finder.get('peak_lr'), '.3g')}</b>"),
        ("band (trains about as well)", f"{_num(low, '.3g')} – {_num(high, '.3g')}"),
        ("max stable LR (an upper bound)", _num(finder.get("max_stable_lr"), ".3g")),
        ("method", _e(finder.get("method", "?"))),
        ("curve", f"{_e(first.get('steps', '?'))} of {_e(first.get('num_steps', '?'))} steps, {stop}"),
        ("probe runs", str(len(finder.get("probes", [])))),
        ("steps spent", _num(finder.get("steps_used"), ",")),
    ]
    return "<div><h3>The range test</h3>" + _table(("", ""), rows) + "</div>"


def _why(record: RunRecord) -> str:
    rec, finder = record.recommendation, record.finder
    agree = "" if rec is None or finder is None else f"<p>{_agreement(rec, finder)}</p>"
    return (
        '<section id="why"><h2>Why this learning rate</h2>'
        f'<p class="verdict">{_chosen(record)}</p>{agree}'
        f'<div class="cols">{_rules_block(rec)}{_finder_block(finder, _no_test(record))}</div></section>'
    )


def _figure_section(anchor: str, heading: str, figure: str | None, missing: str, intro: str = "") -> str:
    body = figure if figure is not None else _missing(missing)
    return f'<section id="{anchor}"><h2>{_e(heading)}</h2>{intro}{body}</section>'


def _finite(x: object) -> float | None:
    """A number from the record, or None when it is missing or not a finite number."""
    if isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(float(x)):
        return None
    return float(x)


def _stopped(trial: Mapping[str, Any], best: bool) -> str:
    """Why the trial ended where it did, in words."""
    if best:
        return "best: the model of this report"
    reasons = {
        "pruned": "worse than the others at the rung",
        "budget": "won its rung; the budget could not pay its full run",
        "diverged": "diverged",
    }
    stopped = trial.get("stopped")
    if stopped == "promoted":
        return f"won its rung: trained in full as trial {_num(trial.get('promoted_to'), ',')}"
    if trial.get("continues") is not None and trial.get("state") == "COMPLETE":
        rung = _num(trial.get("continues"), ",")
        if trial.get("fitted"):
            return f"the full run at the bottom of a parabola through the rungs' losses (best rung: trial {rung})"
        return f"the full run of trial {rung}"
    if stopped is not None:
        return _e(reasons.get(str(stopped), stopped))
    state = trial.get("state")
    return {"COMPLETE": "ran the full length", "FAIL": "failed (queued again)"}.get(str(state), "—")


def _searched(tune: Mapping[str, Any], trials: Sequence[Mapping[str, Any]], name: str) -> bool:
    """Whether the tune searched `name` (``warmup`` or ``decay``), not only the peak LR."""
    return bool((tune.get("space") or {}).get(f"{name}s")) or any(t.get(name) is not None for t in trials)


def _trial_rows(tune: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """A row per trial; the winner's in bold."""
    warmups, decays = _searched(tune, trials, "warmup"), _searched(tune, trials, "decay")
    rows = []
    for t in trials:
        best = t.get("number") == tune.get("best") and t.get("state") == "COMPLETE"
        retry = t.get("retry_of")
        again = "" if retry is None else f' <span class="muted">(retry of {_num(retry, ",")})</span>'
        number = _num(t.get("number"), ",") + again
        rungs = ", ".join(f"{_num(v)} @ {step:,}" for step, v in rung_losses(t)) or "—"
        cells = [number, _num(_finite(t.get("peak_lr")), ".3g")]
        if warmups:
            warmup = _finite(t.get("warmup"))
            cells.append("—" if warmup is None else format(warmup, ".1%"))
        if decays:
            cells.append(_e(t.get("decay") or "—"))
        cells += [  # no column of Optuna's state: its PRUNED covers a rung that won and went on as well
            rungs,
            _num(_finite(t.get("value"))),
            _num(t.get("steps"), ","),
            _stopped(t, best),
        ]
        rows.append(tuple(f"<b>{c}</b>" for c in cells) if best else tuple(cells))
    return rows


def _tune(record: RunRecord, figure: str | None) -> str:
    """The search `lrpilot.tune` made (its figure, a sentence and a table of the trials); nothing
    for a run it did not choose."""
    tune = record.tune
    if tune is None:
        return ""
    all_trials = list(tune.get("trials") or [])
    trials = [t for t in all_trials if t.get("stopped") != "skipped"]
    completed = sum(1 for t in trials if t.get("state") == "COMPLETE")
    intro = (
        "<p>Each trial first trains a short run, compressed to a third of the length at its LR scaled to that "
        "horizon (the rung). Trials whose validation loss there is not among the best third stop; the rest "
        "train the full run, whose final "
        "validation loss is the trial's value. A rung loss comes from a different, shorter run: it is not "
        "comparable to a final loss.</p>"
    )
    summary = (
        f"<p>{len(trials)} trial{'' if len(trials) == 1 else 's'}, {completed} completed, compute "
        f"{_num(_finite(tune.get('run_equivalents')), '.2f')} run-equivalents (range test included).</p>"
    )
    skipped = len(all_trials) - len(trials)
    were = "trial was" if skipped == 1 else "trials were"
    more = f'<p class="muted">{skipped} more {were} skipped (the study already had its trials).</p>'
    rows = _trial_rows(tune, trials)
    headers = ["trial", "peak LR", *(name for name in ("warmup", "decay") if _searched(tune, trials, name))]
    headers += ["rung loss @ step", "final val loss", "steps", "why it stopped"]
    numeric = [0, 1, len(headers) - 3, len(headers) - 2]
    table = _table(headers, rows, numeric=numeric) if rows else _missing("no trial was recorded")
    body = (figure or "") + summary + table + (more if skipped else "")
    return _figure_section("tune", "Tuning", body, "", intro)


def _probed(record: RunRecord, trade: Mapping[str, Any]) -> str:
    """The peak the trade-off's probes are fractions of (its highest probe), and where it came
    from: fit probes below the peak it would have trained, the range test's scaled to the run's
    length by the horizon law where that applied, not the test's own."""
    top = max((lr for p in trade.get("points") or [] if (lr := _finite(p.get("peak_lr"))) is not None), default=None)
    if top is None:
        return "the peak found"
    h = record.horizon
    if h is not None and _horizon_gave(record, h, top):
        source = f"the range test's peak {_num(h.get('found'), '.3g')} scaled to the run's length by the horizon law"
    elif record.finder is not None and math.isclose(top, float(record.finder["peak_lr"]), rel_tol=0.02):
        source = "the range test's peak"
    else:
        source = "the rules' peak" if record.finder is None else "the peak found"
    return f"{_num(top, '.3g')} ({source})"


def _tradeoff(record: RunRecord, figure: str | None) -> str:
    """The forgetting trade-off ``lrpilot fit --forgetting-weight`` made (a sentence, its figure and
    a table of the probes); nothing for a run without one."""
    trade = record.tradeoff
    if trade is None:
        return ""
    share = _finite(trade.get("probe_share"))
    intro = (
        f"<p>Each probe trained the recipe for {'—' if share is None else format(share, '.0%')} of the run at "
        f"1, ½, ¼ and ⅛ of {_probed(record, trade)} and was scored <code>score = val loss + "
        f"{_num(trade.get('weight'), 'g')} × "
        "drift</code>, drift being the mean cosine distance of the model's sentence embeddings from the "
        "original's on the retention texts (0 = unchanged); the lowest score was trained.</p>"
    )
    rows = []
    for p in trade.get("points") or []:
        diverged = _finite(p.get("val_loss")) is None
        lr = _num(_finite(p.get("peak_lr")), ".3g") + (' <span class="muted">(diverged)</span>' if diverged else "")
        cells = (lr, _num(_finite(p.get("val_loss"))), _num(_finite(p.get("drift"))), _num(_finite(p.get("score"))))
        rows.append(tuple(f"<b>{c}</b>" for c in cells) if is_chosen(p, trade) else cells)
    headers = ("peak LR", "val loss", "drift", "score")
    table = _table(headers, rows, numeric=(0, 1, 2, 3)) if rows else _missing("no probe was recorded")
    return _figure_section("tradeoff", "Forgetting trade-off", (figure or "") + table, "", intro)


def _action_rows(actions: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            _num(a.get("step"), ","),
            _e(str(a.get("action", "?")).replace("_", " ")),
            _e(a.get("detector") or "—"),
            f"{_num(a.get('lr_before'), '.3g')} → {_num(a.get('lr_after'), '.3g')}",
            _e(a.get("reason", "")),
        )
        for a in actions[:_MAX_ACTION_ROWS]
    ]


def _guard_block(record: RunRecord) -> str:
    actions = record.guard_actions
    if not actions:
        return _missing("no guard actions recorded: the guard (if one ran) never had to act")
    counts = ", ".join(f"{n} × {_e(kind.replace('_', ' '))}" for kind, n in summarize(actions).items())
    more = len(actions) - _MAX_ACTION_ROWS
    tail = f'<p class="muted">… and {more} more (every record is in run.json)</p>' if more > 0 else ""
    headers = ("step", "action", "detector", "LR before → after", "reason")
    return f"<h3>What the guard did: {counts}</h3>" + _table(headers, _action_rows(actions), numeric=(0,)) + tail


def _resumed_at(record: RunRecord) -> str:
    """A line under the training figure naming the steps where the run was stopped and went on (its
    dotted lines); the notes said so, the figure did not show where."""
    if not record.resumes:
        return ""
    steps = [f"{int(at['step']):,}" for at in record.resumes]
    where = steps[0] if len(steps) == 1 else ", ".join(steps[:-1]) + f" and {steps[-1]}"
    one = len(steps) == 1
    return (
        f'<p class="resumed">Stopped and resumed (<code>lrpilot fit --resume</code>) at step{"" if one else "s"} '
        f"{where}: the dotted line{' marks' if one else 's mark'} where it went on.</p>"
    )


def _training(record: RunRecord, figure: str | None) -> str:
    body = figure if figure is not None else _missing("not recorded: the run logged no training steps")
    body += _resumed_at(record)
    return f'<section id="training"><h2>Loss and learning rate over training</h2>{body}{_guard_block(record)}</section>'


def _adapted_note(adapted: list[str], layers: int) -> str:
    """What a LoRA run's ratios are of: the rule is about the weight a layer computes with, and an
    adapter's own B starts at zero, so its ‖ΔB‖/‖B‖ would read as far too high at any LR."""
    if not adapted:
        return ""
    return (
        f"<p>{len(adapted)} of these {layers} layers are LoRA-adapted: their ratio is that of the weights they "
        "compute with, ‖ΔW<sub>eff</sub>‖ / ‖W<sub>eff</sub>‖ with W<sub>eff</sub> = W<sub>0</sub> + scale · B A "
        "(the frozen weight plus the adapter's product), not of the adapter's own A and B: B starts at zero, so "
        "its own ratio would read as far too high at any LR.</p>"
    )


def _layers(record: RunRecord, figure: str | None) -> str:
    intro = (
        "<p>Adam gives every parameter its own effective step. ‖Δw‖ / ‖w‖ per update measures it per layer; "
        "a rule of thumb puts it near <b>1e-3</b> (Karpathy, CS231n notes, “ratio of updates to weights”). "
        f"Flagged: a typical (median) ratio below {RATIO_BAND[0]:g} (the layer barely learns) or above "
        f"{RATIO_BAND[1]:g} (it is overwritten every step).</p>"
    )
    stats = record.layer_stats
    if stats is None or len(stats.steps) == 0:
        return _figure_section("layers", "Per-layer effective step (Adam)", None, "not measured for this run", intro)
    intro += _adapted_note(stats.adapted, len(stats.names))
    verdicts = layer_verdicts(stats)
    flagged = [v for v in verdicts if v[2] in ("low", "high")]
    listed = verdicts if len(verdicts) <= _MAX_LAYER_ROWS else flagged
    rows = [
        (
            _e(name),
            _num(ratio, ".2e"),
            f'<span class="flag">{verdict}</span>' if verdict in ("low", "high") else verdict,
        )
        for name, ratio, verdict in listed
    ]
    summary = f"<p>{len(flagged)} of {len(verdicts)} layers flagged.</p>"
    table = _table(("layer", "median ‖Δw‖/‖w‖", "verdict"), rows, numeric=(1,)) if rows else ""
    return _figure_section("layers", "Per-layer effective step (Adam)", (figure or "") + summary + table, "", intro)


def _metrics(record: RunRecord) -> str:
    metrics = (
        _table(("metric", "value"), [(_e(k), _num(v)) for k, v in record.metrics.items()], numeric=(1,))
        if record.metrics
        else _missing("no final metrics recorded")
    )
    total = _num(_total_time(record.timings), ".2f")
    timing_rows = [(_e(k), _num(v, ".2f")) for k, v in record.timings.items() if k != "total"]
    timings = (
        _table(("phase", "seconds"), [*timing_rows, ("<b>total</b>", f"<b>{total}</b>")], numeric=(1,))
        if record.timings
        else _missing("no timings recorded")
    )
    return (
        '<section id="metrics"><h2>Final metrics</h2><div class="cols">'
        f"<div><h3>Metrics</h3>{metrics}</div><div><h3>Time per phase</h3>{timings}</div></div></section>"
    )


def _page(record: RunRecord, figures: Mapping[str, str]) -> str:
    schedule_intro = f"<p><code>{_e(record.schedule)}</code></p>" if record.schedule else ""
    parts = [
        _header(record),
        _notes(record),
        _why(record),
        _figure_section("range-test", "Range test", figures.get("range_test"), _no_test(record)),
        _tune(record, figures.get("tune")),
        _tradeoff(record, figures.get("tradeoff")),
        _figure_section(
            "schedule", "Schedule", figures.get("schedule"), "not recorded: no schedule spec", schedule_intro
        ),
        _training(record, figures.get("training")),
        _layers(record, figures.get("layers")),
        _metrics(record),
        f'<footer>lrpilot {_e(__version__)} · the numbers behind this page: <a href="run.json">run.json</a> '
        "(<code>lrpilot report</code> re-renders it)</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(record.title)} · lrpilot report</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def write_report(record: RunRecord, out_dir: str | Path) -> Path:
    """Write the run's report to `out_dir`: ``index.html``, its PNGs and ``run.json``; return the
    path of ``index.html``. ``run.json`` is written first, so a failed figure never costs the data."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record.write_json(out / "run.json")
    page = _page(record, _figures(record, out))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
