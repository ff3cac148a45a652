"""Argument checks shared by every public constructor.

One policy everywhere: a bad value raises `ValueError` at construction, and the message names the
owner, the parameter, the valid range and the value received, e.g.
``cosine: warmup_steps must be an integer in [0, 1000], got 1500``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from numbers import Integral, Real


def suggest_name(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'cosine'?)`` for a near miss, else the empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_keys(owner: str, data: Iterable[str], known: Iterable[str]) -> None:
    """Reject keys of a serialised object that its class does not have (a typo would otherwise be
    dropped silently, or fail later with a less helpful TypeError)."""
    names = set(known)
    unknown = sorted(set(data) - names)
    if unknown:
        hint = suggest_name(unknown[0], names)
        raise ValueError(f"{owner}: unknown parameter(s) {', '.join(map(repr, unknown))}{hint}")


def _fail(owner: str, param: str, valid: str, value: object) -> ValueError:
    return ValueError(f"{owner}: {param} must be {valid}, got {value!r}")


def _real(owner: str, param: str, value: object, valid: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise _fail(owner, param, valid, value)
    return float(value)


def positive(owner: str, param: str, value: object) -> float:
    """A finite number > 0 (learning rates, periods)."""
    x = _real(owner, param, value, "a finite number > 0")
    if x <= 0:
        raise _fail(owner, param, "a finite number > 0", value)
    return x


def non_negative(owner: str, param: str, value: object) -> float:
    """A finite number ≥ 0 (floors, offsets)."""
    x = _real(owner, param, value, "a finite number ≥ 0")
    if x < 0:
        raise _fail(owner, param, "a finite number ≥ 0", value)
    return x


def in_range(
    owner: str,
    param: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in the interval [low, high], each end open on request."""
    valid = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    x = _real(owner, param, value, valid)
    if x < low or x > high or (low_open and x == low) or (high_open and x == high):
        raise _fail(owner, param, valid, value)
    return x


def step_count(owner: str, param: str, value: object, low: int = 0, high: float = math.inf) -> int:
    """An integer number of steps in [low, high] (floats with an integral value are accepted)."""
    hi = "∞" if high == math.inf else str(int(high))
    valid = f"an integer in [{low}, {hi}]"
    if isinstance(value, bool):
        raise _fail(owner, param, valid, value)
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not math.isfinite(float(value)) or float(value) != int(float(value)):
            raise _fail(owner, param, valid, value)
    elif not isinstance(value, Integral):
        raise _fail(owner, param, valid, value)
    n = int(value) if isinstance(value, Integral) else int(float(value))  # an int past 2**53 kept exact
    if n < low or n > high:
        raise _fail(owner, param, valid, value)
    return n


def choice(owner: str, param: str, value: object, options: Iterable[str]) -> str:
    """One of a fixed set of names, with a "did you mean" hint."""
    options = list(options)
    if value not in options:
        hint = suggest_name(str(value), options)
        raise ValueError(f"{owner}: {param} must be one of {options}, got {value!r}{hint}")
    return str(value)
