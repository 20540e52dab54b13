"""Worker processes for sweeps and tuning: fresh ('spawn') processes with one torch thread
each and the same plugins as this one, that never outlive the job that started them.

A task's exception comes back as text (:class:`WorkerError`), since not every exception
pickles; a worker that dies is named by pid and exit code (:class:`RoundFailed`).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

import minidl

T = TypeVar("T")
R = TypeVar("R")


class RoundFailed(minidl.MinidlError):
    """A round failed for another reason than divergence (a plugin's bug, a worker process
    that died): the sweep stops, naming the round (or the worker). Exit code 1."""

    exit_code = 1


class WorkerError(Exception):
    """An exception raised by a task (in a worker process or here), as text: any
    exception pickles this way, whatever its constructor takes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.task: int | None = None  # its index among the tasks, set where it is caught

    def __str__(self) -> str:
        return self.message


def exception_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e.message if isinstance(e, minidl.MinidlError) else e}"


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread, as in the pool's workers, so where a round runs cannot change
    its arithmetic (and for these small matrices one thread is also the fastest)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_worker_error: str | None = None


def _init_worker(plugins: Sequence[str]) -> None:
    global _worker_error
    # Ctrl-C reaches the whole process group; the parent alone answers it, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    # An initializer that raises leaves only "BrokenProcessPool"; keep the reason for the tasks.
    spec = ""
    try:
        for spec in plugins:
            minidl.registry.load(spec)
    except Exception as e:
        why = e.message if isinstance(e, minidl.MinidlError) else exception_text(e)
        _worker_error = f"a worker process could not load plugin {spec!r}: {why}"


def call(task: tuple[Callable[[Any], Any], Any]) -> Any:
    """Run one task (here or in a worker); its exception comes back as a WorkerError,
    which pickles whatever the original's constructor takes."""
    function, item = task
    try:
        if _worker_error is not None:  # the worker could not load a plugin: say so per task
            raise minidl.PluginError(_worker_error)
        return function(item)
    except Exception as e:
        raise WorkerError(exception_text(e)) from None


def _dead_worker(workers: Sequence[Any], wait_s: float = 1.0) -> Any:
    """The worker that died: the pool notices a death before the process is reaped, so
    give it a moment; the pool then terminates the others, so prefer a code not SIGTERM's."""
    deadline = time.monotonic() + wait_s
    while True:
        dead = [w for w in workers if w.exitcode not in (None, 0)]
        if dead or time.monotonic() > deadline:
            return min(dead, key=lambda w: w.exitcode == -signal.SIGTERM, default=None)
        time.sleep(0.01)


def loaded_plugins() -> list[str]:
    """The plugin specs a fresh process needs to load what this one has: the plugins
    loaded from a file or a module (``--layer-plugin``, :meth:`minidl.registry.load`), and
    ``no:NAME`` for the installed ones blocked here."""
    registry = minidl.registry
    specs = [
        name
        for name, source in registry.sources.items()
        if registry.has_plugin(name) and _loadable(name, source)
    ]
    return specs + [f"no:{name}" for name, plugin in registry.list_name_plugin() if plugin is None]


def _loadable(name: str, source: str) -> bool:
    """Whether a fresh process can load this plugin by name (an object registered under a
    made-up name cannot)."""
    if source == "file":
        return Path(name).is_file()
    if source != "module":
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Workers:
    """Fresh ('spawn') worker processes with one torch thread each and the built-in,
    installed and ``plugins`` plugins loaded (by default :func:`loaded_plugins`): the pool
    of a sweep and of a tuning search.
    Use it as a context manager: on the way out, for whatever reason (an error, Ctrl-C),
    no worker is left running and none keeps the caller waiting."""

    def __init__(
        self, jobs: int, plugins: Sequence[str] | None = None, what: str = "sweep"
    ) -> None:
        self.what = what
        plugins = loaded_plugins() if plugins is None else plugins
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(tuple(plugins),),
        )
        self.seen: dict[int, Any] = {}  # every worker process by pid (a broken pool forgets)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            self.pool.shutdown()
        else:
            self.stop()

    def _processes(self) -> dict[int, Any]:
        self.seen.update(getattr(self.pool, "_processes", None) or {})  # started on submit
        return self.seen

    def completed(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """``(index, function(item))`` as each finishes. A task's exception is raised as
        :class:`WorkerError`; a worker process that dies, as :class:`RoundFailed` naming it."""
        futures = {}
        for k, item in enumerate(items):
            futures[self.pool.submit(call, (function, item))] = k
            self._processes()
        for future in concurrent.futures.as_completed(futures):
            try:
                result = future.result()
            except WorkerError as e:
                e.task = futures[future]
                raise
            except BrokenProcessPool:
                dead = _dead_worker(list(self._processes().values()))
                who = f" (process {dead.pid}, exit code {dead.exitcode})" if dead else ""
                raise RoundFailed(
                    f"a {self.what} worker process died{who}: killed, out of memory, or a crash; "
                    f"stopped the {self.what}"
                ) from None
            yield futures[future], result

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Like the builtin ``map``, results in order, each as soon as it and those before
        it are done."""
        waiting: dict[int, R] = {}
        position = 0
        for k, result in self.completed(function, items):
            waiting[k] = result
            while position in waiting:
                yield waiting.pop(position)
                position += 1

    def stop(self) -> None:
        """End now: cancel what has not started and terminate the workers (their running
        tasks are lost), rather than wait for every running task to finish."""
        processes = list(self._processes().values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
