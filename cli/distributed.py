"""Data parallelism on torch.distributed, without autograd hooks, and a local launcher.

Every rank draws the same global mini-batches (same shuffling seed), trains on its own
slice of each, and before each optimizer step one ``all_reduce`` over the flat gradient
buffer sums the slices' gradients weighted by slice size. The result is the gradient of
the global batch's mean loss, so every rank takes the same step as a single process would.
The model's buffers (running statistics) are rank 0's, broadcast before each batch's
forward pass as torch's ``DistributedDataParallel`` does by default.

:func:`launch` starts the ranks of a job on this machine through ``torch.multiprocessing``
(the "spawn" start method), each with the environment ``torchrun`` would give it.
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
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.multiprocessing.spawn import start_processes

from minidl import Dataset, FlatOptimizer, MinidlError
from minidl.flat import FlatParameters
from minidl.module import named_buffers
from minidl.protocols import Optimizer

from . import signals


class DataParallel:
    """An optimizer wrapper for one rank of a process group; pass it to :func:`minidl.fit`
    with ``batches=dp.batches``.

    The wrapped optimizer's parameters must live in one flat buffer (every built-in
    optimizer's do). Rank 0's parameters and ``model``'s buffers are broadcast at once, so
    all ranks start equal; the buffers again before every batch and after each epoch's
    last, so every rank trains and evaluates with rank 0's running statistics.
    """

    def __init__(
        self, optimizer: Optimizer, model: Any = None, group: dist.ProcessGroup | None = None
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DataParallel needs a process group: call "
                "minidl.cli.distributed.init_from_env() under torchrun or launch()"
            )
        if not isinstance(optimizer, FlatOptimizer):
            raise TypeError(
                f"DataParallel needs an optimizer that keeps its parameters in one flat buffer "
                f"(a minidl.FlatOptimizer), got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.flat: FlatParameters = optimizer.flat
        self.model = model
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self._src = dist.get_global_rank(group, 0) if group is not None else 0
        dist.broadcast(self.flat.data, src=self._src, group=group)
        self.broadcast_buffers()
        self._weight = 1.0

    @property
    def lr(self) -> float:
        return float(self.optimizer.lr)

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.flat.grad.mul_(self._weight)
        dist.all_reduce(self.flat.grad, group=self.group)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()  # type: ignore[no-any-return]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def broadcast_buffers(self) -> None:
        """Copy rank 0's buffers into this rank's, in place: into the very tensors the
        model's ``buffers()`` returns now (a layer may have rebound them since)."""
        if self.model is None:
            return
        buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for _, b in named_buffers(self.model):
            buckets.setdefault((b.device, b.dtype), []).append(b)
        for tensors in buckets.values():  # one collective per dtype and device
            if len(tensors) == 1 and tensors[0].is_contiguous():
                dist.broadcast(tensors[0], src=self._src, group=self.group)
                continue
            packed = torch.cat([t.reshape(-1) for t in tensors])
            dist.broadcast(packed, src=self._src, group=self.group)
            if self.rank != 0:
                for t, part in zip(
                    tensors, packed.split([t.numel() for t in tensors]), strict=True
                ):
                    t.copy_(part.view_as(t))

    def batches(
        self, data: Dataset, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's slice of every global batch. A rank whose slice is empty (a last
        batch smaller than the world) still joins the step's collectives, with zero gradient."""
        for x, y in data.batches(batch_size, generator):
            self.broadcast_buffers()  # before the forward pass, as DDP's broadcast_buffers
            xs = x.tensor_split(self.world_size)[self.rank]
            ys = y.tensor_split(self.world_size)[self.rank]
            self._weight = len(xs) / len(x)
            if len(xs):
                yield xs, ys
            else:
                self.zero_grad()
                self.step()
        self.broadcast_buffers()  # the epoch is evaluated, and ends, with rank 0's


def world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment variables."""
    env = os.environ
    return (
        int(env.get("RANK", "0")),
        int(env.get("LOCAL_RANK", "0")),
        int(env.get("WORLD_SIZE", "1")),
    )


def init_from_env(device: str = "cpu", timeout_s: float = 120.0) -> str:
    """Join the process group that torchrun (or :func:`launch`) described in the
    environment: gloo on CPU, NCCL on CUDA. Returns the device this rank should use."""
    _, local_rank, world_size = world_from_env()
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    if device == "cuda" and world_size > 1:
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------
# The launcher


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
