"""`train --out DIR` checkpoints as it trains; `train --out DIR --resume` continues an
interrupted run to the result it would have had. Here the interruption is a real SIGINT or
SIGTERM that a layer sends to this very process at a chosen step, so it lands at the same
place every time; test_hardening_signals.py does it from outside, at any moment."""

from __future__ import annotations

import filecmp
import json
import shlex
from pathlib import Path

import pytest
import torch
from test_hardening_common import error_line, fresh_registry, invoke, write_plugin  # noqa: F401

import minidl
from minidl.checkpoint import Checkpointer
from minidl.io import CHECKPOINT, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("fresh_registry")

RESULTS = ("history.csv", "model.safetensors", "model.json", "metrics.json", "misclassified.csv")
# 200 points in batches of 50: 4 steps, 2 evaluations and the diagnostics' probe (on by
# default with --out): 7 forward calls per epoch
ARGS = ["train", "--model", "bomb, linear(8), tanh, linear(1), sigmoid", "--epochs", "6",
        "--n-train", "200", "--batch-size", "50", "--n-test", "50", "--out"]  # fmt: skip


@pytest.fixture(autouse=True)
def every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint after every epoch (by default at most one a second)."""
    monkeypatch.setattr(Checkpointer, "every_s", 0.0)


@pytest.mark.parametrize(
    ("signal_name", "code", "optimizer"), [("SIGINT", 130, "adam"), ("SIGTERM", 143, "sgd")]
)
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signal_name: str, code: int, optimizer: str
) -> None:
    plugin = str(write_plugin(tmp_path))
    run = [*ARGS[:1], "--optimizer", optimizer, "--lr", "0.05", *ARGS[1:]]
    invoke("--layer-plugin", plugin, *run, str(tmp_path / "reference"))

    monkeypatch.setenv("BOMB_SIGNAL", signal_name)
    monkeypatch.setenv("BOMB_AT", "23")  # the 2nd step of epoch 4
    result = invoke("--layer-plugin", plugin, *run, str(tmp_path / "run"), code=code)
    line = error_line(result, "interrupted by", "; continue from the checkpoint with: minidl-run ")
    hinted = shlex.split(line.split("continue from the checkpoint with: ", 1)[1])
    assert hinted == [
        "minidl-run",
        "--layer-plugin",
        plugin,
        *run,
        str(tmp_path / "run"),
        "--resume",
    ]
    assert result.stdout == ""
    checkpoint = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert checkpoint.epoch == 3 and [r["epoch"] for r in checkpoint.history] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT], line

    monkeypatch.delenv("BOMB_AT")
    resumed = invoke(*hinted[1:])  # as the message says
    assert "after epoch 3 of 6" in resumed.stderr
    for name in RESULTS:
        same = filecmp.cmp(tmp_path / "run" / name, tmp_path / "reference" / name, shallow=False)
        assert same, name
    assert not (tmp_path / "run" / CHECKPOINT).exists()  # the run is complete


def test_resume_from_the_python_api_too(tmp_path: Path) -> None:
    config = minidl.TrainConfig(hidden=[8], epochs=5, n_train=150, n_test=50, lr=0.02)
    straight = minidl.run(config)

    def stop_after_two(record: dict, model: object) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        # The checkpoint callback runs after the others: epoch 2's is never written.
        minidl.run(config, callbacks=[stop_after_two], checkpoint=checkpoint)
    state = load_checkpoint(checkpoint)
    assert state.epoch == 1
    resumed = minidl.run(config, resume=state)
    assert resumed.history == straight.history
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)
    assert resumed.optimizer.state_dict()["steps"] == straight.optimizer.state_dict()["steps"]
    # Another run's checkpoint is refused, naming what differs.
    with pytest.raises(ValueError, match="lr 0.02 there, 0.5 here"):
        minidl.run(config.replace(lr=0.5), resume=state)


def test_resume_errors(tmp_path: Path) -> None:
    small = ["--epochs", "3", "--n-train", "60", "--n-test", "20", "--hidden", "4"]
    error_line(invoke("train", *small, "--resume", code=2), "--resume needs --out DIR")
    empty = tmp_path / "empty"
    error_line(invoke("train", "--out", str(empty), "--resume", code=2), f"no checkpoint to resume from in {empty}")  # fmt: skip
    done = tmp_path / "done"
    invoke("train", *small, "--out", str(done))
    error_line(invoke("train", "--out", str(done), "--resume", code=2), "(the run there finished)")

    # A checkpoint of a run with --lr 0.01: an explicit --lr 0.5 disagrees; options left
    # out are taken from the checkpoint.
    run = tmp_path / "run"
    config = minidl.TrainConfig(hidden=[4], epochs=3, n_train=60, n_test=20, lr=0.01)
    model, _, optimizer, _, _ = minidl.experiment.setup(config)
    run.mkdir()
    first = {"epoch": 1, "lr": 0.01, "train_loss": 0.25, "train_accuracy": 0.5}
    save_checkpoint(
        run / CHECKPOINT, model, optimizer, epoch=1, history=[first],
        config=minidl.experiment.config_dict(config),
    )  # fmt: skip
    result = invoke("train", "--out", str(run), "--resume", "--lr", "0.5", code=2)
    error_line(result, "'--resume'", "--lr 0.01 there, 0.5 here", "leave them out")
    result = invoke("train", "--out", str(run), "--resume", "--lr", "0.01", "--json")
    document = json.loads(result.stdout)
    assert document["history"][0] == first and len(document["history"]) == 3

    # A checkpoint cut short is named, not loaded.
    invalid = tmp_path / "invalid"
    invalid.mkdir()
    (invalid / CHECKPOINT).write_bytes((run / "model.safetensors").read_bytes()[:50])
    error_line(invoke("train", "--out", str(invalid), "--resume", code=2), "not a valid checkpoint")


def test_a_new_run_over_an_unfinished_one_says_so_and_starts_afresh(tmp_path: Path) -> None:
    config = minidl.TrainConfig(hidden=[4], epochs=3, n_train=60, n_test=20)
    model, _, optimizer, _, _ = minidl.experiment.setup(config)
    record = {"epoch": 1, "lr": 0.001, "train_loss": 0.25, "train_accuracy": 0.5}
    save_checkpoint(
        tmp_path / CHECKPOINT, model, optimizer, epoch=1, history=[record],
        config=minidl.experiment.config_dict(config),
    )  # fmt: skip
    result = invoke("train", "--epochs", "2", "--n-train", "60", "--n-test", "20", "--out", str(tmp_path))  # fmt: skip
    [warning] = result.stderr.splitlines()
    assert warning.startswith("Warning: ") and "checkpoint of an unfinished run" in warning
    assert "--resume" in warning
    assert not (tmp_path / CHECKPOINT).exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 2
