"""Shared by the tests: torch.nn modules with autograd are the reference, in float64."""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64
#: The layers compute the same sums as torch, in another order: a few units in the last place.
RTOL, ATOL = 1e-10, 1e-12


def close(actual: Tensor, expected: Tensor, what: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


def causal_mask(t: int) -> Tensor:
    return torch.full((t, t), -math.inf, dtype=F64).triu(1)


class TorchCausalAttention(torch.nn.MultiheadAttention):
    """nn.MultiheadAttention as self-attention with a causal mask, one input; its keys are
    nn.MultiheadAttention's own. ``need_weights=True`` takes torch's path that draws the
    dropout mask with F.dropout on the attention weights (the other, fused path draws it
    differently); without dropout both give the same."""

    def __init__(
        self, width: int, heads: int, dropout: float = 0.0, need_weights: bool = False
    ) -> None:
        super().__init__(width, heads, dropout=dropout, batch_first=True, dtype=F64)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        mask = causal_mask(x.shape[1])
        return super().forward(x, x, x, attn_mask=mask, need_weights=self.need_weights)[0]


class TorchResidual(torch.nn.Sequential):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return x + super().forward(x)


def torch_block(
    width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0
) -> torch.nn.Sequential:
    """minGPT's block as torch.nn modules, under the keys of minidl_text.TransformerBlock."""
    tail = [torch.nn.Dropout(dropout)] if dropout else []
    nn = torch.nn
    return nn.Sequential(
        TorchResidual(
            nn.LayerNorm(width),
            TorchCausalAttention(width, heads, dropout, need_weights=True),
            *tail,
        ),
        TorchResidual(
            nn.LayerNorm(width),
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(),
            nn.Linear(mlp_ratio * width, width),
            *([nn.Dropout(dropout)] if dropout else []),
        ),
    ).to(F64)


def run_torch(
    module: torch.nn.Module, x: Tensor, g: Tensor
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """Output, input gradient and parameter gradients by name, by autograd."""
    module.zero_grad(set_to_none=True)
    leaf = x.detach().clone().requires_grad_(x.is_floating_point())
    with torch.enable_grad():
        out = module(leaf)
        out.backward(g)
    grads = {k: p.grad for k, p in module.named_parameters() if p.grad is not None}
    return out.detach(), leaf.grad, grads


def randomize(module, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """New weights for every parameter of a minidl module: not the initial zeros and ones."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.data = torch.randn(p.data.shape, generator=gen, dtype=F64) * 0.5
