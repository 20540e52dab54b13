"""Callbacks: the training loop's extension point, with Lightning's event names.

A callback is any object with one or more of the event methods below; each receives the
:class:`Trainer` (the run in progress) and the model. :func:`minidl.fit` calls them in the
order the callbacks were given, at these points::

    on_train_start
    for each epoch:
        on_epoch_start                       (the learning rate is set)
        for each batch:
            forward, loss, backward
            on_after_backward                (gradients ready, before the optimizer step)
            optimizer step
            on_batch_end                     (trainer.batch_loss is the step's loss)
        the epoch is evaluated into a record
        on_epoch_end                         (trainer.record: add keys to it)
    on_train_end                             (also after a stop; not after an error)

A callback stops training cleanly with ``trainer.stop("why")``: the loop ends after the
current batch (from a step event) or epoch, the epoch is evaluated and recorded, and
``on_train_end`` runs. A step event that no callback implements costs nothing.
Callbacks with ``state_dict()`` and ``load_state_dict(state)`` are saved in checkpoints and
restored on resume. A plain function ``f(record, model)``, the callback of minidl 0.2, is
an ``on_epoch_end``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch.distributed as dist
from torch import Tensor

from .data import Dataset
from .protocols import Loss, Module, Optimizer

EVENTS = (
    "on_train_start",
    "on_epoch_start",
    "on_after_backward",
    "on_batch_end",
    "on_epoch_end",
    "on_train_end",
)


class Callback:
    """An optional base class: every event does nothing, so a subclass overrides only the
    ones it needs (and the loop calls only those)."""

    def on_train_start(self, trainer: Trainer, model: Module) -> None: ...

    def on_epoch_start(self, trainer: Trainer, model: Module) -> None: ...

    def on_after_backward(self, trainer: Trainer, model: Module) -> None: ...

    def on_batch_end(self, trainer: Trainer, model: Module) -> None: ...

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None: ...

    def on_train_end(self, trainer: Trainer, model: Module) -> None: ...


@dataclass
class Trainer:
    """The run in progress, as every event sees it (read-only but for what is said here).

    ``epoch`` counts from 1 and ``global_step`` from 0 (steps taken so far); ``history``
    holds this call's records so far. ``info`` collects facts about the run for its
    results (a saved run's ``metrics.json``): a callback may add JSON-friendly entries.
    ``is_global_zero`` is False on every data-parallel rank but the first: a logger writes
    only where it is True.
    """

    model: Module
    loss: Loss
    optimizer: Optimizer
    train: Dataset
    validation: Dataset | None = None
    test: Dataset | None = None
    max_epochs: int = 1
    epoch: int = 0
    global_step: int = 0
    batch_loss: Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    should_stop: bool = False
    callbacks: list[Any] = field(default_factory=list)
    log_dir: str | None = None  # where the run writes its files (``train --out``), if anywhere

    @property
    def record(self) -> dict[str, Any]:
        """The current epoch's record (in ``on_epoch_end``); callbacks may add keys."""
        return self.history[-1]

    @property
    def is_global_zero(self) -> bool:
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    def stop(self, reason: str) -> None:
        """End training after the current batch or epoch; ``reason`` is reported with the
        epoch (``info["stopped_epoch"]``, ``info["stop_reason"]``)."""
        self.should_stop = True
        self.info.update(stopped_epoch=self.epoch, stop_reason=reason)


class _EpochFunction:
    """A 0.2 callback, ``f(record, model)``, as an ``on_epoch_end``."""

    def __init__(self, function: Callable[[dict[str, Any], Module], None]) -> None:
        self.function = function

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        self.function(trainer.record, model)

    def __repr__(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


Handlers = list[tuple[Any, Callable[[Trainer, Module], None]]]


def handlers(callbacks: Iterable[Any]) -> dict[str, Handlers]:
    """event -> the (callback, bound method) pairs that implement it, in order; a method
    inherited unchanged from :class:`Callback` does nothing and is left out."""
    found: dict[str, Handlers] = {event: [] for event in EVENTS}
    for callback in callbacks:
        if not any(hasattr(callback, e) for e in EVENTS):
            if not callable(callback):
                raise TypeError(
                    f"{callback!r} is not a callback: it has none of the events "
                    f"{', '.join(EVENTS)} and is not a function f(record, model)"
                )
            callback = _EpochFunction(callback)
        for event in EVENTS:
            method = getattr(callback, event, None)
            if callable(method) and getattr(type(callback), event, None) is not getattr(
                Callback, event
            ):
                found[event].append((callback, method))
    return found


def name_of(callback: Any) -> str:
    """What an error calls a callback: its ``name`` (the CLI sets its spec), or its class."""
    name = getattr(callback, "name", None)
    if isinstance(callback, _EpochFunction):
        return repr(callback)
    return name if isinstance(name, str) else type(callback).__name__


def fire(pairs: Handlers, trainer: Trainer, event: str) -> None:
    """Call one event's handlers. An exception a callback raises goes on as it is (code
    that catches its own exceptions keeps working), marked with where it came from:
    ``e.minidl_callback``, which the command line's one error line shows."""
    for callback, method in pairs:
        try:
            method(trainer, trainer.model)
        except Exception as e:
            if not hasattr(e, "minidl_callback"):
                e.minidl_callback = (  # type: ignore[attr-defined]
                    f"callback {name_of(callback)} failed in {event} at epoch {trainer.epoch}"
                )
            raise
