"""A plugin written against minidl 0.1, as its docs/plugins.md taught (``git show
fb3ab95:docs/plugins.md``, the last commit of 0.1), and the example package of that
release showed. Keep it as a 0.1 user wrote it: do not modernise it. If a later minidl
needs a change here, that minidl broke 0.1 plugins, which CHANGELOG.md must say under
"Removed" or "Changed".

What 0.1 documented, and this file relies on:

- layers: any object with ``forward``, ``backward`` and ``parameters``; trainable tensors
  are ``minidl.Parameter(tensor)``, and backward adds into ``Parameter.grad`` in place; a
  factory whose first argument is ``in_features`` gets the width; ``out_features`` when
  it changes the width. 0.1's ``Sequential.to`` called a layer's own ``to`` as
  ``to(device=..., dtype=...)``, so layers defined it with those two parameters.
- losses: ``forward(prediction, target)`` a 0-dim tensor, ``backward()``, an optional
  ``accuracy(prediction, target)``.
- optimizers: ``Factory(parameters, lr=..., **hyperparameters)``, ``step``, ``zero_grad``,
  a plain ``lr``; either on plain Parameters (updating ``p.data`` in place) or a
  ``minidl.FlatOptimizer`` subclass on ``self.data`` and ``self.grad`` (the example
  package's momentum_sgd wrote its own ``state_dict`` on top of the base's).
- datasets: ``factory(seed=..., n_train=..., n_test=...)`` returns ``(train, test)``, two
  ``minidl.Dataset(x, y)`` with 2-D ``x`` and ``y``.
- commands: ``register_commands(cli)`` adds click commands to ``minidl-run``.

Every hook is a module-level function marked ``@hookimpl`` whose argument is named as the
hook's.
"""

import math

import click
import torch
from torch import Tensor

from minidl import Dataset, FlatOptimizer, Parameter, hookimpl


class Scale:
    """y = x * w, one weight per feature. No base class: three methods make a layer, and
    its own ``to`` as 0.1 called it."""

    def __init__(self, in_features):
        self.weight = Parameter(torch.ones(in_features))
        self.out_features = in_features

    def forward(self, x):
        self.x = x
        return x * self.weight.data

    def backward(self, grad_output):
        self.weight.grad += (grad_output * self.x).sum(0)
        return grad_output * self.weight.data

    def parameters(self):
        return [self.weight]

    def to(self, device=None, dtype=None):
        for p in self.parameters():
            p.to(device=device, dtype=dtype)
        return self


class L1:
    """Mean absolute error, with its own accuracy (the prediction rounded)."""

    def forward(self, prediction, target):
        self.diff = prediction - target
        return self.diff.abs().mean()

    def backward(self):
        return self.diff.sign() / self.diff.numel()

    def accuracy(self, prediction, target):
        return float(((prediction > 0.5) == (target > 0.5)).float().mean())


class Adagrad:
    """The docs' Adagrad, on plain Parameters: no state_dict, so its runs cannot resume."""

    def __init__(self, parameters, lr=0.01, eps=1e-10):
        self.params, self.lr, self.eps = list(parameters), lr, eps
        self.sums = [torch.zeros_like(p.data) for p in self.params]

    def step(self):
        for p, s in zip(self.params, self.sums):  # noqa: B905 (as the docs wrote it)
            s.addcmul_(p.grad, p.grad)
            p.data.addcdiv_(p.grad, s.sqrt().add_(self.eps), value=-self.lr)

    def zero_grad(self):
        for p in self.params:
            p.grad.zero_()


class HeavyBall(FlatOptimizer):
    """SGD with momentum on the flat buffers, its state written by hand as the 0.1 example
    package's momentum_sgd did: a state_dict on top of the base's, a load_state_dict that
    calls the base's first."""

    def __init__(self, parameters, lr, momentum=0.9):
        if not (math.isfinite(momentum) and momentum >= 0):
            raise ValueError(
                f"heavy_ball: momentum must be a non-negative number, got {momentum!r}"
            )
        super().__init__(parameters, lr)
        self.momentum = momentum
        self.buffer = torch.zeros_like(self.data)
        self.started = False

    def step(self):
        if self.started:
            self.buffer.mul_(self.momentum).add_(self.grad)
        else:
            self.buffer.copy_(self.grad)
            self.started = True
        self.data.add_(self.buffer, alpha=-self.lr)

    def state_dict(self):
        return {"lr": self.lr, "started": int(self.started), "buffer": self.buffer.clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.started = bool(state["started"])
        buffer = state["buffer"]
        assert isinstance(buffer, Tensor)
        self.buffer.copy_(buffer)


def diagonal(seed=0, n_train=1000, n_test=1000):
    """Points of [0, 1]^2, label 1 above the diagonal."""
    generator = torch.Generator().manual_seed(seed)

    def make(n):
        x = torch.rand(n, 2, generator=generator)
        return Dataset(x, (x[:, 1:] > x[:, :1]).float())

    return make(n_train), make(n_test)


@hookimpl
def register_layers(register):
    register("scale", Scale)


@hookimpl
def register_losses(register):
    register("l1", L1)


@hookimpl
def register_optimizers(register):
    register("adagrad", Adagrad)
    register("heavy_ball", HeavyBall)


@hookimpl
def register_datasets(register):
    register("diagonal", diagonal)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.option("--n", default=10, help="How many points.")
    def diagonal_info(n):
        """Count the points above the diagonal."""
        train, _ = diagonal(seed=0, n_train=n, n_test=1)
        click.echo(f"diagonal: {int(train.y.sum())} of {len(train)} above")
