"""torch.nn with autograd as the reference for the built-in layers, in float64."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

F64 = torch.float64
#: The layers compute the same sums as torch, in another order: a few units in the last place.
RTOL, ATOL = 1e-10, 1e-12


def close(actual: Tensor, expected: Tensor, what: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


def reference(
    fn: Callable[..., Tensor], grad_output: Tensor, *inputs: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """``fn(*inputs)`` and the gradients of ``(fn(*inputs) * grad_output).sum()`` with
    respect to every floating input, by autograd."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    with torch.enable_grad():
        out = fn(*leaves)
        out.backward(grad_output)
    return out.detach(), [t.grad for t in leaves]  # type: ignore[misc]


def module_reference(
    module: torch.nn.Module, grad_output: Tensor, x: Tensor
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """A torch module's output, input gradient and parameter gradients (by name)."""
    module.zero_grad(set_to_none=True)
    leaf = x.detach().clone().requires_grad_(x.is_floating_point())
    with torch.enable_grad():
        out = module(leaf)
        out.backward(grad_output)
    grads = {k: p.grad for k, p in module.named_parameters() if p.grad is not None}
    return out.detach(), leaf.grad, grads
