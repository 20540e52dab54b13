"""A loss that turns NaN or infinite is a failed run (exit 1, epoch, step and a hint), never a
NaN reported as a result with exit 0. A sweep records diverged rounds and says it left them
out of the mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hardening_common import error_line, fresh_registry, invoke  # noqa: F401

import minidl

pytestmark = pytest.mark.usefixtures("fresh_registry")

DIVERGING = ["--model", "linear(25), relu, linear(1)", "--optimizer", "sgd", "--lr", "100"]
SMALL = ["--epochs", "5", "--n-train", "500", "--n-test", "50"]


def test_train_divergence_is_exit_1_with_epoch_step_and_hint(tmp_path: Path) -> None:
    # The reference: where the loss first stops being finite, by the library's own check.
    config = minidl.TrainConfig(
        model="linear(25), relu, linear(1)",
        optimizer="sgd",
        lr=100,
        epochs=5,
        n_train=500,
        n_test=50,
    )
    with pytest.raises(minidl.DivergenceError) as info:
        minidl.run(config)
    epoch, step = info.value.epoch, info.value.step

    out = tmp_path / "out"
    result = invoke("train", *SMALL, *DIVERGING, "--json", "--out", str(out), code=1)
    error_line(
        result,
        "training diverged",
        f"at epoch {epoch}, step {step}",
        "lr=10",
        "try a lower learning rate",
    )
    assert result.stdout == ""  # no JSON document with NaN or null numbers
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()


def test_sweep_records_diverged_rounds_and_says_they_are_left_out(tmp_path: Path) -> None:
    """At lr 1e38 half of these rounds blow up (the float32 weights overflow), half do not."""
    args = ["sweep", "--activation", "relu", "--optimizer", "sgd", "--lr", "0.5,1e38", "--epochs", "2",
            "--n-train", "100", "--n-test", "50", "--rounds", "4", "--hidden", "8"]  # fmt: skip
    base = minidl.TrainConfig(hidden=[8], epochs=2, n_train=100, n_test=50)
    [reference] = minidl.sweep.sweep([minidl.sweep.Row("relu", "sgd", 1e38)], base, rounds=4)
    assert reference.diverged and reference.accuracies  # some rounds of each kind

    result = invoke(*args, "--out", str(tmp_path))
    table = result.stdout.splitlines()[:4]
    assert not any("nan" in line.lower() or "inf" in line for line in table), table
    d = len(reference.diverged)
    mean = f"{100 * reference.mean:.2f} ± {100 * reference.std:.2f} ({d} of 4 diverged)"
    assert mean in table[3]
    assert "left out of the mean and std" in result.stdout
    assert (
        f"relu-sgd lr 1e+38: {d} of 4 rounds diverged (left out): training diverged"
        in result.stdout
    )
    document = json.loads((tmp_path / "sweep.json").read_text())
    good, bad = document["rows"]
    assert bad["diverged"] == reference.diverged and bad["accuracies"] == reference.accuracies
    assert bad["mean"] == reference.mean and bad["rounds"] == 4
    assert good["diverged"] == [] and len(good["accuracies"]) == 4
    json.loads((tmp_path / "sweep.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert "Diverged rounds" in (tmp_path / "table.md").read_text()


def test_a_row_whose_every_round_diverged_has_no_mean() -> None:
    args = ["sweep", "--activation", "relu", "--optimizer", "sgd", "--lr", "1e38", "--epochs", "1",
            "--n-train", "100", "--n-test", "50", "--rounds", "1", "--hidden", "8", "--json"]  # fmt: skip
    document = json.loads(invoke(*args).stdout, parse_constant=lambda c: pytest.fail(c))
    [row] = document["rows"]
    assert row["diverged"] == [0] and row["mean"] is None and row["std"] is None
    text = invoke(*args[:-1]).stdout
    assert "all 1 diverged" in text


def test_a_test_loss_that_overflows_is_a_failure_not_a_result(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("".join(f"{i / 20},{(i * 3 % 20) / 20},{i % 2}\n" for i in range(20)))
    test = tmp_path / "test.csv"
    test.write_text("".join(f"{1e30 * (i + 1)},0.5,{i % 2}\n" for i in range(5)))
    result = invoke("train", "--data", str(train), "--test-data", str(test), "--model", "linear(1)", "--epochs", "1", code=1)  # fmt: skip
    error_line(result, "the test loss is inf after epoch 1", "overflow on the test inputs")
    assert result.stdout == ""


def test_predict_never_prints_a_non_finite_output(tmp_path: Path) -> None:
    invoke("train", "--epochs", "1", "--n-train", "50", "--n-test", "20", "--model", "linear(1)", "--out", str(tmp_path))  # fmt: skip
    result = invoke("predict", str(tmp_path), "1e39", "1", code=1)
    error_line(result, "the model's output for point 1", "overflow")
    assert result.stdout == ""
