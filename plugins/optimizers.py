"""SGD and the standard Adam (Kingma & Ba), each a few operations on one flat buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from minidl import FlatOptimizer, Parameter, hookimpl
from minidl.optim import check_hyperparameter
from minidl.plugins.losses import scalar


class SGD(FlatOptimizer):
    """``w <- w - lr * grad``."""

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        super().__init__(parameters, lr)
        # The flat buffers never change; plain attributes skip two property calls a step.
        self._data, self._grad = self.flat.data, self.flat.grad

    def step(self) -> None:
        self._data.add_(self._grad, alpha=-self.lr)

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr:g})"


class Adam(FlatOptimizer):
    """Adam as ``torch.optim.Adam`` computes it: epsilon is added outside the square root
    of the bias-corrected second moment (the seed report put it inside)."""

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(parameters, lr)
        beta1, beta2 = betas
        check_hyperparameter("beta1", beta1, 0.0, 1.0)
        check_hyperparameter("beta2", beta2, 0.0, 1.0)
        check_hyperparameter("eps", eps, 0.0)
        check_hyperparameter("weight_decay", weight_decay, 0.0)
        largest = torch.finfo(self.data.dtype).max
        if lr / (1 - beta1) > largest:  # the first step scales by lr / (1 - beta1)
            raise ValueError(
                f"lr must be at most {largest * (1 - beta1):g} for adam with beta1={beta1:g} on "
                f"{str(self.data.dtype).removeprefix('torch.')} parameters, got {lr!r}"
            )
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.steps = 0
        self.m = torch.zeros_like(self.data)
        self.v = torch.zeros_like(self.data)
        # The flat buffers never change; plain attributes skip two property calls a step.
        self._data, self._grad = self.flat.data, self.flat.grad
        self._denom = torch.empty_like(self.data)  # reused every step, never handed out
        # A Python number in mul_/div_/add_ is wrapped into a new tensor at every call, as
        # costly as the operation itself on a small network: hand them 0-dim tensors of the
        # same value instead (see minidl.plugins.losses.scalar), remade when one changes.
        self._scalars: tuple[tuple[float, float], Tensor, Tensor] | None = None
        self._bias2_sqrt = scalar(1.0, self.data)

    def _constants(self) -> tuple[Tensor, Tensor]:
        key = (self.beta2, self.eps)
        if self._scalars is None or self._scalars[0] != key:
            self._scalars = (key, scalar(self.beta2, self.data), scalar(self.eps, self.data))
        return self._scalars[1], self._scalars[2]

    # torch.optim.Adam's single-tensor step, operation for operation, on the flat buffers.
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.beta1, self.beta2
        beta2_t, eps_t = self._constants()
        data, grad = self._data, self._grad
        if self.weight_decay:
            grad = grad.add(data, alpha=self.weight_decay)
        self.m.lerp_(grad, 1 - beta1)
        self.v.mul_(beta2_t).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1**self.steps
        bias2_sqrt = self._bias2_sqrt.fill_((1 - beta2**self.steps) ** 0.5)
        denom = torch.sqrt(self.v, out=self._denom).div_(bias2_sqrt).add_(eps_t)
        data.addcdiv_(self.m, denom, value=-self.lr / bias1)

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr:g}, betas=({self.beta1:g}, {self.beta2:g}), eps={self.eps:g})"


@hookimpl
def register_optimizers(register: Callable[[str, Any], None]) -> None:
    register("sgd", SGD)
    register("adam", Adam)
