"""The log doctor: read a finished (or dead) run's log, find what went wrong, say what to try next.

``read(path) -> Series`` (Hugging Face trainer_state.json, TensorBoard, CSV / JSONL, Lightning
metrics.csv), ``diagnose(series) -> Diagnosis`` with the same detectors the guard runs online, and
advice drawn from a few rules with their sources.
"""

from lrpilot.doctor._advice import RULES, Advice, advise
from lrpilot.doctor._diagnose import VERDICTS, Diagnosis, diagnose, examine, fitted_config
from lrpilot.doctor._readers import (
    FORMATS,
    read,
    read_csv,
    read_jsonl,
    read_run_json,
    read_tensorboard,
    read_text_log,
    read_trainer_state,
)
from lrpilot.doctor._series import DoctorInputError, Series, SeriesBuilder

__all__ = [
    "FORMATS",
    "RULES",
    "VERDICTS",
    "Advice",
    "Diagnosis",
    "DoctorInputError",
    "Series",
    "SeriesBuilder",
    "advise",
    "diagnose",
    "examine",
    "fitted_config",
    "read",
    "read_csv",
    "read_jsonl",
    "read_run_json",
    "read_tensorboard",
    "read_text_log",
    "read_trainer_state",
]
