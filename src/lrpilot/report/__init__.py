"""Pictures and reports. Nothing here decides anything: it draws records and decisions made elsewhere.

A run's report: build a `RunRecord` (the history, the recommendation, the range test, the guard's
actions, the per-layer ratios, the final metrics) and `write_report` turns it into
``index.html`` + PNGs + ``run.json``; `read_run` reads the ``run.json`` back. The figures need
matplotlib (the `plot` extra); the record and its JSON need numpy only.
"""

from lrpilot.report._html import write_report
from lrpilot.report._run import STATUSES, LayerStats, RunRecord, TrainingHistory, finder_from_dict, read_run

__all__ = ["STATUSES", "LayerStats", "RunRecord", "TrainingHistory", "finder_from_dict", "read_run", "write_report"]
