"""The training loop: epochs of shuffled mini-batches, evaluated after each epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .data import Dataset
from .distributed import DataParallel
from .errors import DataError, DivergenceError, NonFiniteError, PluginError, SpecError
from .io import save_checkpoint
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


def _describe(model: Module, i: int) -> str:
    layers = getattr(model, "layers", ())
    spec = getattr(model, "spec", None)
    what = (
        str(spec[i]) if spec is not None and len(spec) == len(layers) else type(layers[i]).__name__
    )
    return f"layer {i + 1} ({what})"


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def checked_step(model: Module, loss: Loss, x: Tensor, y: Tensor) -> Tensor:
    """One training step's forward and backward, as the model's own would compute them but
    one layer at a time, so that a layer that cannot take its input, or whose ``backward``
    returns a gradient of the wrong shape, is named with the shapes involved (rather than
    failing deep inside a matrix product). :func:`fit` runs its first step this way only."""
    layers = getattr(model, "layers", None)
    if layers is None:  # not a chain of layers: nothing to name
        prediction = model.forward(x)
        value = _checked_loss(loss, prediction, y)
        model.backward(loss.backward())
        return value
    inputs = []
    h = x
    for i, layer in enumerate(layers):
        inputs.append(h)
        try:
            h = layer.forward(h)
        except Exception as e:
            raise SpecError(_forward_failure(model, i, h, e)) from e
        if not isinstance(h, Tensor):
            raise PluginError(
                f"model {_describe(model, i)}: forward returned {type(h).__name__}, not a tensor"
            )
    value = _checked_loss(loss, h, y)
    grad = loss.backward()
    if not isinstance(grad, Tensor) or grad.shape != h.shape:
        raise PluginError(
            f"loss {loss!r}: backward returned a gradient of shape {_shape(grad)}, but the "
            f"prediction has shape {_shape(h)}; it must return the gradient with respect to "
            "the prediction"
        )
    for i in reversed(range(len(layers))):
        grad = layers[i].backward(grad)
        if not isinstance(grad, Tensor) or grad.shape != inputs[i].shape:
            raise PluginError(
                f"model {_describe(model, i)}: backward returned a gradient of shape "
                f"{_shape(grad)}, but its input had shape {_shape(inputs[i])}; backward must "
                "return the gradient with respect to the layer's input"
            )
    return value


def _forward_failure(model: Module, i: int, h: Tensor, e: Exception) -> str:
    layer = model.layers[i]  # type: ignore[attr-defined]
    message = f"model {_describe(model, i)} cannot take an input of shape {_shape(h)}"
    wants = getattr(layer, "in_features", None)
    if isinstance(wants, int) and h.dim() == 2 and wants != h.shape[1]:
        source = "the data" if i == 0 else f"{_describe(model, i - 1)}"
        message += f": it takes {wants} features per point, but {source} gives {h.shape[1]}"
        if i > 0 and getattr(model.layers[i - 1], "out_features", None) is None:  # type: ignore[attr-defined]
            message += (
                f" (layer {i} does not say how many it gives, so the input size could not "
                "be inferred; give in_features= explicitly)"
            )
        elif i == 0:
            message += " (leave in_features out: it is inferred from the data)"
        return message
    return f"{message}: {type(e).__name__}: {e}"


def _checked_loss(loss: Loss, prediction: Tensor, y: Tensor) -> Tensor:
    try:
        return loss.forward(prediction, y)
    except Exception as e:
        raise DataError(
            f"loss {loss!r} cannot compare the model's output of shape {_shape(prediction)} "
            f"with targets of shape {_shape(y)}: {e}"
        ) from e


def check_targets(model: Module, loss: Loss, data: Dataset, which: str) -> None:
    """Targets that the loss cannot use, or that the model's last layer can never output
    (say 7 after a sigmoid), are a data error now rather than a run that learns nothing.

    A loss may define ``check_target(target)`` raising ValueError; a layer may declare the
    closed range its outputs lie in as ``output_range = (low, high)``."""
    if len(data) == 0:
        return
    check = getattr(loss, "check_target", None)
    if callable(check):
        try:
            check(data.y)
        except ValueError as e:
            raise DataError(f"the {which} targets do not suit the loss {loss!r}: {e}") from None
    layers = getattr(model, "layers", None)
    bounds = getattr(layers[-1], "output_range", None) if layers else None
    if layers is None or bounds is None:
        return
    low, high = bounds
    smallest, largest = float(data.y.min()), float(data.y.max())
    if smallest < low or largest > high:
        raise DataError(
            f"the {which} targets range over [{smallest:g}, {largest:g}], but the model's last "
            f"{_describe(model, len(layers) - 1)} outputs values in [{low:g}, {high:g}]: "
            "rescale the target column, or end the model with another layer"
        )


class Checkpointer:
    """A :func:`fit` callback that saves the run to ``path`` (see :func:`minidl.io.save_checkpoint`)
    after the first epoch and then at most every ``every_s`` seconds: at most a second of
    training lost to an interruption, and no quadratic cost from rewriting a long history
    each epoch. ``history`` holds the records of epochs before this fit (when resuming);
    put it last among the callbacks, so the records it saves are complete."""

    #: the default interval, for all runs (tests set it to 0: a checkpoint every epoch)
    every_s = 1.0

    def __init__(
        self,
        path: str | Path,
        model: Module,
        optimizer: Optimizer,
        config: dict[str, Any],
        history: Iterable[dict[str, Any]] = (),
        every_s: float | None = None,
    ) -> None:
        self.path, self.model, self.optimizer, self.config = Path(path), model, optimizer, config
        self.history = list(history)
        self.every_s = Checkpointer.every_s if every_s is None else every_s
        self._last = -math.inf
        #: the epoch of the last checkpoint written (0: none yet)
        self.epoch = len(self.history)

    def __call__(self, record: dict[str, Any], model: Module) -> None:
        self.history.append(record)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self.save()
            self._last = now

    def save(self) -> None:
        epoch = int(self.history[-1]["epoch"])
        save_checkpoint(
            self.path,
            self.model,
            self.optimizer,
            epoch=epoch,
            history=self.history,
            config=self.config,
        )
        self.epoch = epoch
