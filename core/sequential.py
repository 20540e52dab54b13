"""A chain of modules that is itself a module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from .module import ModuleBase, move, named_buffers, named_parameters, parse_to, set_mode
from .parameter import Parameter
from .protocols import Module


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
    """``Sequential(Linear(2, 25), ReLU(), ...)``: forward in order, backward in reverse.

    Two optional extras of a module make a chain faster without changing a result:

    - ``forward_(x)`` / ``backward_(grad)``: in-place twins of forward and backward that
      may overwrite their argument (at batch 10,000 allocating a fresh 1 MB tensor costs
      more than the arithmetic on it). Sequential calls them only when the argument was
      just made by the neighbouring module and nobody else holds it: when that neighbour
      says so with ``returns_fresh = True`` (a Linear layer's addmm and mm results).
    - ``backward_parameters(grad)``: backward that accumulates the parameter gradients
      but skips the gradient with respect to the input. :meth:`backward_parameters` uses
      it on the first module, for training loops that do not need the input gradient.
    """

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            check_module(m, f"Sequential item {i}")
        self.layers: tuple[Module, ...] = modules
        self._link()

    def _link(self) -> None:
        modules = self.layers
        fresh = [getattr(m, "returns_fresh", False) is True for m in modules]
        self._fresh: tuple[bool, ...] = tuple(fresh)  # per module: its results are new tensors

        def method(m: Module, name: str, allowed: bool) -> Callable[[Tensor], Tensor]:
            alternative = getattr(m, name, None) if allowed else None
            chosen: Callable[[Tensor], Tensor] = (
                alternative if callable(alternative) else getattr(m, name.rstrip("_"))
            )
            return chosen

        # Bound methods looked up once: the training loop calls them every step.
        self._forwards: tuple[Callable[[Tensor], Tensor], ...] = tuple(
            method(m, "forward_", i > 0 and fresh[i - 1]) for i, m in enumerate(modules)
        )
        backwards = [
            method(m, "backward_", i + 1 < len(modules) and fresh[i + 1])
            for i, m in enumerate(modules)
        ]
        self._backwards = tuple(reversed(backwards))
        first = getattr(modules[0], "backward_parameters", None) if modules else None
        self._backwards_parameters: tuple[Callable[[Tensor], Any], ...] = (
            (*reversed(backwards[1:]), first) if callable(first) else self._backwards
        )

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end, as torch's ``Sequential.append``."""
        check_module(module, f"Sequential item {len(self.layers)}")
        made_of_them = self._init_args == (self.layers, {})  # not a subclass's own arguments
        self.layers = (*self.layers, module)
        if made_of_them:  # what a model file records
            self._init_args = (self.layers, {})
        self._link()
        return self

    def forward(self, x: Tensor) -> Tensor:
        for forward in self._forwards:
            x = forward(x)
        return x

    # The backward passes run under torch.inference_mode(): minidl records no graph, and
    # there an ATen call skips autograd's bookkeeping (version counters, view tracking),
    # a microsecond or so of each, which a small network's step is mostly made of. Inside,
    # parameter gradients accumulate in place as anywhere; what is made there is an
    # inference tensor, so the input gradient handed back is a copy, an ordinary tensor
    # that the caller may change in place or feed to torch's autograd.
    def backward(self, grad_output: Tensor) -> Tensor:
        grad = grad_output
        with torch.inference_mode():
            for backward in self._backwards:
                grad = backward(grad)
        if grad is grad_output or torch.is_inference_mode_enabled():  # an enclosing chain's
            return grad
        return grad.clone()

    def backward_parameters(self, grad_output: Tensor) -> None:
        """Accumulate the parameter gradients as :meth:`backward` does, without computing
        the gradient with respect to the input (a data batch needs none)."""
        with torch.inference_mode():
            for backward in self._backwards_parameters:
                grad_output = backward(grad_output)

    def parameters(self) -> list[Parameter]:
        return [p for m in self.layers for p in m.parameters()]

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        return [x for i, m in enumerate(self.layers) for x in named_parameters(m, f"{prefix}{i}.")]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        return [x for i, m in enumerate(self.layers) for x in named_buffers(m, f"{prefix}{i}.")]

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for m in self.layers:
            set_mode(m, mode)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Sequential:
        """torch's forms (``to(torch.float64)``, ``to("cpu", torch.float64)``, keywords);
        each layer's own ``to`` gets keywords (:func:`minidl.module.move`)."""
        device, dtype = parse_to(*args, **kwargs)
        for m in self.layers:
            move(m, device=device, dtype=dtype)
        return self

    def _children(self) -> list[Any]:
        return list(self.layers)

    def named_children(self) -> Iterator[tuple[str, Any]]:
        return ((str(i), m) for i, m in enumerate(self.layers))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __repr__(self) -> str:
        # Nested modules indented, as torch prints them.
        inner = "".join(
            f"\n  ({i}): " + repr(m).replace("\n", "\n  ") for i, m in enumerate(self.layers)
        )
        return f"Sequential({inner}\n)"
