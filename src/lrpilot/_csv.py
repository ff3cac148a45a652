"""The delimiter of a CSV file, read off its header line."""

from __future__ import annotations

__all__ = ["DELIMITERS", "delimiter_of"]

DELIMITERS = (",", "\t", ";")
"""What a ``.csv`` is separated by: commas; tabs (a TSV saved as .csv); semicolons (Excel's CSV where
the decimal separator is a comma, as in most of Europe)."""


def delimiter_of(header: str) -> str:
    """The delimiter the header line (column names, which seldom hold one) uses most; a comma where
    it holds none (a single column)."""
    line = header.splitlines()[0] if header else ""
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties go to the earlier: the comma
    return best if counts[best] else ","
