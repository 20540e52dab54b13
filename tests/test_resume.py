"""`train --out DIR` checkpoints as it trains; `train --out DIR --resume` continues an
interrupted run to the result it would have had, byte for byte: for SGD, Adam, a plugin's
FlatOptimizer subclass and a model with buffers. An optimizer that cannot save its state is
refused before training; resume errors name what is wrong.

Here the interruption is raised by a plugin layer at a chosen forward call, exactly as the
signal handler raises it, so it lands at the same step every time; test_signals.py sends
real signals to a real process."""

from __future__ import annotations

import filecmp
import json
import shlex
import signal
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from layers import Skip
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture, used below)

import minidl
from minidl.cli import TrainConfig, run
from minidl.cli import checkpoint as saving
from minidl.cli import plots as cli_plots
from minidl.cli.checkpoint import CHECKPOINT, Checkpointer, load_checkpoint, save_checkpoint
from minidl.cli.experiment import setup
from minidl.cli.signals import Interrupted

RESULTS = ("history.csv", "model.safetensors", "model.json", "metrics.json", "misclassified.csv")


class Bomb(minidl.ModuleBase):
    """The identity; its forward call number ``Bomb.at`` is interrupted by ``Bomb.signum``."""

    at, signum, calls = 0, signal.SIGINT, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bomb.calls += 1
        if Bomb.calls == Bomb.at:
            raise Interrupted(Bomb.signum)
        return x

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        return grad


class RunningNorm(minidl.ModuleBase):
    """A batch-norm-like layer: training mode normalises by the batch's mean and moves a
    running mean (a buffer); eval mode subtracts the running mean."""

    def __init__(self, in_features: int, momentum: float = 0.3) -> None:
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(in_features))
        self.register_buffer("batches", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x - self.running_mean
        mean = x.mean(0)
        self.running_mean.lerp_(mean, self.momentum)
        self.batches += 1
        return x - mean

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        return grad - grad.mean(0) if self.training else grad


class MomentumSGD(minidl.FlatOptimizer):
    """A plugin's optimizer as the docs show one: __init__ and step, nothing else; the base
    class's state_dict captures the velocity."""

    def __init__(self, parameters, lr: float, momentum: float = 0.9) -> None:  # type: ignore[no-untyped-def]
        super().__init__(parameters, lr)
        self.momentum = momentum
        self.velocity = torch.zeros_like(self.data)

    def step(self) -> None:
        self.velocity.mul_(self.momentum).add_(self.grad)
        self.data.add_(self.velocity, alpha=-self.lr)


class Forgetful:
    """An optimizer of the protocol alone (no FlatOptimizer, no state_dict): it can train,
    but its state cannot be saved."""

    steps = 0

    def __init__(self, parameters, lr: float) -> None:  # type: ignore[no-untyped-def]
        self.params, self.lr = list(parameters), lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        Forgetful.steps += 1
        for p in self.params:
            p.data.add_(p.grad, alpha=-self.lr)


class Plugin:
    @staticmethod
    def register_layers(register: Callable[[str, object], None]) -> None:
        register("bomb", Bomb)
        register("running_norm", RunningNorm)
        register("skip", Skip)

    @staticmethod
    def register_optimizers(register: Callable[[str, object], None]) -> None:
        register("momentum_sgd", MomentumSGD)
        register("forgetful", Forgetful)


@pytest.fixture(autouse=True)
def setting(request: pytest.FixtureRequest, plugin, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A fresh registry with the plugin registered; a checkpoint after every epoch (by
    default at most one a second); no plots (they take time and are not what is compared)."""
    request.getfixturevalue("fresh_cli")
    plugin(Plugin())
    monkeypatch.setattr(Checkpointer, "every_s", 0.0)
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    monkeypatch.setattr(Bomb, "at", 0)
    monkeypatch.setattr(Bomb, "calls", 0)


# 200 points in batches of 50: 4 steps, 2 evaluations and the diagnostics' probe (on by
# default with --out), after the model spec's probe: 1 + 7 forward calls per epoch.
BASE = ["train", "--epochs", "6", "--n-train", "200", "--batch-size", "50", "--n-test", "50"]


@pytest.mark.parametrize(
    ("optimizer", "model", "signum"),
    [
        ("sgd", "bomb, linear(8), tanh, linear(1), sigmoid", signal.SIGTERM),
        ("adam", "bomb, linear(8), tanh, linear(1), sigmoid", signal.SIGINT),
        ("momentum_sgd(momentum=0.5)", "bomb, linear(8), tanh, linear(1), sigmoid", signal.SIGINT),
        ("adam", "bomb, linear(8), running_norm, tanh, linear(1), sigmoid", signal.SIGTERM),
        (
            "adam",
            "bomb, linear(8), skip(linear(8), running_norm, tanh), linear(1), sigmoid",
            signal.SIGINT,
        ),
    ],
    ids=["sgd", "adam", "plugin-flat-optimizer", "model-with-buffers", "nested-with-buffers"],
)
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path: Path,
    invoke,
    optimizer: str,
    model: str,
    signum: signal.Signals,  # type: ignore[no-untyped-def]
) -> None:
    args = [*BASE, "--model", model, "--optimizer", optimizer, "--lr", "0.05", "--out"]
    invoke(*args, str(tmp_path / "reference"))

    Bomb.calls, Bomb.at = 0, 1 + 3 * 7 + 2  # the 2nd step of epoch 4
    Bomb.signum = signum
    result = invoke(*args, str(tmp_path / "run"), code=128 + signum)
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    line = error_line(
        result, f"interrupted by {how}; continue from the checkpoint with: minidl-run "
    )
    hinted = shlex.split(line.split("continue from the checkpoint with: ", 1)[1])
    assert hinted == ["minidl-run", *args, str(tmp_path / "run"), "--resume"]
    assert result.stdout == ""
    checkpoint = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert checkpoint.epoch == 3 and [r["epoch"] for r in checkpoint.history] == [1, 2, 3]
    # The checkpoint, and the history so far (written as each epoch ends).
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT, "history.csv"]
    if "running_norm" in model:  # the buffers are in it, at any depth
        key = "2.1.batches" if "skip" in model else "2.batches"
        assert int(checkpoint.states["model"][key]) == 3 * 4

    Bomb.at = 0
    resumed = invoke(*hinted[1:])  # as the message says
    assert resumed.stderr.startswith(f"resuming the run in {tmp_path / 'run'} after epoch 3 of 6\n")
    for name in RESULTS:
        same = filecmp.cmp(tmp_path / "run" / name, tmp_path / "reference" / name, shallow=False)
        assert same, name
    assert not (tmp_path / "run" / CHECKPOINT).exists()  # the run is complete


def test_resume_from_the_python_api(tmp_path: Path) -> None:
    config = TrainConfig(
        hidden=[8], epochs=5, n_train=150, n_test=50, lr=0.02, optimizer="momentum_sgd"
    )
    straight = run(config)

    def stop_after_two(record: dict, model: object) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        # The checkpoint callback runs after the others: epoch 2's is never written.
        run(config, callbacks=[stop_after_two], checkpoint=checkpoint)
    state = load_checkpoint(checkpoint)
    assert state.epoch == 1
    assert set(state.states["optimizer"]) == {"lr", "momentum", "velocity"}  # the base's capture
    assert state.states["optimizer"]["velocity"].abs().sum() > 0
    resumed = run(config, resume=state)
    assert resumed.history == straight.history
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)
    assert torch.equal(resumed.optimizer.velocity, straight.optimizer.velocity)
    # Another run's checkpoint is refused, naming what differs.
    with pytest.raises(ValueError, match="lr 0.02 there, 0.5 here"):
        run(config.replace(lr=0.5), resume=state)


def test_an_optimizer_without_state_is_refused_before_training_and_runs_without_a_checkpoint(
    tmp_path: Path,
    invoke,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(Forgetful, "steps", 0)
    small = [
        "--epochs",
        "3",
        "--n-train",
        "60",
        "--n-test",
        "20",
        "--hidden",
        "4",
        "--optimizer",
        "forgetful",
    ]
    result = invoke("train", *small, "--out", str(tmp_path), "--resume", code=2)
    error_line(
        result, "Invalid value for '--resume'",
        "optimizer Forgetful cannot save its state (it has no state_dict() and load_state_dict()), so its run cannot be resumed",
    )  # fmt: skip
    assert Forgetful.steps == 0  # refused before any training

    saved: list[object] = []
    monkeypatch.setattr(saving, "save_checkpoint", lambda *a, **k: saved.append(a))
    with pytest.warns(
        UserWarning,
        match="optimizer Forgetful cannot save its state .*: the run is not checkpointed",
    ):
        result = invoke("train", *small, "--out", str(tmp_path), "--no-diagnostics")
    assert Forgetful.steps == 3 and saved == []
    assert {"metrics.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / CHECKPOINT).exists()
    # SGD, the same run but with state, is checkpointed (the monkeypatch above would see it).
    invoke("train", *small[:-1], "sgd", "--out", str(tmp_path), "--no-diagnostics")
    assert len(saved) == 3


def write_checkpoint(directory: Path, config: TrainConfig) -> dict:
    """A checkpoint after epoch 1 of a run of ``config``, as an interrupted run leaves it."""
    model, _, optimizer, _, _, _ = setup(config)
    directory.mkdir(exist_ok=True)
    first = {"epoch": 1, "lr": config.lr, "train_loss": 0.25, "train_accuracy": 0.5}
    save_checkpoint(
        directory / CHECKPOINT, {"model": model, "optimizer": optimizer},
        epoch=1, history=[first], config=config.as_dict(),
    )  # fmt: skip
    return first


def test_resume_errors(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    small = ["--epochs", "3", "--n-train", "60", "--n-test", "20", "--hidden", "4"]
    error_line(invoke("train", *small, "--resume", code=2), "--resume needs --out DIR")
    empty = tmp_path / "empty"
    error_line(
        invoke("train", "--out", str(empty), "--resume", code=2),
        "Invalid value for '--resume'", f"no checkpoint to resume from in {empty}: ",
    )  # fmt: skip
    done = tmp_path / "done"
    invoke("train", *small, "--out", str(done), "--no-diagnostics")
    error_line(
        invoke("train", "--out", str(done), "--resume", code=2),
        f"no checkpoint to resume from in {done} (the run there finished)",
    )

    # A run with --lr 0.01: an explicit --lr 0.5 disagrees; options left out come from the
    # checkpoint, and an option given as it was agrees.
    config = TrainConfig(hidden=[4], epochs=3, n_train=60, n_test=20, lr=0.01)
    first = write_checkpoint(tmp_path / "run", config)
    result = invoke(
        "train", "--out", str(tmp_path / "run"), "--resume", "--lr", "0.5", "--epochs", "4", code=2
    )
    error_line(
        result,
        "'--resume'",
        "--lr 0.01 there, 0.5 here; --epochs 3 there, 4 here",
        "leave them out",
    )
    result = invoke("train", "--out", str(tmp_path / "run"), "--resume", "--lr", "0.01", "--json")
    document = json.loads(result.stdout)
    assert document["history"][0] == first and len(document["history"]) == 3
    assert document["config"]["lr"] == 0.01 and document["config"]["hidden"] == [4]

    # A checkpoint cut short is named, not loaded.
    invalid = tmp_path / "invalid"
    invalid.mkdir()
    (invalid / CHECKPOINT).write_bytes((tmp_path / "run" / "model.safetensors").read_bytes()[:50])
    error_line(
        invoke("train", "--out", str(invalid), "--resume", code=2),
        f"{invalid / CHECKPOINT}: not a valid checkpoint",
    )


def test_a_new_run_over_an_unfinished_one_says_so_and_starts_afresh(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    write_checkpoint(tmp_path, TrainConfig(hidden=[4], epochs=3, n_train=60, n_test=20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        invoke(
            "train", "--epochs", "2", "--n-train", "60", "--n-test", "20", "--out", str(tmp_path)
        )
    [warning] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert warning == (
        f"{tmp_path} holds the checkpoint of an unfinished run; starting a new run over it "
        "(to continue that one instead: add --resume)"
    )
    assert not (tmp_path / CHECKPOINT).exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 2
