"""The Module protocol: anything with forward, backward and parameters is a module.

``Scale`` below is a third-party layer with no base class and a trainable parameter; it
must work in Sequential, in minidl.fit and, once registered by a plugin, in model specs
and minidl.run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_registry import make_plugin, registry_state

import minidl
from minidl import Parameter, Sequential, registry
from minidl.plugins import MSE, SGD, Linear, ReLU, Sigmoid, Standardize, Tanh

F64 = torch.float64


class Scale:
    """``y = x * w`` feature-wise; no base class, only the three protocol methods."""

    def __init__(self, in_features: int) -> None:
        self.w = Parameter(torch.linspace(0.5, 1.5, in_features), "w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.x = x
        return x * self.w.data

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        self.w.grad += (grad_output * self.x).sum(0)
        return grad_output * self.w.data

    def parameters(self) -> list[Parameter]:
        return [self.w]


def register_scale(register: Callable[[str, Any], None]) -> None:
    register("scale", Scale)


def _model() -> Sequential:
    torch.manual_seed(0)
    return Sequential(Linear(2, 4), Scale(4), Tanh(), Linear(4, 1), Sigmoid()).to(dtype=F64)


def _reference(model: Sequential) -> tuple[list[torch.Tensor], Callable[..., torch.Tensor]]:
    """The same network as torch leaves and a functional forward, for autograd."""
    leaves = [p.data.clone().requires_grad_(True) for p in model.parameters()]

    def forward(x: torch.Tensor, w1, b1, s, w2, b2) -> torch.Tensor:  # type: ignore[no-untyped-def]
        h = torch.tanh(torch.nn.functional.linear(x, w1, b1) * s)
        return torch.sigmoid(torch.nn.functional.linear(h, w2, b2))

    return leaves, forward


def test_third_party_layer_in_sequential_equals_autograd() -> None:
    model = _model()
    assert isinstance(model[1], minidl.Module)  # the runtime protocol check accepts it
    x = torch.rand(16, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = (x[:, :1] > 0.5).to(F64)
    leaves, forward = _reference(model)
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
    model = _model()
    leaves, forward = _reference(model)
    data = minidl.data.disc(60, torch.Generator().manual_seed(2)).to(dtype=F64)
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


def test_third_party_layer_through_a_registered_plugin() -> None:
    with registry_state():
        registry.pm.register(make_plugin("scaling", register_layers=register_scale), name="scaling")
        try:
            model = minidl.build_model("linear(3), scale, relu, linear(1), sigmoid", 2)
            assert isinstance(model[1], Scale) and model[1].w.shape == (3,)  # in_features inferred
            assert [str(s) for s in model.spec or []] == [
                "linear(2, 3)",
                "scale(3)",
                "relu",
                "linear(3, 1)",
                "sigmoid",
            ]
            result = minidl.run(
                model="linear(3), scale, relu, linear(1), sigmoid",
                epochs=2,
                n_train=100,
                n_test=100,
            )
            assert len(result.history) == 2
            assert isinstance(result.model[1], Scale)
            assert not torch.equal(result.model[1].w.data, torch.linspace(0.5, 1.5, 3))  # trained
        finally:
            registry.pm.unregister(name="scaling")


class ForwardOnly:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_non_modules_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(TypeError) as info:
        Sequential(Linear(2, 3), "relu")  # type: ignore[arg-type]
    assert str(info.value) == (
        "Sequential item 1: str object is not a module: it lacks forward, backward, parameters "
        "(a module needs forward, backward and parameters)"
    )
    with pytest.raises(
        TypeError,
        match="Sequential item 0: ForwardOnly object is not a module: it lacks backward, parameters",
    ):
        Sequential(ForwardOnly())  # type: ignore[arg-type]
    assert not isinstance(ForwardOnly(), minidl.Module)


def test_a_layer_factory_returning_a_non_module_is_a_spec_error() -> None:
    def register_layers(register: Callable[[str, Any], None]) -> None:
        register("forward_only", ForwardOnly)

    with registry_state():
        registry.pm.register(make_plugin("half", register_layers=register_layers), name="half")
        with pytest.raises(
            minidl.SpecError,
            match=r"model spec item 2 \(forward_only\): ForwardOnly object is not a module: it lacks backward, parameters",
        ):
            minidl.build_model("linear(2), forward_only", 2)


def test_every_grad_is_a_zero_tensor_from_construction() -> None:
    torch.manual_seed(0)
    p = Parameter(torch.randn(3, 2, dtype=F64))
    assert p.grad is not None and torch.equal(p.grad, torch.zeros(3, 2, dtype=F64))
    model = Sequential(
        Standardize([0.0, 0.0], [1.0, 1.0]), Linear(2, 5), ReLU(), Scale(5), Linear(5, 1)
    )
    for module in (model, model.to(dtype=F64)):
        params = module.parameters()
        assert len(params) == 5
        for q in params:
            assert isinstance(q.grad, torch.Tensor)
            assert q.grad.shape == q.data.shape and q.grad.dtype == q.data.dtype
            assert not q.grad.any()


def test_zero_grad_resets_gradients_and_never_weights() -> None:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 4), Tanh(), Linear(4, 1))
    loss = MSE()
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    weights = [p.data.clone() for p in model.parameters()]
    for zero_grad in (
        model.zero_grad,
        model[0].zero_grad,
        SGD(model.parameters(), lr=0.1).zero_grad,
    ):
        loss.forward(model(x), y)
        model.backward(loss.backward())
        assert any(p.grad.any() for p in model[0].parameters())
        zero_grad()
        for p in model[0].parameters():
            assert not p.grad.any()
        for p, w in zip(model.parameters(), weights, strict=True):
            assert torch.equal(p.data, w)


def test_to_dtype_moves_every_parameter_and_constant() -> None:
    torch.manual_seed(0)
    model = Sequential(Standardize([1.0, 2.0], [3.0, 4.0]), Linear(2, 3), Scale(3), Sigmoid())
    assert model.to(dtype=F64) is model
    assert {p.data.dtype for p in model.parameters()} == {F64}
    assert {p.grad.dtype for p in model.parameters()} == {F64}
    x = torch.randn(4, 2, dtype=F64)
    assert model(x).dtype == F64
    model.to(dtype=torch.float32)
    assert model(x.float()).dtype == torch.float32
    assert model[0].mean.dtype == torch.float32


def test_sequential_is_a_module_and_nests() -> None:
    torch.manual_seed(0)
    inner = Sequential(Linear(3, 4), ReLU())
    outer = Sequential(inner, Linear(4, 2))
    assert isinstance(outer, minidl.Module) and isinstance(inner, minidl.Module)
    assert len(outer) == 2 and outer[0] is inner
    assert outer.parameters() == [*inner.parameters(), *outer[1].parameters()]
    flat = Sequential(inner[0], inner[1], outer[1])
    x, g = torch.randn(5, 3), torch.randn(5, 2)
    assert torch.equal(outer(x), flat.forward(x))
    dx = outer.backward(g)
    grads = [p.grad.clone() for p in outer.parameters()]
    outer.zero_grad()
    assert torch.equal(flat.backward(g), dx)
    assert all(torch.equal(p.grad, q) for p, q in zip(flat.parameters(), grads, strict=True))
    assert repr(outer).startswith("Sequential(\n  (0): Sequential(")
    assert "(1): Linear(in_features=4, out_features=2)" in repr(outer)
