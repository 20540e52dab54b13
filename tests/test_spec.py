"""Model specs: ``"linear(25), relu, linear(1), sigmoid"`` to a Sequential of registered layers."""

from __future__ import annotations

import pytest
import torch

import minidl
from minidl.plugins import Linear, ReLU, Sigmoid, Standardize, Tanh
from minidl.spec import LayerSpec, mlp, parse


def test_parse_names_arguments_and_keywords() -> None:
    specs = parse("Linear(25, init='he', gain=0.5), relu, standardize([0.5, 1], [2.0, 3]), Tanh")
    assert specs == [
        LayerSpec("linear", [25], {"init": "he", "gain": 0.5}),
        LayerSpec("relu"),
        LayerSpec("standardize", [[0.5, 1], [2.0, 3]]),
        LayerSpec("tanh"),
    ]
    # str() writes the same syntax back, so a resolved spec can be printed and re-read.
    assert parse(", ".join(map(str, specs))) == specs


@pytest.mark.parametrize(
    "spec,column,message",
    [
        ("linear(25), relu,, linear(1)", 18, "invalid syntax"),
        ("relu, 3", 7, "expected a layer name or name(arguments)"),
        ("relu, foo.bar", 7, "expected a layer name or name(arguments)"),
        ("linear(x), relu", 8, "layer arguments must be literal"),
        ("relu, linear(25, init=he)", 23, "quote strings: 'he'"),
        ("linear(2", 9, "'(' was never closed"),
        ("relu)", 5, "unmatched ')'"),
        ("linear(**kw)", 8, "'**' is not allowed"),
    ],
)
def test_parse_errors_point_at_the_column(spec: str, column: int, message: str) -> None:
    with pytest.raises(minidl.SpecError) as info:
        parse(spec)
    text = str(info.value)
    head, shown, caret = text.split("\n")
    assert message in head and head.endswith(f"at column {column}:")
    assert shown == f"  {spec}"
    assert caret == "  " + " " * (column - 1) + "^"
    assert "]" not in head or "]" in spec  # nothing about the brackets parse() adds


def test_empty_spec_gives_an_example() -> None:
    with pytest.raises(minidl.SpecError, match="model spec is empty; example: 'linear"):
        parse("  ")


def test_build_infers_in_features_from_the_previous_layer() -> None:
    model = minidl.build_model("linear(25), relu, linear(25), tanh, linear(1), sigmoid", 2)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(25, 2), (25,), (25, 25), (25,), (1, 25), (1,)]
    assert [type(m) for m in model.layers] == [Linear, ReLU, Linear, Tanh, Linear, Sigmoid]
    assert [str(s) for s in model.spec or []] == [
        "linear(2, 25)",
        "relu",
        "linear(25, 25)",
        "tanh",
        "linear(25, 1)",
        "sigmoid",
    ]
    # The resolved spec rebuilds the same architecture with no input size given.
    again = minidl.build_model(model.spec or [], None)
    assert [tuple(p.shape) for p in again.parameters()] == shapes


def test_build_takes_the_width_from_standardize_and_respects_explicit_sizes() -> None:
    model = minidl.build_model("standardize([0, 0, 0], [1, 1, 1]), linear(4)", 3)
    assert isinstance(model[0], Standardize) and model[1].weight.shape == (4, 3)
    explicit = minidl.build_model("linear(in_features=5, out_features=2)", 3)
    assert explicit[0].weight.shape == (2, 5)


def test_build_draws_weights_like_the_hand_built_model() -> None:
    torch.manual_seed(0)
    built = minidl.build_model(mlp([25, 25, 25]), 2)
    torch.manual_seed(0)
    by_hand = minidl.Sequential(
        Linear(2, 25),
        ReLU(),
        Linear(25, 25),
        ReLU(),
        Linear(25, 25),
        ReLU(),
        Linear(25, 1),
        Sigmoid(),
    )
    for p, q in zip(built.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(p.data, q.data)


def test_mlp_is_the_seeds_network_family() -> None:
    assert mlp([25, 25, 25]) == (
        "linear(25), relu, linear(25), relu, linear(25), relu, linear(1), sigmoid"
    )
    assert mlp([8], "tanh", outputs=3, output="") == "linear(8), tanh, linear(3)"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("linear(4), relux", "model spec item 2: unknown layer 'relux'; available: linear, relu, "),
        (
            "linear(-1)",
            "model spec item 1: cannot build linear(2, -1): Linear out_features must be a positive integer, got -1",
        ),
        ("linear(4, 5)", "model spec item 1: cannot build linear(2, 4, 5): "),
        ("linear(4, init='glorot')", "unknown initializer 'glorot'; available: "),
        ("relu(3)", "model spec item 1: cannot build relu(3): "),
    ],
)
def test_build_errors_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(minidl.MinidlError) as info:
        minidl.build_model(spec, 2)
    assert message in str(info.value)
