"""LeakyReLU, written against the Module protocol alone: no base class."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class LeakyReLU:
    """``x`` where ``x > 0``, else ``slope * x`` (``torch.nn.LeakyReLU``'s negative_slope)."""

    def __init__(self, slope: float = 0.01) -> None:
        if (
            isinstance(slope, bool)
            or not isinstance(slope, (int, float))
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

    def parameters(self) -> list:
        return []

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope:g})"
