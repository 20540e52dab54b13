"""What a module, a loss and an optimizer are: three small protocols, no base class needed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from .parameter import Parameter


@runtime_checkable
class Module(Protocol):
    """Anything with these three methods is a layer or a network.

    ``backward`` receives the gradient of the loss with respect to the output of the last
    ``forward`` call, adds the gradients of its parameters into ``Parameter.grad`` (in
    place) and returns the gradient with respect to that call's input.

    A layer whose outputs lie in a closed range may say so as ``output_range = (low, high)``:
    :func:`minidl.fit` then refuses targets outside it when the layer is the model's last.
    """

    def forward(self, x: Tensor) -> Tensor: ...

    def backward(self, grad_output: Tensor) -> Tensor: ...

    def parameters(self) -> list[Parameter]: ...


@runtime_checkable
class Loss(Protocol):
    """``forward`` returns a 0-dim tensor; ``backward`` the gradient w.r.t. the prediction.

    A loss may also define ``accuracy(prediction, target) -> float``; the training loop
    uses it instead of :func:`minidl.accuracy` when present. It may define
    ``check_target(target)``, raising ValueError for targets it cannot use (labels outside
    [0, 1] for a cross-entropy): :func:`minidl.fit` calls it once, before training.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor: ...

    def backward(self) -> Tensor: ...


@runtime_checkable
class Optimizer(Protocol):
    """Made as ``Factory(parameters, lr=..., **hyperparameters)``.

    ``lr`` is a plain attribute so that learning-rate schedules can change it between steps.
    """

    lr: float

    def step(self) -> None: ...

    def zero_grad(self) -> None: ...


class OptimizerFactory(Protocol):
    def __call__(
        self, parameters: Iterable[Parameter], lr: float, **hyperparameters: Any
    ) -> Optimizer: ...
