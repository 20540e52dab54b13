"""Hyperparameter search that never looks at the test set, then test rounds with the winner.

This is ``minidl-run tune`` as code. :func:`tune` works in three stages, each a batch of
independent training runs that a process pool may share out:

1. every candidate setting trains on the training points minus a held-out validation part
   (``TrainConfig.validation``) for a few tuning seeds, scored by mean validation accuracy;
2. the best few (the finalists) train for more seeds, so a setting that only sometimes
   gets stuck in a poor solution is caught before it is chosen;
3. the best finalist retrains on the full training set for ``rounds`` fresh seeds, which
   tuning never used, and only now is the test set scored.

Epoch counts cost little to search: when the learning-rate schedule does not depend on
the total number of epochs (``constant``, ``step``), a run of ``E`` epochs passes through
every shorter run on its way, so one run at the largest count is scored at every count.

:func:`tune_table` tunes every row of a table (a :class:`~minidl.cli.sweep.Row`, as in a
sweep; by default Table I's six activation and optimizer pairs, whose learning rates and
betas are what tuning replaces) and shares one pool of worker processes among them::

    from minidl.cli import TrainConfig
    from minidl.cli.tune import Budget, candidate_factory, candidate_grid, tune, tune_rows, tune_table

    tiny = Budget(epochs=(5, 10), seeds=(1000,), finalists=1, confirm_seeds=(1001,))
    base = TrainConfig(n_train=200, n_test=100)
    # One configuration, an explicit grid of candidates:
    result = tune(base.replace(activation="tanh", optimizer="adam"),
                  candidate_grid(lr=[3e-3, 1e-2], epochs=[5, 10]), budget=tiny, rounds=2)
    print(result.chosen, result.accuracies)
    # Table I's rows (or tune_rows(["relu"], ["sgd", "adam"])), docs/tuning.md's candidates
    # with one axis replaced, in two worker processes (the numbers do not depend on it):
    results = tune_table(tune_rows(), base, candidates=candidate_factory(tiny, lrs=[0.01]),
                         budget=tiny, rounds=2, jobs=2)
    # A model spec has its own activations: its rows are optimizers.
    model = base.replace(model="linear(8), tanh, linear(1), sigmoid")
    results = tune_table(tune_rows(optimizers=["sgd"], model=True), model, budget=tiny, rounds=2)

:func:`save` writes what ``--out`` writes, :func:`text` what the command prints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import minidl
from minidl import Callback, Module, Trainer, evaluate

from .candidates import (
    BUDGETS,
    TUNABLE,
    Budget,
    CandidateFactory,
    candidate_factory,
    candidate_grid,
    check_tunable,
    default_candidates,
    tune_rows,
)
from .experiment import TrainConfig, make_schedule, run, setup
from .rows import Row, check_rows, plain_optimizer, round_config, table_i_row
from .sweep import RoundResult, RowResult, run_round
from .workers import RoundFailed, WorkerError, Workers, call, single_thread

__all__ = [
    "BUDGETS",
    "Budget",
    "TuneResult",
    "candidate_factory",
    "default_candidates",
    "candidate_grid",
    "search",
    "tune",
    "tune_rows",
    "tune_table",
]

T = TypeVar("T")
R = TypeVar("R")
#: ``map``-like: applies a function to every item, results in order (a pool's ``map``).
Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterable[R]]
#: Told how many more runs have finished.
Progress = Callable[[int], None]


@dataclass
class Trial:
    """One candidate setting and its validation accuracy per tuning seed (NaN where
    training diverged)."""

    settings: dict[str, Any]
    accuracies: list[float]
    seeds: list[int] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return any(math.isnan(a) for a in self.accuracies)

    @property
    def mean(self) -> float:
        return 0.0 if self.diverged else statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        if self.diverged:
            return math.inf
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def rank_key(self) -> tuple[float, float, int]:
        # Best mean first; among equals, the steadier, then the shorter run.
        return (-self.mean, self.std, int(self.settings.get("epochs", 0)))


@dataclass
class TuneResult:
    """The chosen settings, the validation trials behind the choice (best first; the
    finalists carry their confirmation seeds too) and, as a sweep row, the test accuracy
    of the choice over fresh rounds."""

    config: TrainConfig  # the rounds' configuration, seed aside
    chosen: dict[str, Any]
    trials: list[Trial]
    table_row: RowResult
    fraction: float  # of the training points held out for validation

    @property
    def accuracies(self) -> list[float]:
        return self.table_row.accuracies

    @property
    def mean(self) -> float:
        return self.table_row.mean

    @property
    def std(self) -> float:
        return self.table_row.std

    @property
    def validation(self) -> Trial:
        return self.trials[0]

    def as_dict(self) -> dict[str, Any]:
        """A row of ``sweep --json`` (label, activation, optimizer, lr, betas, mean, std,
        accuracies, the report's numbers for this pair) plus the chosen settings and their
        validation."""
        record = self.table_row.as_dict()
        record["settings"] = {k: getattr(self.config, k) for k in TUNABLE}
        v = self.validation
        record["validation"] = {
            "mean": v.mean,
            "std": v.std,
            "accuracies": v.accuracies,
            "seeds": v.seeds,
            "fraction": self.fraction,
        }
        record["candidates"] = len(self.trials)
        return record


def _epoch_free(config: TrainConfig, epochs: Sequence[int]) -> bool:
    """Whether the schedule's lr at each epoch is the same whatever the total epoch count,
    so a long run's history contains every shorter run's."""
    full = make_schedule(config.replace(epochs=max(epochs)))
    return all(
        make_schedule(config.replace(epochs=e))(k) == full(k)
        for e in epochs
        for k in range(1, e + 1)
    )


class _Scores(Callback):
    """Tune's validation scoring: the validation accuracy after each wanted epoch."""

    def __init__(self, epochs: Iterable[int]) -> None:
        self.wanted, self.scores = set(epochs), {}

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        if trainer.epoch in self.wanted and trainer.validation is not None:
            self.scores[trainer.epoch] = evaluate(model, trainer.loss, trainer.validation)[1]


def validation_scores(job: tuple[TrainConfig, tuple[int, ...]]) -> dict[int, float]:
    """Validation accuracy after each of the given epochs of one run of ``config`` (an
    empty dict if training diverged). A plain function of picklable arguments, so process
    pools can run it.

    Only the held-out part is scored, and only at those epochs: scoring every epoch on the
    training points too, as a plain run does, would cost a fifth of the search's time. The
    test set is never scored.
    """
    config, epochs = job
    if not config.validation:
        raise ValueError("validation_scores needs a config with a validation fraction")
    scoring = _Scores(epochs)
    with single_thread():  # as in the pool's workers, so jobs never change the numbers
        try:
            run(config, [scoring], evaluate_test=False, evaluate_every_epoch=False)
        except minidl.DivergenceError:
            return {}
    return scoring.scores


@dataclass
class _Job:
    members: list[tuple[int, dict[str, Any]]]  # candidates sharing this run, by index
    config: TrainConfig


def _epochs(settings: dict[str, Any], base: TrainConfig) -> int:
    return int(settings.get("epochs", base.epochs))


def _jobs(
    base: TrainConfig, candidates: Sequence[dict[str, Any]], seeds: Sequence[int], fraction: float
) -> list[_Job]:
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, settings in enumerate(candidates):
        for name in settings:
            check_tunable(name)
        rest = {k: v for k, v in settings.items() if k != "epochs"}
        groups.setdefault(repr(sorted(rest.items())), []).append((i, settings))
    jobs = []
    for members in groups.values():
        config = base.replace(**{k: v for k, v in members[0][1].items() if k != "epochs"})
        epochs = [_epochs(s, base) for _, s in members]
        batches = [members] if _epoch_free(config, epochs) else [[m] for m in members]
        for batch in batches:
            longest = max(_epochs(s, base) for _, s in batch)
            for seed in seeds:
                config_s = config.replace(epochs=longest, seed=seed, validation=fraction)
                jobs.append(_Job(batch, config_s))
    return jobs


def count_runs(
    base: TrainConfig,
    candidates: Sequence[dict[str, Any]],
    budget: Budget = BUDGETS["default"],
    rounds: int = 10,
) -> int:
    """How many training runs :func:`tune` will make: the length of a progress bar."""
    finalists = min(budget.finalists, len(candidates)) if budget.confirm_seeds else 0
    return (
        len(_jobs(base, candidates, budget.seeds, 0.5))
        + finalists * len(budget.confirm_seeds)
        + rounds
    )


def search(
    base: TrainConfig,
    candidates: Sequence[dict[str, Any]],
    *,
    seeds: Sequence[int] = Budget.seeds,
    validation: float = 0.2,
    map: Mapper[Any, Any] = map,  # the builtin's name, as the interface
    progress: Progress | None = None,
) -> list[Trial]:
    """Score each candidate (a dict of :data:`TUNABLE` settings applied to ``base``) by its
    validation accuracy per seed; the trials come back best first."""
    if not candidates:
        raise ValueError("no candidate settings to search")
    if not seeds:
        raise ValueError("search needs at least one tuning seed")
    jobs = _jobs(base, candidates, seeds, validation)
    scores: dict[int, dict[int, float]] = {}  # candidate index -> seed -> accuracy
    work = [(j.config, tuple(_epochs(s, base) for _, s in j.members)) for j in jobs]
    for job, at in zip(jobs, map(validation_scores, work), strict=True):
        for i, settings in job.members:
            accuracy = at.get(_epochs(settings, base), math.nan)
            scores.setdefault(i, {})[job.config.seed] = accuracy
        if progress is not None:
            progress(1)
    trials = [
        Trial(dict(s), [scores[i][seed] for seed in seeds], list(seeds))
        for i, s in enumerate(candidates)
    ]
    return sorted(trials, key=Trial.rank_key)


def check_round_seeds(seed: int, rounds: int, budget: Budget) -> None:
    """The test rounds' seeds (``seed``, ``seed + 1``, ...) must be none that tuning uses."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    tuned = set(budget.seeds) | set(budget.confirm_seeds)
    clash = sorted(tuned & {seed + r for r in range(rounds)})
    if clash:
        raise ValueError(f"round seeds must be fresh, but {clash} also tune; choose another --seed")


def _row_for(config: TrainConfig) -> Row:
    activation = None if config.model else config.activation
    known = table_i_row(activation, plain_optimizer(config.optimizer))
    changes = (
        {"optimizer": config.optimizer}
        if activation is None
        else {"activation": activation, "optimizer": config.optimizer}
    )
    return Row(changes, "", *((known.report_mean, known.report_std) if known else (None, None)))


def tune(
    base: TrainConfig,
    candidates: Sequence[dict[str, Any]],
    *,
    budget: Budget = BUDGETS["default"],
    rounds: int = 10,
    validation: float = 0.2,
    map: Mapper[Any, Any] = map,
    progress: Progress | None = None,
    row: Row | None = None,
) -> TuneResult:
    """Choose among ``candidates`` for ``base`` on validation data (two stages, see the
    module's help), then measure the choice's test accuracy over ``rounds`` rounds whose
    seeds are ``base.seed``, ``base.seed + 1``, ... as in a sweep. ``row`` gives the
    result's label and the report's numbers (by default the activation and optimizer's,
    from Table I)."""
    check_round_seeds(base.seed, rounds, budget)

    def stage(candidates: Sequence[dict[str, Any]], seeds: Sequence[int]) -> list[Trial]:
        return search(
            base, candidates, seeds=seeds, validation=validation, map=map, progress=progress
        )

    trials = stage(candidates, budget.seeds)
    if budget.confirm_seeds and budget.finalists > 0:
        finalists = trials[: budget.finalists]
        more = stage([t.settings for t in finalists], budget.confirm_seeds)
        by_settings = {repr(t.settings): t for t in more}
        confirmed = []
        for t in finalists:
            extra = by_settings[repr(t.settings)]
            confirmed.append(
                Trial(t.settings, t.accuracies + extra.accuracies, t.seeds + extra.seeds)
            )
        trials = sorted(confirmed, key=Trial.rank_key) + trials[budget.finalists :]
    chosen = trials[0].settings
    config = base.replace(**chosen, validation=0.0)
    row = row or _row_for(base)
    changes = {**row.changes, "lr": config.lr}
    changes.update(
        {k: getattr(config, k) for k in ("beta1", "beta2") if getattr(config, k) is not None}
    )
    result = RowResult(Row(changes, row.label, row.report_mean, row.report_std))
    outcomes: Iterable[RoundResult] = map(
        run_round, [config.replace(seed=base.seed + r) for r in range(rounds)]
    )
    for r, outcome in enumerate(outcomes):
        result.add(r, outcome)
        if progress is not None:
            progress(1)
    return TuneResult(config, chosen, trials, result, validation)


def table_runs(
    rows: Sequence[Row],
    base: TrainConfig,
    candidates: CandidateFactory,
    budget: Budget = BUDGETS["default"],
    rounds: int = 10,
) -> int:
    """How many training runs :func:`tune_table` will make."""
    configs = [round_config(base, row, 0) for row in rows]
    return sum(count_runs(c, candidates(c), budget, rounds) for c in configs)


def tune_table(
    rows: Sequence[Row] | None = None,
    base: TrainConfig | None = None,
    *,
    candidates: CandidateFactory | None = None,
    budget: Budget = BUDGETS["default"],
    rounds: int = 10,
    validation: float = 0.2,
    jobs: int = 1,
    plugins: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[TuneResult]:
    """``minidl-run tune`` as code: tune each row (by default :func:`rows`: Table I's six
    pairs, or one per optimizer for a base with a model spec) with
    ``candidates(config)``, the row's configuration's candidates (by default
    :func:`candidate_factory`'s: docs/tuning.md's search over the budget's epochs),
    sharing one pool of ``jobs`` fresh worker processes among all of them (workers load
    ``plugins`` as a sweep's do). ``progress(done, total)`` counts runs. A run that fails
    (other than by diverging) stops the tuning with :class:`RoundFailed` naming the row.
    """
    base = base or TrainConfig()
    table = [r.on(base) for r in (tune_rows(model=bool(base.model)) if rows is None else rows)]
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    check_rows(table, base)
    check_round_seeds(base.seed, rounds, budget)
    candidates = candidates or candidate_factory(budget)
    configs = [round_config(base, row, 0) for row in table]
    grids = [candidates(config) for config in configs]
    for config in configs:  # a bad name or option fails here, not in a worker
        setup(config.replace(validation=validation))
    total = sum(count_runs(c, g, budget, rounds) for c, g in zip(configs, grids, strict=True))
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def tune_all(mapper: Mapper[Any, Any]) -> list[TuneResult]:
        results = []
        for row, config, grid_ in zip(table, configs, grids, strict=True):
            try:
                results.append(
                    tune(
                        config,
                        grid_,
                        budget=budget,
                        rounds=rounds,
                        validation=validation,
                        map=mapper,
                        progress=tick,
                        row=row,
                    )  # fmt: skip
                )
            except WorkerError as e:
                raise RoundFailed(
                    f"tuning row {row.title} failed: {e.message}; stopped the tuning"
                ) from None
        return results

    if jobs == 1:
        return tune_all(_in_process)
    with Workers(jobs, plugins, what="tuning") as workers:
        return tune_all(workers.map)


def diagnostic_runs(
    result: TuneResult, base: TrainConfig
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Round 0 of the tuned settings, and of the report's where the row is one of Table I's,
    trained again with diagnostics recorded: what ``tune --out`` plots per row."""
    c = result.config
    runs = []
    known = None if c.model else table_i_row(c.activation, plain_optimizer(c.optimizer))
    if known is not None:
        report = round_config(base, known, 0).replace(diagnostics=True)
        runs.append((f"report: lr {known.lr:g}", run(report).history))
    tuned = c.replace(seed=base.seed, diagnostics=True)
    runs.append((f"tuned: {settings_label(c)}", run(tuned).history))
    return runs


def settings_label(c: TrainConfig) -> str:
    """The chosen settings in a few words: ``he, standardized, lr 0.003 cosine, 200 epochs``."""
    init = c.init if c.gain is None else f"{c.init} x{c.gain:g}"
    standardized = ", standardized" if c.standardize else ""
    return f"{init}{standardized}, lr {c.lr:g} {c.schedule}, {c.epochs} epochs"


def _in_process(function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """The builtin ``map``, with a task's exception as a pool's (a WorkerError)."""
    for item in items:
        yield call((function, item))
