"""Sequential: any object with forward, backward and parameters is a module; the in-place fast
paths and backward_parameters change no result; clear errors for what is not a module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from layers import Scale
from torch import Tensor

import minidl
from minidl import Parameter, Sequential, hookimpl
from minidl.plugins import MSE, SGD, Linear, ReLU, Sigmoid, Standardize, Tanh
from minidl.plugins.datasets import disc

F64 = torch.float64


class Identity:
    """Returns its very input (so it must not say returns_fresh)."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output

    def parameters(self) -> list[Parameter]:
        return []


def model_f64() -> Sequential:
    torch.manual_seed(0)
    return Sequential(Linear(2, 4), Scale(4), Tanh(), Linear(4, 1), Sigmoid()).to(dtype=F64)


def reference(model: Sequential) -> tuple[list[Tensor], Callable[..., Tensor]]:
    """The same network as torch leaves and a functional forward, for autograd."""
    leaves = [p.data.clone().requires_grad_(True) for p in model.parameters()]

    def forward(x: Tensor, w1, b1, s, w2, b2) -> Tensor:  # type: ignore[no-untyped-def]
        h = torch.tanh(torch.nn.functional.linear(x, w1, b1) * s)
        return torch.sigmoid(torch.nn.functional.linear(h, w2, b2))

    return leaves, forward


def test_third_party_layer_in_sequential_equals_autograd() -> None:
    model = model_f64()
    assert isinstance(model[1], minidl.Module)  # the runtime protocol check accepts it
    x = torch.rand(16, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = (x[:, :1] > 0.5).to(F64)
    leaves, forward = reference(model)
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        ref = torch.nn.functional.mse_loss(forward(xr, *leaves), y)
        ref.backward()
    loss = MSE()
    value = loss.forward(model(x), y)
    dx = model.backward(loss.backward())
    torch.testing.assert_close(value, ref.detach(), rtol=1e-9, atol=0)
    torch.testing.assert_close(dx, xr.grad, rtol=1e-9, atol=1e-15)
    for p, q in zip(model.parameters(), leaves, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-15)


def test_third_party_layer_trains_with_fit_like_autograd_sgd() -> None:
    model = model_f64()
    leaves, forward = reference(model)
    data = disc(60, torch.Generator().manual_seed(2)).to(dtype=F64)
    history = minidl.fit(
        model, MSE(), SGD(model.parameters(), lr=0.5), data, epochs=3, batch_size=20, seed=7
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # The reference: fit's batches (same generator), autograd, a hand-written SGD step.
    generator = torch.Generator().manual_seed(7)
    with torch.enable_grad():
        for _ in range(3):
            order = torch.randperm(60, generator=generator)
            for start in range(0, 60, 20):
                idx = order[start : start + 20]
                loss = torch.nn.functional.mse_loss(forward(data.x[idx], *leaves), data.y[idx])
                grads = torch.autograd.grad(loss, leaves)
                with torch.no_grad():
                    for leaf, g in zip(leaves, grads, strict=True):
                        leaf -= 0.5 * g
    for p, q in zip(model.parameters(), leaves, strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)


def test_third_party_layer_through_a_registered_plugin(plugin: Any) -> None:
    class Scaling:
        @hookimpl
        def register_layers(self, register: Callable[[str, Any], None]) -> None:
            register("scale", Scale)

    plugin(Scaling(), "scaling")
    model = minidl.build("linear(3), scale, relu, linear(1), sigmoid", (2,))
    assert isinstance(model[1], Scale) and model[1].w.shape == (3,)  # in_features inferred
    assert model[1].init_args == ((3,), {})  # build records how it was made
    train, _ = minidl.registry.get("dataset", "disc")(seed=0, n_train=100, n_test=10)
    before = model[1].w.data.clone()
    minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.5), train, epochs=2, batch_size=20)
    assert not torch.equal(model[1].w.data, before)  # trained


def test_in_place_paths_are_chosen_only_after_a_fresh_output() -> None:
    model = Sequential(Linear(2, 3), ReLU(), Linear(3, 1), Sigmoid())
    relu, sigmoid = model[1], model[3]
    assert [f.__name__ for f in model._forwards] == ["forward", "forward_", "forward", "forward_"]
    # backward_ on a module whose gradient comes from a Linear's backward (fresh); never on
    # the last module, whose gradient is the loss's.
    assert [b.__name__ for b in model._backwards] == [
        "backward",
        "backward",
        "backward_",
        "backward",
    ]
    assert model._forwards[1].__self__ is relu and model._forwards[3].__self__ is sigmoid
    after_identity = Sequential(Identity(), ReLU(), Standardize([0.0], [1.0]), Tanh())
    assert [f.__name__ for f in after_identity._forwards] == ["forward"] * 4
    assert [b.__name__ for b in after_identity._backwards] == ["backward"] * 4


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, Tanh])
def test_in_place_paths_give_the_same_numbers_and_spare_the_callers_tensors(
    activation: type,
) -> None:
    torch.manual_seed(1)
    layers = [Linear(3, 5), activation(), Linear(5, 2), activation()]
    model = Sequential(*layers)
    x = torch.randn(7, 3)
    g = torch.randn(7, 2)
    x0, g0 = x.clone(), g.clone()
    out = model.forward(x)
    dx = model.backward(g)
    grads = [p.grad.clone() for p in model.parameters()]
    assert torch.equal(x, x0) and torch.equal(g, g0)  # the caller's tensors are untouched
    model.zero_grad()
    # The same layers one at a time, out of place.
    h = x
    for layer in layers:
        h = layer.forward(h)
    assert torch.equal(out, h)
    d = g
    for layer in reversed(layers):
        d = layer.backward(d)
    assert torch.equal(dx, d)
    assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), grads, strict=True))
    # A tensor a module hands on as is (Identity) is never overwritten downstream.
    y = torch.randn(4, 3)
    y0 = y.clone()
    Sequential(Identity(), activation()).forward(y)
    assert torch.equal(y, y0)


def test_backward_parameters_skips_only_the_input_gradient() -> None:
    torch.manual_seed(2)
    model = Sequential(Linear(2, 4), Tanh(), Linear(4, 1))
    x, g = torch.randn(5, 2, dtype=torch.float32), torch.randn(5, 1)
    model.forward(x)
    model.backward(g)
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    calls: list[str] = []
    first = model[0]
    original = first.backward
    first.backward = lambda grad: calls.append("backward") or original(grad)  # type: ignore[method-assign]
    model.forward(x)
    assert model.backward_parameters(g) is None
    assert calls == []  # the first layer's input gradient was never computed
    assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), expected, strict=True))


def test_backward_parameters_without_the_first_modules_support_is_backward() -> None:
    torch.manual_seed(3)
    model = Sequential(Scale(2), Linear(2, 1))
    x, g = torch.randn(4, 2), torch.randn(4, 1)
    model.forward(x)
    model.backward(g)
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.forward(x)
    model.backward_parameters(g)
    assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), expected, strict=True))
    assert model[1].bias.grad.any()
    empty = Sequential()
    assert torch.equal(empty.forward(torch.ones(2, 1)), torch.ones(2, 1)) and len(empty) == 0


class Probe:
    """Passes its input and gradient through, noting whether its backward ran under
    torch.inference_mode(); with ``fail``, its backward raises."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.seen = fail, []

    def forward(self, x: Tensor) -> Tensor:
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        self.seen.append(torch.is_inference_mode_enabled())
        if self.fail:
            raise RuntimeError("probe failed")
        return grad_output

    def parameters(self) -> list[Parameter]:
        return []


def test_backward_runs_in_inference_mode_and_hands_back_ordinary_tensors() -> None:
    torch.manual_seed(4)
    probe = Probe()
    model = Sequential(Linear(3, 4), ReLU(), Sequential(Linear(4, 4), probe, Tanh()), Linear(4, 2))
    x = torch.randn(5, 3)
    model.forward(x)
    grad = model.backward(torch.randn(5, 2))
    assert probe.seen == [True] and not torch.is_inference_mode_enabled()
    # What it hands back and what it leaves in the gradients are ordinary tensors: the
    # caller may change them in place, and torch's autograd may record them.
    assert not grad.is_inference()
    grad.mul_(2)
    weight = torch.ones(3, requires_grad=True)
    (grad * weight).sum().backward()
    assert torch.equal(weight.grad, grad.sum(0))
    for p in model.parameters():
        assert not p.grad.is_inference()
        p.grad.mul_(0.5)
    model.backward_parameters(torch.randn(5, 2))
    assert probe.seen == [True, True] and not torch.is_inference_mode_enabled()


def test_a_backward_that_raises_leaves_inference_mode() -> None:
    model = Sequential(Linear(2, 2), Probe(fail=True))
    model.forward(torch.randn(3, 2))
    for backward in (model.backward, model.backward_parameters):
        with pytest.raises(RuntimeError, match="probe failed"):
            backward(torch.ones(3, 2))
        assert not torch.is_inference_mode_enabled()


def test_non_modules_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(TypeError) as info:
        Sequential(Linear(2, 3), "relu")  # type: ignore[arg-type]
    assert str(info.value) == (
        "Sequential item 1: str object is not a module: it lacks forward, backward, parameters "
        "(a module needs forward, backward and parameters)"
    )

    class ForwardOnly:
        def forward(self, x: Tensor) -> Tensor:
            return x

    with pytest.raises(
        TypeError,
        match="Sequential item 0: ForwardOnly object is not a module: it lacks backward, parameters",
    ):
        Sequential(ForwardOnly())  # type: ignore[arg-type]
    assert not isinstance(ForwardOnly(), minidl.Module)


def test_a_layer_factory_returning_a_non_module_is_a_spec_error(plugin: Any) -> None:
    class ForwardOnly:
        def forward(self, x: Tensor) -> Tensor:
            return x

    class Half:
        @hookimpl
        def register_layers(self, register: Callable[[str, Any], None]) -> None:
            register("forward_only", ForwardOnly)

    plugin(Half(), "half")
    with pytest.raises(
        minidl.SpecError,
        match=r"model spec item 2: model spec item 2 \(forward_only\): ForwardOnly object is not a module: it lacks backward, parameters",
    ):
        minidl.build("linear(2), forward_only", (2,))


def test_to_dtype_moves_every_parameter_gradient_and_constant() -> None:
    torch.manual_seed(0)
    model = Sequential(Standardize([1.0, 2.0], [3.0, 4.0]), Linear(2, 3), Scale(3), Sigmoid())
    assert model.to(dtype=F64) is model
    assert len(model.parameters()) == 3
    assert {p.data.dtype for p in model.parameters()} == {F64}
    assert {p.grad.dtype for p in model.parameters()} == {F64}
    assert not any(p.grad.any() for p in model.parameters())
    x = torch.randn(4, 2, dtype=F64)
    assert model(x).dtype == F64 and model[0].mean.dtype == F64
    model.to(dtype=torch.float32)
    assert model(x.float()).dtype == torch.float32
    assert model[0].mean.dtype == torch.float32


def test_sequential_is_a_module_and_nests() -> None:
    torch.manual_seed(0)
    inner = Sequential(Linear(3, 4), ReLU())
    outer = Sequential(inner, Linear(4, 2))
    assert isinstance(outer, minidl.Module) and isinstance(inner, minidl.Module)
    assert len(outer) == 2 and outer[0] is inner and outer[-1] is outer.layers[1]
    assert outer.parameters() == [*inner.parameters(), *outer[1].parameters()]
    flat = Sequential(inner[0], inner[1], outer[1])
    x, g = torch.randn(5, 3), torch.randn(5, 2)
    assert torch.equal(outer(x), flat.forward(x))
    dx = outer.backward(g)
    grads = [p.grad.clone() for p in outer.parameters()]
    outer.zero_grad()
    flat.forward(x)
    assert torch.equal(flat.backward(g), dx)
    assert all(torch.equal(p.grad, q) for p, q in zip(flat.parameters(), grads, strict=True))


def test_repr_lists_the_layers_indented_like_torch() -> None:
    inner = Sequential(Linear(3, 4, bias=False), ReLU())
    outer = Sequential(inner, Linear(4, 2), Tanh())
    reference = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU()),
        torch.nn.Linear(4, 2),
        torch.nn.Tanh(),
    )
    # torch writes "bias=True" where minidl leaves the default out.
    assert repr(outer) == repr(reference).replace(", bias=True", "")
    assert (
        repr(outer).splitlines()[2] == "    (0): Linear(in_features=3, out_features=4, bias=False)"
    )
    assert repr(Sequential(Standardize([0.0, 0.0], [1.0, 1.0]))) == (
        "Sequential(\n  (0): Standardize(features=2)\n)"
    )
