"""Sweeps: rows of settings, each trained for several rounds on fresh data.

This is ``minidl-run sweep`` as code. A :class:`Row` is a set of :class:`TrainConfig`
changes (an activation, an optimizer spec, a learning rate, betas, or any other field)
with a label, and the seed report's numbers when it is one of its Table I. By default the
rows are :data:`TABLE_I`. Round ``r`` of every row uses the seed ``base.seed + r`` for its
data, its initial weights and its shuffling, so all rows of a round see the same points (a
paired comparison), and a round gives the same numbers whether it runs here or in a worker
process::

    from minidl.cli import TrainConfig
    from minidl.cli.sweep import TABLE_I, Row, grid_rows, sweep

    base = TrainConfig(epochs=5, n_train=200, n_test=200)
    for r in sweep(TABLE_I[:2], base, rounds=2):  # a list of RowResult
        print(r.row.title, f"{100 * r.mean:.2f} ± {100 * r.std:.2f}", r.accuracies)

    # A grid: every combination; an axis left out takes Table I's values.
    rows = grid_rows(activations=["relu", "tanh"], optimizers=["sgd"], lrs=[0.1, 0.5])
    # A model spec has its own activations: its rows vary the optimizer, lr and betas.
    model = base.replace(model="linear(8), tanh, linear(1), sigmoid")
    rows = grid_rows(optimizers=["sgd", "adam(betas=(0.9, 0.99))"], lrs=[0.1, 0.01], model=True)
    results = sweep(rows, model, rounds=2, jobs=2)  # the same numbers as jobs=1
    # Any TrainConfig change makes a row.
    results = sweep([Row({"hidden": [8]}, "narrow"), Row({"hidden": [64]}, "wide")], base)

``jobs > 1`` runs the rounds in fresh ('spawn') worker processes with one torch thread
each; call it under ``if __name__ == "__main__":``. Workers load the built-in and
installed plugins, and those this process loaded from a file or a module (or the specs
given as ``plugins``, as ``--layer-plugin`` takes them).
A round that diverges is a result (:attr:`RowResult.diverged`), left out of the mean and
standard deviation; a round that fails otherwise stops the sweep with :class:`RoundFailed`
naming the row, the round and its seed, or the worker process that died.

The rows come from :mod:`minidl.cli.rows`, the worker processes from
:mod:`minidl.cli.workers`, and the tables and files from :mod:`minidl.cli.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import minidl

from .experiment import TrainConfig, run, setup
from .rows import TABLE_I, Row, check_rows, grid_rows, model_rows, round_config, table_i_row
from .workers import RoundFailed, WorkerError, Workers, call, single_thread

__all__ = [
    "TABLE_I",
    "RoundFailed",
    "RoundResult",
    "Row",
    "RowResult",
    "grid_rows",
    "model_rows",
    "round_config",
    "run_round",
    "sweep",
    "table_i_row",
]


@dataclass
class RoundResult:
    test_accuracy: float | None  # None when the round diverged
    train_accuracy: float | None
    error: str = ""


@dataclass
class RowResult:
    """A row's rounds: accuracies in round order; a diverged round is left out of them
    and named in ``diverged`` (its error in ``errors``)."""

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

    def add(self, round_index: int, outcome: RoundResult) -> None:
        if outcome.test_accuracy is None or outcome.train_accuracy is None:
            self.diverged.append(round_index)
            self.errors.append(outcome.error)
        else:
            self.accuracies.append(outcome.test_accuracy)
            self.train_accuracies.append(outcome.train_accuracy)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: the label, activation, optimizer, lr, beta1, beta2 (null where the
        row leaves them), the row's other changes, then mean, std (null when every round
        diverged), per-round accuracies, and the report's numbers (or null)."""
        row = self.row
        record: dict[str, Any] = {"label": row.label}
        record.update(
            {k: row.changes.get(k) for k in ("activation", "optimizer", "lr", "beta1", "beta2")}
        )
        record.update(row.changes)
        record.update(
            mean=_finite_or_none(self.mean),
            std=_finite_or_none(self.std),
            accuracies=self.accuracies,
            train_accuracies=self.train_accuracies,
            rounds=len(self.accuracies) + len(self.diverged),
            diverged=self.diverged,
            report_mean=row.report_mean,
            report_std=row.report_std,
        )
        if self.errors:
            record["errors"] = self.errors
        return record


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_round(config: TrainConfig) -> RoundResult:
    """Train one round; a diverged run is a result (the row's rate was too high), not a crash."""
    with single_thread():
        try:
            result = run(config)
        except minidl.NonFiniteError as e:  # diverged, or the test loss overflowed
            return RoundResult(None, None, e.message)
    return RoundResult(result.test_accuracy, result.train_accuracy)


Progress = Callable[[int, int], None]


def sweep(
    rows: Sequence[Row] | None = None,
    base: TrainConfig | None = None,
    *,
    rounds: int = 10,
    jobs: int = 1,
    plugins: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[RowResult]:
    """Train every row for ``rounds`` rounds and collect the test accuracies.

    ``rows`` default to :data:`TABLE_I`, or with a model spec in ``base`` to
    :func:`model_rows`. ``jobs > 1`` runs rounds in that many fresh worker processes
    ('spawn'); the numbers are the same as with ``jobs=1``. Workers load the built-in and
    installed plugins and ``plugins`` (specs, as ``--layer-plugin`` takes them; by default
    those loaded here by file or module: :func:`loaded_plugins`).
    ``progress(done, total)`` is called after each round.
    """
    base = base or TrainConfig()
    rows = [
        r.on(base) for r in (rows if rows is not None else model_rows() if base.model else TABLE_I)
    ]
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if not rows:
        raise ValueError("no rows to sweep")
    check_rows(rows, base)
    tasks = [
        (i, r, round_config(base, row, r)) for i, row in enumerate(rows) for r in range(rounds)
    ]
    for row in rows:  # fail fast, here, on a bad name or option rather than in a worker
        setup(round_config(base, row, 0))
    results: list[RoundResult | None] = [None] * len(tasks)
    configs = [config for _, _, config in tasks]
    try:
        if jobs == 1:
            for k, config in enumerate(configs):
                try:
                    results[k] = call((run_round, config))
                except WorkerError as e:
                    e.task = k
                    raise
                if progress is not None:
                    progress(k + 1, len(tasks))
        else:
            with Workers(min(jobs, len(tasks)), plugins) as workers:
                for done, (k, outcome) in enumerate(workers.completed(run_round, configs), 1):
                    results[k] = outcome
                    if progress is not None:
                        progress(done, len(tasks))
    except WorkerError as e:
        raise _failed(rows, tasks, e) from None
    table = [RowResult(row) for row in rows]
    for (i, r, _), result in zip(tasks, results, strict=True):
        assert result is not None
        table[i].add(r, result)
    return table


def _failed(
    rows: Sequence[Row], tasks: Sequence[tuple[int, int, TrainConfig]], error: WorkerError
) -> RoundFailed:
    assert error.task is not None
    i, r, config = tasks[error.task]
    return RoundFailed(
        f"round {r} of row {rows[i].title} (seed {config.seed}) failed: {error.message}; "
        "stopped the sweep"
    )
