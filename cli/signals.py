"""Ctrl-C and SIGTERM: stop promptly, clean up, say so in one line, exit 128 + signal.

The signal raises :class:`Interrupted` (a BaseException, like KeyboardInterrupt, so no
``except Exception`` swallows it, but not a KeyboardInterrupt, which click would turn into
a bare "Aborted!"). ``finally`` blocks run on the way out: sweep workers are stopped and
:func:`minidl.io.atomic_write` removes its temporary file. A second signal while cleaning
up exits at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    def __init__(self, signum: int, hint: str = "") -> None:
        self.signum, self.hint = signum, hint
        super().__init__(self.message)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def code(self) -> int:
        """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum

    @property
    def message(self) -> str:
        how = "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else self.name
        return f"interrupted by {how}" + (f"; {self.hint}" if self.hint else "")


_state: dict[str, int] = {"raised": 0, "deferring": 0, "pending": 0}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["deferring"]:
        _state["pending"] = _state["pending"] or signum
        return
    if _state["raised"]:  # a second signal while cleaning up after the first: stop now
        os.write(2, f"Error: interrupted again by {signal.Signals(signum).name}\n".encode())
        os._exit(128 + signum)
    _state["raised"] = signum
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`Interrupted` in the main thread. A signal
    the process was started ignoring (``nohup``, a shell's ``&``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if previous[s] is not signal.SIG_IGN:
            signal.signal(s, _handler)
    _state.update(raised=0, deferring=0, pending=0)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal back until the block is done (a few files that belong together, such
    as a model's architecture and weights, are written all or none), then raise it."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    if not _state["deferring"] and _state["pending"]:
        signum, _state["pending"] = _state["pending"], 0
        _state["raised"] = signum
        raise Interrupted(signum)
