"""SGD (with torch's momentum), Adam (Kingma & Ba) and AdamW, each a few operations on
one flat buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from minidl import FlatOptimizer, Parameter, hookimpl
from minidl.optim import check_hyperparameter
from minidl.plugins.losses import scalar


class SGD(FlatOptimizer):
    """``torch.optim.SGD``: ``w <- w - lr * grad``, and with the settings, torch's
    momentum (the buffer starts as the first step's gradient), dampening, Nesterov
    momentum and L2 weight decay (added to the gradient)."""

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(parameters, lr)
        check_hyperparameter("momentum", momentum, 0.0)
        check_hyperparameter("dampening", dampening, 0.0)
        check_hyperparameter("weight_decay", weight_decay, 0.0)
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )
        # The flat buffers never change; plain attributes skip two property calls a step.
        self._data, self._grad = self.flat.data, self.flat.grad
        if momentum or weight_decay:
            self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
            self.weight_decay = weight_decay
            self.steps = 0  # the first step starts the buffer from the gradient
            self.momentum_buffer = torch.zeros_like(self.data)
            # An instance attribute: plain SGD keeps its one add_ without a test per step.
            self.step = self._step_with_settings  # type: ignore[method-assign]

    def step(self) -> None:
        self._data.add_(self._grad, alpha=-self.lr)

    # torch.optim.SGD's single-tensor step, operation for operation, on the flat buffers.
    def _step_with_settings(self) -> None:
        grad = self._grad
        if self.weight_decay:
            grad = grad.add(self._data, alpha=self.weight_decay)
        if self.momentum:
            buffer = self.momentum_buffer
            if self.steps == 0:
                buffer.copy_(grad)
            else:
                buffer.mul_(self.momentum).add_(grad, alpha=1 - self.dampening)
            grad = grad.add(buffer, alpha=self.momentum) if self.nesterov else buffer
        self.steps += 1
        self._data.add_(grad, alpha=-self.lr)

    def __repr__(self) -> str:
        if "momentum" not in vars(self):
            return f"SGD(lr={self.lr:g})"
        return (
            f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, dampening={self.dampening:g}, "
            f"nesterov={self.nesterov}, weight_decay={self.weight_decay:g})"
        )


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

    #: AdamW's decay: the weights shrink by lr * weight_decay before the step, rather than
    #: the decay being added to the gradient (L2, Adam's).
    _decoupled = False

    # torch.optim.Adam's single-tensor step, operation for operation, on the flat buffers.
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.beta1, self.beta2
        beta2_t, eps_t = self._constants()
        data, grad = self._data, self._grad
        if self.weight_decay:
            if self._decoupled:
                data.mul_(1 - self.lr * self.weight_decay)
            else:
                grad = grad.add(data, alpha=self.weight_decay)
        self.m.lerp_(grad, 1 - beta1)
        self.v.mul_(beta2_t).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1**self.steps
        bias2_sqrt = self._bias2_sqrt.fill_((1 - beta2**self.steps) ** 0.5)
        denom = torch.sqrt(self.v, out=self._denom).div_(bias2_sqrt).add_(eps_t)
        data.addcdiv_(self.m, denom, value=-self.lr / bias1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lr={self.lr:g}, betas=({self.beta1:g}, {self.beta2:g}), "
            f"eps={self.eps:g}, weight_decay={self.weight_decay:g})"
        )


class AdamW(Adam):
    """``torch.optim.AdamW`` (Loshchilov & Hutter): Adam with decoupled weight decay,
    ``w <- w * (1 - lr * weight_decay)`` before each step, 0.01 by default. It decays every
    parameter it is given, as torch's does for ``model.parameters()``."""

    _decoupled = True

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(parameters, lr, betas, eps, weight_decay)


@hookimpl
def register_optimizers(register: Callable[[str, Any], None]) -> None:
    register("sgd", SGD)
    register("adam", Adam)
    register("adamw", AdamW)
