"""LeakyReLU, a layer that subclasses minidl.ModuleBase: the base records the arguments it
was made with, so a model that uses it can be saved and loaded again."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minidl import ModuleBase


class LeakyReLU(ModuleBase):
    """``x`` where ``x > 0``, else ``slope * x`` (``torch.nn.LeakyReLU``'s negative_slope).
    In a spec: ``leaky_relu``, ``leaky_relu(0.05)`` or ``leaky_relu(slope=0.05)``."""

    def __init__(self, slope: float = 0.01) -> None:
        if (
            isinstance(slope, bool)
            or not isinstance(slope, int | float)
            or not math.isfinite(slope)
        ):
            raise ValueError(f"leaky_relu slope must be a finite number, got {slope!r}")
        self.slope = float(slope)
        self._positive: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self._positive = x > 0  # a boolean mask is all backward needs
        return torch.where(self._positive, x, x * self.slope)

    def backward(self, grad_output: Tensor) -> Tensor:
        if self._positive is None:
            raise RuntimeError("LeakyReLU.backward called before forward")
        return torch.where(self._positive, grad_output, grad_output * self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope:g}"
