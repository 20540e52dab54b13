"""A trainable tensor and its gradient."""

from __future__ import annotations

import torch
from torch import Tensor


class Parameter:
    """A tensor to train (``data``) and the gradient accumulated for it (``grad``).

    ``grad`` is a zero tensor of the same shape from construction on, never ``None``.
    Assigning to ``data`` or ``grad`` copies into the existing storage: an optimizer may
    have packed every parameter into one flat buffer, and rebinding a view would silently
    detach the parameter from it. Use :meth:`to` to change dtype or device.
    """

    __slots__ = ("_data", "_grad", "name")

    def __init__(self, data: Tensor, name: str = "") -> None:
        self._data = data
        self._grad = torch.zeros_like(data)
        self.name = name

    @property
    def data(self) -> Tensor:
        return self._data

    @data.setter
    def data(self, value: Tensor) -> None:
        self._copy_in(self._data, value, "data")

    @property
    def grad(self) -> Tensor:
        return self._grad

    @grad.setter
    def grad(self, value: Tensor) -> None:
        self._copy_in(self._grad, value, "grad")

    def _copy_in(self, dest: Tensor, value: Tensor, what: str) -> None:
        if value is dest:  # `p.grad += g` rebinds to the same tensor after an in-place add
            return
        if value.shape != dest.shape:
            raise ValueError(
                f"parameter {self.name or '(unnamed)'}: cannot assign {what} of shape "
                f"{tuple(value.shape)}, expected {tuple(dest.shape)}"
            )
        dest.copy_(value)

    @property
    def shape(self) -> torch.Size:
        return self._data.shape

    def zero_grad(self) -> None:
        self._grad.zero_()

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        """Move to another device or dtype; this unpacks the parameter from any flat buffer."""
        self._data = self._data.to(device=device, dtype=dtype)
        self._grad = self._grad.to(device=device, dtype=dtype)

    def _bind(self, data: Tensor, grad: Tensor) -> None:
        # Only the flat buffer rebinds storage (see minidl.flat).
        self._data, self._grad = data, grad

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"Parameter{label}(shape={tuple(self.shape)}, dtype={self._data.dtype})"
