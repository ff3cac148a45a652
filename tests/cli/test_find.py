"""`lrpilot find` through the real typer app: real range tests on the digits task and on a user's
script (a tiny torch model written to tmp_path), and every kind of bad input."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from lrpilot.cli._app import app
from lrpilot.rules import horizon_factor
from lrpilot.schedules import parse
from tests.autopilot.conftest import minilm_dir, tiny_bert_dir, write_rows

pytestmark = pytest.mark.usefixtures("torch_one_thread")

runner = CliRunner()

SETUP = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def parts():
    """A real little problem: 16 features, 2 classes, a 2-layer MLP trained with AdamW."""
    x = torch.randn(1024, 16)
    y = (x[:, :4].sum(dim=1) > 0).long()
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.01)
    data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    return model, optimizer, data, nn.functional.cross_entropy
'''

RETURNS = {
    "dict": """
def setup():
    model, optimizer, data, loss_fn = parts()
    return {"model": model, "optimizer": optimizer, "data": data, "loss_fn": loss_fn, "total_steps": 400}
""",
    "tuple": """
def setup():
    return parts()
""",
    "dataclass": """
from dataclasses import dataclass
from typing import Any

@dataclass
class Setup:
    model: Any
    optimizer: Any
    data: Any
    loss_fn: Any

def setup():
    return Setup(*parts())
""",
}


def _script(tmp_path: Path, body: str, name: str = "my_setup.py") -> Path:
    path = tmp_path / name
    path.write_text(SETUP + textwrap.dedent(body), encoding="utf-8")
    return path


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, ["find", *args, "--json"])
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout, parse_constant=_no_nan)
    return payload


def _no_nan(name: str) -> None:
    raise AssertionError(f"--json printed {name}, which strict JSON has not")


def test_the_default_runs_on_digits_and_prints_the_table() -> None:
    result = runner.invoke(app, ["find"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "digits: range test 1e-07 → 1e+01 over 100 steps, fast mode, seed 0" in text
    for row in ("suggested peak LR", "band (about as good)", "max stable LR", "steps used", "wall time", "method"):
        assert row in text
    assert re.search(r"schedule: cosine\(peak=0\.\d+, total_steps=250, warmup_steps=25, floor_ratio=0\.1\)", text)


def test_json_answer_is_consistent_and_the_plot_is_a_png(tmp_path: Path) -> None:
    plot = tmp_path / "out" / "find.png"
    p = _json(["--plot", str(plot)])
    record = p["records"][0]
    low, high = p["band"]
    assert p["task"] == "digits"
    assert p["method"] == "lrpilot"
    assert record["start_lr"] <= low <= p["peak_lr"] <= high <= p["max_stable_lr"] <= record["end_lr"]
    assert 1e-4 < p["peak_lr"] < 1e-1  # an MLP with AdamW: nowhere near either end of the ramp
    assert p["steps_used"] == record["steps"] <= record["num_steps"] == 100
    assert len(record["lrs"]) == len(record["losses"]) == len(record["smoothed"]) > 10
    assert p["wall_time_s"] > 0
    sched = parse(p["spec"])
    assert sched.to_dict()["total_steps"] == p["schedule"]["total_steps"] == 250
    assert float(f"{p['peak_lr']:.3g}") == pytest.approx(sched(25))  # the peak, reached at the end of warmup
    assert p["plot"] == str(plot)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_range_that_starts_above_the_usable_lrs_is_said_to(tmp_path: Path) -> None:
    """digits from LR 1: the loss jumped from 2.3 to ~10,000 at the first step, and find answered
    "peak 0.81, band 0.405 – 1.62, max stable LR 2.31", below the test's own start, with no word
    that the curve was of a model already thrown out."""
    high = _json(["--start-lr", "1", "--end-lr", "100", "--steps", "30"])
    assert high["warnings"][0].startswith("the range test started above the LRs this model trains at (its loss rose by")
    assert high["warnings"][0].endswith("run it again from a lower --start-lr (e.g. 0.01)")
    assert not any("started above" in w for w in _json(["--steps", "60"])["warnings"])
    low = _json(["--end-lr", "1e-3", "--steps", "30"])["warnings"]
    assert "the range test's loss was still falling at --end-lr: the suggestion is a lower bound; raise --end-lr" in low


def test_a_warning_is_one_line_in_a_log() -> None:
    """Warnings were cut at 80 columns when stderr is a file or a pipe (a CI log), mid-sentence,
    unlike the notes and errors, which keep one line that a terminal wraps."""
    result = runner.invoke(app, ["find", "--end-lr", "1e-3", "--steps", "30"])
    assert result.exit_code == 0, result.output
    still = (
        "warning the range test's loss was still falling at --end-lr: the suggestion is a lower bound; raise --end-lr"
    )
    assert still in result.stderr.splitlines()


def test_a_users_hugging_face_model_and_data_as_fit_trains_them(tmp_path: Path) -> None:
    """`lrpilot fit --model DIR --data FILE` had no range test of its own: find took a --task or a
    --script only, and a fit user had to write the script for the model fit builds."""
    rows = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(40)]
    data = write_rows(tmp_path / "train.csv", rows)
    common = ["--model", str(minilm_dir()), "--data", str(data), "--method", "lora", "--batch-size", "8"]
    p = _json([*common, "--max-length", "16", "--steps", "20", "--total-steps", "400"])
    assert (p["model"], p["data"]) == (str(minilm_dir()), str(data))
    low, high = p["band"]
    assert 1e-7 <= low <= p["peak_lr"] <= high <= p["max_stable_lr"] <= 10
    assert parse(p["spec"]).to_dict()["total_steps"] == 400
    for args, message in (
        (["--data", str(data)], "find: --data applies to --model (your own Hugging Face model)"),
        (["--model", str(minilm_dir())], "find: --model needs --data FILE"),
        (["--task", "digits", *common], "find: give one of --task, --script or --model"),
        ([*common, "--method", "qlora"], "find: --method must be one of ['full', 'lora'], got 'qlora'"),
        ([*common, "--lora-rank", "0"], "find: --lora-rank must be an integer in [1, ∞], got 0"),
        ([*common, "--method", "full", "--lora-rank", "4"], "find: --lora-rank applies to --method lora"),
        (["--task", "digits", "--lora-targets", "all-linear"], "find: --lora-targets applies to --model"),
        # fit's checks of the model's options, named for this command (they said "fit:")
        ([*common, "--batch-size", "0"], "find: --batch-size must be an integer in [1, ∞], got 0"),
        ([*common, "--max-length", "4"], "find: --max-length must be an integer in [8, ∞], got 4"),
        ([*common, "--precision", "fp8"], "find: --precision must be one of fp32, bf16, fp16, got 'fp8'"),
        (["--task", "digits", "--precision", "bf16"], "find: --precision applies to --model"),
    ):
        result = runner.invoke(app, ["find", *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.stderr.split())


def test_a_range_test_past_the_end_of_a_users_data_is_warned_about(tmp_path: Path) -> None:
    """36 training texts in batches of 8 are 4 batches, drawn endlessly: a 20-step test went over
    them five times without a word, a loss read on batches already trained on being lower than on
    fresh ones. With 400 texts (45 batches) it says nothing."""
    args = ["--model", str(minilm_dir()), "--method", "lora", "--batch-size", "8", "--max-length", "16"]
    for rows, said in ((40, True), (400, False)):
        texts = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(rows)]
        p = _json([*args, "--data", str(write_rows(tmp_path / f"{rows}.csv", texts)), "--steps", "20"])
        drawn = p["steps_used"]
        repeated = [w for w in p["warnings"] if "fewer than the range test took" in w]
        assert repeated == (
            [
                f"the training data has 4 batches of 8, fewer than the range test took ({drawn} steps): it went over "
                f"them {drawn / 4:.1f} times, and a loss read on batches the model has already trained on is lower "
                "than on fresh ones, which can place the peak high; more data, a smaller --batch-size or fewer "
                "--steps give it fresh ones"
            ]
            if said
            else []
        )
        assert drawn > 4
    # thorough mode's tests draw one after the other: it said "the range test took (34 steps)" of two
    p = _json([*args, "--data", str(tmp_path / "40.csv"), "--steps", "10", "--mode", "thorough"])
    said = [w for w in p["warnings"] if "fewer than the" in w]
    assert f"4 batches of 8, fewer than the 2 range tests took together ({p['steps_used']} steps)" in said[0]


@pytest.mark.parametrize(
    ("precision", "dtype"), [(None, torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_a_users_model_is_range_tested_in_the_precision_fit_trains_it_in(
    tmp_path: Path, precision: str | None, dtype: torch.dtype
) -> None:
    """`find --model` had no --precision: it tested in fp32 a model that `fit --precision bf16`
    trains under bf16 autocast. Every linear layer's forward pass is watched for the autocast it
    ran under; fp16 runs with a loss scale (find_lr's)."""
    texts = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(200)]
    args = ["--model", str(tiny_bert_dir(tmp_path / "bert")), "--data", str(write_rows(tmp_path / "train.csv", texts))]
    args += ["--batch-size", "8", "--max-length", "16", "--steps", "15", "--end-lr", "1e-2"]
    args += [] if precision is None else ["--precision", precision]
    seen: list[torch.dtype] = []

    def watch(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, torch.nn.Linear):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)

    handle = torch.nn.modules.module.register_module_forward_hook(watch)
    try:
        p = _json(args)
        result = runner.invoke(app, ["find", *args])
    finally:
        handle.remove()
    assert result.exit_code == 0, result.output
    assert p["precision"] == (precision or "fp32")
    assert p["steps_used"] > 5
    assert set(seen) == {dtype}
    autocast = "" if precision is None else f", {precision} autocast"
    header = f"{tmp_path / 'bert'}: range test 1e-07 → 1e-02 over 15 steps, fast mode, seed 0{autocast}"
    assert " ".join(result.stdout.split()).startswith(header)


def test_a_users_model_is_range_tested_on_the_device_fit_trains_it_on(tmp_path: Path) -> None:
    """`find --model` had no --device (fit has): a user of fit could not range-test on the GPU fit
    trains on. It is fit's option: checked against the machine before a weight is loaded, and given
    with --model only; on the CPU the test runs there and says so."""
    texts = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(200)]
    args = ["--model", str(tiny_bert_dir(tmp_path / "bert")), "--data", str(write_rows(tmp_path / "train.csv", texts))]
    args += ["--batch-size", "8", "--max-length", "16", "--steps", "15", "--end-lr", "1e-2"]
    p = _json([*args, "--device", "cpu"])
    assert (p["device"], p["precision"]) == ("cpu", "fp32")
    assert p["steps_used"] > 5
    result = runner.invoke(app, ["find", *args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "over 15 steps, fast mode, seed 0 on cpu" in " ".join(result.stdout.split())
    refused = [
        (["--device", "gpu"], "find: --device 'gpu' is not a device; give auto, cpu, cuda or cuda:N"),
        (["--device", "mps"], "find: --device 'mps': lrpilot trains on the CPU or a CUDA GPU"),
    ]
    if not torch.cuda.is_available():
        refused.append((["--device", "cuda"], "find: --device 'cuda': torch"))
    for extra, message in refused:
        result = runner.invoke(app, ["find", *args, *extra])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.stderr.split())
    result = runner.invoke(app, ["find", "--task", "digits", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "find: --device applies to --model" in " ".join(result.stderr.split())


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_a_users_model_is_range_tested_in_the_precision_fits_range_test_takes(
    tmp_path: Path, precision: str | None
) -> None:
    """fit range-tests a model of 10M+ parameters in bf16 where the hardware computes it (in two
    thirds of fp32's time, the peak hardly moved: `finder_precision`); `find --model` tested MiniLM
    (22.7M) in fp32 there, slower than fit's own test. Now it takes fit's choice and its note, and
    --precision fp32 keeps fp32."""
    from lrpilot.tasks._device import native_bf16, resolve_device

    texts = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(200)]
    args = ["--model", str(minilm_dir()), "--data", str(write_rows(tmp_path / "train.csv", texts))]
    args += ["--method", "lora", "--batch-size", "8", "--max-length", "16", "--steps", "12", "--end-lr", "1e-2"]
    args += [] if precision is None else ["--precision", precision]
    p = _json(args)
    auto = precision is None and native_bf16(resolve_device(None))  # fit's --device default: auto
    assert p["precision"] == ("bf16" if auto else "fp32")
    said = [n for n in p["notes"] if n.startswith("range test in bf16 autocast, the run in fp32")]
    assert len(said) == auto


def test_a_users_model_gets_fits_notes_on_its_data(tmp_path: Path) -> None:
    """`find --model` read the data as fit does and said nothing of what fit's notes say of it: two
    spellings of a label merged into one class, classes of 89 % and 11 %, an evaluation of 4 rows."""
    from lrpilot.autopilot._target import user_target

    labels = ["positive", "Positive", "positive", "positive", "positive", "negative"]
    rows = [{"text": f"a film, number {i}", "label": labels[i % 6] if i % 7 else "positive"} for i in range(40)]
    data = write_rows(tmp_path / "train.csv", rows)
    args = ["--model", str(minilm_dir()), "--data", str(data), "--method", "lora", "--batch-size", "8"]
    args += ["--max-length", "16", "--steps", "20", "--precision", "fp32"]  # no note on a bf16 test here
    target = user_target(minilm_dir(), data, None, kind="classification", method="lora", batch_size=8, max_length=16)
    fits = target.notes  # what fit prints for these files
    assert any("'positive', 'Positive' differ only in case" in note for note in fits)
    assert any(note.startswith("unbalanced labels") for note in fits)
    assert _json(args)["notes"] == list(fits)
    result = runner.invoke(app, ["find", *args])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())
    for note in fits:
        assert f"note {' '.join(note.split())}" in printed
    assert _json(["--steps", "20"])["notes"] == []  # a built-in task's: none


def test_a_checkpoint_stored_in_bf16_is_range_tested_with_float32_weights(tmp_path: Path) -> None:
    """As fit trains it (AdamW's master copy): the curve of the same weights stored in fp32. Trained
    in bf16 the test lost the small updates bf16 rounds away."""
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(minilm_dir()).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    model.float().save_pretrained(tmp_path / "fp32")  # the same values, stored in fp32
    for name in ("bf16", "fp32"):
        transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / name)
    stored = transformers.AutoConfig.from_pretrained(tmp_path / "bf16")
    assert str(getattr(stored, "dtype", None) or stored.torch_dtype).endswith("bfloat16")
    rows = [{"text": f"a {['dull', 'fine'][i % 2]} film, number {i}", "label": i % 2} for i in range(40)]
    data = write_rows(tmp_path / "train.csv", rows)
    args = ["--data", str(data), "--method", "full", "--batch-size", "8", "--max-length", "16", "--steps", "20"]
    args += ["--precision", "fp32"]  # the weights' precision alone: no bf16 autocast on top
    stored_half, stored_full = (_json(["--model", str(tmp_path / name), *args]) for name in ("bf16", "fp32"))
    first = zip(stored_half["records"][0]["losses"][:10], stored_full["records"][0]["losses"][:10], strict=True)
    # the fresh head's draw in bf16 differs in its last bits: ≤ 1e-4 apart (trained in bf16: 1e-3 from the start)
    assert max(abs(a - b) for a, b in first) < 2e-4
    assert stored_half["peak_lr"] == pytest.approx(stored_full["peak_lr"], rel=0.02)  # in bf16: 8 % higher


def test_a_built_in_tasks_test_past_the_end_of_its_data_is_said_in_a_note() -> None:
    """digits' 1,438 training images are 22 batches of 64: `lrpilot find` went over them 3–4 times
    without a word, where a user's data that short gets a warning. It is said in a note, not a
    warning (the recipe goes over them 11 times, and the rule was calibrated on these tests);
    shakespeare draws random windows, which never come round."""
    from lrpilot.tasks import get_task

    p = _json(["--steps", "60"])
    drawn = p["steps_used"]
    assert drawn > 22
    assert p["notes"] == [
        f"the digits task's training set is 22 batches of 64: the range test went over them {drawn / 22:.1f} times "
        f"({drawn} steps), as its recipe's 250 steps go over them 11.4 times; lrpilot's rule was calibrated on "
        "these tests, repeats included"
    ]
    assert not [w for w in p["warnings"] if "fewer than the range test took" in w]
    result = runner.invoke(app, ["find", "--steps", "60"])
    assert result.exit_code == 0, result.output
    assert "note the digits task's training set is 22 batches of 64" in " ".join(result.stdout.split())
    assert _json(["--steps", "20"])["notes"] == []  # 20 of its 22 batches
    assert get_task("shakespeare").epoch_batches is None
    # thorough mode's tests each start from the same weights: the longest one counts, not their sum
    p = _json(["--mode", "thorough", "--steps", "60"])
    longest = max(r["steps"] + r["skipped_steps"] for r in p["records"])
    assert len(p["records"]) >= 2
    assert f"each range test went over them up to {longest / 22:.1f} times (up to {longest} steps)" in p["notes"][0]


def test_thorough_mode_runs_several_range_tests() -> None:
    p = _json(["--task", "digits", "--mode", "thorough", "--steps", "60"])
    assert len(p["records"]) >= 2  # range tests on fresh batches; their spread widens the band
    assert p["steps_used"] == sum(record["steps"] for record in p["records"])
    assert p["band"][0] <= p["peak_lr"] <= p["band"][1]


def test_thorough_modes_table_shows_every_range_test() -> None:
    """The table's "range test" row used to show the first test alone ("85 of 100 steps") while
    "steps used" counted all of them, so the two rows disagreed."""
    result = runner.invoke(app, ["find", "--mode", "thorough", "--steps", "60"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "range tests" in line)
    runs = re.findall(r"(\d+) \((?:completed|diverged|non-finite)\)", row)
    steps_used = re.search(r"steps used\s*│\s*(\d+)", result.stdout)
    assert steps_used is not None
    assert len(runs) >= 2
    assert f"{len(runs)} range tests" in row
    assert sum(int(n) for n in runs) == int(steps_used.group(1))


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_during_the_range_test_says_how_far_it_got(tmp_path: Path, as_json: bool) -> None:
    """Ctrl-C used to end `lrpilot find` with status 130 and no output at all (the bar is transient)."""
    body = """
    def setup():
        model, optimizer, data, loss_fn = parts()
        calls = [0]

        def interrupted_at_30(out, y):
            calls[0] += 1
            if calls[0] == 30:
                raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a step
            return loss_fn(out, y)

        return model, optimizer, data, interrupted_at_30
    """
    path = _script(tmp_path, body)
    result = runner.invoke(app, ["find", "--script", str(path), *(["--json"] if as_json else [])])
    assert result.exit_code == 130, result.output
    assert "range test interrupted after 29 of 100 steps (lr " in " ".join(result.stderr.split())
    assert "no suggestion from a partial curve" in result.stderr
    if as_json:
        assert json.loads(result.stdout)["error"].startswith("range test interrupted after 29 of 100 steps")
    else:
        assert "suggested peak" not in result.stdout


@pytest.mark.parametrize("shape", sorted(RETURNS))
def test_a_script_returning_a_dict_a_tuple_or_a_dataclass(tmp_path: Path, shape: str) -> None:
    path = _script(tmp_path, RETURNS[shape])
    steps = [] if shape == "dict" else ["--total-steps", "400"]
    p = _json(["--script", str(path), "--steps", "50", *steps])
    assert p["script"] == str(path.resolve())
    assert p["function"] == "setup"
    assert p["band"][0] <= p["peak_lr"] <= p["band"][1]
    assert parse(p["spec"]).to_dict()["total_steps"] == 400


def test_a_script_function_by_name_without_total_steps(tmp_path: Path) -> None:
    path = _script(tmp_path, "def make():\n    return parts()\n")
    result = runner.invoke(app, ["find", "--script", f"{path}:make", "--steps", "50"])
    assert result.exit_code == 0, result.output
    assert f"{path.resolve()}:make" in result.stdout.replace("\n", "")
    assert "schedule: give --total-steps N for a ready one" in " ".join(result.stdout.split())


def test_a_long_run_gets_the_horizon_laws_peak_and_is_told(tmp_path: Path) -> None:
    path = _script(tmp_path, "def make():\n    return parts()\n")
    result = runner.invoke(app, ["find", "--script", f"{path}:make", "--steps", "50", "--total-steps", "20000"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "horizon: the range test's peak" in out
    assert "is for a run of 1000 steps; this one has 20000, so × 0.15" in out
    p = _json(["--script", f"{path}:make", "--steps", "50", "--total-steps", "20000"])
    assert p["peak_lr"] == pytest.approx(p["details"]["horizon"]["found"] * horizon_factor(20_000))
    assert parse(p["spec"]).to_dict()["peak"] == float(f"{p['peak_lr']:.3g}")


def test_a_script_imports_the_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(SETUP, encoding="utf-8")
    path = tmp_path / "train.py"
    path.write_text("def setup():\n    from nets import parts\n\n    return parts()\n", encoding="utf-8")
    p = _json(["--script", str(path), "--steps", "50"])
    assert p["schedule"] is None
    assert p["spec"] is None


BAD_SCRIPTS = {
    "no function": ("def set_up():\n    return parts()\n", "has no function 'setup' (did you mean 'set_up'?)"),
    "not a function": ("setup = 3\n", "'setup' in my_setup.py is not a function (its type is int)"),
    "wrong type": ("def setup():\n    return [1, 2]\n", "setup() returned list; return a dict with model"),
    "short tuple": ("def setup():\n    return parts()[:2]\n", "setup() returned tuple of 2 items"),
    "missing key": (
        "def setup():\n    m, o, d, f = parts()\n    return {'model': m, 'data': d}\n",
        "setup() returned no 'optimizer'",
    ),
    "wrong model": (
        "def setup():\n    m, o, d, f = parts()\n    return 'net', o, d, f\n",
        "setup() returned model=str; it must be a torch.nn.Module",
    ),
    "typo key": (
        "def setup():\n    m, o, d, f = parts()\n    return {'model': m, 'optimizer': o, 'data': d, 'loss': f}\n",
        "setup() returned an unknown key 'loss' (did you mean 'loss_fn'?)",
    ),
    "cli key": (
        "def setup():\n    m, o, d, f = parts()\n    return {'model': m, 'optimizer': o, 'data': d, 'num_steps': 9}\n",
        "setup() returned 'num_steps', which the command line sets (--steps)",
    ),
    "raises": (
        "def setup():\n    return 1 / 0\n",
        "setup() raised ZeroDivisionError: division by zero (my_setup.py, line",
    ),
    "syntax": ("def setup(:\n", "importing my_setup.py raised SyntaxError"),
    "no grad": (
        "def setup():\n    m, o, d, f = parts()\n    m.requires_grad_(False)\n    return m, o, d, f\n",
        "the model has no trainable parameters",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCRIPTS))
def test_a_bad_script_is_one_clear_line(tmp_path: Path, case: str) -> None:
    body, message = BAD_SCRIPTS[case]
    result = runner.invoke(app, ["find", "--script", str(_script(tmp_path, body)), "--steps", "20"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "digit"], "--task must be one of ['digits', 'shakespeare', 'sst2-full', 'sst2-lora'], got 'digit'"),
        (["--task", "digit"], "(did you mean 'digits'?)"),
        (["--task", "digits", "--script", "my_setup.py"], "give one of --task, --script or --model"),
        (["--script", "no_such_file.py"], "--script no_such_file.py: no such file 'no_such_file.py'"),
        (["--mode", "fats"], "did you mean 'fast'"),
        (["--steps", "2"], "--steps must be an integer in [5, 100000], got 2"),
        (["--start-lr", "1", "--end-lr", "0.1"], "--start-lr must be below --end-lr, got 1 and 0.1"),
        (["--end-lr", "-1"], "--end-lr must be a finite number > 0, got -1.0"),
        (["--total-steps", "500"], "--total-steps applies to --script"),
        (["--data-dir", "."], "--data-dir applies to the sst2 tasks only, not to 'digits'"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["find", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_thorough_mode_on_a_script_needs_the_run_length(tmp_path: Path) -> None:
    path = _script(tmp_path, RETURNS["tuple"])
    result = runner.invoke(app, ["find", "--script", str(path), "--mode", "thorough"])
    assert result.exit_code == 2, result.output
    assert "--mode thorough needs the run's length: --total-steps N" in " ".join(result.output.split())


@pytest.mark.parametrize("where", ["env", "option"])
def test_missing_sst2_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LRPILOT_SST2_DIR", str(empty))
    args = ["--task", "sst2-lora"] + (["--data-dir", str(empty)] if where == "option" else [])
    result = runner.invoke(app, ["find", *args])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "SST-2 data not found" in text
    assert "sst2_train.csv and sst2_validation.csv" in text
    assert "pass --data-dir FOLDER" in text


SCRIPT_FAILS = {
    "forward": (
        """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 2)

    def forward(self, x):
        return self.lin(x.view(-1, 17))


def setup():
    m, o, d, f = parts()
    net = Net()
    return net, torch.optim.AdamW(net.parameters()), d, f
""",
        "your code raised RuntimeError during the range test: shape '[-1, 17]' is invalid for input of size 512 "
        "(my_setup.py, line {line}, in forward)",
    ),
    "loss": (
        """
def my_loss(logits, targets):
    return nn.functional.cross_entropy(logits, targets[:, None])


def setup():
    m, o, d, f = parts()
    return m, o, d, my_loss
""",
        "your code raised RuntimeError during the range test: 0D or 1D target tensor expected, multi-target not "
        "supported (my_setup.py, line {line}, in my_loss)",
    ),
    "built-in loss": (
        """
def setup():
    m, o, d, f = parts()
    return m, o, d, nn.functional.binary_cross_entropy_with_logits
""",
        "--script my_setup.py:setup: the range test failed on the model, data or loss setup() returned: "
        "ValueError: Target size (torch.Size([32])) must be the same as input size (torch.Size([32, 2])) "
        "(raised in binary_cross_entropy_with_logits, torch/nn/functional.py, line",
    ),
}


@pytest.mark.parametrize("case", sorted(SCRIPT_FAILS))
def test_a_script_whose_forward_or_loss_raises_is_one_line_with_the_users_frame(tmp_path: Path, case: str) -> None:
    """The user's forward or loss raising in the range test printed lrpilot's and torch's traceback,
    their line somewhere inside it; it is one line that says their code failed, and where."""
    body, expected = SCRIPT_FAILS[case]
    path = _script(tmp_path, body)
    lines = path.read_text().splitlines()
    line = next((i for i, text in enumerate(lines, 1) if "x.view" in text or "None]" in text), 0)
    result = runner.invoke(app, ["find", "--script", str(path), "--steps", "20"])
    assert result.exit_code == 2, result.output
    assert expected.format(line=line) in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_schedule_that_decays_to_zero_reads_floor_ratio_0(tmp_path: Path) -> None:
    """The sst2 tasks' linear decay to zero (and a script's floor_ratio=0.0) printed
    ``floor_ratio=0.0``, which reads as a value left unset; it is written ``0``, as ``lrpilot
    schedule`` echoes it, and reads back as the same schedule."""
    body = """
def setup():
    m, o, d, f = parts()
    return {"model": m, "optimizer": o, "data": d, "loss_fn": f, "decay": "linear", "floor_ratio": 0.0}
"""
    payload = _json(["--script", str(_script(tmp_path, body)), "--steps", "30", "--total-steps", "500"])
    assert payload["spec"].endswith("warmup_steps=25, floor_ratio=0)"), payload["spec"]
    assert parse(payload["spec"]).to_dict()["floor_ratio"] == 0
