"""A base for optimizers that keep every parameter in one flat buffer."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .flat import FlatParameters
from .parameter import Parameter


def check_hyperparameter(name: str, value: float, low: float, high: float | None = None) -> None:
    ok = math.isfinite(value) and value >= low and (high is None or value < high)
    if not ok:
        valid = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be {valid}, got {value!r}")


class FlatOptimizer:
    """Subclasses implement ``step`` on ``self.data`` and ``self.grad``, two 1-D tensors
    that every parameter is a view into."""

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.lr = lr
        self.flat = FlatParameters(parameters)
        largest = torch.finfo(self.flat.data.dtype).max
        if lr > largest:  # torch cannot even scale a gradient by it
            raise ValueError(
                f"lr must be at most {largest:g} for {str(self.flat.data.dtype).removeprefix('torch.')} "
                f"parameters, got {lr!r}"
            )

    @property
    def data(self) -> Tensor:
        return self.flat.data

    @property
    def grad(self) -> Tensor:
        return self.flat.grad

    def parameters(self) -> list[Parameter]:
        return self.flat.params

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Every number and tensor the optimizer holds (a subclass's too, with nothing to
        write), but the parameters and gradients themselves, which belong to the model."""
        return {
            k: v.clone() if isinstance(v, Tensor) else v
            for k, v in vars(self).items()
            if _is_state(v) and not (isinstance(v, Tensor) and self._is_parameter_buffer(v))
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`state_dict`: tensors are copied into the existing ones, in place."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        if missing:
            raise KeyError(f"{type(self).__name__} state lacks {', '.join(missing)}")
        for k, value in state.items():
            current = getattr(self, k, None)
            if isinstance(current, Tensor) and isinstance(value, Tensor):
                current.copy_(value)
            elif isinstance(current, bool | int | float):
                setattr(self, k, type(current)(value))  # JSON gives 1.0 back as 1
            else:
                setattr(self, k, value)

    def _is_parameter_buffer(self, t: Tensor) -> bool:
        ptr = t.untyped_storage().data_ptr()
        return ptr in (
            self.flat.data.untyped_storage().data_ptr(),
            self.flat.grad.untyped_storage().data_ptr(),
        )


def _is_state(value: Any) -> bool:
    return isinstance(value, Tensor | bool | int | float)
