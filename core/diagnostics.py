"""Training diagnostics: per-layer gradient norms and activation saturation, once per epoch.

:class:`Diagnostics` is a training callback. After each epoch it runs one forward and one
backward pass on a fixed probe set (by default the whole training set) and adds to the
epoch's record

- ``grad_norm/linear0``, ``grad_norm/linear1``, ...: the L2 norm of each weight's gradient
  of the mean probe loss (the full-batch gradient at the epoch's final weights);
- ``saturation/sigmoid0``, ``saturation/tanh0``, ``saturation/relu0``, ...: per activation
  layer, the fraction of sigmoid outputs within 0.01 of 0 or 1, of tanh outputs with
  ``|out| > 0.99``, and of ReLU units that are dead (zero on every probe point);
- ``spread/sigmoid0``, ...: per activation layer, the standard deviation of each unit's
  output across the probe points, averaged over units: how much the layer's output still
  depends on the input. When it falls towards zero layer after layer, the network computes
  nearly the same thing for every point, which is how the seed's sigmoid nets failed.

Why a probe pass rather than averaging the mini-batch gradients the epoch computed: the
training loop zeroes gradients at each step, and the mini-batch gradients were taken at ten
different weights and carry sampling noise, whose norm does not vanish even when the
signal does. The full-batch gradient at one set of weights is exactly defined (a torch
autograd twin gives the same numbers), deterministic, and costs one extra pass per epoch,
about what the loop's own evaluation already spends. The parameters' gradient buffers are
restored afterwards, so training with the callback is bit-identical to training without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .data import Dataset
from .parameter import Parameter
from .protocols import Loss, Module
from .train import model_dtype_device


def sigmoid_saturation(output: Tensor, margin: float = 0.01) -> float:
    """Fraction of outputs within ``margin`` of 0 or 1, where sigmoid's slope is < margin."""
    return float(((output < margin) | (output > 1 - margin)).to(torch.float64).mean())


def tanh_saturation(output: Tensor, threshold: float = 0.99) -> float:
    """Fraction of outputs with ``|out| > threshold``, where tanh's slope is < 1 - threshold^2."""
    return float((output.abs() > threshold).to(torch.float64).mean())


def relu_dead(output: Tensor) -> float:
    """Fraction of units that output zero for every point: they pass no gradient at all."""
    return float((output <= 0).all(0).to(torch.float64).mean())


#: Saturation measures by registered layer name; a plugin may add its own activation's, or
#: give the layer a ``saturation(output) -> float`` method.
SATURATION: dict[str, Callable[[Tensor], float]] = {
    "sigmoid": sigmoid_saturation,
    "tanh": tanh_saturation,
    "relu": relu_dead,
}


def spread(output: Tensor) -> float:
    """Mean over units of the standard deviation across points (0 for a single point)."""
    if len(output) < 2:
        return 0.0
    return float(output.to(torch.float64).std(0, unbiased=False).mean())


def layer_names(model: Module) -> list[tuple[str, str, Module]]:
    """Each layer as (registered name, key such as ``linear0``, layer), counted per name."""
    layers: list[Module] = list(getattr(model, "layers", [model]))
    spec = getattr(model, "spec", None)
    if spec is not None and len(spec) == len(layers):
        kinds = [s.name for s in spec]
    else:
        kinds = [type(layer).__name__.lower() for layer in layers]
    counts: dict[str, int] = {}
    named = []
    for kind, layer in zip(kinds, layers, strict=True):
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        named.append((kind, f"{kind}{index}", layer))
    return named


class Diagnostics:
    """A callback for :func:`minidl.fit` (or :func:`minidl.run`) that records gradient norms
    and saturation per epoch; ``measure(model)`` gives the same numbers at any time.

    ``data`` is the probe set: pass the training set, never the test set, to see what the
    optimizer sees. ``points`` keeps only its first ``points`` rows, for cheaper probes.
    """

    def __init__(self, data: Dataset, loss: Loss, *, points: int | None = None) -> None:
        if points is not None:
            if points < 1:
                raise ValueError(f"Diagnostics: points must be at least 1, got {points}")
            data = Dataset(data.x[:points], data.y[:points])
        self.data, self.loss = data, loss

    def measure(self, model: Module) -> dict[str, float]:
        dtype, device = model_dtype_device(model)
        x = self.data.x.to(device=device, dtype=dtype)
        y = self.data.y.to(device=device, dtype=dtype)
        named = layer_names(model)
        params = model.parameters()
        saved = [p.grad.clone() for p in params]
        for p in params:
            p.zero_grad()
        # Layer by layer, so each activation's output can be read; this is what
        # Sequential.forward does, so the backward pass below sees the same caches.
        outputs = []
        for _, _, layer in named:
            x = layer.forward(x)
            outputs.append(x)
        self.loss.forward(x, y)
        model.backward(self.loss.backward())
        record: dict[str, float] = {}
        for (kind, name, layer), output in zip(named, outputs, strict=True):
            weight = getattr(layer, "weight", None)
            if isinstance(weight, Parameter):
                record[f"grad_norm/{name}"] = float(weight.grad.norm())
            measure = _saturation_measure(kind, layer)
            if measure is not None:
                record[f"saturation/{name}"] = measure(output)
                record[f"spread/{name}"] = spread(output)
        for p, grad in zip(params, saved, strict=True):
            p.grad.copy_(grad)
        return record

    def __call__(self, record: dict[str, Any], model: Module) -> None:
        record.update(self.measure(model))


def _saturation_measure(kind: str, layer: Module) -> Callable[[Tensor], float] | None:
    own = getattr(layer, "saturation", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    return SATURATION.get(kind)
