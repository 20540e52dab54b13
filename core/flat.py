"""Pack parameters into one data buffer and one gradient buffer.

Every parameter becomes a view into the two buffers, so an optimizer step or a
``zero_grad`` is a handful of tensor operations however many layers the network has,
and a data-parallel ``all_reduce`` is one call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from .parameter import Parameter


class FlatParameters:
    """``data`` and ``grad`` are 1-D tensors; ``params`` are views into them, in order."""

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("no parameters to optimize: the model has no Parameter")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("the same Parameter appears twice in the list")
        first = self.params[0].data
        for p in self.params:
            if p.data.dtype != first.dtype or p.data.device != first.device:
                raise ValueError(
                    f"parameters must share one dtype and device: {p!r} is "
                    f"{p.data.dtype} on {p.data.device}, the first is {first.dtype} on "
                    f"{first.device}; call model.to(...) before making the optimizer"
                )
        shared = _existing_buffers(self.params)
        if shared is not None:
            self.data, self.grad = shared
            return
        total = sum(p.data.numel() for p in self.params)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
        offset = 0
        for p in self.params:
            n = p.data.numel()
            data = self.data[offset : offset + n].view(p.shape)
            grad = self.grad[offset : offset + n].view(p.shape)
            data.copy_(p.data)
            grad.copy_(p.grad)
            p._bind(data, grad)
            offset += n


def _existing_buffers(params: list[Parameter]) -> tuple[Tensor, Tensor] | None:
    """The buffers these parameters already are views of, in this order, if any."""
    first = params[0]
    offset = 0
    for p in params:
        for t, base in ((p.data, first.data), (p.grad, first.grad)):
            if (
                not t.is_contiguous()
                or t.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
                or t.storage_offset() != base.storage_offset() + offset
            ):
                return None
        offset += p.data.numel()
    if first.data.untyped_storage().nbytes() != offset * first.data.element_size():
        return None  # the storage holds more than these parameters: not ours alone
    if first.data.storage_offset() != 0 or first.grad.storage_offset() != 0:
        return None

    def whole(t: Tensor) -> Tensor:
        return torch.as_strided(t, (offset,), (1,), 0)

    return whole(first.data), whole(first.grad)
