"""Sweeps: rows of hyperparameters, each trained for several rounds on fresh data.

This is ``minidl-run sweep`` as code. By default the rows are the seed report's Table I.
Round ``r`` of every row uses the seed ``base.seed + r`` for its data, its initial weights
and its shuffling, so all rows of a round see the same points (a paired comparison), and a
round gives the same numbers whether it runs here or in a worker process.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import registry
from .errors import NonFiniteError, PluginError
from .experiment import TrainConfig, accepts, run, setup


@dataclass(frozen=True)
class Row:
    """One line of a sweep table. ``report_*`` hold the seed report's numbers (fractions)."""

    activation: str
    optimizer: str
    lr: float
    beta1: float | None = None
    beta2: float | None = None
    report_mean: float | None = None
    report_std: float | None = None

    @property
    def label(self) -> str:
        return f"{self.activation}-{self.optimizer}"


#: The seed report's Table I: its tuned learning rates and betas, and its test accuracies
#: (mean and standard deviation over 10 rounds).
TABLE_I: tuple[Row, ...] = (
    Row("relu", "sgd", 0.5, report_mean=0.9308, report_std=0.0293),
    Row("sigmoid", "sgd", 0.1, report_mean=0.4962, report_std=0.0174),
    Row("tanh", "sgd", 0.9, report_mean=0.9132, report_std=0.0341),
    Row("relu", "adam", 1e-3, 0.9, 0.999, report_mean=0.9557, report_std=0.0100),
    Row("sigmoid", "adam", 1e-3, 0.9, 0.999, report_mean=0.4921, report_std=0.0115),
    Row("tanh", "adam", 0.1, 0.5, 0.999, report_mean=0.4941, report_std=0.0119),
)


def table_i_row(activation: str, optimizer: str) -> Row | None:
    return next(
        (r for r in TABLE_I if (r.activation, r.optimizer) == (activation, optimizer)), None
    )


def grid(
    activations: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    beta1s: Sequence[float] | None = None,
    beta2s: Sequence[float] | None = None,
) -> list[Row]:
    """Every combination of the given values. A dimension left out takes Table I's values:
    activations relu, sigmoid, tanh; optimizers sgd, adam; and for each pair the report's
    learning rate and betas (``1e-3`` and the optimizer's own betas for pairs not in it).

    Betas apply only to optimizers that take them (so ``--optimizer sgd,adam --beta1 0.5``
    gives one SGD row per learning rate). A row equal to one of Table I keeps its numbers.
    """
    rows: list[Row] = []
    for activation, optimizer in itertools.product(
        activations or ("relu", "sigmoid", "tanh"), optimizers or ("sgd", "adam")
    ):
        known = table_i_row(activation, optimizer)
        takes_betas = accepts(registry.get("optimizer", optimizer), "betas")
        row_lrs = lrs or [known.lr if known else 1e-3]
        row_b1: Sequence[float | None] = [None]
        row_b2: Sequence[float | None] = [None]
        if takes_betas:
            row_b1 = beta1s or [known.beta1 if known else None]
            row_b2 = beta2s or [known.beta2 if known else None]
        for lr, b1, b2 in itertools.product(row_lrs, row_b1, row_b2):
            row = Row(activation, optimizer, lr, b1, b2)
            same = known is not None and (known.lr, known.beta1, known.beta2) == (lr, b1, b2)
            if same:
                assert known is not None
                row = known
            if row not in rows:
                rows.append(row)
    return rows


def round_config(base: TrainConfig, row: Row, round_index: int) -> TrainConfig:
    """The configuration of one round of one row. The base's ``eps`` goes to the rows whose
    optimizer takes one (so Table I's SGD rows ignore ``--eps``)."""
    eps = base.eps
    if eps is not None and not accepts(registry.get("optimizer", row.optimizer), "eps"):
        eps = None
    return base.replace(
        activation=row.activation,
        optimizer=row.optimizer,
        lr=row.lr,
        beta1=row.beta1,
        beta2=row.beta2,
        eps=eps,
        seed=base.seed + round_index,
    )


@dataclass
class RoundResult:
    test_accuracy: float | None  # None when the round diverged
    train_accuracy: float | None
    error: str = ""


@dataclass
class RowResult:
    """A row's rounds: accuracies in round order; a diverged round is left out of them
    and named in ``diverged``."""

    row: Row
    accuracies: list[float] = field(default_factory=list)
    train_accuracies: list[float] = field(default_factory=list)
    diverged: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation (n - 1 in the denominator) across rounds."""
        n = len(self.accuracies)
        if n < 2:
            return 0.0 if n == 1 else math.nan
        mean = self.mean
        return math.sqrt(sum((a - mean) ** 2 for a in self.accuracies) / (n - 1))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: the row's settings, then mean, std and per-round accuracies."""
        record = {k: v for k, v in asdict(self.row).items() if not k.startswith("report_")}
        record.update(
            mean=_finite_or_none(self.mean),
            std=_finite_or_none(self.std),
            accuracies=self.accuracies,
            train_accuracies=self.train_accuracies,
            rounds=len(self.accuracies) + len(self.diverged),
            diverged=self.diverged,
            report_mean=self.row.report_mean,
            report_std=self.row.report_std,
        )
        if self.errors:
            record["errors"] = self.errors
        return record


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class RoundFailed(RuntimeError):
    """A round failed for another reason than divergence (a plugin's bug, a worker process
    that died): the sweep stops, naming the round (or the worker)."""


def run_round(config: TrainConfig) -> RoundResult:
    """Train one round; a diverged run is a result (the row's rate was too high), not a crash."""
    if _worker_error is not None:  # the worker could not load a plugin: say so per round
        raise PluginError(_worker_error)
    with single_thread():
        try:
            result = run(config)
        except NonFiniteError as e:  # diverged, or the test loss overflowed
            return RoundResult(None, None, str(e))
    return RoundResult(result.test_accuracy, result.train_accuracy)


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
    import minidl  # noqa: F401  (autograd off, built-in plugins)

    # An initializer that raises leaves only "BrokenProcessPool"; keep the reason for the rounds.
    try:
        for spec in plugins:
            registry.load_plugin(spec)
    except Exception as e:
        _worker_error = f"a worker process could not load plugin {spec!r}: {e}"


def _dead_worker(workers: Sequence[Any], wait_s: float = 1.0) -> Any:
    """The worker that died: the pool notices a death before the process is reaped, so
    give it a moment; the pool then terminates the others, so prefer a code not SIGTERM's."""
    deadline = time.monotonic() + wait_s
    while True:
        dead = [w for w in workers if w.exitcode not in (None, 0)]
        if dead or time.monotonic() > deadline:
            return min(dead, key=lambda w: w.exitcode == -signal.SIGTERM, default=None)
        time.sleep(0.01)


def pool_processes(pool: concurrent.futures.ProcessPoolExecutor) -> dict[int, Any]:
    """The pool's worker processes by pid, as far as it has started them (on submit)."""
    return dict(getattr(pool, "_processes", None) or {})


def stop_workers(pool: concurrent.futures.ProcessPoolExecutor, known: Iterable[Any] = ()) -> None:
    """End a pool now: cancel what has not started and terminate the workers (their
    running rounds are lost), rather than wait for every running round to finish.
    ``known``: processes seen earlier (a broken pool forgets its own)."""
    processes = list({**{p.pid: p for p in known}, **pool_processes(pool)}.values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def worker_pool(jobs: int, plugins: Sequence[str] = ()) -> concurrent.futures.ProcessPoolExecutor:
    """The worker processes of a sweep (and of ``minidl.tune``): fresh ('spawn'), one torch
    thread each, with the built-in, installed and ``plugins`` plugins loaded."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(tuple(plugins),),
    )


Progress = Callable[[int, int], None]


def sweep(
    rows: Sequence[Row] | None = None,
    base: TrainConfig | None = None,
    *,
    rounds: int = 10,
    jobs: int = 1,
    plugins: Sequence[str] = (),
    progress: Progress | None = None,
) -> list[RowResult]:
    """Train every row for ``rounds`` rounds and collect the test accuracies.

    ``jobs > 1`` runs rounds in that many fresh worker processes ('spawn'); the numbers are
    the same as with ``jobs=1``. Workers load the built-in and installed plugins; name any
    others in ``plugins`` (the specs of ``--layer-plugin``) so that workers load them too.
    ``progress(done, total)`` is called after each round.
    """
    rows = list(TABLE_I if rows is None else rows)
    base = base or TrainConfig()
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    tasks = [(i, round_config(base, row, r)) for i, row in enumerate(rows) for r in range(rounds)]
    for row in rows:  # fail fast, here, on a bad name or option rather than in a worker
        setup(round_config(base, row, 0))
    results: list[RoundResult | None] = [None] * len(tasks)
    if jobs == 1:
        for k, (_, config) in enumerate(tasks):
            try:
                results[k] = run_round(config)
            except Exception as e:
                raise _failed(rows, tasks, base, k, f"{type(e).__name__}: {e}") from e
            if progress is not None:
                progress(k + 1, len(tasks))
    else:
        pool = worker_pool(min(jobs, len(tasks)), plugins)
        try:
            futures, seen = {}, {}
            for k, (_, config) in enumerate(tasks):
                futures[pool.submit(run_round, config)] = k
                seen.update(pool_processes(pool))  # started on submit
            workers = list(seen.values())
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                k = futures[future]
                try:
                    results[k] = future.result()
                except BrokenProcessPool:
                    dead = _dead_worker(workers)
                    who = f" (process {dead.pid}, exit code {dead.exitcode})" if dead else ""
                    raise RoundFailed(
                        f"a sweep worker process died{who}: killed, out of memory, or a crash; "
                        "stopped the sweep"
                    ) from None
                except Exception as e:
                    raise _failed(rows, tasks, base, k, f"{type(e).__name__}: {e}") from e
                if progress is not None:
                    progress(done, len(tasks))
        except BaseException:
            stop_workers(pool, seen.values())  # none outlives the sweep, none keeps it waiting
            raise
        pool.shutdown()
    table = [RowResult(row) for row in rows]
    for (i, config), outcome in zip(tasks, results, strict=True):
        assert outcome is not None
        entry = table[i]
        if outcome.test_accuracy is None or outcome.train_accuracy is None:
            entry.diverged.append(config.seed - base.seed)
            entry.errors.append(outcome.error)
        else:
            entry.accuracies.append(outcome.test_accuracy)
            entry.train_accuracies.append(outcome.train_accuracy)
    return table


def _failed(
    rows: Sequence[Row],
    tasks: Sequence[tuple[int, TrainConfig]],
    base: TrainConfig,
    k: int,
    error: str,
) -> RoundFailed:
    i, config = tasks[k]
    row = rows[i]
    return RoundFailed(
        f"round {config.seed - base.seed} of row {row.label} lr {row.lr:g} (seed {config.seed}) "
        f"failed: {error}; stopped the sweep"
    )
