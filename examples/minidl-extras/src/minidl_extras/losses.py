"""Binary cross-entropy on logits: the model ends with a linear layer, no sigmoid."""

from __future__ import annotations

import torch
from torch import Tensor


class BCEWithLogits:
    """``mean(softplus(z) - z * y)`` for logits ``z`` and targets ``y`` in [0, 1].

    Written as ``max(z, 0) - z * y + log1p(exp(-|z|))``, which never overflows: the
    naive ``-y log(sigmoid(z)) - (1 - y) log(1 - sigmoid(z))`` is infinite once
    ``sigmoid(z)`` rounds to 0 or 1. The gradient is ``(sigmoid(z) - y) / n``.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(
                f"bce: prediction of shape {tuple(prediction.shape)} and target of shape "
                f"{tuple(target.shape)} differ"
            )
        self._logits, self._target = prediction, target
        z = prediction
        return (z.clamp_min(0) - z * target + torch.log1p(torch.exp(-z.abs()))).mean()

    def backward(self) -> Tensor:
        return (torch.sigmoid(self._logits) - self._target) / self._logits.numel()

    def accuracy(self, prediction: Tensor, target: Tensor) -> float:
        """A logit above 0 means class 1 (probability above one half)."""
        correct = (prediction > 0) == (target > 0.5)
        return float(correct.to(torch.float64).mean())

    def __repr__(self) -> str:
        return "BCEWithLogits()"
