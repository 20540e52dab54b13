"""SGD with momentum and weight decay, computed as torch.optim.SGD does; no base class."""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor

from minidl import Parameter


class MomentumSGD:
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
            ("lr", lr),
            ("momentum", momentum),
            ("dampening", dampening),
            ("weight_decay", weight_decay),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"momentum_sgd: {name} must be a non-negative number, got {value!r}"
                )
        if lr == 0:
            raise ValueError("momentum_sgd: lr must be positive, got 0")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("momentum_sgd: nesterov needs momentum > 0 and dampening = 0")
        self.params = list(parameters)
        if not self.params:
            raise ValueError("momentum_sgd: no parameters to optimize")
        self.lr = lr  # a plain attribute: schedules change it between epochs
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buffers: list[Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.zero_()

    def step(self) -> None:
        for i, p in enumerate(self.params):
            d = p.grad
            if self.weight_decay:
                d = d.add(p.data, alpha=self.weight_decay)
            if self.momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = d.clone()
                else:
                    buf.mul_(self.momentum).add_(d, alpha=1 - self.dampening)
                d = d.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.data.add_(d, alpha=-self.lr)

    def __repr__(self) -> str:
        return (
            f"MomentumSGD(lr={self.lr:g}, momentum={self.momentum:g}, "
            f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov})"
        )
