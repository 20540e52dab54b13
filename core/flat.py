"""Pack parameters into one data buffer and one gradient buffer.

Every parameter becomes a view into the two buffers, so an optimizer step or a
``zero_grad`` is a handful of tensor operations however many layers the network has,
and a data-parallel ``all_reduce`` is one call.
"""

from __future__ import annotations

import warnings
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
        packed = [p for p in self.params if _is_view(p.data)]
        if packed:
            # Re-packing rebinds them to new buffers; whoever owns the old one (an earlier
            # optimizer) would go on stepping a buffer the model no longer reads.
            warnings.warn(
                f"re-packing {len(packed)} parameter(s) (first: {packed[0]!r}) that are views "
                "into another flat buffer: an optimizer made earlier over them no longer "
                "updates them; make optimizers over the same parameters in the same order, "
                "or over consecutive layers",
                RuntimeWarning,
                stacklevel=2,
            )
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
    """The buffers (or the slice of them) these parameters already are consecutive views of."""
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

    # Consecutive parameters of a larger buffer (say one layer of a packed model) use
    # their slice of it, so the optimizers over the whole and over the part stay in step.
    def whole(t: Tensor) -> Tensor:
        return torch.as_strided(t, (offset,), (1,), t.storage_offset())

    return whole(first.data), whole(first.grad)


def _is_view(t: Tensor) -> bool:
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()
