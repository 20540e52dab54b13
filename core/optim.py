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
    that every parameter is a view into.

    Its :meth:`state_dict` is what the subclass declares by naming its attributes: every
    tensor and number under a public name (``self.velocity``, ``self.steps``, ``self.lr``)
    is state, saved in checkpoints and needed to resume. An attribute whose name begins
    with an underscore (``self._denom``, a buffer reused every step; a cached constant) is
    scratch: never saved, never asked for. So keep what the next step depends on under a
    public name, and what it recomputes under a private one.
    """

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
        """Every number and tensor the optimizer holds under a public name (a subclass's
        too, with nothing to write); neither scratch (``_name``) nor the parameters and
        gradients themselves, which belong to the model. Tensors are copies."""
        return {
            k: v.clone() if isinstance(v, Tensor) else v
            for k, v in vars(self).items()
            if not k.startswith("_")
            and _is_state(v)
            and not (isinstance(v, Tensor) and self._is_parameter_buffer(v))
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`state_dict`: tensors are copied into the existing ones, in place.

        Keys that begin with an underscore are ignored: minidl 0.2 saved scratch buffers
        too (Adam's ``_denom``), and its checkpoints resume."""
        state = {k: v for k, v in state.items() if not k.startswith("_")}
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
