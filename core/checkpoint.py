"""Saving a run as it trains, so that ``--resume`` can continue it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .io import save_checkpoint
from .protocols import Module, Optimizer


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
