"""The doctor on what training scripts print: the Hugging Face Trainer's console, nanoGPT's and
llm.c's lines, torchtune's DiskLogger, plain ``step N, loss: X`` lines."""

from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lrpilot.doctor import DoctorInputError, diagnose, read


def _digits_run(lr: float, iters: int = 120) -> list[tuple[int, float, float, float]]:
    """(iteration, loss, lr, grad norm) of a real SGD run (momentum 0.9) of an MLP on sklearn's digits."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    inputs, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    out = []
    for it in range(iters):
        batch = order[(it * 32) % 1760 : (it * 32) % 1760 + 32]
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
        optimizer.step()
        out.append((it, loss.item(), lr, norm))
    return out


def test_nanogpt_lines_read_as_the_csv_of_the_same_run(tmp_path: Path) -> None:
    """nanoGPT's train.py prints ``iter N: loss X, time Tms, mfu M%`` every iteration and, every
    ``eval_interval``, ``step N: train loss X, val loss Y``: its train loss there is an estimate on
    held-out batches, so only the validation loss is read from that line."""
    run = _digits_run(lr=1.0)  # far too high: the loss spikes
    log, table = tmp_path / "train.log", tmp_path / "train.csv"
    with log.open("w") as out, table.open("w", newline="") as sheet:
        rows = csv.writer(sheet)
        rows.writerow(["step", "loss", "val_loss"])
        out.write("Overriding config with config/train_digits.py:\nnumber of parameters: 4.8K\n")
        for it, loss, _, _ in run:
            if it % 40 == 0:
                out.write(f"step {it}: train loss {loss * 0.9:.4f}, val loss {loss * 1.1:.4f}\n")
                rows.writerow([it, "", f"{loss * 1.1:.4f}"])
            out.write(f"iter {it}: loss {loss:.4f}, time {12.5:.2f}ms, mfu {-100.0:.2f}%\n")
            rows.writerow([it, f"{loss:.4f}", ""])
    printed, written = read(log), read(table)
    assert printed.format == "text"
    np.testing.assert_array_equal(printed.steps, written.steps)
    np.testing.assert_array_equal(printed.loss, written.loss)
    np.testing.assert_array_equal(printed.eval_steps, [0, 40, 80])
    np.testing.assert_array_equal(printed.eval_loss, written.eval_loss)
    ours, theirs = diagnose(printed), diagnose(written)
    assert ours.verdict == theirs.verdict
    assert ours.verdict != "healthy"
    assert [f.kind for f in ours.findings] == [f.kind for f in theirs.findings]


def test_llm_c_and_torchtune_and_plain_lines_give_their_steps_lr_and_norm(tmp_path: Path) -> None:
    """Each line format as its tool writes it (the format strings are quoted from their sources:
    llm.c's train_gpt2.cu printf and llmc/logger.h, torchtune's DiskLogger.log_dict), from one
    real run's values."""
    run = _digits_run(lr=0.05, iters=60)
    formats = {
        "llmc_stdout.log": lambda it, loss, lr, norm: (
            f"step {it + 1:4d}/60 | loss {loss:7.6f} (+0.12z)| norm {norm:6.4f} (-0.50z)| lr {lr:.2e} | 12.00 ms "
            "| 1234 tok/s\n" + (f"val loss {loss:f}\n" if (it + 1) % 20 == 0 else "")
        ),
        "main.log": lambda it, loss, lr, norm: (
            f"s:{it + 1} trl:{loss:.4f} lr:{lr:.6f} norm:{norm:.2f}\n"
            + (f"s:{it + 1} tel:{loss:.4f}\n" if (it + 1) % 20 == 0 else "")
        ),
        "log_1732000000.txt": lambda it, loss, lr, norm: (
            f"Step {it + 1} | loss:{loss} lr:{lr} tokens_per_second_per_gpu:1234.5 grad_norm:{norm} \n"
        ),
        "plain.out": lambda it, loss, lr, norm: f"step {it + 1}, loss: {loss}\n",
    }
    for name, line in formats.items():
        path = tmp_path / name
        path.write_text("".join(line(*row) for row in run))
        series = read(path)
        np.testing.assert_array_equal(series.steps, np.arange(1, 61), err_msg=name)
        np.testing.assert_allclose(series.loss, [r[1] for r in run], rtol=1e-3, err_msg=name)
        if name != "plain.out":
            assert series.lr is not None, name
            np.testing.assert_allclose(series.lr, 0.05, err_msg=name)
            assert series.grad_norm is not None, name
            np.testing.assert_allclose(series.grad_norm, [r[3] for r in run], atol=0.005, err_msg=name)  # main.log: .2f
        if name in ("llmc_stdout.log", "main.log"):
            np.testing.assert_array_equal(series.eval_steps, [20, 40, 60], err_msg=name)


def test_a_trainers_console_output_reads_as_its_log_history(tmp_path: Path) -> None:
    """A real Trainer's stdout and stderr saved to a file (``python train.py > train.log 2>&1``):
    its logs are Python dicts of strings, written between the progress bars' carriage returns."""
    transformers = pytest.importorskip("transformers")

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)

    class Texts(torch.utils.data.Dataset[dict[str, object]]):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, i: int) -> dict[str, object]:
            ids = torch.randint(0, 50, (8,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": int(ids[0] % 2)}

    args = transformers.TrainingArguments(
        str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=12,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Texts(), eval_dataset=Texts())
    log = tmp_path / "train.log"
    with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        trainer.train()
    assert b"\r" in log.read_bytes()  # the progress bars are in the file
    history = trainer.state.log_history
    losses = [h for h in history if "loss" in h]
    series = read(log)
    assert series.format == "text"
    np.testing.assert_array_equal(series.steps, np.arange(1, len(losses) + 1))
    np.testing.assert_allclose(series.loss, [h["loss"] for h in losses], rtol=1e-3)
    assert series.lr is not None
    np.testing.assert_allclose(series.lr, [h["learning_rate"] for h in losses], rtol=1e-3)
    np.testing.assert_allclose(series.eval_loss, [h["eval_loss"] for h in history if "eval_loss" in h], rtol=1e-3)
    assert any("the n-th of the 6 logged losses is read as step n" in note for note in series.notes)


def test_printed_output_without_a_telling_name_is_read_as_a_text_log(tmp_path: Path) -> None:
    """A file named otherwise (``nohup``'s, a cluster's ``slurm-123``) is tried as a CSV first."""
    path = tmp_path / "slurm-4242"
    path.write_text("loading data\n" + "".join(f"iter {i}: loss {2.0 - i / 100:.4f}\n" for i in range(50)))
    assert read(path).steps.size == 50


def test_a_text_log_without_a_loss_says_what_lines_it_expected(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_text("epoch 1 done\naccuracy: 0.5\n")
    with pytest.raises(DoctorInputError, match=r"train.log: no line of it logs a training loss; expected lines"):
        read(path)


def test_a_keras_epoch_line_keeps_its_loss_beside_its_validation_loss(tmp_path: Path) -> None:
    """Keras prints the epoch's training loss and its validation loss on one line; only nanoGPT's
    ``train loss`` beside a ``val loss`` is an estimate to leave out."""
    path = tmp_path / "keras.log"
    epoch = "Epoch {e}/40\n50/50 - 1s - 10ms/step - loss: {loss:.4f} - val_loss: {val:.4f}\n"
    path.write_text("".join(epoch.format(e=e, loss=1 / e, val=1.2 / e) for e in range(1, 41)))
    series = read(path)
    np.testing.assert_allclose(series.loss, [round(1 / e, 4) for e in range(1, 41)])
    assert series.eval_loss.size == 40
