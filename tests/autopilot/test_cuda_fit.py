"""`lrpilot.fit` on a CUDA GPU: every phase where the model is (skipped on machines without one, CI
included; run on a GPU machine with ``pytest tests/autopilot/test_cuda_fit.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrpilot.autopilot import fit
from lrpilot.tasks import get_task
from tests.autopilot.conftest import minilm_dir, sst2_rows, write_rows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_built_in_task_fits_on_the_gpu_and_saves_weights_that_load_without_one(
    tmp_path: Path, precision: str
) -> None:
    result = fit("digits", device="cuda", precision=precision, out=tmp_path / "run", report=False)
    assert result.status == "finished"
    assert result.record.precision == precision
    assert result.record.device is not None
    assert result.record.device.startswith("cuda:0 (")
    assert result.model is not None
    assert all(p.is_cuda for p in result.model.parameters())
    assert result.record.history.eval_steps == [63, 126, 189, 250]
    assert len(result.record.history.loss) >= 250 - (result.record.resumed or {}).get("start_step", 0)
    assert result.metrics["val_accuracy"] > 0.95
    assert result.record.layer_stats is not None
    model = get_task("digits").build_model(0)
    model.load_state_dict(torch.load(result.model_path, weights_only=True))  # host tensors: no map_location


@pytest.mark.parametrize(("method", "precision"), [("lora", "bf16"), ("full", "fp32")])
def test_a_users_model_fits_on_the_gpu(tmp_path: Path, method: str, precision: str) -> None:
    rows = sst2_rows(240)
    train, held = write_rows(tmp_path / "train.csv", rows[:200]), write_rows(tmp_path / "eval.csv", rows[200:])
    retention = write_rows(tmp_path / "general.csv", rows[:20], columns=("text",))
    result = fit(
        model=minilm_dir(),
        data=train,
        eval_data=held,
        method=method,
        budget=30,
        retention=retention,
        device="cuda",
        precision=precision,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert result.record.history.eval_steps == [8, 16, 24, 30]
    assert result.record.history.eval_examples == 40  # the whole evaluation set each time
    assert "drift" in result.metrics
    assert (result.model_path / ("adapter_config.json" if method == "lora" else "config.json")).is_file()
