"""Where fit trains (`lrpilot.tasks._device`): the device a user names, checked against this
machine, and batches moved to the model's device by the tasks' loss and metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrpilot.tasks import get_task
from lrpilot.tasks._device import Precision, describe_device, device_of, resolve_device, resolve_precision, to_device

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_auto_is_the_gpu_where_torch_sees_one_else_the_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("banana", "fit: --device 'banana' is not a device; give auto, cpu, cuda or cuda:N"),
        ("mps", "fit: --device 'mps': lrpilot trains on the CPU or a CUDA GPU; give auto, cpu, cuda or cuda:N"),
        ("cuda:99", "cuda:99"),
    ],
)
def test_a_device_this_machine_cannot_train_on_is_refused_by_name(name: str, message: str) -> None:
    with pytest.raises(ValueError, match="--device") as caught:
        resolve_device(name)
    assert message in str(caught.value)


@NO_GPU
def test_a_gpu_on_a_machine_without_one_names_torchs_build_and_the_way_out() -> None:
    with pytest.raises(ValueError, match=r"torch .* sees no CUDA GPU on this machine; give --device cpu"):
        resolve_device("cuda", "tune")


def test_a_record_names_the_device_and_its_threads_or_gpu() -> None:
    threads = torch.get_num_threads()
    assert describe_device(torch.device("cpu")) == f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def test_batches_of_every_shape_are_moved_and_a_tensor_already_there_is_the_same_object() -> None:
    x, y = torch.ones(2, 3), torch.zeros(2, dtype=torch.long)
    moved = to_device({"pair": (x, y), "list": [x], "name": "kept"}, torch.device("cpu"))
    assert moved["pair"][0] is x
    assert moved["pair"][1] is y
    assert isinstance(moved["pair"], tuple)
    assert moved["list"][0] is x
    assert moved["name"] == "kept"


def test_a_models_device_is_its_first_tensors_and_the_cpu_without_any() -> None:
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")
    assert device_of(nn.BatchNorm1d(2, affine=False)) == torch.device("cpu")  # buffers only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_task_trains_and_evaluates_a_model_on_the_gpu_from_batches_built_on_the_host() -> None:
    task = get_task("digits")
    model = task.build_model(0).to("cuda")
    batch = next(task.batches(0))
    assert batch[0].device.type == "cpu"
    loss = task.loss(model, batch)
    assert loss.device.type == "cuda"
    on_host = task.loss(model.cpu(), batch)
    torch.testing.assert_close(loss.cpu(), on_host, rtol=1e-4, atol=1e-5)
    metrics = task.metrics(model.to("cuda"), 64)
    assert metrics.examples == 64
    assert 2.0 < metrics.loss < 2.6  # an untrained 10-class model: about ln 10


def test_precision_is_fp32_unless_asked_and_a_wrong_one_is_named() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(None, cpu) == Precision("fp32", "cpu")
    assert resolve_precision("bf16", cpu).amp == "bf16"
    assert resolve_precision("fp32", cpu).amp is None
    with pytest.raises(ValueError, match="tune: --precision must be one of fp32, bf16, fp16, got 'fp8'"):
        resolve_precision("fp8", cpu, "tune")


@pytest.mark.parametrize(
    ("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_the_forward_passes_compute_in_the_precision_and_only_fp16_scales_the_loss(
    name: str, dtype: torch.dtype
) -> None:
    precision = Precision(name, "cpu")
    layer = nn.Linear(4, 3)
    with precision.autocast():
        out = layer(torch.ones(2, 4))
        loss = nn.functional.cross_entropy(out, torch.tensor([0, 1]))
    assert out.dtype == dtype
    assert loss.dtype == torch.float32  # autocast keeps the loss in fp32
    assert layer.weight.dtype == torch.float32
    assert (precision.scaler() is not None) == (name == "fp16")
