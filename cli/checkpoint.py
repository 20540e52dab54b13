"""Saving a run as it trains, so that it can be resumed to the result it would have had.

A checkpoint is one safetensors file: the model's ``state_dict()`` (parameters and
buffers), the optimizer's, a stateful schedule's and each stateful callback's
``state_dict()`` (early stopping's best weights, say), and as JSON metadata the epoch, the
history and the config. A run is resumable when its optimizer has
``state_dict``/``load_state_dict`` (every :class:`minidl.FlatOptimizer` has them, its
subclasses' state included), its schedule is a plain function of the epoch or has them
too, and so has every callback the config names that has either (a callback without state
needs neither); :func:`not_resumable` says why a run is not.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import minidl
from minidl import Callback, ModelFileError, Module, Optimizer, Trainer
from minidl.io import load_tensors, save_tensors
from minidl.module import load_state_dict, state_dict

from .experiment import TrainConfig

CHECKPOINT = "checkpoint.safetensors"
FORMAT, VERSION = "minidl-checkpoint", "2"
#: Settings that may differ between a run and its resumption: the same run, moved.
MOVABLE = ("device",)


@dataclass
class Checkpoint:
    """A training run after ``epoch`` epochs."""

    epoch: int
    history: list[dict[str, Any]]
    config: dict[str, Any]
    states: dict[str, dict[str, Any]]  # "model", "optimizer", "schedule" -> state_dict


def _stateful(callback: Any) -> bool:
    return any(callable(getattr(callback, m, None)) for m in ("state_dict", "load_state_dict"))


def not_resumable(optimizer: Any, schedule: Any, callbacks: Sequence[Any] = ()) -> str | None:
    """Why a run with this optimizer, schedule and callbacks cannot be saved and resumed,
    or None."""
    parts = [("optimizer", optimizer), ("schedule", schedule)]
    parts += [("callback", c) for c in callbacks if _stateful(c)]
    for what, obj in parts:
        if what == "schedule" and inspect.isfunction(obj):
            continue  # a function of the epoch alone holds no state
        if not all(callable(getattr(obj, m, None)) for m in ("state_dict", "load_state_dict")):
            return (
                f"{what} {type(obj).__name__} cannot save its state (it has no state_dict() "
                "and load_state_dict()), so its run cannot be resumed"
            )
    return None


def save_checkpoint(
    path: str | Path,
    objects: dict[str, Any],
    *,
    epoch: int,
    history: list[Any],
    config: dict[str, Any],
) -> None:
    """``objects``: "model", "optimizer" and maybe "schedule", each saved by its state_dict."""
    tensors: dict[str, torch.Tensor] = {}
    numbers: dict[str, dict[str, Any]] = {}
    for part, obj in objects.items():
        state = state_dict(obj) if part == "model" else obj.state_dict()
        numbers[part] = {}
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{part}.{key}"] = value
            else:
                numbers[part][key] = value
    document = {"epoch": epoch, "history": history, "config": config, "numbers": numbers}
    try:  # NaN allowed: a diagnostic may be NaN while the loss is not
        state = json.dumps(document)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot checkpoint this run: its state is not JSON data ({e})") from None
    metadata = {"format": FORMAT, "version": VERSION, "minidl_version": minidl.__version__}
    save_tensors(path, tensors, {**metadata, "state": state})


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`: data only, never code."""
    try:
        tensors, metadata = load_tensors(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a valid checkpoint ({e})") from None
    try:
        if (metadata.get("format"), metadata.get("version")) != (FORMAT, VERSION):
            written = metadata.get("minidl_version")
            by = f" (written by minidl {written})" if written else ""
            raise ValueError(
                f"not a {FORMAT} file of version {VERSION}{by}; this is minidl {minidl.__version__}"
            )
        state = json.loads(metadata["state"])
        epoch, history = state["epoch"], state["history"]
        if not (isinstance(epoch, int) and epoch >= 1 and len(history) == epoch):
            raise ValueError("its epoch and history disagree")
        states = {part: dict(numbers) for part, numbers in state["numbers"].items()}
    except Exception as e:
        raise ModelFileError(f"{path}: not a valid checkpoint ({e})") from None
    for name, t in tensors.items():
        part, key = name.split(".", 1)
        states.setdefault(part, {})[key] = t
    return Checkpoint(epoch, history, state["config"], states)


def _parts(optimizer: Any, schedule: Any, callbacks: Sequence[Any]) -> dict[str, Any]:
    """What a checkpoint saves beside the model, by part name; a callback by its position
    in ``config.callbacks`` (the checkpoint's config names the same ones)."""
    parts = {"optimizer": optimizer}
    if not inspect.isfunction(schedule):
        parts["schedule"] = schedule
    parts.update((f"callback{i}", c) for i, c in enumerate(callbacks) if _stateful(c))
    return parts


def restore(
    checkpoint: Checkpoint,
    config: TrainConfig,
    model: Module,
    optimizer: Optimizer,
    schedule: Any,
    callbacks: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """Put a checkpoint of a run of ``config`` into its freshly built parts; its history."""
    current = config.as_dict()
    # A checkpoint of an earlier release lacks the settings added since: the run had their
    # defaults (0.2's has no callbacks).
    there = {**TrainConfig().as_dict(), **checkpoint.config}
    differ = [
        f"{k} {there.get(k)!r} there, {v!r} here"
        for k, v in current.items()
        if k not in MOVABLE and json.dumps(there.get(k)) != json.dumps(v)
    ]
    if differ:
        raise ValueError(f"the checkpoint is of a run with other settings: {'; '.join(differ)}")
    reason = not_resumable(optimizer, schedule, callbacks)
    if reason:
        raise ValueError(reason)
    device = model.parameters()[0].data.device if model.parameters() else torch.device("cpu")
    try:
        load_state_dict(model, checkpoint.states["model"])
        for part, obj in _parts(optimizer, schedule, callbacks).items():
            if part in checkpoint.states:
                state = checkpoint.states[part]
                obj.load_state_dict(
                    {
                        k: v.to(device) if isinstance(v, torch.Tensor) else v
                        for k, v in state.items()
                    }
                )
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ModelFileError(
            f"the checkpoint does not fit this run: {type(e).__name__}: {e}"
        ) from None
    return list(checkpoint.history)


class Checkpointer(Callback):
    """A callback that saves the run to ``path`` after the first epoch and then at most
    every ``every_s`` seconds: at most a second of training lost to an interruption, and
    no quadratic cost from rewriting a long history each epoch. Put it last among the
    callbacks, so the records and states it saves are complete."""

    #: the default interval, for all runs (tests set it to 0: a checkpoint every epoch)
    every_s = 1.0

    def __init__(
        self,
        path: str | Path,
        model: Module,
        optimizer: Optimizer,
        schedule: Any,
        config: TrainConfig,
        history: list[dict[str, Any]] = (),  # type: ignore[assignment]
        callbacks: Sequence[Any] = (),
        every_s: float | None = None,
    ) -> None:
        self.path, self.config = Path(path), config.as_dict()
        self.objects = {"model": model, **_parts(optimizer, schedule, callbacks)}
        self.history = list(history)
        self.every_s = Checkpointer.every_s if every_s is None else every_s
        self._last = -math.inf
        self.epoch = len(self.history)  # of the last checkpoint written (0: none yet)

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        self.history.append(trainer.record)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self.save()
            self._last = now

    def save(self) -> None:
        epoch = int(self.history[-1]["epoch"])
        save_checkpoint(
            self.path, self.objects, epoch=epoch, history=self.history, config=self.config
        )
        self.epoch = epoch
