"""Mean squared error, the seed's loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from minidl import hookimpl


class MSE:
    """``mean((prediction - target) ** 2)`` over every element."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(
                f"MSE: prediction of shape {tuple(prediction.shape)} and target of shape "
                f"{tuple(target.shape)} differ; the model's output size must match the targets"
            )
        self._diff = prediction - target
        return self._diff.pow(2).mean()

    def backward(self) -> Tensor:
        return self._diff * (2 / self._diff.numel())

    def __repr__(self) -> str:
        return "MSE()"


@hookimpl
def register_losses(register: Callable[[str, Any], None]) -> None:
    register("mse", MSE)
