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
    """``torch.nn.functional.cross_entropy``: a softmax of the logits inside, over their
    last dimension, against class indices or probability rows, averaged. Logits ``(N, C)``
    take targets ``(N,)``, a sequence's ``(N, T, C)`` take ``(N, T)`` (torch's
    ``cross_entropy(out.reshape(-1, C), t.reshape(-1))``), or probabilities of the logits'
    shape. A class index equal to ``ignore_index`` (torch's default -100: a prompt's
    positions, say) counts neither in the sum nor in the mean."""

    class_targets = True  # a CSV's column of labels 0..k-1 loads as (N,) class indices

    def __init__(self, ignore_index: int = -100) -> None:
        self.ignore_index = ignore_index
        self._softmax: Tensor | None = None
        self._target: Tensor | None = None
        self._weight: Tensor | None = None  # a column: kept / number kept (class indices)
        self._shape: torch.Size | None = None

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        shape = tuple(prediction.shape)
        indices = prediction.dim() >= 2 and target.shape == prediction.shape[:-1]
        if prediction.dim() < 2 or not (indices or target.shape == prediction.shape):
            raise ValueError(
                f"cross_entropy: logits of shape {shape} need targets of shape {shape[:-1]} "
                f"(class indices) or {shape} (probabilities), got {tuple(target.shape)}"
            )
        classes = shape[-1]
        if classes < 2:  # the softmax of one logit is 1: nothing to learn
            raise ValueError(
                f"cross_entropy needs one logit per class, at least 2, but the model gives "
                f"{classes} output; end the model with linear(K) for K classes"
            )
        if indices and (target.is_floating_point() or target.is_complex()):
            raise ValueError(
                f"cross_entropy: targets of shape {tuple(target.shape)} are class indices and "
                f"must be integers (int64), got {target.dtype}"
            )
        # One row per position: (N, T, C) -> (N*T, C), as torch's reshape(-1, C).
        logits = prediction.reshape(-1, classes)
        # log_softmax(z) = z - max(z) - log(sum(exp(z - max(z)))): ATen's kernel takes the
        # row maximum out first, as one pass, so no exp() overflows.
        log_softmax = torch.log_softmax(logits, 1)
        self._softmax, self._shape = log_softmax.exp(), prediction.shape
        if not indices:
            self._target, self._weight = target.reshape(-1, classes), None
            return -(self._target * log_softmax).sum(1).mean()
        flat = target.reshape(-1)
        kept = flat != self.ignore_index
        safe = flat.mul(kept).unsqueeze_(1)  # an ignored row gathers class 0, weighted 0
        try:
            picked = log_softmax.gather(1, safe)
        except RuntimeError:  # an index out of range: say which, in the loss's words
            bad = flat[kept & ((flat < 0) | (flat >= classes))]
            raise ValueError(
                f"cross_entropy: class index {int(bad[0]) if len(bad) else int(flat.max())} "
                f"is out of range for {classes} logits (classes 0 to {classes - 1}): give the "
                "model one output per class"
            ) from None
        # The mean over the rows kept: torch's, NaN when none is.
        weight = kept.to(picked.dtype)
        weight.div_(weight.sum())
        self._target, self._weight = safe, weight.unsqueeze(1)
        return torch.dot(picked.view(-1), weight).neg_()

    def backward(self) -> Tensor:
        p, target, shape = self._softmax, self._target, self._shape
        if p is None or target is None or shape is None:
            raise RuntimeError("CrossEntropy.backward called before forward")
        if self._weight is None:  # softmax * sum(target) - target, a row's sum 1 or not
            grad = (p * target.sum(1, keepdim=True) - target).div_(p.shape[0])
        else:  # (softmax - one_hot(target)) times the row's weight in the mean
            grad = p.mul(self._weight).scatter_add_(1, target, self._weight.neg())
        return grad.reshape(shape)

    def accuracy(self, prediction: Tensor, target: Tensor) -> float:
        """The fraction of rows whose largest logit is the target class; of a sequence's,
        those whose every position is right, ``ignore_index`` positions aside."""
        return accuracy(prediction, target, self.ignore_index)

    def check_target(self, target: Tensor) -> None:
        if target.is_floating_point() or not target.numel():
            return
        bad = target[(target < 0) & (target != self.ignore_index)]
        if len(bad):
            raise ValueError(
                f"class indices must be >= 0, got {int(bad.min())} (ignore_index "
                f"{self.ignore_index} aside)"
            )

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.forward(prediction, target)

    def __repr__(self) -> str:
        return (
            "CrossEntropy()"
            if self.ignore_index == -100
            else (f"CrossEntropy(ignore_index={self.ignore_index})")
        )


@hookimpl
def register_losses(register: Callable[[str, Any], None]) -> None:
    register("mse", MSE)
    register("cross_entropy", CrossEntropy)
