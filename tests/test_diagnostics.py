"""Diagnostics: gradient norms equal torch.autograd's, saturation is what the definitions say."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from twin import torch_twin

import minidl
from minidl.cli import cli
from minidl.diagnostics import (
    Diagnostics,
    relu_dead,
    sigmoid_saturation,
    spread,
    tanh_saturation,
)
from minidl.plugins import Linear, ReLU, Sigmoid, Tanh


def autograd_weight_norms(model: minidl.Sequential, data: minidl.Dataset) -> list[float]:
    net = torch_twin(model)
    with torch.enable_grad():
        loss = torch.nn.functional.mse_loss(net(data.x), data.y)
        loss.backward()
    return [float(m.weight.grad.norm()) for m in net if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("standardize", [False, True])
def test_grad_norms_equal_autograd(activation: str, standardize: bool) -> None:
    config = minidl.TrainConfig(
        activation=activation, standardize=standardize, n_train=200, dtype="float64", seed=5
    )
    model, loss, _, train, _ = minidl.experiment.setup(config)
    train = train.to(dtype=torch.float64)
    record = Diagnostics(train, loss).measure(model)
    expected = autograd_weight_norms(model, train)
    got = [record[f"grad_norm/linear{i}"] for i in range(4)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert min(expected) > 0  # a test of something: the gradients are not all zero


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_callback_records_each_epoch_and_leaves_training_unchanged(optimizer: str) -> None:
    config = minidl.TrainConfig(
        activation="sigmoid",
        optimizer=optimizer,
        lr=0.5 if optimizer == "sgd" else 1e-2,
        epochs=4,
        batch_size=50,
        n_train=200,
        n_test=100,
        dtype="float64",
        seed=2,
    )
    plain = minidl.run(config)
    probed = minidl.run(config.replace(diagnostics=True))
    assert len(probed.history) == 4
    for a, b in zip(plain.history, probed.history, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["test_loss"] == b["test_loss"]
    for p, q in zip(plain.model.parameters(), probed.model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)
    # The last record describes the final weights: compare with autograd at those weights.
    last = probed.history[-1]
    expected = autograd_weight_norms(probed.model, probed.train.to(dtype=torch.float64))
    assert [last[f"grad_norm/linear{i}"] for i in range(4)] == pytest.approx(expected, rel=1e-12)
    assert {f"saturation/sigmoid{i}" for i in range(4)} <= last.keys()


def test_measure_restores_accumulated_gradients() -> None:
    model = minidl.build_model("linear(3), tanh, linear(1), sigmoid", 2)
    data = minidl.Dataset(torch.randn(10, 2), torch.rand(10, 1))
    for p in model.parameters():
        p.grad.fill_(0.25)
    Diagnostics(data, minidl.registry.get("loss", "mse")()).measure(model)
    assert all(bool((p.grad == 0.25).all()) for p in model.parameters())


def identity_linear(n: int) -> Linear:
    layer = Linear(1, n)
    layer.weight.data = torch.ones(n, 1)
    layer.bias.data = torch.zeros(n)
    return layer


def test_saturation_on_constructed_preactivations() -> None:
    # Pre-activations chosen around the thresholds: sigmoid(z) is within 0.01 of 0 or 1
    # exactly when |z| > log(99) = 4.595..., and |tanh(z)| > 0.99 when |z| > atanh(0.99) = 2.646...
    z = torch.tensor([[-10.0], [-4.5], [-2.0], [0.0], [2.7], [4.7], [10.0], [2.6]])
    data = minidl.Dataset(z, torch.zeros(len(z), 1))
    loss = minidl.registry.get("loss", "mse")()
    sig = Diagnostics(data, loss).measure(minidl.Sequential(identity_linear(1), Sigmoid()))
    assert sig["saturation/sigmoid0"] == 3 / 8  # -10, 4.7, 10
    tanh = Diagnostics(data, loss).measure(minidl.Sequential(identity_linear(1), Tanh()))
    assert tanh["saturation/tanh0"] == 5 / 8  # -10, -4.5, 2.7, 4.7, 10
    assert math.log(99) > 4.5 and math.atanh(0.99) < 2.7  # the thresholds the cases straddle


def test_dead_relu_units() -> None:
    # Unit 0 is alive on positive inputs, unit 1 (weight -1) and unit 2 (bias -5) never fire;
    # unit 3 fires only on the largest input, so it is alive though mostly zero.
    layer = Linear(1, 4)
    layer.weight.data = torch.tensor([[1.0], [-1.0], [1.0], [1.0]])
    layer.bias.data = torch.tensor([0.0, 0.0, -5.0, -2.5])
    data = minidl.Dataset(torch.tensor([[1.0], [2.0], [3.0]]), torch.zeros(3, 4))
    loss = minidl.registry.get("loss", "mse")()
    record = Diagnostics(data, loss).measure(minidl.Sequential(layer, ReLU()))
    assert record["saturation/relu0"] == 2 / 4


def test_measures_directly() -> None:
    assert sigmoid_saturation(torch.tensor([0.005, 0.5, 0.995, 0.98])) == 0.5
    assert tanh_saturation(torch.tensor([-0.995, 0.5, 0.999, -0.98])) == 0.5
    assert relu_dead(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == 0.5
    # Unit 0 takes values 0 and 2 (std 1), unit 1 is constant (std 0): mean 0.5.
    assert spread(torch.tensor([[0.0, 3.0], [2.0, 3.0]])) == 0.5
    assert spread(torch.tensor([[1.0, 2.0]])) == 0.0


def test_spread_recorded_per_activation() -> None:
    # Two tanh units fed +-a*x: each output's spread across points is the std of tanh(a*x).
    layer = Linear(1, 2)
    layer.weight.data = torch.tensor([[1.0], [-3.0]])
    layer.bias.data = torch.zeros(2)
    x = torch.linspace(-1, 1, 7).unsqueeze(1)
    data = minidl.Dataset(x, torch.zeros(7, 2))
    loss = minidl.registry.get("loss", "mse")()
    record = Diagnostics(data, loss).measure(minidl.Sequential(layer, Tanh()))
    by_hand = [
        math.sqrt(sum((math.tanh(a * v) - m) ** 2 for v in x.flatten().tolist()) / 7)
        for a in (1.0, -3.0)
        for m in [sum(math.tanh(a * v) for v in x.flatten().tolist()) / 7]
    ]
    assert record["spread/tanh0"] == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_keys_count_layers_per_name() -> None:
    model = minidl.build_model(minidl.mlp([4, 4, 4], "tanh"), 2)
    data = minidl.Dataset(torch.randn(20, 2), torch.rand(20, 1))
    record = Diagnostics(data, minidl.registry.get("loss", "mse")()).measure(model)
    assert sorted(record) == sorted(
        [f"grad_norm/linear{i}" for i in range(4)]
        + [f"{what}/tanh{i}" for what in ("saturation", "spread") for i in range(3)]
        + ["saturation/sigmoid0", "spread/sigmoid0"]
    )


def test_bad_points() -> None:
    data = minidl.Dataset(torch.randn(5, 2), torch.rand(5, 1))
    with pytest.raises(ValueError, match="points must be at least 1"):
        Diagnostics(data, minidl.registry.get("loss", "mse")(), points=0)


# --- on the command line --------------------------------------------------------------

FAST = ["--activation", "sigmoid", "--epochs", "2", "--n-train", "100", "--n-test", "50"]


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), prog_name="minidl-run")
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_train_out_records_and_plots_diagnostics(tmp_path: Path) -> None:
    invoke("train", *FAST, "--out", str(tmp_path))
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    expected = minidl.run(
        activation="sigmoid", epochs=2, n_train=100, n_test=50, diagnostics=True
    ).history
    for row, record in zip(rows, expected, strict=True):
        for i in range(4):
            key = f"grad_norm/linear{i}"
            assert float(row[key]) == pytest.approx(record[key], rel=1e-6)
    assert (tmp_path / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


def test_train_diagnostics_flags(tmp_path: Path) -> None:
    history = json.loads(invoke("train", *FAST, "--json", "--diagnostics").stdout)["history"]
    assert "saturation/sigmoid3" in history[-1]
    plain = json.loads(invoke("train", *FAST, "--json").stdout)["history"]
    assert not [k for k in plain[-1] if "/" in k]
    invoke("train", *FAST, "--out", str(tmp_path), "--no-diagnostics")
    assert not (tmp_path / "diagnostics.png").exists()
