"""Errors minidl raises on purpose; each message says what was wrong and what would be valid."""

from __future__ import annotations

from collections.abc import Iterable


class MinidlError(Exception):
    """Base class: the CLI turns these into one line on stderr, never a traceback."""


class UnknownNameError(MinidlError, LookupError):
    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind, self.name, self.available = kind, name, sorted(available)
        super().__init__(
            f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}"
        )

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class PluginError(MinidlError):
    """A plugin could not be loaded or misbehaved."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind."""


class SpecError(MinidlError, ValueError):
    """A model spec could not be parsed or built."""


class DataError(MinidlError, ValueError):
    """A dataset or data file is unusable."""


class ModelFileError(MinidlError):
    """A saved model could not be read."""


class NonFiniteError(MinidlError, FloatingPointError):
    """A loss became NaN or infinite: a failed run, never a result to report."""


class DivergenceError(NonFiniteError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, lr: float) -> None:
        self.epoch, self.step, self.lr = epoch, step, lr
        super().__init__(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step} "
            f"(lr={lr:g}); try a lower learning rate"
        )
