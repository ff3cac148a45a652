"""`lrpilot.tune`: search the peak LR (and optionally warmup and decay) with Optuna at a few runs'
cost, on one machine (an SQLite study) or many (a PostgreSQL one, ``lrpilot tune worker``).

    >>> from lrpilot.tuning import Space
    >>> Space(1e-4, 1.6e-3).decades > 1
    True
"""

from lrpilot.tuning._result import TrialSummary, TuneResult
from lrpilot.tuning._space import SEARCHABLE, Candidate, Space
from lrpilot.tuning._tune import DB_FILE, tune
from lrpilot.tuning._work import WorkSummary, work

__all__ = [
    "DB_FILE",
    "SEARCHABLE",
    "Candidate",
    "Space",
    "TrialSummary",
    "TuneResult",
    "WorkSummary",
    "tune",
    "work",
]
