"""Layers the tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import Dataset, Module, ModuleBase, Parameter, Sequential, hookimpl


class Scale:
    """``y = x * w`` feature-wise; no base class, only the three protocol methods."""

    def __init__(self, in_features: int) -> None:
        self.w = Parameter(torch.linspace(0.5, 1.5, in_features), "w")

    def forward(self, x: Tensor) -> Tensor:
        self.x = x
        return x * self.w.data

    def backward(self, grad_output: Tensor) -> Tensor:
        self.w.grad += (grad_output * self.x).sum(0)
        return grad_output * self.w.data

    def parameters(self) -> list[Parameter]:
        return [self.w]


class Skip(Sequential):
    """``y = x + f(x)``, ``f`` the chain of its modules: a container as a plugin writes one
    by subclassing Sequential (keys ``0.weight``, ...), registered as ``skip``."""

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)

    # dL/dx = g + J_f^T g: the identity path plus the chain's.
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output + super().backward(grad_output)

    def backward_parameters(self, grad_output: Tensor) -> None:
        super().backward_parameters(grad_output)


class Scaled(ModuleBase):
    """``y = factor * inner(x)``: a container holding its one module as an attribute (keys
    ``inner.weight``), registered as ``scaled``."""

    def __init__(self, inner: Module, factor: float = 2.0) -> None:
        self.inner, self.factor = inner, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.inner.forward(x) * self.factor

    def backward(self, grad_output: Tensor) -> Tensor:
        return self.inner.backward(grad_output * self.factor)


class Lookup:
    """``y = table[ids]``: int64 ids ``(N, ...)`` to vectors ``(N, ..., dim)``; no base
    class. Floats are refused, naming the dtype. Registered as ``lookup``."""

    def __init__(self, num: int, dim: int) -> None:
        self.table = Parameter(torch.linspace(-1, 1, num * dim).reshape(num, dim), "table")
        self.init_args = ((num, dim), {})

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point():
            raise TypeError(f"lookup takes int64 ids, got {x.dtype}")
        self.ids = x
        return self.table.data[x]

    def backward_parameters(self, grad_output: Tensor) -> None:
        dim = self.table.data.shape[1]
        self.table.grad.index_add_(0, self.ids.reshape(-1), grad_output.reshape(-1, dim))

    def backward(self, grad_output: Tensor) -> Tensor:
        self.backward_parameters(grad_output)
        return grad_output.new_zeros(self.ids.shape)  # ids have no gradient: zeros

    def parameters(self) -> list[Parameter]:
        return [self.table]


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    """So that ``minidl-run -p tests/layers.py`` (and every rank it starts) has them."""
    register("skip", Skip)
    register("scaled", Scaled)
    register("lookup", Lookup)


def tokens(seed: int = 0, n_train: int = 96, n_test: int = 48) -> tuple[Dataset, Dataset]:
    """Next-id prediction on int64 sequences of 6 ids out of 7, the first two positions
    (a prompt) ignored (-100); registered as the dataset ``tokens``."""

    def split(n: int, generator: torch.Generator) -> Dataset:
        x = torch.randint(0, 7, (n, 6), generator=generator)
        y = (x + 1) % 7
        y[:, :2] = -100
        return Dataset(x, y)

    generator = torch.Generator().manual_seed(seed)
    return split(n_train, generator), split(n_test, generator)


@hookimpl
def register_datasets(register: Callable[[str, Any], None]) -> None:
    register("tokens", tokens)
