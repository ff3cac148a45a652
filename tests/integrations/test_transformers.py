"""lrpilot ⇄ Hugging Face: exact scheduler mapping (checked against `get_scheduler`, every step, float64)
and the torch adapter in real `transformers.Trainer` runs, resume included."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrpilot.integrations.torch import LRPilotScheduler
from lrpilot.integrations.transformers import from_hf_scheduler, from_training_args, to_training_args
from lrpilot.schedules import (
    WSD,
    Constant,
    Cosine,
    CosineRestarts,
    Exponential,
    InverseSqrt,
    Linear,
    OneCycle,
    Polynomial,
    Schedule,
)

transformers = pytest.importorskip("transformers")

EPS = float(np.finfo(np.float64).eps)
PEAK = 3e-4
N = 10_000
# Tolerance for every Hugging Face type: 1e-12 relative. Hugging Face computes the same closed forms
# in another order (e.g. (N - t) / (N - W) where lrpilot has 1 - (t - W) / (N - W)), which differs
# by ~1 ulp of the peak; near the end of a 10 000-step decay, where the LR is 1e-4 × peak, that is
# 2.8e-13 relative (the largest measured, `linear`). cosine_with_restarts needs an absolute term too:
# each of its cycles ends at (π / L)² / 4 × peak, where 1 ulp of the peak in 1 + cos(x) is a
# relative 5e-12 (measured 4.5e-16 × peak absolute), so it also gets 4 ulp of the peak absolute.
RTOL = 1e-12
RESTARTS_ATOL = 4 * EPS * PEAK


def hf_lrs(
    name: str, steps: int, *, lr: float, warmup: int | None, total: int | None, kwargs: dict[str, Any]
) -> np.ndarray:
    """The LR Hugging Face's scheduler sets for steps 0 .. steps - 1 (stepped as the Trainer does)."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=lr)
    scheduler = transformers.get_scheduler(
        name, opt, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=kwargs
    )
    opt.step()  # so that torch does not warn about the scheduler stepping first
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        scheduler.step()
    return np.array(out)


def hf_from_args(args: dict[str, Any], steps: int) -> np.ndarray:
    return hf_lrs(
        args["lr_scheduler_type"],
        steps,
        lr=args["learning_rate"],
        warmup=args["warmup_steps"],
        total=args.get("max_steps"),
        kwargs=args["lr_scheduler_kwargs"],
    )


def cycles(span: int) -> int:
    """The most equal cycles, up to 5, that `span` steps split into."""
    return next(c for c in (5, 4, 3, 2, 1) if span % c == 0)


def mapped_schedules(w: int) -> list[Schedule]:
    """Schedules with an exact Hugging Face counterpart, with `w` warmup steps (Hugging Face's convention)."""
    warm: dict[str, Any] = {"warmup_steps": w, "warmup_offset": 0}
    wsd = [
        WSD(
            peak=PEAK,
            total_steps=N,
            decay_steps=2000,
            decay_shape=decay,
            floor_ratio=0.05,
            warmup_steps=w,
            warmup_shape=shape,
            warmup_start=0.05 * PEAK,
            warmup_offset=0,
        )
        for decay in ("linear", "cosine", "1-sqrt")
        for shape in ("linear", "cosine", "1-sqrt")
    ]
    return [
        Constant(peak=PEAK, **warm),
        Linear(peak=PEAK, total_steps=N, **warm),
        Linear(peak=PEAK, total_steps=N, floor=1e-5, **warm),
        Cosine(peak=PEAK, total_steps=N, **warm),
        Cosine(peak=PEAK, total_steps=N, floor_ratio=0.1, **warm),
        Cosine(peak=PEAK, total_steps=N, floor=2e-5, **warm),
        Cosine(peak=PEAK, total_steps=N, hold_steps=3000, **warm),
        Linear(peak=PEAK, total_steps=N, hold_steps=3000, floor_ratio=0.1, warmup_start=0.1 * PEAK, **warm),
        Polynomial(peak=PEAK, total_steps=N, power=2.0, floor=1e-6, **warm),
        Polynomial(peak=PEAK, total_steps=N, power=0.5, **warm),
        InverseSqrt(peak=PEAK, **warm),
        InverseSqrt(peak=PEAK, timescale=300, **warm),
        CosineRestarts(peak=PEAK, period=(N - w) // cycles(N - w), total_steps=N, **warm),
        *wsd,
    ]


CASES = [s for w in (0, 1, 7, 500) for s in mapped_schedules(w)]


@pytest.mark.parametrize("schedule", CASES, ids=lambda s: s.to_string()[:80])
def test_to_training_args_runs_exactly_the_schedule_in_hugging_face(schedule: Schedule) -> None:
    args = to_training_args(schedule)
    expected = np.array([schedule(t) for t in range(N + 1)])  # every step the Trainer takes, and the end
    atol = RESTARTS_ATOL if args["lr_scheduler_type"] == "cosine_with_restarts" else 0.0
    np.testing.assert_allclose(hf_from_args(args, N + 1), expected, rtol=RTOL, atol=atol)
    # and the way back gives the same function
    back = from_training_args(args)
    np.testing.assert_array_equal(back.values(np.arange(N + 1)), schedule.values(np.arange(N + 1)))


def test_to_training_args_names_the_hugging_face_types() -> None:
    def kind(s: Schedule) -> str:
        return str(to_training_args(s)["lr_scheduler_type"])

    o: dict[str, Any] = {"warmup_offset": 0}
    assert kind(Constant(peak=1.0)) == "constant"
    assert kind(Constant(peak=1.0, warmup_steps=5, **o)) == "constant_with_warmup"
    assert kind(Linear(peak=1.0, total_steps=10)) == "linear"
    assert kind(Linear(peak=1.0, total_steps=10, floor=0.1)) == "polynomial"
    assert kind(Cosine(peak=1.0, total_steps=10, warmup_steps=2, **o)) == "cosine"
    assert kind(Cosine(peak=1.0, total_steps=10, floor_ratio=0.1)) == "cosine_with_min_lr"
    assert kind(Cosine(peak=1.0, total_steps=10, hold_steps=3)) == "warmup_stable_decay"
    assert kind(Cosine(peak=1.0, total_steps=10, warmup_steps=10, **o)) == "constant_with_warmup"  # all warmup
    assert kind(WSD(peak=1.0, total_steps=10, decay_steps=2, decay_shape="cosine")) == "warmup_stable_decay"
    assert kind(InverseSqrt(peak=1.0)) == "inverse_sqrt"
    assert kind(CosineRestarts(peak=1.0, period=5, total_steps=10)) == "cosine_with_restarts"
    args = to_training_args(Cosine(peak=2e-5, total_steps=500, warmup_steps=50, floor=1e-6, **o))
    assert args == {
        "learning_rate": 2e-5,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": 1e-6},
        "warmup_steps": 50,
        "max_steps": 500,
    }


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        (Cosine(peak=1e-3, total_steps=100, warmup_steps=10), "warmup_offset=1"),  # lrpilot's default warmup
        (Constant(peak=1e-3, warmup_steps=10, warmup_shape="cosine", warmup_offset=0), "warms up linearly"),
        (Linear(peak=1e-3, total_steps=100, warmup_steps=10, warmup_start=1e-4, warmup_offset=0), "warmup_start"),
        (Exponential(peak=1e-3, gamma=0.99), "no 'exponential' scheduler"),
        (OneCycle(peak=1e-3, total_steps=100), "no 'one_cycle' scheduler"),
        (InverseSqrt(peak=1e-3, floor=1e-5), "no floor"),
        (CosineRestarts(peak=1e-3, period=10), "needs total_steps"),
        (CosineRestarts(peak=1e-3, period=10, period_mult=2.0, total_steps=150), "equal cycles"),
        (CosineRestarts(peak=1e-3, period=30, total_steps=100), "must be an integer that divides"),
        (CosineRestarts(peak=1e-3, period=100, total_steps=2200), r"cycle\(s\) \[15\]"),  # HF's rounding
        (WSD(peak=1e-3, total_steps=100, decay_shape="exp", floor=1e-5), "decays only with"),
        (Polynomial(peak=1e-3, total_steps=100, power=2.0, hold_steps=10), "decays only with"),
        (WSD(peak=1e-3, total_steps=100, warmup_steps=5, warmup_offset=0, floor_ratio=0.1), "warms up from its floor"),
        (Polynomial(peak=1e-3, total_steps=100, floor=1e-3), "lr_end < learning_rate"),
    ],
)
def test_schedules_without_an_exact_counterpart_say_why_and_point_to_the_adapter(schedule: Schedule, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        to_training_args(schedule)
    assert "LRPilotScheduler" in str(caught.value)


def test_the_default_warmup_error_suggests_warmup_offset_0() -> None:
    with pytest.raises(ValueError, match="rebuild it with warmup_offset=0"):
        to_training_args(Linear(peak=1e-3, total_steps=100, warmup_steps=10))


# --- Hugging Face → lrpilot, for every type that is a function of the step -------------------------

HF_CASES: list[tuple[str, int, dict[str, Any]]] = [
    ("constant", 0, {}),
    ("constant_with_warmup", 300, {}),
    ("linear", 0, {}),
    ("linear", 300, {}),
    ("cosine", 300, {}),
    ("cosine", 0, {"num_cycles": 0.5}),
    ("cosine_with_min_lr", 300, {"min_lr": 1e-5}),
    ("cosine_with_min_lr", 1, {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", 300, {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", 300, {"min_lr": 1e-6, "warmup_lr_rate": 0.01}),
    ("cosine_warmup_with_min_lr", 1, {"min_lr_rate": 0.0}),
    ("cosine_warmup_with_min_lr", 0, {"min_lr_rate": 0.05}),
    ("polynomial", 300, {}),  # lr_end=1e-7, power=1
    ("polynomial", 300, {"lr_end": 1e-6, "power": 3.0}),
    ("inverse_sqrt", 300, {}),
    ("inverse_sqrt", 0, {}),
    ("inverse_sqrt", 300, {"timescale": 50}),
    ("cosine_with_restarts", 100, {"num_cycles": 3}),
    ("cosine_with_restarts", 0, {}),
    ("warmup_stable_decay", 300, {"num_decay_steps": 2000}),
    (
        "warmup_stable_decay",
        300,
        {"num_decay_steps": 1000, "warmup_type": "1-sqrt", "decay_type": "1-sqrt", "min_lr_ratio": 0.1},
    ),
    (
        "warmup_stable_decay",
        300,
        {"num_decay_steps": 1000, "warmup_type": "cosine", "decay_type": "linear", "min_lr_ratio": 0.01},
    ),
]


@pytest.mark.parametrize(("name", "warmup", "kwargs"), HF_CASES, ids=[f"{n}-{w}-{k}" for n, w, k in HF_CASES])
def test_from_hf_scheduler_equals_get_scheduler_at_every_trainer_step(
    name: str, warmup: int, kwargs: dict[str, Any]
) -> None:
    schedule = from_hf_scheduler(
        name, learning_rate=PEAK, num_warmup_steps=warmup, num_training_steps=N, scheduler_specific_kwargs=kwargs
    )
    expected = hf_lrs(name, N, lr=PEAK, warmup=warmup, total=N, kwargs=dict(kwargs))
    atol = RESTARTS_ATOL if name == "cosine_with_restarts" else 0.0
    np.testing.assert_allclose(schedule.values(np.arange(N)), expected, rtol=RTOL, atol=atol)


def test_hugging_face_restarts_glitch_is_reported_and_the_rest_matches() -> None:
    """num_cycles=22 over 2200 steps: fl(22 * fl(1500 / 2200)) = 14.999…, so HF's LR at step 1500 (the
    first of cycle 15) is 0 instead of the peak. lrpilot restarts on time and says where they differ."""
    with pytest.warns(UserWarning, match=r"step\(s\) \[1500\]"):
        schedule = from_hf_scheduler(
            "cosine_with_restarts",
            learning_rate=PEAK,
            num_training_steps=2200,
            scheduler_specific_kwargs={"num_cycles": 22},
        )
    expected = hf_lrs("cosine_with_restarts", 2200, lr=PEAK, warmup=0, total=2200, kwargs={"num_cycles": 22})
    ours = schedule.values(np.arange(2200))
    assert expected[1500] == 0.0
    assert ours[1500] == PEAK
    keep = np.arange(2200) != 1500
    np.testing.assert_allclose(ours[keep], expected[keep], rtol=RTOL, atol=RESTARTS_ATOL)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("reduce_lr_on_plateau", {}, "follows a metric"),
        ("greedy", {}, "follows a metric"),
        ("cosinus", {}, "unknown Hugging Face scheduler type"),
        ("cosine", {"num_cycles": 1.5}, "rise again"),
        ("cosine_with_min_lr", {}, "needs min_lr or min_lr_rate"),
        ("cosine_with_min_lr", {"min_lr": 1e-5, "min_lr_rate": 0.1}, "not both"),
        ("linear", {"power": 2}, r"unknown scheduler_specific_kwargs \['power'\]"),
        ("warmup_stable_decay", {}, "needs num_decay_steps"),
        ("warmup_stable_decay", {"num_decay_steps": 10, "decay_type": "exp"}, "decay_type must be one of"),
    ],
)
def test_from_hf_scheduler_bad_input(name: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_hf_scheduler(
            name, learning_rate=1e-3, num_warmup_steps=0, num_training_steps=100, scheduler_specific_kwargs=kwargs
        )


def test_from_training_args_reads_real_training_arguments(tmp_path: Path) -> None:
    args = transformers.TrainingArguments(
        str(tmp_path),
        learning_rate=2e-5,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0.05,  # transformers 5: a fraction of the run
        max_steps=1000,
        report_to="none",
    )
    assert from_training_args(args) == Cosine(
        peak=2e-5, total_steps=1000, warmup_steps=50, warmup_offset=0, floor_ratio=0.1
    )
    # epochs instead of max_steps: the caller passes the run's length
    args = transformers.TrainingArguments(str(tmp_path), learning_rate=1e-4, warmup_steps=10, report_to="none")
    assert from_training_args(args, num_training_steps=300) == Linear(
        peak=1e-4, total_steps=300, warmup_steps=10, warmup_offset=0
    )


def test_from_training_args_reads_transformers_4_dicts() -> None:
    args = {
        "learning_rate": 1e-4,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.1,
        "warmup_steps": 0,
        "max_steps": 95,
    }
    assert from_training_args(args) == Linear(peak=1e-4, total_steps=95, warmup_steps=10, warmup_offset=0)  # ceil(9.5)
    assert from_training_args({"lr_scheduler_type": "constant"}) == Constant(peak=5e-5)  # HF's default LR
    as_json = {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": '{"min_lr": 1e-6}', "max_steps": 10}
    assert from_training_args(as_json) == Cosine(peak=5e-5, total_steps=10, floor=1e-6)
    with pytest.raises(ValueError, match="needs max_steps or num_training_steps"):
        from_training_args({"warmup_ratio": 0.1})
    with pytest.raises(ValueError, match=r"^from_training_args: lr_scheduler_type='cosine' needs the run's length"):
        from_training_args({"lr_scheduler_type": "cosine"})  # it named from_hf_scheduler, which was not called


def test_from_training_args_of_an_epoch_run_asks_for_num_training_steps(tmp_path: Path) -> None:
    """Hugging Face's defaults (3 epochs, max_steps=-1): the error names the call and what to pass."""
    args = transformers.TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match=r"^from_training_args: .*'linear'.* or num_training_steps="):
        from_training_args(args)
    assert from_training_args(args, num_training_steps=120) == Linear(peak=5e-5, total_steps=120)


def test_the_epoch_runs_length_the_error_gives_is_the_trainers(tmp_path: Path) -> None:
    """2.5 epochs of 8 batches, accumulating 3: ceil(8 / 3) = 3 steps an epoch, ceil(2.5 × 3) = 8 in
    all, the length of Hugging Face's own schedule; the error had said "epochs × ceil(batches per
    epoch / gradient_accumulation_steps)", 7.5, whose 7 ended the decay a step early."""
    args = {"num_train_epochs": 2.5, "gradient_accumulation_steps": 3, "per_device_train_batch_size": 8}
    run, record = trainer(tmp_path, None, steps=-1, **args)
    with pytest.raises(ValueError, match=r"ceil\(num_train_epochs × ceil\(batches per epoch / gradient_acc"):
        from_training_args(run.args)
    run.train()
    assert run.state.max_steps == math.ceil(2.5 * math.ceil(len(rows()) / 8 / 3)) == 8
    schedule = from_training_args(run.args, num_training_steps=run.state.max_steps)
    np.testing.assert_allclose([record.lrs[t] for t in range(8)], [schedule(t) for t in range(8)], rtol=RTOL)


@st.composite
def hf_convention_schedules(draw: st.DrawFn) -> Schedule:
    total = draw(st.integers(2, 10**6))
    warm: dict[str, Any] = {"warmup_steps": draw(st.integers(0, total - 1)), "warmup_offset": 0}
    peak = draw(st.floats(1e-6, 1.0))
    kind = draw(st.sampled_from(["constant", "linear", "cosine", "polynomial", "inverse_sqrt", "wsd"]))
    floor_ratio = draw(st.sampled_from([0.0, 0.1, 0.5]))
    if kind == "constant":
        return Constant(peak=peak, **warm)
    if kind == "linear":
        return Linear(peak=peak, total_steps=total, floor_ratio=floor_ratio, **warm)
    if kind == "cosine":
        return Cosine(peak=peak, total_steps=total, floor_ratio=floor_ratio, **warm)
    if kind == "polynomial":
        return Polynomial(
            peak=peak, total_steps=total, power=draw(st.floats(0.25, 4.0)), floor_ratio=floor_ratio, **warm
        )
    if kind == "inverse_sqrt":
        return InverseSqrt(peak=peak, timescale=draw(st.none() | st.integers(1, 10**5)), **warm)
    decay = draw(st.integers(1, total - warm["warmup_steps"]))
    shape = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
    warm["warmup_shape"] = shape
    warm["warmup_start"] = floor_ratio * peak
    return WSD(peak=peak, total_steps=total, decay_steps=decay, decay_shape=shape, floor_ratio=floor_ratio, **warm)


@settings(max_examples=60, deadline=None)
@given(schedule=hf_convention_schedules(), data=st.data())
def test_any_hugging_face_convention_schedule_maps_exactly(schedule: Schedule, data: st.DataObject) -> None:
    """Sampled steps of long runs (up to 10⁶ steps), boundaries included, through HF's own lambdas."""
    args = to_training_args(schedule)
    total = args.get("max_steps", 10**6)
    w = args["warmup_steps"]
    steps = sorted(
        {0, 1, w, w + 1, max(w - 1, 0), total - 1, total, *data.draw(st.lists(st.integers(0, total), max_size=30))}
    )
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=args["learning_rate"])
    hf = transformers.get_scheduler(
        args["lr_scheduler_type"],
        opt,
        num_warmup_steps=w,
        num_training_steps=args.get("max_steps"),
        scheduler_specific_kwargs=args["lr_scheduler_kwargs"],
    )
    theirs = np.array([args["learning_rate"] * hf.lr_lambdas[0](t) for t in steps])  # what LambdaLR sets at t
    ours = np.array([schedule(t) for t in steps])
    # a decay of up to 10⁶ steps: the ~1 ulp-of-peak reordering is up to 1e-10 relative near its end
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=4 * EPS * args["learning_rate"])


# --- a real Trainer --------------------------------------------------------------------------------


class TinyRegressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}


def rows(n: int = 64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


class RecordLR(transformers.TrainerCallback):  # type: ignore[misc]
    """The LR of each optimizer step, read just before the step (the LR the update uses)."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.lrs[state.global_step] = optimizer.param_groups[0]["lr"]


def trainer(tmp_path: Path, schedule: Schedule | None, *, steps: int = 20, **args: Any) -> tuple[Any, RecordLR]:
    torch.manual_seed(0)
    model = TinyRegressor()
    defaults: dict[str, Any] = {
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "report_to": "none",
        "use_cpu": True,
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    training_args = transformers.TrainingArguments(str(tmp_path), **{**defaults, **args})
    optimizers: tuple[Any, Any] = (None, None)
    if schedule is not None:
        opt = torch.optim.AdamW(model.parameters(), lr=1.0)
        optimizers = (opt, LRPilotScheduler(opt, schedule))
    record = RecordLR()
    t = transformers.Trainer(
        model=model, args=training_args, train_dataset=rows(), optimizers=optimizers, callbacks=[record]
    )
    return t, record


def test_the_adapter_drives_a_real_trainer_and_resumes_bit_identically(tmp_path: Path) -> None:
    schedule = Cosine(peak=1e-2, total_steps=20, warmup_steps=4, floor_ratio=0.1)  # lrpilot's own warmup
    straight, record = trainer(tmp_path / "run", schedule, save_strategy="steps", save_steps=10)
    straight.train()
    assert record.lrs == {t: schedule(t) for t in range(20)}
    assert (tmp_path / "run" / "checkpoint-10" / "scheduler.pt").exists()

    resumed, again = trainer(tmp_path / "resumed", schedule)  # a fresh Trainer, model, optimizer and scheduler
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-10"))
    assert again.lrs == {t: record.lrs[t] for t in range(10, 20)}  # bit for bit
    pairs = zip(resumed.model.parameters(), straight.model.parameters(), strict=True)
    assert all(a.equal(b) for a, b in pairs)  # and the weights end the same


def test_to_training_args_in_a_real_trainer(tmp_path: Path) -> None:
    schedule = WSD(peak=1e-2, total_steps=20, warmup_steps=3, warmup_offset=0, decay_steps=6, decay_shape="linear")
    run, record = trainer(tmp_path, None, **to_training_args(schedule))
    run.train()
    assert isinstance(run.lr_scheduler, torch.optim.lr_scheduler.LambdaLR)  # Hugging Face's own scheduler
    lrs = [record.lrs[t] for t in range(20)]
    np.testing.assert_allclose(lrs, [schedule(t) for t in range(20)], rtol=RTOL)
    assert math.isclose(lrs[0], 0.0)  # Hugging Face's warmup starts at 0


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_mapping_and_the_core_import_no_framework() -> None:
    child = run_python(
        """
        import sys
        import lrpilot, lrpilot.integrations, lrpilot.integrations.transformers
        print(sorted(m for m in ("torch", "jax", "transformers", "lightning", "optax") if m in sys.modules))
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[]"
