"""SGD with momentum and weight decay, computed as torch.optim.SGD does.

It subclasses minidl.FlatOptimizer, which is optional (the protocol is only
``Factory(parameters, lr=...)``, ``step``, ``zero_grad`` and ``lr``) but buys two things:
every parameter lives in one flat buffer, so a step is a handful of tensor operations
however many layers there are, and data-parallel training can all-reduce that one buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from minidl import FlatOptimizer, Parameter


class MomentumSGD(FlatOptimizer):
    """``d = grad + weight_decay * w``; ``buf = momentum * buf + (1 - dampening) * d``
    (``buf = d`` on the first step); ``w -= lr * (d + momentum * buf if nesterov else buf)``.
    """

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        for name, value in (
            ("momentum", momentum),
            ("dampening", dampening),
            ("weight_decay", weight_decay),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"momentum_sgd: {name} must be a non-negative number, got {value!r}"
                )
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("momentum_sgd: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(parameters, lr)  # checks lr, packs the parameters
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buffer = torch.zeros_like(self.data)
        self.started = False

    def step(self) -> None:
        d = self.grad
        if self.weight_decay:
            d = d.add(self.data, alpha=self.weight_decay)
        if self.momentum:
            if self.started:
                self.buffer.mul_(self.momentum).add_(d, alpha=1 - self.dampening)
            else:
                self.buffer.copy_(d)
                self.started = True
            d = d.add(self.buffer, alpha=self.momentum) if self.nesterov else self.buffer
        self.data.add_(d, alpha=-self.lr)

    def state_dict(self) -> dict[str, Tensor | float | int]:
        return {"lr": self.lr, "started": int(self.started), "buffer": self.buffer.clone()}

    def load_state_dict(self, state: dict[str, Tensor | float | int]) -> None:
        super().load_state_dict(state)
        self.started = bool(state["started"])
        buffer = state["buffer"]
        assert isinstance(buffer, Tensor)
        self.buffer.copy_(buffer)

    def __repr__(self) -> str:
        return (
            f"MomentumSGD(lr={self.lr:g}, momentum={self.momentum:g}, "
            f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov})"
        )
