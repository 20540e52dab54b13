"""The training loop: epochs of shuffled mini-batches, evaluated after each epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .checks import check_targets, checked_step
from .data import Dataset
from .distributed import DataParallel
from .errors import DataError, DivergenceError, NonFiniteError
from .protocols import Loss, Module, Optimizer

#: A callback receives each epoch's record (it may add keys to it) and the model.
Callback = Callable[[dict[str, Any], Module], None]


def accuracy(prediction: Tensor, target: Tensor) -> float:
    """Fraction of correct labels: threshold 0.5 for one output, argmax for several."""
    if prediction.shape[1] == 1:
        correct = (prediction > 0.5) == (target > 0.5)
    else:
        correct = prediction.argmax(1) == target.argmax(1)
    if correct.numel() == 0:
        return math.nan
    # The float64 mean, computed as an exact count over n: a third of the time (the
    # training loop evaluates after every epoch).
    return int(torch.count_nonzero(correct)) / correct.numel()


def evaluate(model: Module, loss: Loss, data: Dataset, chunk: int = 65536) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data``, in chunks to bound memory."""
    score = getattr(loss, "accuracy", accuracy)
    total_loss = total_correct = 0.0
    n = data.x.shape[0]  # shape, not len(): Tensor.__len__ is Python code (fit calls this often)
    for start in range(0, n, chunk):
        # One chunk, the usual case, is the data itself: no slices to make.
        x, y = (
            (data.x, data.y)
            if n <= chunk
            else (data.x[start : start + chunk], data.y[start : start + chunk])
        )
        size = x.shape[0]
        prediction = model.forward(x)
        total_loss += float(loss.forward(prediction, y)) * size
        total_correct += score(prediction, y) * size
    return total_loss / n, total_correct / n


def model_dtype_device(model: Module) -> tuple[torch.dtype, torch.device]:
    params = model.parameters()
    if not params:
        return torch.get_default_dtype(), torch.device("cpu")
    return params[0].data.dtype, params[0].data.device


def fit(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    train: Dataset,
    test: Dataset | None = None,
    *,
    epochs: int = 100,
    batch_size: int = 100,
    seed: int = 0,
    schedule: Callable[[int], float] | None = None,
    evaluate_every_epoch: bool = True,
    callbacks: Iterable[Callback] = (),
    start_epoch: int = 1,
) -> list[dict[str, Any]]:
    """Train and return the history: one record per epoch with ``epoch``, ``lr``,
    ``train_loss``, ``train_accuracy`` and, given ``test``, ``test_loss`` and ``test_accuracy``.

    The data is moved to the model's dtype and device. Shuffling draws from a generator
    seeded with ``seed``, so a run is reproducible. With a :class:`minidl.distributed.DataParallel`
    as the optimizer, each rank trains on its slice of every batch. A NaN or infinite loss raises
    :class:`DivergenceError` naming the epoch and step.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    for data, which in ((train, "training"), (test, "test")):
        if data is not None and len(data) == 0:
            raise DataError(f"the {which} set is empty")
    dtype, device = model_dtype_device(model)
    train = train.to(device, dtype)
    test = test.to(device, dtype) if test is not None else None
    generator = torch.Generator().manual_seed(seed)
    # Resuming at epoch k must shuffle as the uninterrupted run did.
    for _ in range(start_epoch - 1):
        torch.randperm(len(train), generator=generator)
    check_targets(model, loss, train, "training")
    if test is not None:
        check_targets(model, loss, test, "test")
    callbacks = list(callbacks)
    history = []
    # Bound methods looked up once, not at every step. The data needs no gradient, so a
    # model that can skip the input gradient (Sequential.backward_parameters) does.
    forward, backward = model.forward, getattr(model, "backward_parameters", model.backward)
    loss_forward, loss_backward = loss.forward, loss.backward
    zero_grad, optimizer_step = optimizer.zero_grad, optimizer.step
    batches = optimizer.batches if isinstance(optimizer, DataParallel) else Dataset.batches
    first = True
    for epoch in range(start_epoch, epochs + 1):
        if schedule is not None:
            optimizer.lr = schedule(epoch)
        step_losses = []
        for x, y in batches(train, batch_size, generator):
            zero_grad()
            if first:  # the same computation, one layer at a time, every shape checked
                step_losses.append(checked_step(model, loss, x, y))
                first = False
            else:
                step_losses.append(loss_forward(forward(x), y))
                backward(loss_backward())
            optimizer_step()
        # One check per epoch, not a sync per step. (A data-parallel rank may have had no rows.)
        losses = torch.stack(step_losses) if step_losses else torch.zeros(1)
        if not bool(torch.isfinite(losses).all()):
            step = int((~torch.isfinite(losses)).nonzero()[0]) + 1
            raise DivergenceError(epoch, step, optimizer.lr)
        record: dict[str, Any] = {"epoch": epoch, "lr": optimizer.lr}
        if evaluate_every_epoch or epoch == epochs:
            record["train_loss"], record["train_accuracy"] = evaluate(model, loss, train)
            if test is not None:
                record["test_loss"], record["test_accuracy"] = evaluate(model, loss, test)
        else:
            record["train_loss"] = float(losses.mean())
        if not math.isfinite(record["train_loss"]):
            raise DivergenceError(epoch, len(step_losses), optimizer.lr)
        if not math.isfinite(record.get("test_loss", 0.0)):
            raise NonFiniteError(
                f"the test loss is {record['test_loss']} after epoch {epoch}, while the training "
                "loss is finite: the model's outputs overflow on the test inputs (far outside "
                f"the training data's range? the largest |x| there is {float(test.x.abs().max()):g})"  # type: ignore[union-attr]
            )
        for callback in callbacks:
            callback(record, model)
        history.append(record)
    return history
