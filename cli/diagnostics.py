"""Training diagnostics: per-layer gradient norms and activation saturation, once per epoch.

:class:`Diagnostics` is a training callback. At the end of each epoch it runs one forward and one
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

Saturation is measured by layers that say how: a ``saturation(output) -> float`` method
(the built-in sigmoid, tanh and relu have one). The probe pass runs in eval mode, so no
running statistic moves and no random number is drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

import minidl
from minidl import Callback, Dataset, Loss, Module, Parameter, Trainer
from minidl.checks import steps
from minidl.module import set_mode
from minidl.train import model_dtype_device


def spread(output: Tensor) -> float:
    """Mean over units of the standard deviation across examples (0 for a single one)."""
    if len(output) < 2:
        return 0.0
    return float(output.flatten(1).to(torch.float64).std(0, unbiased=False).mean())


def layer_names(model: Module) -> list[tuple[str, Module]]:
    """Each layer that the model's forward runs in turn (see :func:`minidl.checks.steps`:
    a container such as ``residual`` is one) with a key such as ``linear0``: its
    registered name, counted per name."""
    counts: dict[str, int] = {}
    named = []
    for _, layer in steps(model):
        kind = minidl.registry.name_of("layer", type(layer)) or type(layer).__name__.lower()
        counts[kind] = counts.get(kind, -1) + 1
        named.append((f"{kind}{counts[kind]}", layer))
    return named


class Diagnostics(Callback):
    """A callback for :func:`minidl.fit` (or :func:`minidl.cli.run`) that records gradient
    norms and saturation per epoch; ``measure(model)`` gives the same numbers at any time.

    ``data`` is the probe set: pass the training set, never the test set, to see what the
    optimizer sees. ``points`` keeps only its first ``points`` examples, for cheaper probes.
    """

    def __init__(self, data: Dataset, loss: Loss, *, points: int | None = None) -> None:
        if points is not None:
            if points < 1:
                raise ValueError(f"Diagnostics: points must be at least 1, got {points}")
            data = Dataset(data.x[:points], data.y[:points])
        self.data, self.loss = data, loss

    @torch.no_grad()
    def measure(self, model: Module) -> dict[str, float]:
        dtype, device = model_dtype_device(model)
        data = self.data.to(device, dtype)
        named = layer_names(model)
        params = model.parameters()
        saved = [p.grad.clone() for p in params]
        for p in params:
            p.zero_grad()
        was = getattr(model, "training", True)
        set_mode(model, False)
        # Layer by layer, so each layer's output can be read; this is what
        # Sequential.forward does, so the backward pass below sees the same caches.
        outputs, x = [], data.x
        for _, layer in named:
            x = layer.forward(x)
            outputs.append(x)
        self.loss.forward(x, data.y)
        model.backward(self.loss.backward())
        set_mode(model, was)
        record: dict[str, float] = {}
        for (name, layer), output in zip(named, outputs, strict=True):
            weight = getattr(layer, "weight", None)
            if isinstance(weight, Parameter):
                record[f"grad_norm/{name}"] = float(weight.grad.norm())
            saturation = getattr(layer, "saturation", None)
            if callable(saturation):
                record[f"saturation/{name}"] = float(saturation(output))
                record[f"spread/{name}"] = spread(output)
        for p, grad in zip(params, saved, strict=True):
            p.grad.copy_(grad)
        return record

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        trainer.record.update(self.measure(model))
