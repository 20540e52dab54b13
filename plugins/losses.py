"""Mean squared error, the seed's loss, and cross-entropy for classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import accuracy, hookimpl

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

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.forward(prediction, target)

    def __repr__(self) -> str:
        return "MSE()"


class CrossEntropy:
    """``torch.nn.functional.cross_entropy``: softmax of the logits ``(N, k)`` inside,
    against class indices ``(N,)`` or probability rows ``(N, k)``, averaged over the batch."""

    class_targets = True  # a CSV's column of labels 0..k-1 loads as (N,) class indices

    def __init__(self) -> None:
        self._softmax: Tensor | None = None
        self._target: Tensor | None = None

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.dim() != 2 or target.shape not in (prediction.shape[:1], prediction.shape):
            raise ValueError(
                f"cross_entropy: logits of shape {tuple(prediction.shape)} need targets of "
                f"shape ({prediction.shape[0]},) (class indices) or "
                f"{tuple(prediction.shape)} (probabilities), got {tuple(target.shape)}"
            )
        if prediction.shape[1] < 2:  # the softmax of one logit is 1: nothing to learn
            raise ValueError(
                f"cross_entropy needs one logit per class, at least 2, but the model gives "
                f"{prediction.shape[1]} output; end the model with linear(K) for K classes"
            )
        if target.dim() == 1 and (target.is_floating_point() or target.is_complex()):
            raise ValueError(
                f"cross_entropy: targets of shape {tuple(target.shape)} are class indices and "
                f"must be integers (int64), got {target.dtype}"
            )
        # log_softmax with the row maximum taken out first, so no exp() overflows.
        shifted = prediction - prediction.amax(1, keepdim=True)
        log_softmax = shifted - shifted.exp().sum(1, keepdim=True).log()
        self._softmax, self._target = log_softmax.exp(), target
        if target.dim() == 1:
            try:
                return -log_softmax.gather(1, target.unsqueeze(1)).mean()
            except RuntimeError:  # an index out of range: say which, in the loss's words
                raise ValueError(
                    f"cross_entropy: class index {int(target.max())} is out of range for "
                    f"{prediction.shape[1]} logits (classes 0 to {prediction.shape[1] - 1}): "
                    "give the model one output per class"
                ) from None
        return -(target * log_softmax).sum(1).mean()

    def backward(self) -> Tensor:
        p, target = self._softmax, self._target
        if p is None or target is None:
            raise RuntimeError("CrossEntropy.backward called before forward")
        if target.dim() == 1:  # softmax - one_hot(target)
            grad = p.scatter_add(1, target.unsqueeze(1), torch.full_like(p[:, :1], -1.0))
        else:  # softmax * sum(target) - target, the rows' weights summing to 1 or not
            grad = p * target.sum(1, keepdim=True) - target
        return grad.div_(p.shape[0])

    def accuracy(self, prediction: Tensor, target: Tensor) -> float:
        """The fraction of rows whose largest logit is the target class."""
        return accuracy(prediction, target)

    def check_target(self, target: Tensor) -> None:
        if target.dim() == 1 and len(target) and int(target.min()) < 0:
            raise ValueError(f"class indices must be >= 0, got {int(target.min())}")

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.forward(prediction, target)

    def __repr__(self) -> str:
        return "CrossEntropy()"


@hookimpl
def register_losses(register: Callable[[str, Any], None]) -> None:
    register("mse", MSE)
    register("cross_entropy", CrossEntropy)
