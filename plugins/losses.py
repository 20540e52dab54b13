"""Mean squared error, the seed's loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import hookimpl

# Half and bfloat16 means are summed in float32 before rounding: for them, mean() it is.
_EXACT_SUM = (torch.float32, torch.float64)


def scalar(value: float, like: Tensor) -> Tensor:
    """``value`` as a 0-dim CPU tensor that acts in an operation on ``like`` exactly as the
    Python number would (same result dtype, same rounding), minus the cost of wrapping it:
    of ``like``'s dtype (a mismatched dtype takes a slow conversion path), or float32, the
    type half and bfloat16 compute in. A 0-dim CPU tensor may join a CUDA operation."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.tensor(value, dtype=dtype)


class MSE:
    """``mean((prediction - target) ** 2)`` over every element."""

    def __init__(self) -> None:
        self._diff: Tensor | None = None
        self._constants: tuple[int, torch.dtype, Tensor, Tensor] | None = None

    def _scales(self, diff: Tensor) -> tuple[Tensor, Tensor]:
        # n and 2 / n as 0-dim tensors, remade when n or the dtype changes: a Python number
        # in a tensor operation is wrapped into a new tensor at every call, which costs as
        # much as the whole operation on a small batch.
        n, c = diff.numel(), self._constants
        if c is None or c[0] != n or c[1] is not diff.dtype:
            c = self._constants = (n, diff.dtype, scalar(n, diff), scalar(2 / n, diff))
        return c[2], c[3]

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(
                f"MSE: prediction of shape {tuple(prediction.shape)} and target of shape "
                f"{tuple(target.shape)} differ; the model's output size must match the targets"
            )
        diff = self._diff = prediction - target
        # diff * diff: the values of square(), which dispatches to the slower pow().
        if diff.dtype not in _EXACT_SUM:
            return (diff * diff).mean()
        # For these dtypes sum then divide is what torch.mean computes, bit for bit, minus
        # a microsecond of its dispatch.
        return (diff * diff).sum().div_(self._scales(diff)[0])

    def backward(self) -> Tensor:
        if self._diff is None:
            raise RuntimeError("MSE.backward called before forward")
        return self._diff * self._scales(self._diff)[1]

    def __repr__(self) -> str:
        return "MSE()"


@hookimpl
def register_losses(register: Callable[[str, Any], None]) -> None:
    register("mse", MSE)
