"""Schedule specs: Python objects ⇄ dicts ⇄ JSON ⇄ a short call-like string.

The dict form is ``{"name": <registered name>, <field>: <value>, ...}`` with every constructor
field in effect (defaults included; a floor given as ``floor_ratio`` leaves ``floor`` out, and the
other way round, as a WSD decay given as ``decay_steps`` leaves ``decay_fraction`` out), nested
schedules as nested dicts; it is what `--json` prints and what checkpoints store.
The string form keeps only the fields that differ from their defaults and reads like Python::

    cosine(peak=0.0003, total_steps=10000, warmup_steps=500, floor_ratio=0.1)
    rewarmup(base=linear(peak=1e-05, total_steps=2000), at=800, steps=50)

It is parsed with `ast` (literals and nested calls only; nothing is evaluated).
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from typing import Any

from lrpilot._validate import suggest_name
from lrpilot.schedules._base import Schedule, lookup, registry

__all__ = ["from_dict", "from_json", "from_string", "parse", "to_dict", "to_json", "to_string"]


def _spec_fields(cls_or_obj: Any) -> list[Field[Any]]:
    """Constructor fields, positional ones first (the order of the constructor's signature)."""
    init = [f for f in fields(cls_or_obj) if f.init]
    return [f for f in init if not f.kw_only] + [f for f in init if f.kw_only]


def _encode(value: Any) -> Any:
    if isinstance(value, Schedule):
        return to_dict(value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def to_dict(schedule: Schedule) -> dict[str, Any]:
    """The spec of `schedule` as a JSON-ready dict: every field, defaults included, but those another
    field overrides (`Schedule._superseded`: they hold their defaults, which `from_dict` fills in)."""
    out: dict[str, Any] = {"name": schedule.name}
    superseded = schedule._superseded()
    for f in _spec_fields(schedule):
        if f.name not in superseded:
            out[f.name] = _encode(getattr(schedule, f.name))
    return out


_RUN_CLOCK_FIELDS = ("base",)
"""Fields whose nested schedule runs on the outer one's own steps (`Rewarmup`'s and `Guarded`'s
``base``), so the defaults (``total_steps`` from ``--steps``) reach it; a `Join` segment counts its
steps from its boundary, and takes none."""


def _decode(value: Any, defaults: Mapping[str, Any] | None = None) -> Any:
    if isinstance(value, Mapping):
        return from_dict(value, defaults)
    if isinstance(value, list | tuple):
        return tuple(_decode(v) for v in value)
    return value


def from_dict(spec: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> Schedule:
    """Build a schedule from its dict spec; unknown names or keys get a "did you mean" error.

    `defaults` fills fields that the spec leaves out, where the schedule has them (the CLI uses it
    to take ``total_steps`` from ``--steps``), and in the ``base`` a `Rewarmup` or `Guarded` wraps.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a schedule spec must be a dict with a 'name' key, got {spec!r}")
    if "name" not in spec:
        raise ValueError(f"a schedule spec needs a 'name' key, got keys {sorted(spec)}")
    cls = lookup(str(spec["name"]))
    known = {f.name: f for f in _spec_fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in known:
            raise ValueError(
                f"{cls.name}: unknown parameter {key!r}{suggest_name(key, known)}; parameters: {', '.join(known)}"
            )
        kwargs[key] = _decode(value, defaults if key in _RUN_CLOCK_FIELDS else None)
    for key, value in (defaults or {}).items():
        if key in known and key not in kwargs:
            kwargs[key] = value
    missing = [
        name
        for name, f in known.items()
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ValueError(f"{cls.name}: missing required parameter(s) {', '.join(missing)}")
    return cls(**kwargs)


def to_json(schedule: Schedule, indent: int | None = None) -> str:
    return json.dumps(to_dict(schedule), indent=indent)


def from_json(text: str, defaults: Mapping[str, Any] | None = None) -> Schedule:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON for a schedule spec: {exc}") from None
    return from_dict(spec, defaults)


def _format(value: Any, python: bool) -> str:
    """A field's value as the spec writes it; a float zero as ``0``, as typed (a decay to zero read
    ``floor_ratio=0.0``, a value that looks unset rather than chosen)."""
    if type(value) is float and value == 0.0:
        return "0"
    if isinstance(value, Schedule):
        return _call_form(value, python)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_format(v, python) for v in value) + "]"
    return repr(value)


def _call_form(schedule: Schedule, python: bool) -> str:
    """The name (the class name when `python`, for `repr`) and every field that differs from its
    default, nested schedules in the same form."""
    parts = []
    for f in _spec_fields(schedule):
        value = getattr(schedule, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        parts.append(f"{f.name}={_format(value, python)}")
    return f"{type(schedule).__name__ if python else schedule.name}({', '.join(parts)})"


def to_string(schedule: Schedule) -> str:
    """The short form: the name and every field that differs from its default."""
    return _call_form(schedule, python=False)


def to_python(schedule: Schedule) -> str:
    """`schedule` as the Python expression that builds it (`Schedule.__repr__`), nested ones too:
    ``Rewarmup(base=Cosine(...), ...)``, not ``Rewarmup(base=cosine(...))``, which is no Python."""
    return _call_form(schedule, python=True)


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}
"""Bare ``nan`` / ``inf`` read as the floats they name, so the schedule's own check refuses them with
the parameter's valid range (``cosine: peak must be a finite number > 0, got nan``)."""


def _literal(node: ast.expr, where: str) -> Any:
    if isinstance(node, ast.Call):
        return _call_to_spec(node)
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item, where) for item in node.elts]
    bare = _bare_name(node)
    if bare is not None:
        return _bare_value(bare, node, where)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(
            f"{where}: only numbers, quoted strings ('linear'), lists and nested schedules are allowed, "
            f"got {ast.unparse(node)!r}"
        ) from None


def _bare_name(node: ast.expr) -> str | None:
    """The identifier of a bare name (``sqrt``, ``nan``, ``-inf``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _bare_name(node.operand)
        return None if inner is None else ("-" if isinstance(node.op, ast.USub) else "") + inner
    return node.id if isinstance(node, ast.Name) else None


def _bare_value(name: str, node: ast.expr, where: str) -> float:
    """``nan`` / ``inf`` as floats (the schedule then names the valid range); a schedule's name needs
    its call; any other bare word is a string that lost its quotes (``decay_shape=sqrt``)."""
    sign, word = (-1.0, name[1:]) if name.startswith("-") else (1.0, name)
    if word.lower() in _NON_FINITE:
        return sign * _NON_FINITE[word.lower()]
    if word in registry():
        raise ValueError(f"{where}: {word} needs its parameters, e.g. {word}(peak=1e-3, ...)")
    param = where.rpartition(".")[2]
    raise ValueError(f"{where}: strings need quotes: write {param}={word!r}, got {ast.unparse(node)} unquoted")


def _call_to_spec(node: ast.expr) -> dict[str, Any]:
    if isinstance(node, ast.Name):
        lookup(node.id)  # an unknown name gets its "did you mean" here
        raise ValueError(f"{node.id} needs its parameters, e.g. {node.id}(peak=1e-3, ...)")
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"expected a schedule like cosine(peak=3e-4, total_steps=1000), got {ast.unparse(node)!r}")
    name = node.func.id
    lookup(name)
    if node.args:
        raise ValueError(f"{name}: use keyword arguments, e.g. {name}(peak=3e-4, ...)")
    spec: dict[str, Any] = {"name": name}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError(f"{name}: ** is not allowed in a schedule spec")
        spec[keyword.arg] = _literal(keyword.value, f"{name}.{keyword.arg}")
    return spec


def from_string(text: str, defaults: Mapping[str, Any] | None = None) -> Schedule:
    """Parse the short form (see the module docstring)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse schedule spec {text!r}: expected name(key=value, ...)") from None
    return from_dict(_call_to_spec(tree.body), defaults)


def parse(spec: str | Mapping[str, Any] | Schedule, defaults: Mapping[str, Any] | None = None) -> Schedule:
    """A schedule from any spec form: a `Schedule`, a dict, a JSON string or the short form."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, Mapping):
        return from_dict(spec, defaults)
    if not isinstance(spec, str):
        raise ValueError(f"a schedule spec must be a Schedule, dict or string, got {type(spec).__name__}")
    text = spec.strip()
    if text.startswith("{"):
        return from_json(text, defaults)
    return from_string(text, defaults)
