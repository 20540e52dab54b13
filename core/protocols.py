"""What a module, a loss and an optimizer are: three small protocols, no base class needed.

Everything beyond the required methods is optional, looked up with ``getattr``, so a layer
written for an older minidl keeps working. :class:`minidl.ModuleBase` and
:class:`minidl.FlatOptimizer` implement the optional parts for their subclasses.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from .parameter import Parameter


@runtime_checkable
class Module(Protocol):
    """Anything with these three methods is a layer or a network.

    ``forward`` takes a batch, batch dimension first: ``(N, ...)``. ``backward`` receives
    the gradient of the loss with respect to the output of the last ``forward`` call, adds
    its parameters' gradients into ``Parameter.grad`` (in place) and returns the gradient
    with respect to that call's input.

    Optional, with torch's names and meanings. minidl calls each in the one form shown
    here and no other, so a layer may define it with exactly these parameters:

    - ``training`` (bool) and ``train(mode)``, called with one positional bool, returning
      the module; ``eval()``, no arguments, is ``train(False)``. A layer without ``train``
      has no modes.
    - ``buffers()``, no arguments: tensors that are state but are not trained (running
      statistics). Saving, loading and resuming copy into these very tensors, in place.
    - ``named_parameters(prefix)`` and ``named_buffers(prefix)``, called with one
      positional string: ``(prefix + name, tensor)`` pairs, for a layer that names its own
      (without them the attribute holding each is its name).
    - ``to(device=None, dtype=None)``, always called with both as keywords (a
      ``torch.device`` or None, a ``torch.dtype`` or None): move the parameters (with
      ``Parameter.to``) and buffers. ``model.to(torch.float64)`` and torch's other forms
      are parsed once (:func:`minidl.module.parse_to`) before a layer's ``to`` is called.
      A layer without ``to`` has its parameters moved for it.
    - ``output_range = (low, high)``: the closed range of its outputs;
      :func:`minidl.fit` refuses targets outside it when the layer is the model's last.
    - ``elementwise = False`` (a class attribute): the layer is not element-wise (it
      reshapes, pools, mixes elements or is random), so ``--activation`` refuses it; a
      layer that declares nothing counts as element-wise.
    """

    def forward(self, x: Tensor) -> Tensor: ...

    def backward(self, grad_output: Tensor) -> Tensor: ...

    def parameters(self) -> list[Parameter]: ...


@runtime_checkable
class Loss(Protocol):
    """``forward`` returns a 0-dim tensor; ``backward`` the gradient w.r.t. the prediction.

    Optional: ``accuracy(prediction, target) -> float``, used instead of
    :func:`minidl.accuracy`; ``check_target(target)`` raising ValueError for targets it
    cannot use, called once before training; ``class_targets = True`` when it takes
    ``(N,)`` int64 class indices (a CSV's last column of labels 0..k-1 then loads as such).
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor: ...

    def backward(self) -> Tensor: ...


@runtime_checkable
class Optimizer(Protocol):
    """Made as ``Factory(parameters, lr=..., **settings)``.

    ``lr`` is a plain attribute so that learning-rate schedules can change it between
    steps. Optional: ``state_dict()`` and ``load_state_dict(state)`` (torch's names),
    without which a run cannot be resumed.
    """

    lr: float

    def step(self) -> None: ...

    def zero_grad(self) -> None: ...
