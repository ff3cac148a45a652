"""The task registry, the recipes, bad input, and the packaged shakespeare corpus (no training)."""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("torch")

from lrpilot.schedules import Cosine, Linear
from lrpilot.tasks import SST2_ENV, Recipe, corpus, find_sst2_dir, get_task, task_names, train

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_names_cheapest_first() -> None:
    assert task_names() == ["digits", "shakespeare", "sst2-full", "sst2-lora"]


@pytest.mark.parametrize("name", ["digits", "shakespeare", "sst2-full", "sst2-lora"])
def test_every_task_describes_itself(name: str) -> None:
    task = get_task(name)
    assert task.name == name
    assert task.description
    recipe = task.recipe.to_dict()
    assert recipe["optimizer"] == "adamw"
    assert 0 < recipe["warmup_steps"] < recipe["total_steps"]
    assert task.classes == {"digits": 10, "shakespeare": 65}.get(name, 2)  # the guard's chance level


@pytest.mark.parametrize(
    ("typo", "hint"), [("digit", "digits"), ("shakespear", "shakespeare"), ("sst2_lora", "sst2-lora")]
)
def test_unknown_name_suggests(typo: str, hint: str) -> None:
    with pytest.raises(ValueError, match=rf"get_task: name must be one of .*got '{typo}' \(did you mean '{hint}'\?\)"):
        get_task(typo)


def test_unknown_name_in_train() -> None:
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        train("Digits", 1e-3)


@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, math.nan, math.inf, -math.inf, True, "1e-3", None])
def test_rejects_bad_lr(lr: object) -> None:
    with pytest.raises(ValueError, match=r"train: peak_lr must be a finite number > 0, got"):
        train("digits", lr, steps=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match=r"train: seed must be an integer in \[0, "):
        train("digits", 1e-3, seed, steps=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("steps", [0, -5, 2.5])
def test_rejects_bad_steps(steps: object) -> None:
    with pytest.raises(ValueError, match=r"Recipe.shortened: steps must be an integer in \[1, "):
        train("digits", 1e-3, steps=steps)  # type: ignore[arg-type]


def test_missing_sst2_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"SST-2 data not found: data_dir \({missing}\).*{SST2_ENV}"):
        get_task("sst2-full", data_dir=missing)


def test_sst2_dir_without_the_csvs(tmp_path: Path) -> None:
    (tmp_path / "sst2_train.csv").write_text("text,label\n")
    with pytest.raises(FileNotFoundError, match=r"sst2_validation\.csv"):
        get_task("sst2-lora", data_dir=tmp_path)


def test_sst2_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SST2_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"\${SST2_ENV} \({tmp_path}\)"):
        find_sst2_dir()
    for name in ("sst2_train.csv", "sst2_validation.csv"):
        (tmp_path / name).write_text("text,label\n")
    assert find_sst2_dir() == tmp_path.resolve()


def test_data_dir_only_for_sst2(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data_dir applies to the sst2 tasks only"):
        get_task("digits", data_dir=tmp_path)


def test_shakespeare_ships_in_the_package() -> None:
    shipped = resources.files("lrpilot").joinpath("data", "tinyshakespeare.txt")
    data = shipped.read_bytes()
    assert len(data) == 1_115_394
    assert hashlib.sha256(data).hexdigest() == SHAKESPEARE_SHA256
    assert corpus() == data.decode("ascii")


def test_sst2_is_not_shipped() -> None:
    package = Path(str(resources.files("lrpilot")))
    assert not [p for p in package.rglob("*") if "sst2" in p.name.lower() and p.suffix in {".csv", ".tsv"}]


@pytest.mark.parametrize(("decay", "cls"), [("cosine", Cosine), ("linear", Linear)])
def test_recipe_schedule(decay: str, cls: type) -> None:
    recipe = Recipe(batch_size=8, total_steps=100, warmup_steps=10, decay=decay, floor_ratio=0.1, weight_decay=0.0)
    schedule = recipe.schedule(1e-3)
    assert isinstance(schedule, cls)
    assert schedule(10) == pytest.approx(1e-3)
    assert schedule(100) == pytest.approx(1e-4)


def test_recipe_shortened_keeps_the_shape() -> None:
    recipe = get_task("shakespeare").recipe
    short = recipe.shortened(20)
    assert (short.total_steps, short.warmup_steps) == (20, 2)
    assert short.shortened(1).warmup_steps in (0, 1)
    assert (short.batch_size, short.decay, short.grad_clip) == (recipe.batch_size, recipe.decay, recipe.grad_clip)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("warmup_steps", 200, r"Recipe: warmup_steps must be an integer in \[0, 100\], got 200"),
        (
            "decay",
            "cosin",
            r"Recipe: decay must be one of \['cosine', 'linear', 'wsd'\], got 'cosin' \(did you mean 'cosine'\?\)",
        ),
        ("floor_ratio", 1.5, r"Recipe: floor_ratio must be in \[0.0, 1.0\], got 1.5"),
        ("batch_size", 0, r"Recipe: batch_size must be an integer in \[1, ∞\], got 0"),
        ("grad_clip", -1.0, r"Recipe: grad_clip must be a finite number > 0, got -1.0"),
        ("weight_decay", math.nan, r"Recipe: weight_decay must be a finite number ≥ 0, got nan"),
    ],
)
def test_recipe_rejects_bad_values(field: str, value: object, message: str) -> None:
    kwargs: dict[str, object] = {
        "batch_size": 8,
        "total_steps": 100,
        "warmup_steps": 10,
        "decay": "cosine",
        "floor_ratio": 0.1,
        "weight_decay": 0.0,
    }
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        Recipe(**kwargs)  # type: ignore[arg-type]
