"""SGD with momentum and weight decay, computed as torch.optim.SGD does.

It subclasses minidl.FlatOptimizer, which is optional (the protocol is only
``Factory(parameters, lr=...)``, ``step``, ``zero_grad`` and ``lr``) but buys three things:
every parameter lives in one flat buffer (``self.data``, ``self.grad``), so a step is a
handful of tensor operations however many layers there are; data-parallel training can
all-reduce that one buffer; and ``state_dict``/``load_state_dict`` come with it, capturing
every tensor and number the subclass keeps (here the velocity), so a run with this
optimizer can be checkpointed and resumed with nothing more written here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from minidl import FlatOptimizer, Parameter


class MomentumSGD(FlatOptimizer):
    """``d = grad + weight_decay * w``; ``v = momentum * v + (1 - dampening) * d``
    (``v = d`` on the first step); ``w -= lr * (d + momentum * v if nesterov else v)``.
    In a spec: ``momentum_sgd(momentum=0.8, weight_decay=1e-4, nesterov=True)``."""

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
        self.velocity = torch.zeros_like(self.data)
        self.started = False

    def step(self) -> None:
        d = self.grad
        if self.weight_decay:
            d = d.add(self.data, alpha=self.weight_decay)
        if self.momentum:
            if self.started:
                self.velocity.mul_(self.momentum).add_(d, alpha=1 - self.dampening)
            else:
                self.velocity.copy_(d)
                self.started = True
            d = d.add(self.velocity, alpha=self.momentum) if self.nesterov else self.velocity
        self.data.add_(d, alpha=-self.lr)

    def __repr__(self) -> str:
        return (
            f"MomentumSGD(lr={self.lr:g}, momentum={self.momentum:g}, "
            f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov})"
        )
