"""Inverted dropout, drawing its mask exactly as ``torch.nn.functional.dropout`` does on the
CPU, so that the same ``torch.manual_seed`` drops the same units."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter, hookimpl


class Dropout(ModuleBase):
    """``torch.nn.Dropout(p)``: in training mode each element is zeroed with probability
    ``p`` and the others scaled by ``1 / (1 - p)``; in eval mode the identity."""

    #: Its output keeps the input's shape, but is no fixed function of each element (a
    #: random mask, and the identity in eval mode): a network with it as the hidden
    #: "activation" is linear. Not a hidden activation (--activation).
    elementwise = False

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p!r}")
        self.p = float(p)
        self._mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            self._mask = None
            return x
        if self.p == 1:  # torch draws nothing then
            self._mask = torch.zeros_like(x)
        else:
            # torch's own sequence on the CPU (ATen's _dropout_impl): a Bernoulli(1 - p)
            # draw into a tensor like x, divided by 1 - p, times x.
            self._mask = torch.empty_like(x).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * self._mask

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output if self._mask is None else grad_output * self._mask

    def backward_(self, grad_output: Tensor) -> Tensor:
        """backward() overwriting ``grad_output``, which Sequential allows when the next
        module made it and keeps no reference to it (a Linear layer's backward)."""
        return grad_output if self._mask is None else grad_output.mul_(self._mask)

    def parameters(self) -> list[Parameter]:
        return []

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("dropout", Dropout)
