"""The learning-rate range test: the rates the optimizer really steps with, fastai's
smoothing, Lightning's suggestion (against numpy's gradient), the divergence stop, a
suggestion that trains well on the seed's task, and ``minidl-run lr-find``, which writes
lr_find.png and changes nothing else."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import Result
from test_cli_predict import save

from minidl import Callback, Module, Trainer
from minidl.cli import TrainConfig, run
from minidl.cli.lr_find import LRRangeTest, lr_find

#: No output activation, so the MSE is unbounded and large rates blow it up.
UNBOUNDED = TrainConfig(
    model="linear(25), relu, linear(25), relu, linear(1)", optimizer="sgd", n_train=200
)


class Spy(Callback):
    """The learning rate of each optimizer step, and each step's loss."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_after_backward(self, trainer: Trainer, model: Module) -> None:
        self.lrs.append(trainer.optimizer.lr)  # the rate the coming step uses

    def on_batch_end(self, trainer: Trainer, model: Module) -> None:
        self.losses.append(float(trainer.batch_loss))  # type: ignore[arg-type]


def test_each_step_uses_the_next_rate_of_a_geometric_sequence() -> None:
    spy = Spy()
    # 2 batches an epoch: the epoch's schedule resets the rate 12 times; the test's wins.
    result = lr_find(TrainConfig(n_train=200), steps=25, min_lr=1e-5, max_lr=1.0, callbacks=[spy])
    expected = torch.logspace(-5, 0, 25, dtype=torch.float64).tolist()
    assert result.lrs == pytest.approx(expected, rel=1e-12)
    assert spy.lrs == pytest.approx(expected, rel=1e-12)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-12)
    assert (result.lrs[0], result.lrs[-1]) == (1e-5, pytest.approx(1.0, rel=1e-12))
    assert result.stop_reason == "all 25 steps done" and not result.diverged


def test_the_smoothing_is_fastais_and_the_suggestion_lightnings() -> None:
    spy = Spy()
    result = lr_find(TrainConfig(n_train=300), steps=40, min_lr=1e-4, max_lr=1.0, callbacks=[spy])
    assert result.raw_losses == spy.losses
    # The bias-corrected moving average, as one weighted mean per step.
    raw = torch.tensor(result.raw_losses, dtype=torch.float64)
    beta = 0.98
    for i in range(len(raw)):
        weights = (1 - beta) * beta ** torch.arange(i, -1, -1, dtype=torch.float64)
        assert result.losses[i] == pytest.approx(
            float((weights * raw[: i + 1]).sum() / weights.sum()), rel=1e-9
        )
    # Lightning: argmin of numpy's gradient over the points after the first 10 and before the last.
    index = 10 + int(np.argmin(np.gradient(np.array(result.losses[10:-1]))))
    assert result.suggestion == result.lrs[index] and result.suggestion_step == index + 1


def test_the_suggestion_trains_better_than_a_hundredth_or_a_hundred_times_it() -> None:
    result = lr_find(TrainConfig(), steps=100)
    assert result.suggestion is not None and 1e-4 <= result.suggestion <= 1.0
    accuracy = {
        factor: run(TrainConfig(lr=result.suggestion * factor, epochs=10)).test_accuracy
        for factor in (0.01, 1, 100)
    }
    assert accuracy[1] >= 0.9, accuracy
    assert accuracy[1] >= max(accuracy[0.01], accuracy[100]) + 0.1, accuracy


def test_it_stops_when_the_smoothed_loss_exceeds_four_times_its_best() -> None:
    spy = Spy()
    result = lr_find(UNBOUNDED, steps=100, min_lr=1e-3, max_lr=1e3, callbacks=[spy])
    n = len(result.losses)
    assert result.diverged and 13 < n < 100
    assert result.losses[-1] > 4 * min(result.losses[:-1])
    assert all(result.losses[i] <= 4 * min(result.losses[:i]) for i in range(1, n - 1))
    assert len(spy.losses) == n  # training stopped at that very step
    assert "exceeded 4x its best" in result.stop_reason
    assert result.suggestion is not None and result.suggestion < result.lrs[-1]


def test_a_loss_that_overflows_at_once_stops_it_without_a_suggestion() -> None:
    result = lr_find(UNBOUNDED, steps=50, min_lr=1e8, max_lr=1e12)
    assert result.diverged and len(result.losses) < 12
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 4 * min(result.losses)
    assert result.suggestion is None


def test_the_callback_alone_on_fit() -> None:
    finder = LRRangeTest([0.1, 0.2, 0.4])
    history = run(TrainConfig(n_train=200, epochs=5), [finder])
    assert len(finder.losses) == 3 and len(history.history) == 2  # 2 batches an epoch
    assert history.history.info["stop_reason"] == "all 3 steps done"


# ------------------------------------------------------------------------------------- CLI


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def test_cli_writes_lr_find_png_and_nothing_else(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path / "run", TrainConfig(epochs=1, n_train=100, n_test=50))
    monkeypatch.chdir(tmp_path)
    before = files(tmp_path)
    options = ["--steps", "20", "--n-train", "200"]
    text = invoke("lr-find", *options, "--out", "run").stdout
    after = files(tmp_path)
    assert set(after) - set(before) == {"run/lr_find.png"}
    assert {k: after[k] for k in before} == before  # not one byte or time changed
    assert after["run/lr_find.png"][0].startswith(b"\x89PNG")
    expected = lr_find(TrainConfig(n_train=200), steps=20)
    assert f"suggested learning rate {expected.suggestion:.3g} " in text
    assert "wrote lr_find.png to run" in text
    document = json.loads(invoke("lr-find", *options, "--json").stdout)
    assert document["suggestion"] == expected.suggestion
    assert document["lrs"] == expected.lrs and "files" not in document
    assert files(tmp_path) == after  # without --out, no file at all


def test_cli_without_a_suggestion_fails_and_says_why(invoke: Callable[..., Result]) -> None:
    model = ["--model", UNBOUNDED.model or "", "--optimizer", "sgd", "--n-train", "200"]
    result = invoke(
        "lr-find", *model, "--min-lr", "1e8", "--max-lr", "1e12", "--steps", "30", code=1
    )
    assert "Error: no suggestion: only" in result.stderr
    assert "give more --steps, or a lower --max-lr" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "--min-lr 1 must be below --max-lr 0.1"),
        (["--steps", "1"], "1 is not in the range x>=2"),
        (["--epochs", "3"], "No such option '--epochs'"),
        (["--lr", "0.1"], "No such option '--lr'"),
    ],
)
def test_cli_bad_options(invoke: Callable[..., Result], args: list[str], message: Any) -> None:
    assert message in invoke("lr-find", *args, code=2).stderr
