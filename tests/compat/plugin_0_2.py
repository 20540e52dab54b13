"""A plugin written against minidl 0.2, as its docs/plugins.md taught (``git show
70f6a9c:docs/plugins.md``, the release commit) and the Module protocol's docstring
described. Keep it as a 0.2 user wrote it: do not modernise it. If a later minidl needs a
change here, that minidl broke 0.2 plugins, which CHANGELOG.md must say under "Removed"
or "Changed".

What 0.2 documented, beyond 0.1 (tests/compat/plugin_0_1.py), and this file relies on:

- stateful layers: modes (``training``, ``train(mode=True)`` returning the layer,
  ``eval()``) and buffers (``buffers()``, updated in place), with or without
  ``minidl.ModuleBase``; a layer without the base class gets its ``init_args`` when a
  spec builds it, which is what saving needs; a layer may move itself with its own
  ``to``.
- settings: a factory's keyword arguments, given in spec syntax (``ramp(warmup=4)``).
- losses: an optional ``check_target(target)`` raising ValueError, called before training.
- optimizers: a ``FlatOptimizer`` subclass resumes with no state code written (the docs'
  Momentum); any other optimizer resumes if it has ``state_dict()`` and
  ``load_state_dict(state)``.
- datasets: ``factory(seed=..., **settings)``; ``n_train`` and ``n_test`` are passed only
  when given.
"""

import click
import torch

from minidl import Dataset, FlatOptimizer, ModuleBase, Parameter, hookimpl


class Ramp:
    """y = x * min(1, (t + 1) / warmup) + bias, where t counts the training batches seen: a
    layer that eases its input in over the first ``warmup`` batches. No base class: its
    modes, its buffer (the count) and its ``to`` are its own."""

    def __init__(self, in_features, warmup=8):
        self.warmup = warmup
        self.bias = Parameter(torch.zeros(in_features), "bias")
        self.count = torch.zeros((), dtype=torch.int64)
        self.out_features = in_features
        self.training = True

    def forward(self, x):
        if self.training:
            self.count += 1  # in place: loading copies into this very tensor
        self.gain = min(1.0, int(self.count) / self.warmup)
        return x * self.gain + self.bias.data

    def backward(self, grad_output):
        self.bias.grad += grad_output.sum(0)
        return grad_output * self.gain

    def parameters(self):
        return [self.bias]

    def buffers(self):
        return [self.count]

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        self.bias.to(device=device, dtype=dtype)
        self.count = self.count.to(device=device)  # a count stays an integer
        return self


class Leaky(ModuleBase):
    """LeakyReLU with a setting, on the base class."""

    def __init__(self, slope=0.01):
        self.slope = slope

    def forward(self, x):
        self.negative = x < 0
        return torch.where(self.negative, x * self.slope, x)

    def backward(self, grad_output):
        return torch.where(self.negative, grad_output * self.slope, grad_output)


class LogLoss:
    """Binary cross-entropy on probabilities, mean over the batch; refuses targets outside
    [0, 1] before training."""

    def __init__(self, eps=1e-7):
        self.eps = eps

    def forward(self, prediction, target):
        self.p = prediction.clamp(self.eps, 1 - self.eps)
        self.target = target
        loss = -(target * self.p.log() + (1 - target) * (1 - self.p).log())
        return loss.mean()

    def backward(self):
        return (self.p - self.target) / (self.p * (1 - self.p)) / self.p.numel()

    def check_target(self, target):
        if target.min() < 0 or target.max() > 1:
            raise ValueError("log_loss needs targets in [0, 1]")


class Momentum(FlatOptimizer):
    """The docs' Momentum: v = momentum * v + grad; w -= lr * v. No state_dict written: the
    base class's captures the velocity."""

    def __init__(self, parameters, lr, momentum=0.9):
        super().__init__(parameters, lr)  # checks lr, packs the parameters
        self.momentum = momentum
        self.velocity = torch.zeros_like(self.data)

    def step(self):
        self.velocity.mul_(self.momentum).add_(self.grad)
        self.data.add_(self.velocity, alpha=-self.lr)


class RMSprop:
    """RMSprop on plain Parameters, with a hand-written state_dict of numbers and tensors."""

    def __init__(self, parameters, lr=0.01, alpha=0.99, eps=1e-8):
        self.params, self.lr, self.alpha, self.eps = list(parameters), lr, alpha, eps
        self.squares = [torch.zeros_like(p.data) for p in self.params]

    def step(self):
        for p, s in zip(self.params, self.squares):  # noqa: B905 (as the docs wrote it)
            s.mul_(self.alpha).addcmul_(p.grad, p.grad, value=1 - self.alpha)
            p.data.addcdiv_(p.grad, s.sqrt().add_(self.eps), value=-self.lr)

    def zero_grad(self):
        for p in self.params:
            p.grad.zero_()

    def state_dict(self):
        state = {"lr": self.lr, "alpha": self.alpha}
        state.update({f"square{i}": s.clone() for i, s in enumerate(self.squares)})
        return state

    def load_state_dict(self, state):
        self.lr, self.alpha = float(state["lr"]), float(state["alpha"])
        for i, s in enumerate(self.squares):
            s.copy_(state[f"square{i}"])


def blobs(seed=0, n_train=500, n_test=500, spread=0.15):
    """Two Gaussian blobs in the plane, label 1 for the one around (0.7, 0.7)."""
    generator = torch.Generator().manual_seed(seed)

    def make(n):
        y = (torch.rand(n, 1, generator=generator) < 0.5).float()
        centre = 0.3 + 0.4 * y
        return Dataset(centre + spread * torch.randn(n, 2, generator=generator), y)

    return make(n_train), make(n_test)


@hookimpl
def register_layers(register):
    register("ramp", Ramp)
    register("leaky", Leaky)


@hookimpl
def register_losses(register):
    register("log_loss", LogLoss)


@hookimpl
def register_optimizers(register):
    register("momentum", Momentum)
    register("rmsprop", RMSprop)


@hookimpl
def register_datasets(register):
    register("blobs", blobs)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.option("--spread", default=0.15, help="The blobs' standard deviation.")
    def blobs_info(spread):
        """Count the points of each blob."""
        train, _ = blobs(seed=0, n_train=10, n_test=1, spread=spread)
        click.echo(f"blobs: {int(train.y.sum())} of {len(train)} around (0.7, 0.7)")
