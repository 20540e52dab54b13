"""Containers of modules: ``residual(*modules)``, ``y = x + f(x)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from minidl import Sequential, hookimpl
from minidl.protocols import Module


class Residual(Sequential):
    """``y = x + f(x)``, ``f`` the chain of ``modules`` (forward in order, backward in
    reverse). In a model spec: ``residual(layernorm, linear(64), gelu, linear(32))``.

    It is the :class:`minidl.Sequential` of its modules with the input added to the output,
    as a torch user writes ``class Residual(nn.Sequential)`` with ``forward`` returning
    ``x + super().forward(x)``: its parameters are the modules' in order, under the same
    keys (``0.weight``, ``0.bias``, ``1.weight``, ...), and ``residual[i]`` is module ``i``.
    So a ``state_dict`` loads into that torch twin, and from it. ``f`` must keep the shape.
    """

    #: forward() and backward() return new tensors (sums) that it keeps no reference to.
    returns_fresh = True

    # At least one module, which the signature says: a factory that needs no argument is
    # offered as an activation (--activation), and this one is not one.
    def __init__(self, module: Module, *modules: Module) -> None:
        super().__init__(module, *modules)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if out.shape != x.shape:
            raise ValueError(
                f"residual: its modules turn an input of shape {tuple(x.shape)} into "
                f"{tuple(out.shape)}; the output must keep the input's shape to be added to it"
            )
        if self._fresh[-1] and out.stride() == x.stride() and out.dtype == x.dtype:
            return out.add_(x)  # a tensor nobody else holds, still in cache: no new one
        return x + out  # x first: the sum takes x's memory layout, as torch's x + f(x)

    # y = x + f(x): dL/dx = g + J_f^T g, the identity path plus the chain's backward.
    def backward(self, grad_output: Tensor) -> Tensor:
        through = super().backward(grad_output)
        if self._fresh[0]:
            return through.add_(grad_output)  # a tensor nobody else holds: no new one
        return through + grad_output

    def backward_parameters(self, grad_output: Tensor) -> None:
        """The chain's parameter gradients; the identity path has none to add."""
        super().backward_parameters(grad_output)

    def __repr__(self) -> str:
        return "Residual" + super().__repr__().removeprefix("Sequential")


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("residual", Residual)
