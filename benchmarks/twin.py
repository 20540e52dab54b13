"""The torch twin: a ``torch.nn`` + autograd + ``torch.optim`` copy of a minidl model, the
reference that tests compare against and benchmarks race.

:func:`torch_twin` builds a ``torch.nn.Sequential`` of the same layers and loads the minidl
model's ``state_dict()`` into it (the keys are torch's), so both start from the same
weights. :func:`twin_fit` trains it as :func:`minidl.fit` trains: the same shuffling
generator, the same batches in the same order, the same evaluation after each epoch.
A plugin's layers join by adding a builder to :data:`TWINS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import minidl
from minidl.plugins import MSE, CrossEntropy, Linear, ReLU, Sigmoid, Standardize, Tanh


class _Standardize(torch.nn.Module):
    def __init__(self, layer: Standardize) -> None:
        super().__init__()
        self.mean, self.std = layer.mean.clone(), layer.std.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


#: minidl layer class -> a builder of its torch.nn twin (weights are loaded afterwards)
TWINS: dict[type, Callable[[Any], torch.nn.Module]] = {
    Linear: lambda m: torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    ReLU: lambda m: torch.nn.ReLU(),
    Sigmoid: lambda m: torch.nn.Sigmoid(),
    Tanh: lambda m: torch.nn.Tanh(),
    Standardize: _Standardize,
}

#: minidl loss class -> its torch.nn twin, a module as a user writes it (criterion = ...)
LOSSES: dict[type, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    MSE: torch.nn.MSELoss(),
    CrossEntropy: torch.nn.CrossEntropyLoss(),
}


def torch_twin(model: minidl.Sequential) -> torch.nn.Sequential:
    """A torch.nn.Sequential of the same layers holding a copy of the same weights and
    buffers, in the same dtype, device and mode."""
    net = torch.nn.Sequential(*(TWINS[type(layer)](layer) for layer in model.layers))
    params = model.parameters()
    if params:
        net.to(dtype=params[0].data.dtype, device=params[0].data.device)
    net.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    return net.train(getattr(model, "training", True))


def torch_optimizer(name: str, params: Any, lr: float, **settings: Any) -> torch.optim.Optimizer:
    return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[name](params, lr=lr, **settings)


def _evaluate(
    net: torch.nn.Module, loss: Any, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        p = net(x)
        value = float(loss(p, y))
        if p.shape[1] == 1:
            correct = (p[:, 0] > 0.5) == (y[:, 0] > 0.5)
        else:
            correct = p.argmax(1) == (y if y.dim() == 1 else y.argmax(1))
    net.train()
    return value, float(correct.double().mean())


def twin_fit(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: minidl.Dataset,
    test: minidl.Dataset | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = LOSSES[MSE],
) -> list[dict[str, float]]:
    """minidl.fit's protocol with autograd: same shuffling generator, same evaluation."""
    dtype = next(net.parameters()).dtype
    train = train.to(dtype=dtype)
    test = test.to(dtype=dtype) if test is not None else None
    generator = torch.Generator().manual_seed(seed)
    history = []
    net.train()
    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(train), generator=generator)
            x_all, y_all = train.x[order], train.y[order]
            for start in range(0, len(train), batch_size):
                x, y = x_all[start : start + batch_size], y_all[start : start + batch_size]
                optimizer.zero_grad()
                loss(net(x), y).backward()
                optimizer.step()
            record: dict[str, float] = {"epoch": epoch}
            record["train_loss"], record["train_accuracy"] = _evaluate(net, loss, train.x, train.y)
            if test is not None:
                record["test_loss"], record["test_accuracy"] = _evaluate(net, loss, test.x, test.y)
            history.append(record)
    net.eval()
    return history
