"""RangeTestRecord: validation and the JSON round-trip (NaN included)."""

from __future__ import annotations

import json
import math

import pytest

from lrpilot.finder import RangeTestRecord


def _record(**overrides: object) -> RangeTestRecord:
    kwargs: dict[str, object] = {
        "lrs": [1e-4, 1e-3, 1e-2],
        "losses": [2.0, 1.5, math.nan],
        "smoothed": [2.0, 1.7, math.nan],
        "steps": 3,
        "num_steps": 100,
        "stop_reason": "non-finite",
        "train_losses": [2.0, 1.5, math.nan],
    }
    kwargs.update(overrides)
    return RangeTestRecord(**kwargs)  # type: ignore[arg-type]


def test_json_round_trip_keeps_nan() -> None:
    record = _record(skipped_steps=2, seed=1, wall_time_s=0.5)
    data = json.loads(json.dumps(record.to_dict()))  # strict JSON: NaN became null
    assert data["losses"][-1] is None
    back = RangeTestRecord.from_dict(data)
    assert back.lrs == record.lrs
    assert back.skipped_steps == 2
    assert back.seed == 1
    assert math.isnan(back.losses[-1])
    assert back.losses[:2] == record.losses[:2]
    assert len(back) == 3


def test_arrays_are_float64() -> None:
    lrs, losses = _record().arrays()
    assert lrs.dtype.name == losses.dtype.name == "float64"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lrs": [1e-4, 1e-3]}, "same length"),
        ({"lrs": [1e-4, 0.0, 1e-2]}, "lrs must be finite numbers > 0"),
        ({"stop_reason": "exploded"}, "stop_reason must be one of"),
        ({"ramp": "log"}, "ramp must be one of"),
        ({"metric": "accuracy"}, "metric must be one of"),
        ({"steps": 101}, r"steps must be an integer in \[0, 100\]"),
        ({"beta": 1.0}, "beta must be in"),
    ],
)
def test_bad_records(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _record(**overrides)


def test_unknown_keys_get_a_hint() -> None:
    data = _record().to_dict()
    data["stop_reasons"] = data.pop("stop_reason")
    with pytest.raises(ValueError, match="did you mean 'stop_reason'"):
        RangeTestRecord.from_dict(data)
