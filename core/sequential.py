"""A chain of modules that is itself a module."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .module import ModuleBase
from .parameter import Parameter
from .protocols import Module

if TYPE_CHECKING:
    from .spec import LayerSpec


def check_module(obj: Any, where: str) -> None:
    missing = [
        m for m in ("forward", "backward", "parameters") if not callable(getattr(obj, m, None))
    ]
    if missing:
        raise TypeError(
            f"{where}: {type(obj).__name__} object is not a module: it lacks "
            f"{', '.join(missing)} (a module needs forward, backward and parameters)"
        )


class Sequential(ModuleBase):
    """``Sequential(Linear(2, 25), ReLU(), ...)``: forward in order, backward in reverse."""

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            check_module(m, f"Sequential item {i}")
        self.layers: tuple[Module, ...] = modules
        # Bound methods looked up once: the training loop calls them every step.
        self._forwards: tuple[Callable[[Tensor], Tensor], ...] = tuple(m.forward for m in modules)
        self._backwards = tuple(m.backward for m in reversed(modules))
        #: How the model was built from registered layers (set by minidl.build_model);
        #: saving a model needs it.
        self.spec: list[LayerSpec] | None = None

    def forward(self, x: Tensor) -> Tensor:
        for forward in self._forwards:
            x = forward(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        for backward in self._backwards:
            grad_output = backward(grad_output)
        return grad_output

    def parameters(self) -> list[Parameter]:
        return [p for m in self.layers for p in m.parameters()]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Sequential:
        for m in self.layers:
            move = getattr(m, "to", None)
            if callable(move):
                move(device=device, dtype=dtype)
            else:
                for p in m.parameters():
                    p.to(device=device, dtype=dtype)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"Sequential({inner}\n)"
