"""Mean squared error, the seed's loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import hookimpl


class MSE:
    """``mean((prediction - target) ** 2)`` over every element."""

    def __init__(self) -> None:
        self._diff: Tensor | None = None
        self._constants: tuple[int, Tensor, Tensor] | None = None

    def _scales(self, diff: Tensor) -> tuple[Tensor, Tensor]:
        # n and 2 / n as 0-dim float64 tensors, remade when n changes: a Python number in a
        # tensor operation is wrapped into a new tensor at every call, which costs as much as
        # the whole operation on a small batch. A 0-dim float64 CPU tensor acts as that
        # wrapped number does (same dtype of the result, same rounding, any device).
        n, c = diff.numel(), self._constants
        if c is None or c[0] != n:
            c = self._constants = (
                n,
                torch.tensor(float(n), dtype=torch.float64),
                torch.tensor(2 / n, dtype=torch.float64),
            )
        return c[1], c[2]

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(
                f"MSE: prediction of shape {tuple(prediction.shape)} and target of shape "
                f"{tuple(target.shape)} differ; the model's output size must match the targets"
            )
        diff = self._diff = prediction - target
        # sum then divide is how torch.mean computes, minus its dispatch overhead.
        return diff.square().sum().div_(self._scales(diff)[0])

    def backward(self) -> Tensor:
        if self._diff is None:
            raise RuntimeError("MSE.backward called before forward")
        return self._diff * self._scales(self._diff)[1]

    def __repr__(self) -> str:
        return "MSE()"


@hookimpl
def register_losses(register: Callable[[str, Any], None]) -> None:
    register("mse", MSE)
