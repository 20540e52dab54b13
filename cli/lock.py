"""One command per output directory: a command holds a lock on its ``--out`` for its life.

The lock is ``fcntl.flock`` on ``DIR/.minidl.lock``. The kernel releases it when the
process ends, however it ends, so a directory left by a ``kill -9`` is usable at once:
the file is not a pid file, and what it holds (the holder's pid and command line) is
there only to name the holder to whoever finds the directory taken. A second command
into the same directory fails at once with :class:`DirectoryInUse` rather than wait.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minidl import MinidlError

#: The lock file inside a held directory (removed when the holder ends normally).
LOCK = ".minidl.lock"


class DirectoryInUse(MinidlError):
    """Another process holds the directory: nothing was done (exit code 2)."""

    def __init__(self, directory: Path, holder: str) -> None:
        self.directory, self.holder = directory, holder
        super().__init__(
            f"{str(directory)!r} is in use by another run ({holder}): one run at a time "
            "writes into a directory; wait for it to end, or choose another --out"
        )


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says ("pid 4242: minidl-run train --out run")."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 65536).decode("utf-8"))
        return f"pid {int(record['pid'])}: {record['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said which"  # it has just taken the lock


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` with the lock held, or DirectoryInUse."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a holder that made the directory removed it, empty
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DirectoryInUse(path.parent, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder that ended removed the file after we opened it: our lock is on a file
        # nobody else will find. Lock the one at the path instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def hold(directory: Path, command: str, created: bool = False) -> Iterator[Path]:
    """Hold ``directory`` (which must exist) for the block: raise :class:`DirectoryInUse`
    if another process holds it. On the way out the lock file is removed, and so is the
    directory if ``created`` (this command made it) and nothing else is in it: a command
    that failed leaves nothing behind."""
    path = directory / LOCK
    fd = _acquire(path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command}).encode(), 0)
        yield directory
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: see _acquire
        os.close(fd)
        if created:
            try:
                directory.rmdir()
            except OSError:  # not empty: the results, or another command's lock
                pass
