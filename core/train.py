"""The training loop: epochs of shuffled mini-batches, evaluated after each epoch.

Every function here runs under ``torch.no_grad()``: minidl computes gradients itself and
never records a graph, but it leaves torch's global grad mode as it found it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .callbacks import Trainer, fire, handlers
from .checks import check_targets, checked_step
from .data import Dataset
from .errors import DataError, DivergenceError, NonFiniteError
from .module import set_mode
from .protocols import Loss, Module, Optimizer

#: ``batches(data, batch_size, generator)``: the (inputs, targets) of one epoch.
Batches = Callable[[Dataset, int, torch.Generator], Iterable[tuple[Tensor, Tensor]]]


def labels(values: Tensor) -> Tensor:
    """Class labels, int64: one column thresholded at 0.5; integers (class indices, a
    sequence's ``(N, T)`` too) as they are; ``(N,)`` values thresholded at 0.5, ``(N, k)``
    ones by argmax; a sequence's ``(N, T, C)`` outputs by argmax over the last dimension."""
    if values.dim() == 2 and values.shape[1] == 1:
        return (values[:, 0] > 0.5).long()
    if not values.is_floating_point():
        return values
    if values.dim() == 1:
        return (values > 0.5).long()
    return values.argmax(1 if values.dim() == 2 else -1)


def accuracy(prediction: Tensor, target: Tensor, ignore_index: int = -100) -> float:
    """Fraction of correct labels (see :func:`labels`); targets may be ``(N, k)`` or
    ``(N,)`` class indices. For ``(N, T)`` class indices of ``(N, T, C)`` outputs, the
    fraction of sequences whose every position is right, positions whose target is
    ``ignore_index`` aside; ``(N,)`` class indices equal to ``ignore_index`` are not
    counted (torch's ``cross_entropy`` ignores them alike)."""
    if not target.is_floating_point() and 1 < target.dim() == prediction.dim() - 1:
        if prediction.shape[:-1] != target.shape:
            raise ValueError(
                f"targets of shape {tuple(target.shape)} cannot score outputs of shape "
                f"{tuple(prediction.shape)}: a sequence's targets are the outputs' shape "
                "without the last dimension (class indices, int64)"
            )
        right = (prediction.argmax(-1) == target) | (target == ignore_index)
        correct = right.flatten(1).all(1)
        return int(torch.count_nonzero(correct)) / correct.numel() if len(correct) else math.nan
    outputs = prediction.shape[1] if prediction.dim() > 1 else 1
    columns = target.shape[1] if target.dim() > 1 else None
    if columns is not None and columns != outputs:
        raise ValueError(
            f"targets of shape {tuple(target.shape)} cannot score {outputs} output(s): give "
            f"{outputs} target column(s), or class indices of shape (N,) as int64"
        )
    if columns == 1 and prediction.dim() == 2:
        # One column each (the seed's task): the thresholded columns compared as they are,
        # the same count as their int64 labels without making them (fit scores every epoch).
        correct = (prediction > 0.5) == (target > 0.5)
    elif target.dim() == 1 and not target.is_floating_point():
        kept = target != ignore_index
        correct = (labels(prediction) == target)[kept]
    else:  # (N, k) integers here are one-hot rows, not a sequence
        one_hot = target.dim() == 2 and not target.is_floating_point()
        values = target.to(prediction.dtype) if one_hot else target
        correct = labels(prediction) == labels(values)
    if correct.numel() == 0:
        return math.nan
    # An exact count over n: a third of the time of a float mean (fit calls this often).
    return int(torch.count_nonzero(correct)) / correct.numel()


def model_dtype_device(model: Module) -> tuple[torch.dtype, torch.device]:
    params = model.parameters()
    if not params:
        return torch.get_default_dtype(), torch.device("cpu")
    return params[0].data.dtype, params[0].data.device


@contextmanager
def _eval_mode(model: Module) -> Iterator[None]:
    """The model in eval mode for a block, then back in the mode it had."""
    was = getattr(model, "training", True)
    set_mode(model, False)
    try:
        yield
    finally:
        set_mode(model, was)


@torch.no_grad()
def predict(model: Module, x: Tensor) -> Tensor:
    """The model's outputs for inputs ``x`` in eval mode, moved to its device; floating
    inputs are cast to its dtype, integer ones (token ids) stay integers."""
    dtype, device = model_dtype_device(model)
    with _eval_mode(model):
        return model.forward(x.to(device=device, dtype=dtype if x.is_floating_point() else None))


@torch.no_grad()
def evaluate(model: Module, loss: Loss, data: Dataset, chunk: int = 65536) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` in eval mode, in chunks to bound
    memory; the data moved as :func:`predict` moves inputs (targets alike)."""
    dtype, device = model_dtype_device(model)
    with _eval_mode(model):
        return _scores(model, loss, data.to(device, dtype), chunk)


def _scores(model: Module, loss: Loss, data: Dataset, chunk: int = 65536) -> tuple[float, float]:
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


class History(list[dict[str, Any]]):
    """The records of :func:`fit`, one per epoch, and ``info``: what callbacks said about
    the run (``stopped_epoch`` and ``stop_reason`` when one stopped it)."""

    def __init__(self, records: Iterable[dict[str, Any]] = (), info: dict[str, Any] | None = None):
        super().__init__(records)
        self.info: dict[str, Any] = dict(info or {})


@torch.no_grad()
def fit(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    train: Dataset,
    test: Dataset | None = None,
    *,
    validation: Dataset | None = None,
    epochs: int = 100,
    batch_size: int = 100,
    seed: int = 0,
    schedule: Callable[[int], float] | None = None,
    evaluate_every_epoch: bool = True,
    callbacks: Iterable[Any] = (),
    start_epoch: int = 1,
    history: Iterable[dict[str, Any]] = (),
    batches: Batches | None = None,
    log_dir: str | None = None,
) -> History:
    """Train in training mode and return the :class:`History`: one record per epoch with
    ``epoch``, ``lr``, ``train_loss``, ``train_accuracy`` and, given ``validation`` or
    ``test``, ``val_loss``/``val_accuracy`` and ``test_loss``/``test_accuracy``, evaluated
    in eval mode (with ``evaluate_every_epoch=False``, after the last epoch only). The model
    is left in eval mode.

    ``callbacks`` see every event of the loop (:mod:`minidl.callbacks`); one may stop
    training early. The data is moved to the model's dtype and device (integer inputs stay
    integers). Shuffling draws from a generator seeded with ``seed``, so a run is
    reproducible; ``start_epoch`` continues a run as the uninterrupted one would have, and
    ``history`` holds the records of the epochs before it (callbacks see them). ``batches`` replaces :meth:`Dataset.batches` (a data-parallel rank takes its slice of
    each). A NaN or infinite loss raises :class:`DivergenceError` naming the epoch and step.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    splits = ((train, "training"), (validation, "validation"), (test, "test"))
    for data, which in splits:
        if data is not None and len(data) == 0:
            raise DataError(f"the {which} set is empty")
    dtype, device = model_dtype_device(model)
    train = train.to(device, dtype)
    validation, test = (None if d is None else d.to(device, dtype) for d in (validation, test))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(start_epoch - 1):  # resuming at epoch k shuffles as the whole run did
        torch.randperm(len(train), generator=generator)
    for data, which in ((train, "training"), (validation, "validation"), (test, "test")):
        if data is not None and len(data):
            check_targets(model, loss, data, which)
    callbacks = list(callbacks)
    events = handlers(callbacks)
    trainer = Trainer(model, loss, optimizer, train, validation, test, epochs, start_epoch - 1)
    trainer.callbacks, trainer.log_dir, trainer.history = callbacks, log_dir, list(history)
    trainer.global_step = (start_epoch - 1) * -(-len(train) // batch_size)
    # Bound methods looked up once, not at every step. The data needs no gradient, so a
    # model that can skip the input gradient (Sequential.backward_parameters) does.
    forward, backward = model.forward, getattr(model, "backward_parameters", model.backward)
    loss_forward, loss_backward = loss.forward, loss.backward
    zero_grad, optimizer_step = optimizer.zero_grad, optimizer.step
    # Step events are looked at once per step only when some callback has them.
    after_backward, batch_end = events["on_after_backward"], events["on_batch_end"]
    step_events = bool(after_backward or batch_end)
    fire(events["on_train_start"], trainer, "on_train_start")
    first = True
    for epoch in range(start_epoch, epochs + 1):
        trainer.epoch = epoch
        if schedule is not None:
            optimizer.lr = schedule(epoch)
        fire(events["on_epoch_start"], trainer, "on_epoch_start")
        set_mode(model, True)
        step_losses = []
        for x, y in (batches or Dataset.batches)(train, batch_size, generator):
            zero_grad()
            if first:  # the same computation, one layer at a time, every shape checked
                value = checked_step(model, loss, x, y)
                first = False
            else:
                value = loss_forward(forward(x), y)
                backward(loss_backward())
            step_losses.append(value)
            if after_backward:
                fire(after_backward, trainer, "on_after_backward")
            optimizer_step()
            if step_events:
                trainer.global_step += 1
                trainer.batch_loss = value
                fire(batch_end, trainer, "on_batch_end")
                if trainer.should_stop:
                    break
        if not step_events:
            trainer.global_step += len(step_losses)
        evaluated = evaluate_every_epoch or epoch == epochs or trainer.should_stop
        record = _epoch_record(model, loss, optimizer, trainer, step_losses, evaluated)
        trainer.history.append(record)
        fire(events["on_epoch_end"], trainer, "on_epoch_end")
        if trainer.should_stop:
            break
    set_mode(model, False)
    fire(events["on_train_end"], trainer, "on_train_end")
    return History(trainer.history, trainer.info)


def _epoch_record(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    trainer: Trainer,
    step_losses: list[Tensor],
    evaluated: bool,
) -> dict[str, Any]:
    epoch = trainer.epoch
    # One finiteness check per epoch, not a sync per step. (A data-parallel rank may have
    # had no rows.)
    losses = torch.stack(step_losses) if step_losses else torch.zeros(1)
    if not bool(torch.isfinite(losses).all()):
        raise DivergenceError(epoch, int((~torch.isfinite(losses)).nonzero()[0]) + 1, optimizer.lr)
    record: dict[str, Any] = {"epoch": epoch, "lr": optimizer.lr}
    if not evaluated:
        record["train_loss"] = float(losses.mean())
        return record
    set_mode(model, False)  # once for every evaluation; the next epoch switches back
    record["train_loss"], record["train_accuracy"] = _scores(model, loss, trainer.train)
    if not math.isfinite(record["train_loss"]):
        raise DivergenceError(epoch, len(step_losses), optimizer.lr)
    for data, key in ((trainer.validation, "val"), (trainer.test, "test")):
        if data is None:
            continue
        record[f"{key}_loss"], record[f"{key}_accuracy"] = _scores(model, loss, data)
        if not math.isfinite(record[f"{key}_loss"]):
            which = "validation" if key == "val" else "test"
            raise NonFiniteError(
                f"the {which} loss is {record[f'{key}_loss']} after epoch {epoch}, while the "
                f"training loss is finite: the model's outputs overflow on the {which} inputs "
                f"(far outside the training data's range? the largest |x| there is "
                f"{float(data.x.abs().max()):g})"
            )
    return record
