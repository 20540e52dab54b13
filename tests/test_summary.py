"""``minidl.summary`` and ``minidl-run summary``: output shapes and parameter counts checked
against a torch.nn twin (its forward hooks and ``parameters()``), nesting, and a probe
that leaves the model, its modes and the random generator as they were."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from click.testing import Result
from test_module import models
from torch import Tensor

import minidl
from benchmarks.twin import torch_twin
from minidl import ModuleBase, Sequential
from minidl.cli import TrainConfig
from minidl.cli.experiment import setup
from minidl.plugins import Linear, ReLU, Tanh


def torch_shapes(net: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, list[int]]:
    """Each submodule's output shape (one example's), by torch's forward hooks."""
    shapes: dict[str, list[int]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: torch.nn.Module, inputs: Any, output: Tensor) -> None:
            shapes.setdefault(name, list(output.shape[1:]))

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in net.named_modules() if name]
    with torch.no_grad():
        net(torch.zeros(2, *input_shape, dtype=next(net.parameters()).dtype))
    for h in handles:
        h.remove()
    return shapes


def torch_counts(net: torch.nn.Module) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in net.named_modules()
        if name
    }


def check_against_twin(model: Any, net: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    found = minidl.summary(model, input_shape)
    rows = {r["name"]: r for r in found.rows}
    assert list(rows) == [name for name, _ in net.named_modules() if name]
    assert {k: r["output_shape"] for k, r in rows.items()} == torch_shapes(net, input_shape)
    assert {k: r["parameters"] for k, r in rows.items()} == torch_counts(net)
    assert found.trainable_parameters == sum(p.numel() for p in net.parameters())
    assert found.total_parameters == found.trainable_parameters + sum(
        b.numel() for b in net.buffers()
    )


def test_the_seed_network_has_the_parameters_of_its_torch_twin() -> None:
    model = setup(TrainConfig()).model
    net = torch_twin(model)
    check_against_twin(model, net, (2,))
    found = minidl.summary(model, (2,))
    assert found.total_parameters == sum(p.numel() for p in net.parameters()) == 1401
    assert [r["layer"] for r in found.rows] == ["linear", "relu"] * 3 + ["linear", "sigmoid"]
    text = str(found)
    assert "total parameters 1,401: trainable 1,401" in text
    assert all(f"{r['parameters']:,}" in text for r in found.rows)


def test_other_widths_activations_and_standardize() -> None:
    model = setup(TrainConfig(hidden=[8, 3], activation="tanh", standardize=True)).model
    check_against_twin(model, torch_twin(model), (2,))


def test_nested_sequential_and_buffers() -> None:
    ours, theirs = models()  # a block with buffers, a Sequential inside a Sequential
    found = minidl.summary(ours, (3,))
    rows = {r["name"]: r for r in found.rows}
    shapes, counts = torch_shapes(theirs, (3,)), torch_counts(theirs)
    for name in ("0", "0.lin", "1", "2", "3", "3.0", "3.1", "4"):
        assert rows[name]["output_shape"] == shapes[name]
        assert rows[name]["parameters"] == counts[name]
    assert rows["3.0"]["depth"] == rows["3"]["depth"] + 1
    assert rows["3"]["layer"] == "Sequential" and rows["0"]["layer"] == "Block"
    assert found.trainable_parameters == sum(p.numel() for p in theirs.parameters())
    buffers = sum(b.numel() for b in theirs.buffers())
    assert buffers > 0 and found.non_trainable_parameters == buffers
    lines = str(found).splitlines()
    (child,) = [line for line in lines if line.startswith("3.0 ")]
    (parent,) = [line for line in lines if line.startswith("3 ")]
    # the child under its container, its layer indented by two
    assert child.index("linear") == parent.index("Sequential") + 2


class Residual(ModuleBase):
    """``x + f(x)``: a container that is not a chain, with torch's ``named_children``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def named_children(self) -> list[tuple[str, Any]]:
        return [("inner", self.inner)]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inner.forward(x)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output + self.inner.backward(grad_output)


class TorchResidual(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inner(x)


def test_a_container_that_calls_its_children_itself() -> None:
    inner = Sequential(Linear(4, 6), Tanh(), Linear(6, 4))
    ours = Sequential(Linear(3, 4), Residual(inner), ReLU(), Linear(4, 2))
    theirs = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        TorchResidual(
            torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4))
        ),
        torch.nn.ReLU(),
        torch.nn.Linear(4, 2),
    )
    check_against_twin(ours, theirs, (3,))
    names = [r["name"] for r in minidl.summary(ours, (3,)).rows]
    assert names[:6] == ["0", "1", "1.inner", "1.inner.0", "1.inner.1", "1.inner.2"]
    assert "forward" not in vars(inner)  # the probe's recorder is gone


class Noisy(ModuleBase):
    """Draws random numbers and moves a running mean in training mode only."""

    def __init__(self) -> None:
        self.register_buffer("running", torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.running += x.mean()
            return x + torch.rand_like(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output


@pytest.mark.parametrize("training", [True, False])
def test_the_probe_draws_nothing_moves_nothing_and_keeps_the_mode(training: bool) -> None:
    noisy = Noisy()
    model = Sequential(Linear(2, 3), noisy, ReLU())
    model.train(training)
    rng = torch.get_rng_state()
    found = minidl.summary(model, (2,))
    assert torch.equal(torch.get_rng_state(), rng)
    assert float(noisy.running) == 0.0
    assert model.training is training and noisy.training is training
    assert found.non_trainable_parameters == 1


def test_dtype_and_a_single_layer() -> None:
    layer = Linear(5, 2).to(torch.float64)
    found = minidl.summary(layer, 5)
    assert found.rows == [
        {
            "name": "",
            "layer": "linear",
            "depth": 0,
            "output_shape": [2],
            "parameters": 12,
            "buffers": 0,
        }
    ]
    assert json.loads(json.dumps(found.as_dict()))["trainable_parameters"] == 12


def test_an_input_the_model_cannot_take_names_the_layer() -> None:
    model = Sequential(Linear(2, 3), ReLU(), Linear(4, 1))
    with pytest.raises(
        ValueError, match=r"layer 2 \(linear\) cannot take an input of shape \(3,\)"
    ):
        minidl.summary(model, (2,))
    with pytest.raises(ValueError, match="input_shape must be positive integers"):
        minidl.summary(model, (0,))


# ------------------------------------------------------------------------------------- CLI


def test_cli_summary_of_the_seed_network(invoke: Callable[..., Result]) -> None:
    text = invoke("summary").stdout
    net = torch_twin(setup(TrainConfig()).model)
    total = sum(p.numel() for p in net.parameters())
    assert f"total parameters {total:,}: trainable {total:,}" in text
    document = json.loads(invoke("summary", "--json").stdout)
    assert document["total_parameters"] == document["trainable_parameters"] == total == 1401
    assert (
        document["model"]
        == "linear(25), relu, linear(25), relu, linear(25), relu, linear(1), sigmoid"
    )


def test_cli_summary_builds_what_train_builds(invoke: Callable[..., Result], tmp_path: Any) -> None:
    options = ["--hidden", "6,5", "--activation", "tanh", "--standardize", "--n-train", "50"]
    document = json.loads(invoke("summary", *options, "--json").stdout)
    trained = json.loads(
        invoke(
            "train", *options, "--epochs", "1", "--n-test", "20", "--out", str(tmp_path), "--json"
        ).stdout
    )
    model, _ = minidl.load_model(tmp_path)
    net = torch_twin(model)
    assert document["model"] == trained["config"]["model"]
    assert [r["layer"] for r in document["rows"]] == [
        minidl.registry.name_of("layer", type(layer)) for layer in model.layers
    ]
    assert document["total_parameters"] == sum(p.numel() for p in net.parameters())
    assert [r["output_shape"] for r in document["rows"]] == list(torch_shapes(net, (2,)).values())


def test_cli_summary_of_a_classifier_on_a_csv(invoke: Callable[..., Result], tmp_path: Any) -> None:
    rows = [f"{i / 10},{(i % 3) / 3},{i % 3}" for i in range(30)]
    (tmp_path / "three.csv").write_text("\n".join(rows) + "\n")
    document = json.loads(
        invoke(
            "summary",
            "--data",
            str(tmp_path / "three.csv"),
            "--loss",
            "cross_entropy",
            "--hidden",
            "4",
            "--json",
        ).stdout
    )
    assert document["rows"][-1]["output_shape"] == [3]  # one logit per class, as train builds


def test_cli_summary_takes_no_training_options(invoke: Callable[..., Result]) -> None:
    for option in ("--epochs", "--lr", "--optimizer", "--out"):
        assert "No such option" in invoke("summary", option, "1", code=2).stderr
