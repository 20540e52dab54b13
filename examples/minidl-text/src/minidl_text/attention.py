"""Causal multi-head self-attention, ``torch.nn.MultiheadAttention`` with a causal mask.

Forward, for x of shape (N, T, C), H heads of width d = C / H, s = 1 / sqrt(d):

    [q | k | v] = x @ in_proj_weight.T + in_proj_bias           (N, T, 3C)
    each split into heads, as (N*H, T, d)
    S = s * q @ k.T + mask        mask = -inf above the diagonal (N*H, T, T)
    P = softmax(S) over the last dimension (the keys)
    A = dropout(P)                (training mode only; as torch's, a mask M over P)
    o = A @ v, heads joined back  (N, T, C); with dropout laid out (T, N, C) as torch's
    y = o @ out_proj.weight.T + out_proj.bias

Backward, from g = dL/dy:

    go = out_proj.backward(g)     (adds out_proj's gradients; heads split as above)
    dA = go @ v.T,   dv = A.T @ go
    dP = dA * M
    dS = P * (dP - sum(dP * P, -1))      the softmax's Jacobian, diag(P) - P P.T, row by row;
                                         zero above the diagonal, where P is
    dq = s * dS @ k, dk = s * dS.T @ q
    d[q | k | v] gives in_proj's gradients and dx = d[q | k | v] @ in_proj_weight.

Every product is a batched matmul over the N*H heads. The code holds S, P, A and their
gradients transposed, (N*H, keys, queries): the softmax is then a reduction over dimension
1, which ATen's kernel vectorises across the queries, where over the last dimension rows
shorter than a vector register (the addition task's T = 6) fall to a scalar loop. Every
transpose is a view that the matmuls take as it is. Forward keeps q, k, v (one tensor), the
probabilities and the dropout mask, which is all backward reads.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter
from minidl.plugins import Linear


class CausalSelfAttention(ModuleBase):
    """``torch.nn.MultiheadAttention(C, num_heads, dropout, batch_first=True)`` applied as
    ``mha(x, x, x, attn_mask=causal, need_weights=False)``: each position attends to itself
    and the positions before it. Its parameters are torch's, in torch's order and under
    its keys (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``),
    drawn as torch draws them, so a ``state_dict`` loads either way.
    """

    returns_fresh = True

    def __init__(
        self,
        in_features: int,
        num_heads: int,
        dropout: float = 0.0,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("in_features", in_features), ("num_heads", num_heads)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(
                    f"causal_self_attention {label} must be a positive integer, got {n!r}"
                )
        if in_features % num_heads:
            raise ValueError(
                f"causal_self_attention: the width {in_features} must be divisible by "
                f"num_heads={num_heads}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"causal_self_attention dropout must be in [0, 1), got {dropout!r}")
        c = in_features
        self.in_features = self.out_features = c
        self.num_heads, self.head_dim, self.dropout = num_heads, c // num_heads, float(dropout)
        # torch's order of draws: out_proj (a Linear) first, then in_proj_weight from a
        # Xavier uniform; both biases zero.
        self.in_proj_weight = Parameter(
            torch.empty(3 * c, c, dtype=dtype, device=device), "in_proj_weight"
        )
        self.in_proj_bias = Parameter(
            torch.zeros(3 * c, dtype=dtype, device=device), "in_proj_bias"
        )
        self.out_proj = Linear(c, c, dtype=dtype, device=device)
        self.out_proj.bias.data.zero_()  # type: ignore[union-attr]
        bound = math.sqrt(6 / (c + 3 * c))
        self.in_proj_weight.data.uniform_(-bound, bound)
        self._mask: Tensor | None = None
        self._saved: (
            tuple[Tensor, tuple[Tensor, ...], Tensor, Tensor | None, tuple[int, int]] | None
        ) = None

    def _causal_mask_t(self, t: int, like: Tensor) -> Tensor:
        """The causal mask transposed, (keys, queries): -inf below the diagonal."""
        mask = self._mask
        if (
            mask is None
            or mask.shape[0] != t
            or mask.dtype != like.dtype
            or mask.device != like.device
        ):
            mask = torch.full((t, t), -math.inf, dtype=like.dtype, device=like.device).tril_(-1)
            self._mask = mask
        return mask

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ValueError(
                f"causal_self_attention takes inputs of shape (N, T, {self.in_features}), got "
                f"{tuple(x.shape)}"
            )
        n, t, c = x.shape
        h, d = self.num_heads, self.head_dim
        rows = x.reshape(n * t, c)
        qkv = torch.addmm(self.in_proj_bias.data, rows, self.in_proj_weight.data.t())
        # (N, T, 3, H, d) -> (3, N, H, T, d): one copy, then q, k, v are contiguous slices.
        heads = qkv.view(n, t, 3, h, d).permute(2, 0, 3, 1, 4).reshape(3, n * h, t, d)
        q, k, v = heads.unbind(0)
        # S.T = s * k @ q.T + mask.T, and P.T = its softmax over the keys (dimension 1).
        scores_t = torch.baddbmm(
            self._causal_mask_t(t, x), k, q.transpose(1, 2), alpha=1 / math.sqrt(d)
        )
        probs_t = torch.softmax(scores_t, 1)
        keep = None
        attended_t = probs_t
        if self.training and self.dropout > 0:
            # torch.nn.functional.dropout's draw on a tensor like P (queries, keys): in P's
            # memory order, so the same elements drop as in torch's; Bernoulli(1 - p) / (1 - p).
            keep = torch.empty((n * h, t, t), dtype=x.dtype, device=x.device)
            keep = keep.bernoulli_(1 - self.dropout).div_(1 - self.dropout).transpose(1, 2)
            attended_t = probs_t * keep
        out = torch.bmm(attended_t.transpose(1, 2), v)  # A @ v: (N*H, T, d)
        self._saved = (rows, (q, k, v), probs_t, keep, (n, t))
        if not self._torch_layout:
            joined = out.view(n, h, t, d).transpose(1, 2).reshape(n * t, c)
            return self.out_proj.forward(joined).view(n, t, c)
        # The heads joined position-major, (T, N, C) in memory, and returned as its (N, T, C)
        # transpose: torch's layout, so that a dropout after this layer, which draws its mask
        # in memory order, drops the same elements as after torch's attention.
        joined = out.view(n, h, t, d).permute(2, 0, 1, 3).reshape(t * n, c)
        return self.out_proj.forward(joined).view(t, n, c).transpose(0, 1)

    @property
    def _torch_layout(self) -> bool:
        # Only a dropout after this layer can tell the layouts apart, and a block adds one
        # exactly when its attention drops too; without, the (N, T, C) layout saves a copy
        # in backward and makes the residual's sum contiguous.
        return self.dropout > 0

    def _backward(self, grad_output: Tensor, input_gradient: bool) -> Tensor | None:
        if self._saved is None:
            raise RuntimeError("CausalSelfAttention.backward called before forward")
        rows, (q, k, v), probs_t, keep, (n, t) = self._saved
        h, d, c = self.num_heads, self.head_dim, self.in_features
        if self._torch_layout:
            g_joined = self.out_proj.backward(grad_output.transpose(0, 1).reshape(t * n, c))
            g_out = g_joined.view(t, n, h, d).permute(1, 2, 0, 3).reshape(n * h, t, d)
        else:
            g_joined = self.out_proj.backward(grad_output.reshape(n * t, c))
            g_out = g_joined.view(n, t, h, d).transpose(1, 2).reshape(n * h, t, d)
        attended_t = probs_t if keep is None else probs_t * keep
        g_heads = torch.empty((3, *q.shape), dtype=q.dtype, device=q.device)
        g_q, g_k, g_v = g_heads.unbind(0)
        torch.bmm(attended_t, g_out, out=g_v)  # dv = A.T @ go
        g_probs_t = torch.bmm(v, g_out.transpose(1, 2))  # dA.T = v @ go.T
        if keep is not None:
            g_probs_t.mul_(keep)
        # dS = P*dP - P * sum(P*dP) over the keys, transposed: three passes, in place.
        g_scores_t = g_probs_t.mul_(probs_t)
        g_scores_t.addcmul_(probs_t, g_scores_t.sum(1, keepdim=True), value=-1)
        scale = 1 / math.sqrt(d)
        torch.baddbmm(g_q, g_scores_t.transpose(1, 2), k, beta=0, alpha=scale, out=g_q)
        torch.baddbmm(g_k, g_scores_t, q, beta=0, alpha=scale, out=g_k)
        g_qkv = g_heads.view(3, n, h, t, d).permute(1, 3, 0, 2, 4).reshape(n * t, 3 * c)
        self.in_proj_weight.grad.addmm_(g_qkv.t(), rows)
        self.in_proj_bias.grad.add_(g_qkv.sum(0))
        if not input_gradient:
            return None
        return g_qkv.mm(self.in_proj_weight.data).view(n, t, c)

    def backward(self, grad_output: Tensor) -> Tensor:
        out = self._backward(grad_output, True)
        assert out is not None
        return out

    def backward_parameters(self, grad_output: Tensor) -> None:
        self._backward(grad_output, False)

    def extra_repr(self) -> str:
        drop = f", dropout={self.dropout:g}" if self.dropout else ""
        return f"{self.in_features}, num_heads={self.num_heads}{drop}"
