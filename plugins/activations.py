"""GELU, the Gaussian error linear unit: ``torch.nn.GELU(approximate=...)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, hookimpl

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_CUBIC = 0.044715


class GELU(ModuleBase):
    """``x * Phi(x)``, Phi the standard normal CDF (``approximate="none"``), or the tanh
    approximation ``x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`` (``"tanh"``,
    GPT-2's)."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._input: Tensor | None = None
        self._gate: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        if self.approximate == "none":
            # Phi(x) = (1 + erf(x / sqrt 2)) / 2
            gate = (x * _SQRT_HALF).erf_().add_(1).mul_(0.5)
        else:
            # t = tanh(u), u = sqrt(2 / pi) (x + 0.044715 x^3); the gate is (1 + t) / 2
            gate = torch.addcmul(x, x * x, x, value=_CUBIC).mul_(_SQRT_2_OVER_PI).tanh_()
        self._gate = gate
        return x * gate if self.approximate == "none" else (gate + 1).mul_(x).mul_(0.5)

    # none: d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    # tanh: d/dx [x (1 + t) / 2] = (1 + t) / 2 + x / 2 (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2).
    def backward(self, grad_output: Tensor) -> Tensor:
        x, gate = self._input, self._gate
        if x is None or gate is None:
            raise RuntimeError("GELU.backward called before forward")
        if self.approximate == "none":
            density = (x * x).mul_(-0.5).exp_().mul_(_INV_SQRT_2PI)
            return density.mul_(x).add_(gate).mul_(grad_output)
        t = gate
        du = (x * x).mul_(3 * _CUBIC).add_(1).mul_(_SQRT_2_OVER_PI)
        slope = torch.addcmul(torch.ones_like(t), t, t, value=-1).mul_(du).mul_(x)
        return slope.add_(t).add_(1).mul_(0.5).mul_(grad_output)

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("gelu", GELU)
