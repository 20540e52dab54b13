"""The local launcher: the ranks of a data-parallel job as processes of this machine.

:func:`launch` starts each rank through ``torch.multiprocessing`` (the "spawn" start method)
with the environment ``torchrun`` would give it, so the rank's function joins the process
group itself (:func:`minidl.cli.distributed.init_from_env`). Rank 0's output passes
through. When a rank fails, the others are stopped and one line names the rank that failed
first; Ctrl-C is answered by the launcher alone; no rank outlives it. docs/distributed.md
says why this and not ``torch.distributed.run``.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from torch.multiprocessing.spawn import start_processes

from minidl import MinidlError

from . import signals
from .distributed import shutdown


class WorkerFailed(MinidlError):
    """A rank of :func:`launch` failed: the one that failed first, and why, in one line."""

    exit_code = 1

    def __init__(self, rank: int, returncode: int, error: str = "", others: bool = True) -> None:
        self.rank, self.returncode, self.error = rank, returncode, error
        if error:
            what = f"failed: {error}"
        elif returncode < 0:
            what = f"was killed by {_signal_name(-returncode)} (exit code {returncode})"
        else:
            what = f"exited with code {returncode}"
        super().__init__(f"rank {rank} {what}" + ("; stopped the other ranks" if others else ""))


#: Set in the environment of the ranks that :func:`launch` starts: the directory where a
#: failing rank leaves its one-line error (see :func:`report_failure`).
LAUNCHED = "MINIDL_LAUNCHED"


#: What torchrun (torch.distributed.run) sets in each worker's environment, whatever the
#: world size; a rank of :func:`launch` has none of the first three.
TORCHRUN_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "GROUP_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "RANK",
)


def torchrun_variables() -> list[str]:
    """The torchrun variables in this process's environment: none unless torchrun (or a
    launcher like it, this one included) started it."""
    return [name for name in TORCHRUN_VARIABLES if name in os.environ]


def report_failure(rank: int, error: str) -> None:
    """Tell :func:`launch` why this rank fails, timed (a rank's first report counts). Ranks
    need not call it: an exception leaving the launched function is reported for them."""
    directory = os.environ.get(LAUNCHED)
    if not directory or not os.path.isdir(directory):
        return
    path = os.path.join(directory, f"rank{rank}.error")
    if os.path.exists(path):
        return
    record = {"rank": rank, "time": time.monotonic(), "error": error}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_communication_error(error: str) -> bool:
    """A collective that lost its peer: the consequence of a failure, never its cause."""
    return error.split(":", 1)[0] in _COMMUNICATION_ERRORS or any(
        marker in error for marker in _COMMUNICATION_MARKERS
    )


_COMMUNICATION_ERRORS = ("DistError", "DistBackendError", "DistNetworkError", "DistStoreError")
_COMMUNICATION_MARKERS = (
    "/gloo/",  # gloo's messages start with the C++ source file: [.../gloo/transport/tcp/...]
    "Connection closed by peer",
    "Connection reset by peer",
    "remote worker",
    "NCCL error",
    "ProcessGroupNCCL",
)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(parent: int) -> None:
    """SIGKILL this rank when the launcher dies (even by SIGKILL), on Linux."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above
        os._exit(128 + signal.SIGKILL)


def _rank_main(
    rank: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    env: dict[str, str],
    parent: int,
) -> None:
    """A rank's process: torchrun's environment, then ``fn(*args)``; a failure is reported
    to the launcher. The process then ends at once, without the interpreter's teardown: a
    process group torn down mid-collective prints C++ noise or hangs, and after success it
    only costs time (atexit functions still run; files ``fn`` left open are not flushed)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher alone answers Ctrl-C
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    if rank != 0:  # kept in case this rank fails; the launcher shows it then
        log = os.open(
            os.path.join(env[LAUNCHED], f"rank{rank}.log"), os.O_WRONLY | os.O_CREAT, 0o600
        )
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    code = 0
    try:
        with signals.handle_signals():  # SIGTERM: Interrupted, so that fn's finally blocks run
            fn(*args)
            shutdown()
    except signals.Interrupted as e:  # the launcher stopped this rank
        code = e.code
    except SystemExit as e:  # the launcher names it by its exit code, unless fn reported
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        if os.environ.get("MINIDL_TRACEBACK"):
            traceback.print_exc()
        report_failure(rank, _one_line(e))
        code = 1
    if not code:  # what a normal exit would run; the interpreter's teardown (some 0.5 s
        atexit._run_exitfuncs()  # with torch loaded) is skipped, as after a failure
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _read_reports(directory: str) -> dict[int, dict[str, Any]]:
    reports = {}
    for name in os.listdir(directory):
        if name.endswith(".error"):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    record = json.load(f)
                reports[int(record["rank"])] = record
            except (OSError, ValueError, KeyError):
                continue
    return reports


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Start processes with SIGINT ignored from their first instruction (ignored
    dispositions survive exec), so a Ctrl-C while a rank imports torch cannot interrupt it.
    Blocked meanwhile, the launcher's own SIGINT is delivered once this is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stop(procs: list[Any], grace_s: float) -> set[int]:
    """Terminate the ranks still running (SIGKILL after ``grace_s``) and reap them all;
    returns the ranks it had to stop."""
    stopped = set()
    for rank, p in enumerate(procs):
        if p.exitcode is None and p.is_alive():
            stopped.add(rank)
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0))
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    return stopped


def _first_failure(
    procs: list[Any], directory: str, died: dict[int, float], stopped: set[int]
) -> WorkerFailed:
    """The rank that failed first: its own report, or the time it was seen to die without
    one (killed, ``os._exit``). A rank whose collective lost a peer failed because another
    did, so it counts only when no other rank failed; a rank stopped by the launcher
    without a report of its own did not fail."""
    reports = _read_reports(directory)
    candidates = []
    for rank, p in enumerate(procs):
        if rank in reports:
            error = str(reports[rank]["error"])
            when = float(reports[rank]["time"])
            candidates.append((_is_communication_error(error), when, rank, error))
        elif p.exitcode not in (0, None) and rank not in stopped:
            candidates.append((False, died[rank], rank, ""))
    others = len(procs) > 1
    _, _, rank, error = min(candidates)  # never empty: _watch saw a rank fail by itself
    return WorkerFailed(rank, procs[rank].exitcode or 0, error, others=others)


def _replay_log(directory: str, rank: int, limit: int = 65536) -> None:
    path = os.path.join(directory, f"rank{rank}.log")
    try:
        with open(path, "rb") as f:
            f.seek(max(os.path.getsize(path) - limit, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


def launch(
    fn: Callable[..., Any], nproc: int, args: Sequence[Any] = (), *, grace_s: float = 5.0
) -> None:
    """Run ``fn(*args)`` as ``nproc`` ranks of one job on this machine, as torchrun would.

    Each rank is a fresh process (``torch.multiprocessing``, start method "spawn"; ``fn``
    and ``args`` must be picklable, ``fn`` a module-level function) whose environment has
    ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``: ``fn`` calls :func:`init_from_env` itself. Rank 0's stdout and stderr
    pass through; the other ranks' are discarded unless they fail.

    If a rank fails, the others are stopped at once and :class:`WorkerFailed` names the
    rank that failed first, with its one-line error: the ranks that fail after it (their
    peer gone) add nothing. SIGINT and SIGTERM stop every rank and raise
    :class:`minidl.cli.signals.Interrupted`; the ranks ignore SIGINT, so a Ctrl-C at the
    terminal is answered by the launcher alone. Nothing is left running when it returns
    or raises.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    with ExitStack() as stack:
        if signal.getsignal(signal.SIGTERM) is not signals._handler:
            stack.enter_context(signals.handle_signals())  # Interrupted, not a bare death
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="minidl-launch-"))
        env = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            LAUNCHED: directory,
        }
        procs: list[Any] = []
        try:
            with signals.deferred(), _children_ignore_sigint():
                context = start_processes(
                    _rank_main,
                    (fn, tuple(args), env, os.getpid()),
                    nprocs=nproc,
                    join=False,
                    start_method="spawn",
                )
                procs = list(context.processes)
            died = _watch(procs)
            if died is None:
                return
            stopped = _stop(procs, grace_s)
            now = time.monotonic()
            for rank in range(nproc):  # ended on their own while the first were seen to
                if rank not in stopped:
                    died.setdefault(rank, now)
            failure = _first_failure(procs, directory, died, stopped)
            if failure.rank != 0:
                _replay_log(directory, failure.rank)
            raise failure
        finally:
            _stop(procs, grace_s)


def _watch(procs: list[Any]) -> dict[int, float] | None:
    """Wait until every rank has succeeded (None) or one has failed: then the ranks seen
    to end so far, with the times they were seen to."""
    sentinels = {p.sentinel: rank for rank, p in enumerate(procs)}
    died: dict[int, float] = {}
    while sentinels:
        ready = multiprocessing.connection.wait(list(sentinels), timeout=1.0)
        now = time.monotonic()
        for sentinel in ready:
            rank = sentinels.pop(sentinel)
            procs[rank].join()
            died[rank] = now
        if any(procs[r].exitcode != 0 for r in died):
            return died
    return None
