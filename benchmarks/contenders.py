"""The contenders, built from the same initial weights: minidl (a user's step and minidl.fit),
the torch twin (``benchmarks/twin.py``: torch.nn + autograd + torch.optim, as a user writes
it) and the hand-fused floor; and :func:`interleave`, which times them side by side.

Each contender's ``run(n)`` trains about ``n`` steps and returns how many it did; the
benchmark times it. ``weights()`` and ``last_loss()`` let a test check that the contenders
train the same network: the same weights, and the same loss at every step.

The minidl contenders run as a user's code does: torch's grad mode as torch starts (on;
``import minidl`` changes nothing), the step through the public API, ``minidl.fit``
guarding itself with ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import minidl
from minidl.cli.experiment import mlp
from minidl.plugins import MSE, Linear

from .floor import FusedMLP
from .twin import LOSSES, torch_optimizer, torch_twin

#: ``run(n)``: train about ``n`` steps; returns how many it did.
Runner = Callable[[int], int]


@dataclass
class Contender:
    run: Runner
    #: Every parameter, flattened and concatenated in torch's order (a copy).
    weights: Callable[[], Tensor]
    #: The loss of the last step ``run`` took (before that step's update); ``None`` for a
    #: contender that does not see its step losses (``minidl.fit``).
    last_loss: Callable[[], float | None] = field(default=lambda: None)


@dataclass(frozen=True)
class Net:
    """An MLP of the seed's family: ``sizes[0]`` inputs, hidden layers, one sigmoid output."""

    sizes: tuple[int, ...]
    activation: str = "relu"

    @property
    def label(self) -> str:
        return "-".join(map(str, self.sizes))

    def spec(self) -> str:
        return mlp(list(self.sizes[1:-1]), self.activation, self.sizes[-1])


@dataclass(frozen=True)
class Training:
    net: Net
    optimizer: str  # "sgd" or "adam"
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0

    @property
    def settings(self) -> dict[str, Any]:
        """The optimizer's settings besides the learning rate (minidl's and torch's alike)."""
        return {"betas": self.betas} if self.optimizer == "adam" else {}


def flat_weights(params: Any) -> Tensor:
    """Parameters (minidl's or torch's) flattened into one new tensor, in order."""
    return torch.cat([getattr(p, "data", p).detach().flatten() for p in params])


def minidl_model(t: Training) -> minidl.Sequential:
    torch.manual_seed(t.seed)  # the same initial weights for every contender
    return minidl.build(t.net.spec(), (t.net.sizes[0],)).to(device=t.device, dtype=t.dtype)


def minidl_optimizer(t: Training, model: minidl.Sequential) -> minidl.Optimizer:
    optimizer: minidl.Optimizer = minidl.create(
        "optimizer", t.optimizer, model.parameters(), lr=t.lr, **t.settings
    )
    return optimizer


def linear_weights(model: minidl.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(m.weight.data, m.bias.data) for m in model.layers if isinstance(m, Linear)]


def twin_model(t: Training) -> torch.nn.Sequential:
    """The torch twin (benchmarks/twin.py) of minidl's model, holding its initial weights."""
    return torch_twin(minidl_model(t))


def twin_optimizer(t: Training, net: torch.nn.Module) -> torch.optim.Optimizer:
    # Default settings, as a user writes it (on the CPU, torch.optim picks its per-tensor loop).
    return torch_optimizer(t.optimizer, net.parameters(), t.lr, **t.settings)


# --- any model: the step, fit and the twin ------------------------------------------------


def step_contender(
    model: Any, loss: Any, optimizer: Any, x: Tensor, y: Tensor, *, parameters_only: bool = False
) -> Contender:
    """A user's training step through the public API, written the obvious way.
    ``parameters_only``: ``model.backward_parameters``, which skips the gradient with
    respect to the data (what ``minidl.fit`` does)."""
    last: list[Tensor | None] = [None]
    backward = model.backward_parameters if parameters_only else model.backward

    def run(n: int) -> int:
        value = None
        for _ in range(n):
            optimizer.zero_grad()
            value = loss.forward(model.forward(x), y)
            backward(loss.backward())
            optimizer.step()
        last[0] = value
        return n

    return Contender(
        run,
        lambda: flat_weights(model.parameters()),
        lambda: None if last[0] is None else float(last[0]),
    )


def fit_contender(
    model: Any, loss: Any, optimizer: Any, x: Tensor, y: Tensor, steps_per_epoch: int
) -> Contender:
    """minidl.fit on ``steps_per_epoch`` batches like (x, y): shuffling every epoch, one
    loss check per epoch and an evaluation at the end included in its time."""
    data = minidl.Dataset(torch.cat([x] * steps_per_epoch), torch.cat([y] * steps_per_epoch))
    batch = x.shape[0]

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

    return Contender(run, lambda: flat_weights(model.parameters()))


def twin_contender(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
) -> Contender:
    """The twin's step as a user writes it: zero_grad, forward, loss, backward, step."""
    last: list[Tensor | None] = [None]

    def run(n: int) -> int:
        value = None
        with torch.enable_grad():  # torch's default; said here so no caller can change it
            for _ in range(n):
                optimizer.zero_grad()
                value = loss_fn(net(x), y)
                value.backward()
                optimizer.step()
        last[0] = value
        return n

    return Contender(
        run,
        lambda: flat_weights(net.parameters()),
        lambda: None if last[0] is None else float(last[0].detach()),
    )


# --- the seed's MLPs -----------------------------------------------------------------------


def make_minidl(t: Training, x: Tensor, y: Tensor) -> Contender:
    model = minidl_model(t)
    return step_contender(model, MSE(), minidl_optimizer(t, model), x, y)


def make_fit(t: Training, x: Tensor, y: Tensor, steps_per_epoch: int) -> Contender:
    model = minidl_model(t)
    return fit_contender(model, MSE(), minidl_optimizer(t, model), x, y, steps_per_epoch)


def make_twin(t: Training, x: Tensor, y: Tensor) -> Contender:
    net = twin_model(t)
    return twin_contender(net, twin_optimizer(t, net), LOSSES[MSE], x, y)


def make_floor(t: Training, x: Tensor, y: Tensor) -> Contender:
    fused = FusedMLP(
        linear_weights(minidl_model(t)), t.net.activation, t.optimizer, t.lr, betas=t.betas
    )
    step = fused.step
    last: list[Tensor | None] = [None]

    def run(n: int) -> int:
        value = None
        for _ in range(n):
            value = step(x, y)
        last[0] = value
        return n

    return Contender(
        run, lambda: fused.data.clone(), lambda: None if last[0] is None else float(last[0])
    )


# --- timing --------------------------------------------------------------------------------


def interleave(
    runners: dict[str, Runner],
    steps: int,
    rounds: int,
    now: Callable[[], float],
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per step of each runner, one block of ``steps`` per round, the runners in
    turn with the order rotating from round to round, so that nobody always goes first."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync()
            start = now()
            done = runners[name](steps)
            sync()
            times[name].append((now() - start) / done)
    return times
