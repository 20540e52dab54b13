"""Layers the tests share."""

from __future__ import annotations

import torch
from torch import Tensor

from minidl import Parameter


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
