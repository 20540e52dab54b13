"""A learned position table added to the input: minGPT's ``wpe``."""

from __future__ import annotations

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter


class PositionalEmbedding(ModuleBase):
    """``y[:, t] = x[:, t] + weight[t]`` for inputs ``(N, T, C)`` with ``T <= max_len``: a
    learned ``(max_len, C)`` table, drawn from N(0, 1) as ``torch.nn.Embedding`` draws it.
    In a model spec the width ``C`` is inferred: ``positional_embedding(16)``."""

    # No returns_fresh: backward hands grad_output itself back, which its maker may hold.

    def __init__(
        self,
        in_features: int,
        max_len: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("in_features", in_features), ("max_len", max_len)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(
                    f"positional_embedding {label} must be a positive integer, got {n!r}"
                )
        self.in_features = self.out_features = in_features
        self.max_len = max_len
        self.weight = Parameter(
            torch.empty(max_len, in_features, dtype=dtype, device=device).normal_(), "weight"
        )
        self._length = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ValueError(
                f"positional_embedding takes inputs of shape (N, T, {self.in_features}), got "
                f"{tuple(x.shape)}"
            )
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"positional_embedding: a sequence of length {t} is longer than max_len="
                f"{self.max_len}; make the table at least {t} long"
            )
        self._length = t
        return x + self.weight.data[:t]

    # y = x + weight[:T] broadcast over the batch: dL/dx = g, dL/dweight[t] = sum over N of g[:, t].
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad[: self._length].add_(grad_output.sum(0))
        return grad_output

    def extra_repr(self) -> str:
        return f"{self.in_features}, max_len={self.max_len}"
