"""Training diagnostics (minidl.cli.diagnostics): gradient norms equal torch.autograd's,
saturation and spread are what their definitions say, training with the callback is bit
for bit training without it, and `train --out` records and plots them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

import minidl
from benchmarks.twin import torch_twin
from minidl.cli import Diagnostics, TrainConfig, run
from minidl.cli.diagnostics import layer_names, spread
from minidl.cli.experiment import setup
from minidl.plugins import MSE, Linear, ReLU, Sigmoid, Tanh


def autograd_weight_norms(model: minidl.Sequential, data: minidl.Dataset) -> list[float]:
    net = torch_twin(model).eval()
    with torch.enable_grad():
        loss = torch.nn.functional.mse_loss(net(data.x), data.y)
        loss.backward()
    return [float(m.weight.grad.norm()) for m in net if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("standardize", [False, True])
def test_grad_norms_equal_autograd(activation: str, standardize: bool) -> None:
    config = TrainConfig(
        activation=activation, standardize=standardize, n_train=200, dtype="float64", seed=5
    )
    model, loss, _, train, _, _ = setup(config)
    train = train.to(dtype=torch.float64)
    record = Diagnostics(train, loss).measure(model)
    expected = autograd_weight_norms(model, train)
    assert [record[f"grad_norm/linear{i}"] for i in range(4)] == pytest.approx(expected, rel=1e-12)
    assert min(expected) > 0  # a test of something: the gradients are not all zero


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_callback_records_each_epoch_and_leaves_training_unchanged(optimizer: str) -> None:
    config = TrainConfig(
        activation="sigmoid", optimizer=optimizer, lr=0.5 if optimizer == "sgd" else 1e-2, epochs=4,
        batch_size=50, n_train=200, n_test=100, dtype="float64", seed=2,
    )  # fmt: skip
    plain = run(config)
    probed = run(config.replace(diagnostics=True))
    assert len(probed.history) == 4
    for a, b in zip(plain.history, probed.history, strict=True):
        assert {k: v for k, v in b.items() if "/" not in k} == a
    for p, q in zip(plain.model.parameters(), probed.model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)
    # The last record describes the final weights: compare with autograd at those weights.
    last = probed.history[-1]
    expected = autograd_weight_norms(probed.model, probed.train.to(dtype=torch.float64))
    assert [last[f"grad_norm/linear{i}"] for i in range(4)] == pytest.approx(expected, rel=1e-12)
    assert {
        f"{what}/sigmoid{i}" for what in ("saturation", "spread") for i in range(4)
    } <= last.keys()


def test_measure_restores_gradients_mode_and_draws_nothing() -> None:
    model = minidl.build("linear(3), tanh, linear(1), sigmoid", (2,))
    data = minidl.Dataset(torch.randn(10, 2), torch.rand(10, 1))
    for p in model.parameters():
        p.grad.fill_(0.25)
    model.train()
    state = torch.random.get_rng_state()
    Diagnostics(data, MSE()).measure(model)
    assert all(bool((p.grad == 0.25).all()) for p in model.parameters())
    assert model.training is True
    assert torch.equal(torch.random.get_rng_state(), state)


def identity_linear(n: int) -> Linear:
    layer = Linear(1, n)
    layer.weight.data.fill_(1.0)
    layer.bias.data.zero_()
    return layer


def test_saturation_on_constructed_preactivations() -> None:
    # sigmoid(z) is within 0.01 of 0 or 1 exactly when |z| > log(99) = 4.595..., and
    # |tanh(z)| > 0.99 when |z| > atanh(0.99) = 2.646...: pre-activations around both.
    z = torch.tensor([[-10.0], [-4.5], [-2.0], [0.0], [2.7], [4.7], [10.0], [2.6]])
    assert 2.6 < math.atanh(0.99) < 2.7 and 4.5 < math.log(99) < 4.7  # the thresholds straddled
    data = minidl.Dataset(z, torch.zeros(len(z), 1))
    sig = Diagnostics(data, MSE()).measure(minidl.Sequential(identity_linear(1), Sigmoid()))
    assert sig["saturation/sigmoid0"] == 3 / 8  # -10, 4.7, 10
    tanh = Diagnostics(data, MSE()).measure(minidl.Sequential(identity_linear(1), Tanh()))
    assert tanh["saturation/tanh0"] == 5 / 8  # -10, -4.5, 2.7, 4.7, 10


def test_dead_relu_units() -> None:
    # Unit 0 is alive on positive inputs, unit 1 (weight -1) and unit 2 (bias -5) never fire;
    # unit 3 fires only on the largest input, so it is alive though mostly zero.
    layer = Linear(1, 4)
    layer.weight.data = torch.tensor([[1.0], [-1.0], [1.0], [1.0]])
    layer.bias.data = torch.tensor([0.0, 0.0, -5.0, -2.5])
    data = minidl.Dataset(torch.tensor([[1.0], [2.0], [3.0]]), torch.zeros(3, 4))
    record = Diagnostics(data, MSE()).measure(minidl.Sequential(layer, ReLU()))
    assert record["saturation/relu0"] == 2 / 4
    assert ReLU.saturation(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == 0.5


def test_saturation_and_spread_directly() -> None:
    assert Sigmoid.saturation(torch.tensor([0.005, 0.5, 0.995, 0.98])) == 0.5
    assert Tanh.saturation(torch.tensor([-0.995, 0.5, 0.999, -0.98])) == 0.5
    # Unit 0 takes values 0 and 2 (std 1), unit 1 is constant (std 0): mean 0.5.
    assert spread(torch.tensor([[0.0, 3.0], [2.0, 3.0]])) == 0.5
    assert spread(torch.tensor([[1.0, 2.0]])) == 0.0


def test_spread_recorded_per_activation() -> None:
    # Two tanh units fed +-a*x: each output's spread across points is the std of tanh(a*x).
    layer = Linear(1, 2)
    layer.weight.data = torch.tensor([[1.0], [-3.0]])
    layer.bias.data = torch.zeros(2)
    x = torch.linspace(-1, 1, 7).unsqueeze(1)
    record = Diagnostics(minidl.Dataset(x, torch.zeros(7, 2)), MSE()).measure(
        minidl.Sequential(layer, Tanh())
    )
    values = x.flatten().tolist()
    by_hand = []
    for a in (1.0, -3.0):
        mean = sum(math.tanh(a * v) for v in values) / 7
        by_hand.append(math.sqrt(sum((math.tanh(a * v) - mean) ** 2 for v in values) / 7))
    assert record["spread/tanh0"] == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_keys_count_layers_per_name_and_points_limits_the_probe() -> None:
    model = minidl.build(
        "linear(4), tanh, linear(4), tanh, linear(4), tanh, linear(1), sigmoid", (2,)
    )
    assert [name for name, _ in layer_names(model)][:3] == ["linear0", "tanh0", "linear1"]
    data = minidl.Dataset(torch.randn(20, 2), torch.rand(20, 1))
    record = Diagnostics(data, MSE()).measure(model)
    assert sorted(record) == sorted(
        [f"grad_norm/linear{i}" for i in range(4)]
        + [f"{what}/tanh{i}" for what in ("saturation", "spread") for i in range(3)]
        + ["saturation/sigmoid0", "spread/sigmoid0"]
    )
    first = Diagnostics(data, MSE(), points=5).measure(model)
    assert first == Diagnostics(minidl.Dataset(data.x[:5], data.y[:5]), MSE()).measure(model)
    assert first != record
    with pytest.raises(ValueError, match="points must be at least 1"):
        Diagnostics(data, MSE(), points=0)


# --- on the command line --------------------------------------------------------------

FAST = ["--activation", "sigmoid", "--epochs", "2", "--n-train", "100", "--n-test", "50"]


def test_train_out_records_and_plots_diagnostics(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    invoke("train", *FAST, "--out", str(tmp_path))  # on by default with --out
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    expected = run(activation="sigmoid", epochs=2, n_train=100, n_test=50, diagnostics=True).history
    assert len(rows) == len(expected) == 2
    for row, record in zip(rows, expected, strict=True):
        keys = [k for k in record if "/" in k]
        assert len(keys) == 4 + 2 * 4  # four weights; four sigmoid layers, two measures each
        for key in keys:
            assert float(row[key]) == pytest.approx(record[key], rel=1e-15), key
    assert (tmp_path / "diagnostics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_diagnostics_flags(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    history = json.loads(invoke("train", *FAST, "--json", "--diagnostics").stdout)["history"]
    assert "saturation/sigmoid3" in history[-1] and "grad_norm/linear3" in history[-1]
    plain = json.loads(invoke("train", *FAST, "--json").stdout)["history"]
    assert not [k for k in plain[-1] if "/" in k]
    assert [h["train_loss"] for h in plain] == [h["train_loss"] for h in history]
    invoke("train", *FAST, "--out", str(tmp_path), "--no-diagnostics")
    assert not (tmp_path / "diagnostics.png").exists()
    with open(tmp_path / "history.csv") as f:
        assert not [k for k in next(csv.DictReader(f)) if "/" in k]
