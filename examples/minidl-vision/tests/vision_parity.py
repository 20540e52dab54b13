"""Shared by the tests: torch.nn.functional with autograd is the reference for every layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Explicit tolerances for float64 parity: the layers compute the same sums as torch, in
#: another order, so they agree to a few units in the last place.
RTOL, ATOL = 1e-10, 1e-12
F64 = torch.float64


def close(actual: Tensor, expected: Tensor, what: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


def reference(
    fn: Callable[..., Tensor], grad_output: Tensor, *inputs: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """``fn(*inputs)`` and the gradients of ``(fn(*inputs) * grad_output).sum()`` with
    respect to every input, by autograd."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    with torch.enable_grad():
        out = fn(*leaves)
        out.backward(grad_output)
    return out.detach(), [t.grad for t in leaves]  # type: ignore[misc]
