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
# ATen's element-wise kernels, bound once (each torch.ops lookup costs a few microseconds).
_gelu = torch.ops.aten.gelu.default
_gelu_backward = torch.ops.aten.gelu_backward.default
_gelu_backward_ = torch.ops.aten.gelu_backward.grad_input


def gelu_reference(x: Tensor, approximate: str = "none") -> Tensor:
    """The forward formula, written out: the reference :class:`GELU`'s kernel is tested
    against."""
    if approximate == "none":
        # Phi(x) = (1 + erf(x / sqrt 2)) / 2
        return x * (x * _SQRT_HALF).erf_().add_(1).mul_(0.5)
    # t = tanh(u), u = sqrt(2 / pi) (x + 0.044715 x^3); the gate is (1 + t) / 2
    t = torch.addcmul(x, x * x, x, value=_CUBIC).mul_(_SQRT_2_OVER_PI).tanh_()
    return (t + 1).mul_(x).mul_(0.5)


# none: d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
# tanh: d/dx [x (1 + t) / 2] = (1 + t) / 2 + x / 2 (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2).
def gelu_backward_reference(grad_output: Tensor, x: Tensor, approximate: str = "none") -> Tensor:
    """The derivative above, written out: the reference that ATen's element-wise
    ``gelu_backward`` kernel, which :class:`GELU` runs, is tested against."""
    if approximate == "none":
        gate = (x * _SQRT_HALF).erf_().add_(1).mul_(0.5)
        density = (x * x).mul_(-0.5).exp_().mul_(_INV_SQRT_2PI)
        return density.mul_(x).add_(gate).mul_(grad_output)
    t = torch.addcmul(x, x * x, x, value=_CUBIC).mul_(_SQRT_2_OVER_PI).tanh_()
    du = (x * x).mul_(3 * _CUBIC).add_(1).mul_(_SQRT_2_OVER_PI)
    slope = torch.addcmul(torch.ones_like(t), t, t, value=-1).mul_(du).mul_(x)
    return slope.add_(t).add_(1).mul_(0.5).mul_(grad_output)


class GELU(ModuleBase):
    """``x * Phi(x)``, Phi the standard normal CDF (``approximate="none"``), or the tanh
    approximation ``x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`` (``"tanh"``,
    GPT-2's).

    Forward and backward each run one fused element-wise ATen kernel (``gelu``,
    ``gelu_backward``) where the formulas (:func:`gelu_reference`,
    :func:`gelu_backward_reference`) take five to nine passes over the activations, erf's
    among them the slowest; the tests hold the kernels to the formulas. Backward keeps only
    the input.
    """

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return _gelu(x, approximate=self.approximate)

    # The derivative of gelu_backward_reference, by ATen's element-wise kernel.
    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._input
        if x is None:
            raise RuntimeError("GELU.backward called before forward")
        return _gelu_backward(grad_output, x, approximate=self.approximate)

    # In place, on a gradient that the next layer has just made (see Sequential): the
    # kernel reads each element before writing it.
    def backward_(self, grad_output: Tensor) -> Tensor:
        x = self._input
        if x is None:
            raise RuntimeError("GELU.backward called before forward")
        return _gelu_backward_(grad_output, x, approximate=self.approximate, grad_input=grad_output)

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("gelu", GELU)
