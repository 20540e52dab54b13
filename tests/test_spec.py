"""Specs: ``"linear(25), relu, linear(1), sigmoid"`` to a Sequential of registered layers, and
``"adam(eps=1e-6)"`` to any registered factory with its settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import minidl
from minidl import ModuleBase, Parameter, Spec, SpecError, hookimpl
from minidl.plugins import SGD, Adam, Linear, ReLU, Sigmoid, Standardize, Tanh
from minidl.plugins.datasets import disc_dataset
from minidl.plugins.initializers import default as default_init
from minidl.plugins.schedules import step as step_schedule
from minidl.spec import create, parse, parse_one, settings

# ---------------------------------------------------------------------------- parse


def test_parse_names_arguments_and_keywords() -> None:
    specs = parse("Linear(25, init='he', gain=0.5), relu, standardize([0.5, 1], [2.0, 3]), Tanh")
    assert specs == [
        Spec("linear", [25], {"init": "he", "gain": 0.5}),
        Spec("relu"),
        Spec("standardize", [[0.5, 1], [2.0, 3]]),
        Spec("tanh"),
    ]
    # str() writes the same syntax back, so a resolved spec can be printed and re-read.
    assert str(specs[0]) == "linear(25, init='he', gain=0.5)" and str(specs[1]) == "relu"
    assert parse(", ".join(map(str, specs))) == specs


@pytest.mark.parametrize(
    "spec,column,message",
    [
        ("linear(25), relu,, linear(1)", 18, "invalid syntax"),
        ("relu, 3", 7, "expected a name or name(arguments)"),
        ("relu, foo.bar", 7, "expected a name or name(arguments)"),
        ("relu, 'a'", 7, "expected a name or name(arguments)"),
        ("linear(1)(2)", 1, "expected a name or name(arguments)"),
        ("linear(x.y), relu", 8, "arguments must be literal numbers, strings, lists or dicts"),
        ("residual(relu, linear(4)(2))", 16, "expected a name or name(arguments)"),
        ("residual(relu, linear(init=x))", 28, "quote strings: 'x'"),
        ("linear(*a)", 8, "arguments must be literal"),
        ("relu, linear(25, init=he)", 23, "quote strings: 'he'"),
        ("linear(2", 9, "'(' was never closed"),
        ("relu)", 5, "unmatched ')'"),
        ("linear(**kw)", 8, "'**' is not allowed"),
        ("linear(25) relu", 12, "a comma is missing before 'relu'"),
        ("linear(25), relu linear(1)", 18, "a comma is missing before 'linear'"),
    ],
)
def test_parse_errors_point_at_the_column(spec: str, column: int, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(spec)
    text = str(info.value)
    head, shown, caret = text.split("\n")
    assert head.startswith("model spec: ")
    assert message in head and head.endswith(f"at column {column}:")
    assert shown == f"  {spec}"
    assert caret == "  " + " " * (column - 1) + "^"
    assert "]" not in head or "]" in spec  # nothing about the brackets parse() adds


def test_empty_specs_say_what_to_give() -> None:
    with pytest.raises(SpecError, match="model spec is empty; give registered names"):
        parse("  ")
    with pytest.raises(SpecError, match="optimizer spec is empty; give registered names"):
        parse_one("", "optimizer")


def test_parse_one_takes_exactly_one_item() -> None:
    assert parse_one("adam(eps=1e-6)", "optimizer") == Spec("adam", [], {"eps": 1e-6})
    item = Spec("sgd")
    assert parse_one(item, "optimizer") is item
    with pytest.raises(SpecError, match="optimizer spec 'adam, sgd' names 2 optimizers; give one"):
        parse_one("adam, sgd", "optimizer")
    with pytest.raises(SpecError, match="^optimizer spec: invalid syntax"):
        parse_one("adam(", "optimizer")


# ---------------------------------------------------------------------------- create, settings


def params() -> list[Parameter]:
    return [Parameter(torch.zeros(3))]


def test_create_passes_the_leading_arguments_and_the_specs_settings() -> None:
    opt = create("optimizer", "adam(eps=1e-6, betas=[0.8, 0.9])", params(), lr=0.01)
    assert isinstance(opt, Adam)
    assert (opt.lr, opt.eps, opt.beta1, opt.beta2, opt.weight_decay) == (0.01, 1e-6, 0.8, 0.9, 0.0)
    assert isinstance(create("optimizer", "SGD", params(), lr=0.5), SGD)
    lr_at = create("schedule", "step(step_size=2, gamma=0.5)", 1.0, 10)
    assert [lr_at(e) for e in (1, 2, 3, 5)] == [1.0, 1.0, 0.5, 0.25]
    train, test = create("dataset", "disc(n_train=5, n_test=3)", seed=1)
    assert (len(train), len(test)) == (5, 3)
    layer = create("layer", "linear(2, 3, bias=False)")
    assert isinstance(layer, Linear) and layer.bias is None
    # A spec's keyword wins over one minidl passes (a spec is what the user wrote).
    assert create("optimizer", Spec("sgd", [], {"lr": 0.25}), params(), lr=0.5).lr == 0.25


def test_an_unknown_setting_names_the_factory_the_keyword_and_the_accepted_ones() -> None:
    with pytest.raises(SpecError) as info:
        create("optimizer", "adam(epsilon=1e-6)", params(), lr=0.1)
    assert str(info.value) == (
        "optimizer 'adam' has no setting 'epsilon'; its settings: betas, eps, weight_decay"
    )
    with pytest.raises(
        SpecError,
        match="optimizer 'sgd' has no setting 'beta'; its settings: momentum, dampening, nesterov, weight_decay",
    ):
        create("optimizer", "sgd(beta=0.9)", params(), lr=0.1)
    with pytest.raises(
        SpecError, match="schedule 'cosine' has no setting 'gamma'; its settings: min_lr, warmup"
    ):
        create("schedule", "cosine(gamma=0.1)", 1.0, 10)


def test_create_names_unknown_names_and_failing_factories() -> None:
    with pytest.raises(SpecError) as info:
        create("optimizer", "rmsprop", params(), lr=0.1)
    names = ", ".join(minidl.registry.names("optimizer"))
    assert str(info.value) == f"unknown optimizer 'rmsprop'. Available names: {names}"
    with pytest.raises(
        SpecError,
        match=r"cannot make optimizer adam\(betas=\[2, 0.9\]\): beta1 must be in \[0, 1\), got 2",
    ):
        create("optimizer", "adam(betas=[2, 0.9])", params(), lr=0.1)
    with pytest.raises(
        SpecError, match="unknown kind 'optimiser'. Available names: callback, dataset, "
    ):
        create("optimiser", "adam")


def test_settings_leave_out_what_minidl_passes() -> None:
    assert settings(Adam, "optimizer") == {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    assert settings(SGD, "optimizer") == {
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
    }
    assert settings(step_schedule, "schedule") == {"step_size": 30, "gamma": 0.1}
    assert settings(default_init, "initializer") == {"gain": 1.0}
    assert settings(disc_dataset, "dataset") == {"n_train": 1000, "n_test": 1000}
    # A layer's settings are its parameters but the size a spec infers; required ones are None.
    linear = settings(Linear, "layer")
    assert list(linear)[:4] == ["out_features", "bias", "init", "gain"]
    assert linear["out_features"] is None and linear["bias"] is True
    assert settings(object()) == {}  # no signature: no settings, no crash


# ---------------------------------------------------------------------------- build


class Mix(ModuleBase):
    """A 1x1 convolution: mixes the channels (dimension 1) of any (N, C, ...) input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        self.weight = Parameter(torch.randn(out_channels, in_channels), "weight")

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("oc,nc...->no...", self.weight.data, x)

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError


class FlattenForTest(ModuleBase):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError


class Noisy(ModuleBase):
    """In training: adds noise and counts its calls in a buffer; in eval: the identity."""

    def __init__(self) -> None:
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.register_buffer("running", torch.zeros(()))
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        if not self.training:
            return x
        self.calls += 1
        self.running.add_(x.mean())
        return x + torch.randn_like(x)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output


@pytest.fixture
def test_layers(plugin: Callable[[object, str], str]) -> None:
    class TestLayers:
        @hookimpl
        def register_layers(self, register: Callable[[str, Any], None]) -> None:
            register("mix1x1", Mix)
            register("flatten_for_test", FlattenForTest)
            register("noisy", Noisy)

    plugin(TestLayers(), "test-layers")


def test_build_infers_in_features_from_the_last_dimension() -> None:
    model = minidl.build("linear(25), relu, linear(25), tanh, linear(1), sigmoid", (2,))
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(25, 2), (25,), (25, 25), (25,), (1, 25), (1,)]
    assert [type(m) for m in model.layers] == [Linear, ReLU, Linear, Tanh, Linear, Sigmoid]
    assert [m.init_args for m in model.layers[::2]] == [
        ((2, 25), {}),
        ((25, 25), {}),
        ((25, 1), {}),
    ]
    # The recorded arguments rebuild the same architecture with no input shape given.
    again = minidl.build([Spec("linear", [2, 25]), Spec("relu"), Spec("linear", [25, 1])], None)
    assert [tuple(p.shape) for p in again.parameters()] == [(25, 2), (25,), (1, 25), (1,)]


def test_build_infers_in_channels_from_dimension_1(test_layers: None) -> None:
    torch.manual_seed(0)
    model = minidl.build("mix1x1(4), relu, flatten_for_test, linear(5)", (3, 6, 6))
    assert model[0].weight.shape == (4, 3)  # in_channels: dimension 1 of (N, 3, 6, 6)
    assert model[3].weight.shape == (5, 4 * 6 * 6)  # in_features: the flattened last dim
    assert model.forward(torch.rand(2, 3, 6, 6)).shape == (2, 5)
    assert model[0].init_args == ((3, 4), {})


def test_build_takes_the_width_from_standardize_and_respects_explicit_sizes() -> None:
    model = minidl.build("standardize([0, 0, 0], [1, 1, 1]), linear(4)", (3,))
    assert isinstance(model[0], Standardize) and model[1].weight.shape == (4, 3)
    explicit = minidl.build("linear(in_features=3, out_features=2)", (3,))
    assert explicit[0].weight.shape == (2, 3)
    as_stands = minidl.build("linear(5, 2), relu", None)  # nothing inferred, nothing probed
    assert as_stands[0].weight.shape == (2, 5)


def test_the_probe_draws_no_random_number_and_changes_no_buffer(test_layers: None) -> None:
    torch.manual_seed(3)
    model = minidl.build("noisy, linear(3), noisy", (2,))
    after_build = torch.get_rng_state()
    torch.manual_seed(3)
    Noisy(), Linear(2, 3), Noisy()  # the same layers by hand: only Linear draws
    assert torch.equal(after_build, torch.get_rng_state())
    for noisy in (model[0], model[2]):
        assert noisy.modes == [False]  # probed once, in eval mode
        assert noisy.training  # and put back in the mode it had
        assert noisy.calls.item() == 0 and not noisy.running.any()
    model.forward(torch.ones(4, 2))  # in training it does draw and count: the test can fail
    assert model[0].calls.item() == 1 and not torch.equal(after_build, torch.get_rng_state())


def test_a_layer_that_cannot_take_the_probes_shape_is_named(test_layers: None) -> None:
    with pytest.raises(SpecError) as info:
        minidl.build("linear(3), standardize([0, 0], [1, 1])", (2,))
    assert str(info.value).startswith(
        "model spec item 2 (standardize) cannot take an input of shape (3,) (per example): "
        "RuntimeError: "
    )
    with pytest.raises(
        SpecError, match=r"model spec item 1 \(linear\) cannot take an input of shape \(3,\)"
    ):
        minidl.build("linear(in_features=5, out_features=2)", (3,))
    with pytest.raises(
        SpecError, match=r"model spec item 1 \(mix1x1\) cannot take an input of shape \(\)"
    ):
        minidl.build("mix1x1(2)", ())


def test_build_draws_weights_like_the_hand_built_model() -> None:
    torch.manual_seed(0)
    built = minidl.build(
        "linear(25), relu, linear(25), relu, linear(25), relu, linear(1), sigmoid", (2,)
    )
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


@pytest.mark.parametrize(
    "spec,message",
    [
        ("linear(4), relux", "model spec item 2: unknown layer 'relux'. Available names: "),
        ("linear(-1)", "model spec item 1: cannot make layer linear(2, -1): Linear out_features must be a positive integer, got -1"),
        ("linear(4, 5)", "model spec item 1: cannot make layer linear(2, 4, 5): Linear bias must be True or False, got 5"),
        ("linear(4, init='glorot')", "unknown initializer 'glorot'. Available names: "),
        ("linear(4, initialiser='he')", "layer 'linear' has no setting 'initialiser'; its settings: out_features, "),
        ("relu(3)", "model spec item 1: cannot make layer relu(3): "),
    ],
)  # fmt: skip
def test_build_errors_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        minidl.build(spec, (2,))
    assert message in str(info.value)
