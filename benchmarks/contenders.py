"""The contenders, built from the same initial weights: minidl (a user's step and minidl.fit),
the torch twin (torch.nn + autograd + torch.optim, as a user writes it) and the hand-fused floor.

Each ``make_*`` returns ``run(n)``, which trains ``n`` steps and returns how many it did;
the benchmark times it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import minidl
from minidl.plugins import SGD, Adam, Linear

from .floor import FusedMLP

Runner = Callable[[int], int]


@dataclass(frozen=True)
class Net:
    """An MLP of the seed's family: ``sizes[0]`` inputs, hidden layers, one sigmoid output."""

    sizes: tuple[int, ...]
    activation: str = "relu"

    @property
    def label(self) -> str:
        return "-".join(map(str, self.sizes))

    def spec(self) -> str:
        return minidl.mlp(list(self.sizes[1:-1]), self.activation, self.sizes[-1])


@dataclass(frozen=True)
class Training:
    net: Net
    optimizer: str  # "sgd" or "adam"
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0


def minidl_model(t: Training) -> minidl.Sequential:
    torch.manual_seed(t.seed)  # the same initial weights for every contender
    return minidl.build_model(t.net.spec(), t.net.sizes[0]).to(device=t.device, dtype=t.dtype)


def minidl_optimizer(t: Training, model: minidl.Sequential) -> SGD | Adam:
    if t.optimizer == "sgd":
        return SGD(model.parameters(), lr=t.lr)
    return Adam(model.parameters(), lr=t.lr, betas=t.betas)


def linear_weights(model: minidl.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(m.weight.data, m.bias.data) for m in model.layers if isinstance(m, Linear)]


def twin_model(t: Training) -> torch.nn.Sequential:
    """torch.nn layers holding a copy of minidl's initial weights."""
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    layers: list[torch.nn.Module] = []
    weights = linear_weights(minidl_model(t))
    for i, (w, b) in enumerate(weights):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=t.dtype, device=t.device)
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        layers.append(linear)
        last = i == len(weights) - 1
        layers.append(torch.nn.Sigmoid() if last else activation[t.net.activation]())
    return torch.nn.Sequential(*layers)


def twin_optimizer(t: Training, net: torch.nn.Module) -> torch.optim.Optimizer:
    # Default settings, as a user writes it (on the CPU, torch.optim picks its per-tensor loop).
    if t.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=t.lr)
    return torch.optim.Adam(net.parameters(), lr=t.lr, betas=t.betas)


def make_minidl(t: Training, x: Tensor, y: Tensor) -> Runner:
    """A user's training step through the public API, written the obvious way."""
    model = minidl_model(t)
    optimizer = minidl_optimizer(t, model)
    loss = minidl.plugins.MSE()

    def run(n: int) -> int:
        for _ in range(n):
            optimizer.zero_grad()
            loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            optimizer.step()
        return n

    return run


def make_fit(t: Training, x: Tensor, y: Tensor, steps_per_epoch: int) -> Runner:
    """minidl.fit on ``steps_per_epoch`` batches like (x, y): shuffling every epoch, one loss
    check per epoch and an evaluation at the end included in its time."""
    model = minidl_model(t)
    optimizer = minidl_optimizer(t, model)
    loss = minidl.plugins.MSE()
    data = minidl.Dataset(x.repeat(steps_per_epoch, 1), y.repeat(steps_per_epoch, 1))
    batch = len(x)

    def run(n: int) -> int:
        epochs = max(1, round(n / steps_per_epoch))
        minidl.fit(
            model,
            loss,
            optimizer,
            data,
            epochs=epochs,
            batch_size=batch,
            evaluate_every_epoch=False,
        )
        return epochs * steps_per_epoch

    return run


def make_twin(t: Training, x: Tensor, y: Tensor) -> Runner:
    net = twin_model(t)
    optimizer = twin_optimizer(t, net)
    loss_fn = torch.nn.MSELoss()

    def run(n: int) -> int:
        with torch.enable_grad():  # as in a script without minidl, which turns autograd off
            for _ in range(n):
                optimizer.zero_grad()
                loss = loss_fn(net(x), y)
                loss.backward()
                optimizer.step()
        return n

    return run


def make_floor(t: Training, x: Tensor, y: Tensor) -> Runner:
    fused = FusedMLP(
        linear_weights(minidl_model(t)), t.net.activation, t.optimizer, t.lr, betas=t.betas
    )
    step = fused.step

    def run(n: int) -> int:
        for _ in range(n):
            step(x, y)
        return n

    return run
