"""A base for optimizers that keep every parameter in one flat buffer."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from .flat import FlatParameters
from .parameter import Parameter


def check_hyperparameter(name: str, value: float, low: float, high: float | None = None) -> None:
    ok = math.isfinite(value) and value >= low and (high is None or value < high)
    if not ok:
        valid = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be {valid}, got {value!r}")


class FlatOptimizer:
    """Subclasses implement ``step`` on ``self.data`` and ``self.grad``, two 1-D tensors
    that every parameter is a view into."""

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.lr = lr
        self.flat = FlatParameters(parameters)
        largest = torch.finfo(self.flat.data.dtype).max
        if lr > largest:  # torch cannot even scale a gradient by it
            raise ValueError(
                f"lr must be at most {largest:g} for {str(self.flat.data.dtype).removeprefix('torch.')} "
                f"parameters, got {lr!r}"
            )

    @property
    def data(self) -> Tensor:
        return self.flat.data

    @property
    def grad(self) -> Tensor:
        return self.flat.grad

    def parameters(self) -> list[Parameter]:
        return self.flat.params

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor | float | int]:
        """Tensors and numbers that, loaded back, let training resume exactly."""
        return {"lr": self.lr}

    def load_state_dict(self, state: dict[str, Tensor | float | int]) -> None:
        self.lr = float(state["lr"])
