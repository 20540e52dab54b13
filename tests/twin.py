"""A torch.nn + autograd + torch.optim twin of minidl's training, the reference in tests.

``twin_fit`` trains a ``torch.nn`` copy of a minidl model (same initial weights) on the same
batches in the same order as :func:`minidl.fit`, and returns a history shaped like fit's.
"""

from __future__ import annotations

from typing import Any

import torch

import minidl
from minidl.plugins import Linear, ReLU, Sigmoid, Standardize, Tanh

_ACTIVATIONS = {ReLU: torch.nn.ReLU, Sigmoid: torch.nn.Sigmoid, Tanh: torch.nn.Tanh}


class _Standardize(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def torch_twin(model: minidl.Sequential) -> torch.nn.Sequential:
    """A torch.nn.Sequential with the same layers and a copy of the same weights."""
    layers: list[torch.nn.Module] = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            w = layer.weight.data
            lin = torch.nn.Linear(
                layer.in_features, layer.out_features, dtype=w.dtype, device=w.device
            )
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(layer.bias.data)
            layers.append(lin)
        elif isinstance(layer, Standardize):
            layers.append(_Standardize(layer.mean.clone(), layer.std.clone()))
        else:
            layers.append(_ACTIVATIONS[type(layer)]())
    return torch.nn.Sequential(*layers)


def make_torch_optimizer(name: str, params: Any, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **kwargs)
    raise ValueError(name)


def _evaluate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        p = net(x)
        return float(torch.nn.functional.mse_loss(p, y)), float(
            ((p > 0.5) == (y > 0.5)).double().mean()
        )


def twin_fit(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: minidl.Dataset,
    test: minidl.Dataset | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
) -> list[dict[str, float]]:
    """minidl.fit's protocol with autograd: same shuffling generator, same evaluation."""
    dtype = next(net.parameters()).dtype
    train = train.to(dtype=dtype)
    test = test.to(dtype=dtype) if test is not None else None
    generator = torch.Generator().manual_seed(seed)
    history = []
    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(train), generator=generator)
            x_all, y_all = train.x[order], train.y[order]
            for start in range(0, len(train), batch_size):
                x, y = x_all[start : start + batch_size], y_all[start : start + batch_size]
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x), y)
                loss.backward()
                optimizer.step()
            record: dict[str, float] = {"epoch": epoch}
            record["train_loss"], record["train_accuracy"] = _evaluate(net, train.x, train.y)
            if test is not None:
                record["test_loss"], record["test_accuracy"] = _evaluate(net, test.x, test.y)
            history.append(record)
    return history
