"""Errors a range test raises. The user's state is always restored before they propagate.

::

    RuntimeError
     └── RangeTestError            the test could not produce a curve (e.g. the first loss is NaN)
    KeyboardInterrupt
     └── RangeTestInterrupted      Ctrl-C during the test; ``.record`` holds the partial curve
    UserWarning
     └── RangeTestWarning          a curve to read with care (a fall no bigger than the noise)
"""

from __future__ import annotations

from lrpilot.finder._record import RangeTestRecord

__all__ = ["RangeTestError", "RangeTestInterrupted", "RangeTestWarning"]


class RangeTestError(RuntimeError):
    """The range test could not produce a usable curve, or the curve has no answer in it; the
    message says why and what to change, and `records` holds the curves collected (if any)."""

    def __init__(self, message: str, records: tuple[RangeTestRecord, ...] = ()) -> None:
        super().__init__(message)
        self.records = records


class RangeTestInterrupted(KeyboardInterrupt):
    """The user interrupted the test. It is a KeyboardInterrupt, so a script still stops; a notebook
    can catch it and read the partial curve from `record` (``stop_reason == "interrupted"``), and
    from `records` the range tests that thorough mode or ``repeats`` had completed before it.
    `probing`: the interrupt came in thorough mode's probe runs, after every range test had
    finished; `record` is then the last of them, complete."""

    def __init__(
        self, record: RangeTestRecord, completed: tuple[RangeTestRecord, ...] = (), *, probing: bool = False
    ) -> None:
        which = f" (test {len(completed) + 1})" if completed else ""
        if probing:
            message = f"range test interrupted in its probe runs, after its {len(completed) + 1} range tests"
        else:
            message = f"range test{which} interrupted after {record.steps} of {record.num_steps} steps"
        super().__init__(f"{message}; state restored")
        self.record = record
        self.records = (*completed, record)


class RangeTestWarning(UserWarning):
    """The curve can be read, but not with confidence (see the message)."""
