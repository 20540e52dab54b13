"""SIGINT as a terminal's foreground job has it, for the tests that send one."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def not_ignoring_sigint() -> Iterator[None]:
    """SIGINT at Python's default handler within, even when the tests were started ignoring
    it: a non-interactive shell's ``&`` starts a command that way, and minidl-run, as
    shells expect of a command, keeps a signal it was started ignoring ignored. A child
    started within (the ignored disposition survives exec), or minidl-run's handler
    installed within, then answers the Ctrl-C a test sends."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
