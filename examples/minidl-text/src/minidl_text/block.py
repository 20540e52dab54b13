"""minGPT's transformer block, made of minidl's built-in layers."""

from __future__ import annotations

import torch

from minidl import Sequential
from minidl.plugins import GELU, Dropout, LayerNorm, Linear, Residual

from .attention import CausalSelfAttention


class TransformerBlock(Sequential):
    """``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, minGPT's (pre-norm) block:

    ``residual(layernorm, causal_self_attention(num_heads))``, then
    ``residual(layernorm, linear(mlp_ratio * C), gelu, linear(C))``,

    a chain (a :class:`minidl.Sequential`) of those two residuals, whose parameters come in
    that order under torch's keys (``0.0.weight`` is the first layer norm's, ``0.1.in_proj_weight``
    the attention's, ``1.3.bias`` the last linear's). With ``dropout > 0`` the attention
    drops attention weights, and each residual branch ends with ``dropout(p)``, as minGPT's
    ``attn_pdrop`` and ``resid_pdrop``. The width ``C`` is inferred in a model spec:
    ``transformer_block(4)``.
    """

    #: forward() and backward() return the residuals' sums, which it keeps no reference to.
    returns_fresh = True

    def __init__(
        self,
        in_features: int,
        num_heads: int,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(mlp_ratio, int) or isinstance(mlp_ratio, bool) or mlp_ratio < 1:
            raise ValueError(
                f"transformer_block mlp_ratio must be a positive integer, got {mlp_ratio!r}"
            )
        c, place = in_features, {"dtype": dtype, "device": device}
        attention = CausalSelfAttention(c, num_heads, dropout, **place)  # checks c, heads, dropout
        mlp = [Linear(c, mlp_ratio * c, **place), GELU(), Linear(mlp_ratio * c, c, **place)]
        tail = [Dropout(dropout)] if dropout > 0 else []
        super().__init__(
            Residual(LayerNorm(c, **place), attention, *tail),
            Residual(LayerNorm(c, **place), *mlp, *([Dropout(dropout)] if tail else [])),
        )
        self.in_features = self.out_features = c
        self.num_heads, self.mlp_ratio, self.dropout = num_heads, mlp_ratio, float(dropout)

    def __repr__(self) -> str:
        return "TransformerBlock" + super().__repr__().removeprefix("Sequential")
