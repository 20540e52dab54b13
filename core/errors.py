"""Errors minidl raises on purpose; each message says what was wrong and what would be valid.

They are plain exceptions that carry what a command line needs, and nothing of one: the
``message`` (one line to show as ``Error: ...``) and the ``exit_code``, 2 for what the user
gave (a name, a spec, data, a model file), 1 for a run that failed (a diverged training).
The command line (``minidl.cli``) turns them into click's errors at its edge; the kernel
never imports click.
"""

from __future__ import annotations

from collections.abc import Iterable


class MinidlError(Exception):
    """Base class of minidl's errors: ``message`` is what went wrong, ``exit_code`` what a
    command line exits with (2: the user's input; 1: a failed run)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownNameError(MinidlError, LookupError):
    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind, self.name, self.available = kind, name, sorted(available)
        names = ", ".join(self.available) or "(none)"
        super().__init__(f"unknown {kind} {name!r}. Available names: {names}")


class PluginError(MinidlError):
    """A plugin could not be loaded or misbehaved."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind."""


class SpecError(MinidlError, ValueError):
    """A spec (``"linear(25), relu"``, ``"adam(eps=1e-6)"``) could not be parsed or built."""


class DataError(MinidlError, ValueError):
    """A dataset or data file is unusable."""


class ModelFileError(MinidlError):
    """A saved model or checkpoint could not be read, or a model cannot be saved."""


class NonFiniteError(MinidlError, FloatingPointError):
    """A loss became NaN or infinite: a failed run, never a result to report."""

    exit_code = 1


class DivergenceError(NonFiniteError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, lr: float) -> None:
        self.epoch, self.step, self.lr = epoch, step, lr
        super().__init__(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step} "
            f"(lr={lr:g}); try a lower learning rate"
        )
