"""Linear, the seed's three activations, and input standardisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter, hookimpl, registry


class Linear(ModuleBase):
    """``y = x @ weight.T + bias``, shaped and initialised like ``torch.nn.Linear``.

    ``init`` names a registered initializer (``default``, ``xavier``, ``he``, ...) or is a
    callable ``init(weight, bias, gain=...)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str | Callable[..., None] = "default",
        gain: float | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Linear {label} must be a positive integer, got {n!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(
            torch.empty(out_features, in_features, dtype=dtype, device=device), "weight"
        )
        self.bias = Parameter(torch.empty(out_features, dtype=dtype, device=device), "bias")
        initializer = registry.get("initializer", init) if isinstance(init, str) else init
        kwargs: dict[str, Any] = {} if gain is None else {"gain": gain}
        initializer(self.weight.data, self.bias.data, **kwargs)
        self._input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return torch.addmm(self.bias.data, x, self.weight.data.t())

    def backward(self, grad_output: Tensor) -> Tensor:
        if self._input is None:
            raise RuntimeError("Linear.backward called before forward")
        self.weight.grad.addmm_(grad_output.t(), self._input)
        self.bias.grad.add_(grad_output.sum(0))
        return grad_output.mm(self.weight.data)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class ReLU(ModuleBase):
    def forward(self, x: Tensor) -> Tensor:
        self._output = x.clamp_min(0)
        return self._output

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * (self._output > 0)


class Sigmoid(ModuleBase):
    # torch.sigmoid saturates cleanly for large |x|; 1 / (1 + exp(-x)) would overflow.
    def forward(self, x: Tensor) -> Tensor:
        self._output = torch.sigmoid(x)
        return self._output

    def backward(self, grad_output: Tensor) -> Tensor:
        s = self._output
        return grad_output * s * (1 - s)


class Tanh(ModuleBase):
    def forward(self, x: Tensor) -> Tensor:
        self._output = torch.tanh(x)
        return self._output

    def backward(self, grad_output: Tensor) -> Tensor:
        t = self._output
        # (1 - t)(1 + t), not 1 - t*t: near saturation t*t rounds away the tiny derivative.
        return grad_output * (1 - t).mul_(1 + t)


class Standardize(ModuleBase):
    """``(x - mean) / std`` with constants fitted on training data; saved with the model,
    so predictions on raw inputs need no separate preprocessing."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"Standardize: {len(mean)} means but {len(std)} standard deviations")
        if any(not (math.isfinite(s) and s > 0) for s in std):
            raise ValueError("Standardize: every standard deviation must be positive and finite")
        # The exact values stay as Python floats: moving to float64 after float32 must not
        # keep float32-rounded constants.
        self._values = (list(mean), list(std))
        self.mean = torch.tensor(self._values[0], dtype=torch.get_default_dtype())
        self.std = torch.tensor(self._values[1], dtype=torch.get_default_dtype())
        self.out_features = len(mean)

    @classmethod
    def fit(cls, x: Tensor) -> Standardize:
        std = x.std(0, unbiased=False)
        return cls(x.mean(0).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist())

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.mean.dtype or x.device != self.mean.device:
            self.to(x.device, x.dtype)
        return (x - self.mean) / self.std

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output / self.std

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Standardize:
        dtype = dtype or self.mean.dtype
        device = device or self.mean.device
        self.mean = torch.tensor(self._values[0], dtype=dtype, device=device)
        self.std = torch.tensor(self._values[1], dtype=dtype, device=device)
        return self

    def extra_repr(self) -> str:
        return f"features={self.out_features}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("linear", Linear)
    register("relu", ReLU)
    register("sigmoid", Sigmoid)
    register("tanh", Tanh)
    register("standardize", Standardize)
