"""Layer normalisation over the last dimension: ``torch.nn.LayerNorm(C)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter, hookimpl


class LayerNorm(ModuleBase):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias``, the mean and the biased
    variance taken over the last dimension of each position, ``in_features`` wide (so a
    model spec infers it). No running statistics: training and eval mode compute the same.
    """

    #: forward() and backward() return tensors the layer keeps no reference to.
    returns_fresh = True

    def __init__(
        self,
        in_features: int,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(in_features, int) or isinstance(in_features, bool) or in_features < 1:
            raise ValueError(
                f"layernorm in_features must be a positive integer, got {in_features!r}"
            )
        if (
            isinstance(eps, bool)
            or not isinstance(eps, int | float)
            or not (eps > 0 and math.isfinite(eps))
        ):
            raise ValueError(f"layernorm eps must be a positive number, got {eps!r}")
        if not isinstance(elementwise_affine, bool):
            raise ValueError(
                f"layernorm elementwise_affine must be True or False, got {elementwise_affine!r}"
            )
        self.in_features = self.out_features = in_features
        self.eps, self.elementwise_affine = float(eps), elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(torch.ones(in_features, dtype=dtype, device=device), "weight")
            self.bias = Parameter(torch.zeros(in_features, dtype=dtype, device=device), "bias")
        self._saved: tuple[Tensor, Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"layernorm takes inputs of shape (N, ..., {self.in_features}), got {tuple(x.shape)}"
            )
        # One ATen kernel for the mean, the variance and the affine map (torch's forward),
        # where the written-out chain takes eight passes. Backward keeps the input and the
        # per-position mean and 1 / std, and rebuilds xhat from them.
        c = self.in_features
        weight = self.weight.data if self.elementwise_affine else None
        bias = self.bias.data if self.elementwise_affine else None
        out, mean, invstd = torch.native_layer_norm(x, (c,), weight, bias, self.eps)
        self._saved = (x, mean, invstd)
        return out

    # With xhat = (x - mean) * invstd and gh = g * weight, per position over the C features:
    #   dL/dx = invstd * (gh - mean(gh) - xhat * mean(gh * xhat)),
    # the two means being the gradient through the mean and through the variance (the
    # derivative of invstd is -invstd^3 (x - mean) / C, and invstd * (x - mean) = xhat).
    # dL/dweight = sum of g * xhat and dL/dbias = sum of g over every position.
    # The means are matrix-vector products, mean(gh) = g @ weight / C and mean(gh * xhat) =
    # (g * xhat) @ weight / C, so neither g * weight nor its product with xhat is made twice.
    # At a GPT's sizes each ATen call costs more than its arithmetic, and a broadcast
    # addcmul three times a plain one: the code counts calls, not passes.
    def backward(self, grad_output: Tensor) -> Tensor:
        if self._saved is None:
            raise RuntimeError("LayerNorm.backward called before forward")
        x, mean, invstd = self._saved
        c = self.in_features
        xhat = torch.sub(x, mean).mul_(invstd)
        g = grad_output
        g_xhat = g * xhat
        if not self.elementwise_affine:
            through_mean = g.mean(-1, keepdim=True)
            through_var = g_xhat.mean(-1, keepdim=True)
            return (g - through_mean).addcmul_(xhat, through_var, value=-1).mul_(invstd)
        w = self.weight.data
        rows, rows_xhat = g.reshape(-1, c), g_xhat.reshape(-1, c)
        self.weight.grad.add_(rows_xhat.sum(0))
        self.bias.grad.add_(rows.sum(0))
        # C * mean(gh) + xhat * C * mean(gh * xhat), into xhat's memory.
        both = xhat.mul_(torch.mv(rows_xhat, w).view_as(mean)).add_(torch.mv(rows, w).view_as(mean))
        return torch.mul(g, w).sub_(both, alpha=1 / c).mul_(invstd)

    def extra_repr(self) -> str:
        affine = "" if self.elementwise_affine else ", elementwise_affine=False"
        return f"({self.in_features},), eps={self.eps:g}{affine}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("layernorm", LayerNorm)
