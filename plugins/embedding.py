"""A lookup table of vectors, indexed by integer ids: ``torch.nn.Embedding``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter, hookimpl


class Embedding(ModuleBase):
    """``y = weight[ids]``: ids of any shape ``(N, ...)``, int64 (any integer dtype), give
    vectors of shape ``(N, ..., embedding_dim)``. The weight is drawn from N(0, 1), as
    ``torch.nn.Embedding`` draws it, so the same seed gives the same table.

    The ids have no gradient: :meth:`backward` returns zeros of their shape (in the
    weight's dtype), and a chain that starts with this layer skips even that through
    :meth:`backward_parameters`.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"embedding {label} must be a positive integer, got {n!r}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.out_features = embedding_dim
        weight = torch.empty(num_embeddings, embedding_dim, dtype=dtype, device=device)
        self.weight = Parameter(weight.normal_(), "weight")
        self._ids: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(
                f"embedding takes integer ids (int64), got {x.dtype}; token ids must not be "
                "converted to floats (give the data as int64)"
            )
        if x.numel():
            low, high = torch.aminmax(x)  # one pass, one synchronisation
            bad = (
                int(low)
                if int(low) < 0
                else int(high)
                if int(high) >= self.num_embeddings
                else None
            )
            if bad is not None:
                raise IndexError(
                    f"embedding: id {bad} is out of range for num_embeddings="
                    f"{self.num_embeddings} (ids 0 to {self.num_embeddings - 1})"
                )
        ids = self._ids = x.reshape(-1)
        return self.weight.data.index_select(0, ids).view(*x.shape, self.embedding_dim)

    # y[i] = weight[ids[i]], so dL/dweight[j] = sum of g[i] over every i with ids[i] == j:
    # index_add_ sums the rows of g into the weight gradient, repeated ids included.
    def backward_parameters(self, grad_output: Tensor) -> None:
        if self._ids is None:
            raise RuntimeError("Embedding.backward called before forward")
        self.weight.grad.index_add_(0, self._ids, grad_output.reshape(-1, self.embedding_dim))

    def backward(self, grad_output: Tensor) -> Tensor:
        self.backward_parameters(grad_output)
        return grad_output.new_zeros(grad_output.shape[:-1])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("embedding", Embedding)
