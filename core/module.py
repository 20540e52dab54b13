"""An optional base class for layers: the protocol's three methods plus conveniences."""

from __future__ import annotations

import torch
from torch import Tensor

from .parameter import Parameter


class ModuleBase:
    """Subclass it to get ``__call__``, ``zero_grad()``, ``to()`` and a readable repr.

    Nothing requires it: :class:`minidl.Sequential` and the training loop accept any
    object with ``forward``, ``backward`` and ``parameters``.
    """

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ModuleBase:
        for p in self.parameters():
            p.to(device=device, dtype=dtype)
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
