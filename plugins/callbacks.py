"""The built-in training callbacks: early stopping, gradient clipping, and two loggers.

Each is registered through ``register_callbacks``, as a third party's would be, and made
from a spec: ``--callback "early_stopping(patience=5)"``.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import minidl
from minidl import Callback, MinidlError, Module, Trainer
from minidl.io import atomic_write
from minidl.module import load_state_dict, state_dict


class EarlyStopping(Callback):
    """Stop when ``monitor`` (a key of the epoch's record) has not improved by more than
    ``min_delta`` for ``patience`` epochs; ``mode`` says whether lower (``"min"``) or higher
    (``"max"``) is better. With ``restore_best``, the model ends with the weights and
    buffers of its best epoch (``info["restored_epoch"]``), whether it stopped or not.

    It decides on the validation split (``val_*``, the default) or the training numbers,
    never on the test set. Its state (best value, best weights, patience count) is
    checkpointed, so a resumed run stops where the uninterrupted one does.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a whole number of epochs >= 1, got {patience!r}")
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if monitor.startswith("test_"):
            raise ValueError(
                f"early stopping never looks at the test set: monitor a val_* key (with a "
                f"validation split) or a train_* key, not {monitor!r}"
            )
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best = mode, restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = self.wait = 0
        self.best_state: dict[str, Tensor] = {}

    def on_train_start(self, trainer: Trainer, model: Module) -> None:
        if self.monitor.startswith("val_") and trainer.validation is None:
            raise MinidlError(
                f"early_stopping monitors {self.monitor!r}, but the run has no validation "
                "split: hold one out (train --validation FRACTION, TrainConfig.validation) or "
                "monitor a train_* key"
            )

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        record = trainer.record
        if self.monitor not in record and "train_accuracy" not in record:
            return  # an epoch left unevaluated (evaluate_every_epoch=False): nothing to judge
        if self.monitor not in record:
            keys = [k for k, v in record.items() if isinstance(v, float)]
            close = difflib.get_close_matches(self.monitor, keys, 1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MinidlError(
                f"early_stopping monitors {self.monitor!r}, which epoch {trainer.epoch}'s "
                f"record lacks; {hint}the record has: {', '.join(keys)}"
            )
        value = float(record[self.monitor])
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, trainer.epoch, 0
            if self.restore_best:
                self.best_state = {k: t.clone() for k, t in state_dict(model).items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop(
                f"early stopping: {self.monitor} did not improve for {self.patience} epoch{'s' * (self.patience > 1)} "
                f"(best {self.best:.6g} at epoch {self.best_epoch})"
            )

    def on_train_end(self, trainer: Trainer, model: Module) -> None:
        if self.best_epoch == 0:
            return
        trainer.info.update(monitor=self.monitor, best=self.best, best_epoch=self.best_epoch)
        if self.restore_best and self.best_state:
            load_state_dict(model, self.best_state)
            trainer.info["restored_epoch"] = self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "best_epoch": self.best_epoch}
        state["wait"] = self.wait
        state.update((f"best_state.{k}", t) for k, t in self.best_state.items())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.wait = int(state["wait"])
        prefix = "best_state."
        self.best_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class ClipGradNorm(Callback):
    """Scale the gradients before each optimizer step so that their total norm (of all
    parameters together, as one vector) is at most ``max_norm``: what
    ``torch.nn.utils.clip_grad_norm_`` does. ``norm_type`` is p of the p-norm (``inf`` for
    the largest absolute value)."""

    def __init__(self, max_norm: float, norm_type: float = 2.0) -> None:
        if not (math.isfinite(max_norm) and max_norm > 0):
            raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
        if not norm_type > 0:
            raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type!r}")
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)

    def on_after_backward(self, trainer: Trainer, model: Module) -> None:
        flat = getattr(trainer.optimizer, "grad", None)
        # One flat gradient buffer (every FlatOptimizer's) is one norm; the p-norm of the
        # per-parameter p-norms, which torch computes, is the same number.
        grads = [flat] if isinstance(flat, Tensor) else [p.grad for p in model.parameters()]
        norms = torch.stack([torch.linalg.vector_norm(g, self.norm_type) for g in grads])
        total = torch.linalg.vector_norm(norms, self.norm_type)
        # As torch: the factor is applied even when it is 1, and clamped, never branched on
        # (no device sync).
        scale = (self.max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale)


class CSVLogger(Callback):
    """Write the history as CSV while training runs: a row at the end of every epoch, so
    the file is readable during the run and complete up to the last finished epoch after
    a crash or ``kill -9``. ``path`` defaults to ``history.csv`` in the run's directory
    (``train --out``)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._fields: list[str] = []
        self._file: io.TextIOWrapper | None = None

    def on_train_start(self, trainer: Trainer, model: Module) -> None:
        if not trainer.is_global_zero:
            return
        if self.path is None and trainer.log_dir is None:
            raise MinidlError(
                "csv_logger has nowhere to write: give it a path (csv_logger(path='h.csv')) "
                "or the run a directory (train --out DIR)"
            )
        target = Path(self.path or Path(str(trainer.log_dir), "history.csv"))
        target.parent.mkdir(parents=True, exist_ok=True)
        self._rewrite(target, trainer.history)  # a resumed run's earlier epochs

    def _rewrite(self, target: Path, rows: list[dict[str, Any]]) -> None:
        if self._file is not None:
            self._file.close()
        self._fields = list(dict.fromkeys(k for row in rows for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, self._fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_cells(r) for r in rows)
        atomic_write(target, text.getvalue() if rows else "")
        self._file = open(target, "a", newline="")  # noqa: SIM115 - open for the whole run

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        if self._file is None:
            return
        record = trainer.record
        if list(record) != self._fields:  # a new column: the header changes, so rewrite
            self._rewrite(Path(self._file.name), trainer.history)
            return
        csv.DictWriter(self._file, self._fields, lineterminator="\n").writerow(_cells(record))
        self._file.flush()  # in the kernel's hands: it survives the process being killed

    def on_train_end(self, trainer: Trainer, model: Module) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _cells(record: dict[str, Any]) -> dict[str, Any]:
    return {k: "" if v is None else v for k, v in record.items()}


class TensorBoard(Callback):
    """Log every number of each epoch's record (the learning rate among them) as a
    TensorBoard scalar, at step = epoch. ``log_dir`` defaults to ``tensorboard`` in the
    run's directory (``train --out``), else ``runs``. It needs the ``tensorboard`` package
    (``pip install "minidl[tensorboard]"``) or ``tensorboardX``."""

    def __init__(self, log_dir: str | None = None) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer, model: Module) -> None:
        if not trainer.is_global_zero:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise MinidlError(
                    "the tensorboard callback needs the tensorboard package: "
                    'pip install "minidl[tensorboard]" (or tensorboardX)'
                ) from None
        default = Path(trainer.log_dir, "tensorboard") if trainer.log_dir else Path("runs")
        self.writer = SummaryWriter(log_dir=str(self.log_dir or default))

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        if self.writer is None:
            return
        for key, value in trainer.record.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, trainer.epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, model: Module) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@minidl.hookimpl
def register_callbacks(register: Any) -> None:
    register("early_stopping", EarlyStopping)
    register("clip_grad_norm", ClipGradNorm)
    register("csv_logger", CSVLogger)
    register("tensorboard", TensorBoard)
