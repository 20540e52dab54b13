"""Hyperparameter search that never looks at the test set, then test rounds with the winner.

:func:`tune` works in three stages, each a batch of independent training runs that a
process pool may share out:

1. every candidate setting trains on the training points minus a held-out validation part
   (``TrainConfig.validation``) for a few tuning seeds, scored by mean validation accuracy;
2. the best few (the finalists) train for more seeds, so a setting that only sometimes
   gets stuck in a poor solution is caught before it is chosen;
3. the best finalist retrains on the full training set for ``rounds`` fresh seeds, which
   tuning never used, and only now is the test set scored.

Epoch counts cost little to search: when the learning-rate schedule does not depend on
the total number of epochs (``constant``, ``step``), a run of ``E`` epochs passes through
every shorter run on its way, so one run at the largest count is scored at every count.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import registry
from .errors import DivergenceError
from .experiment import TrainConfig, setup
from .protocols import Module
from .sweep import (
    RoundResult,
    Row,
    RowResult,
    run_round,
    single_thread,
    stop_workers,
    table_i_row,
    worker_pool,
)
from .train import evaluate, fit, model_dtype_device

T = TypeVar("T")
R = TypeVar("R")
#: ``map``-like: applies a function to every item, results in order (a pool's ``imap``).
Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterable[R]]
#: Told how many more runs have finished.
Progress = Callable[[int], None]

#: The TrainConfig fields a search may set.
TUNABLE = ("standardize", "init", "gain", "lr", "epochs", "batch_size", "schedule")

#: The seed report's Table I: every hidden activation with every optimizer.
TABLE_ONE = tuple(
    (activation, optimizer)
    for optimizer in ("sgd", "adam")
    for activation in ("relu", "sigmoid", "tanh")
)

#: Initialisations worth trying per hidden activation, as (init, gain): for ReLU and tanh
#: the torch default and the scheme derived for them; for sigmoid, Glorot's weights scaled
#: up, because sigmoid's slope is at most 1/4 and unscaled weights shrink the gradient
#: about sevenfold per layer (docs/tuning.md has the measurements).
INITS: dict[str, list[tuple[str, float | None]]] = {
    "relu": [("default", None), ("he", None)],
    "tanh": [("default", None), ("xavier", None)],
    "sigmoid": [("xavier", 2.0), ("xavier", 4.0)],
}
#: Learning rates per optimizer, a factor of about 3 apart around what won in research.
LEARNING_RATES: dict[str, list[float]] = {
    "sgd": [0.3, 1.0, 3.0],
    "adam": [1e-3, 3e-3, 1e-2],
}
#: Cosine annealing won 19 of 24 finalist places in the research grid, constant lr the rest
#: but never first, so the default search spends nothing on constant schedules.
SCHEDULES = ("cosine",)


@dataclass(frozen=True)
class Budget:
    """How much searching to do: the epoch counts tried, the tuning seeds of the first
    stage, how many finalists go on, and the seeds they are confirmed on."""

    epochs: tuple[int, ...] = (100, 200, 400)
    seeds: tuple[int, ...] = (1000, 1001, 1002)
    finalists: int = 3
    confirm_seeds: tuple[int, ...] = tuple(range(1003, 1008))


BUDGETS = {
    "quick": Budget(epochs=(100, 200), seeds=(1000, 1001), finalists=2, confirm_seeds=(1002, 1003)),
    "default": Budget(),
    "thorough": Budget(
        epochs=(100, 200, 400, 800),
        seeds=tuple(range(1000, 1005)),
        finalists=6,
        confirm_seeds=tuple(range(1005, 1020)),
    ),
}


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values: ``grid(lr=[0.1, 1], epochs=[50, 100])``."""
    for name, values in axes.items():
        _check_tunable(name)
        if not values:
            raise ValueError(f"no values to try for {name!r}")
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def default_candidates(
    activation: str,
    optimizer: str,
    *,
    epochs: Sequence[int] = Budget.epochs,
    lrs: Sequence[float] | None = None,
    inits: Sequence[tuple[str, float | None]] | None = None,
    schedules: Sequence[str] = SCHEDULES,
    standardize: Sequence[bool] = (True,),
    batch_sizes: Sequence[int] = (100,),
) -> list[dict[str, Any]]:
    """The search that the research in docs/tuning.md settled on, for one Table I row:
    standardised inputs, the activation's initialisations, a few learning rates, cosine
    schedule. Each keyword replaces one axis of it."""
    inits = inits or INITS.get(activation, [("default", None), ("xavier", None)])
    lrs = lrs or LEARNING_RATES.get(optimizer, LEARNING_RATES["adam"])
    return [
        {
            "standardize": std,
            "init": init,
            "gain": gain,
            "lr": lr,
            "schedule": schedule,
            "epochs": e,
            "batch_size": batch,
        }
        for std in standardize
        for init, gain in inits
        for lr in lrs
        for schedule in schedules
        for batch in batch_sizes
        for e in epochs
    ]


def _check_tunable(name: str) -> None:
    if name not in TUNABLE:
        raise ValueError(f"cannot tune {name!r}; tunable settings: {', '.join(TUNABLE)}")


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
        """A row of ``sweep --json`` (activation, optimizer, lr, betas, mean, std, accuracies,
        the report's numbers for this pair) plus the chosen settings and their validation."""
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
    factory = registry.get("schedule", config.schedule)
    full = factory(config.lr, max(epochs))
    return all(factory(config.lr, e)(k) == full(k) for e in epochs for k in range(1, e + 1))


def validation_scores(job: tuple[TrainConfig, tuple[int, ...]]) -> dict[int, float]:
    """Validation accuracy after each of the given epochs of one run of ``config`` (an
    empty dict if training diverged). A plain function of picklable arguments, so process
    pools can run it.

    Only the held-out part is scored, and only at those epochs: scoring every epoch on the
    training points too, as a plain run does, would cost a fifth of the search's time.
    """
    config, epochs = job
    if not config.validation:
        raise ValueError("validation_scores needs a config with a validation fraction")
    wanted = set(epochs)
    scores: dict[int, float] = {}
    with single_thread():  # as in the pool's workers, so jobs never change the numbers
        # With ``validation`` set, the held-out training points take the test set's place.
        model, loss, optimizer, train, held_out = setup(config)
        dtype, device = model_dtype_device(model)
        held_out = held_out.to(device, dtype)

        def score(record: dict[str, Any], model: Module) -> None:
            if record["epoch"] in wanted:
                scores[record["epoch"]] = evaluate(model, loss, held_out)[1]

        try:
            fit(
                model,
                loss,
                optimizer,
                train,
                None,
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=config.seed,
                schedule=registry.get("schedule", config.schedule)(config.lr, config.epochs),
                evaluate_every_epoch=False,
                callbacks=[score],
            )
        except DivergenceError:
            return {}
    return scores


@dataclass
class _Job:
    members: list[tuple[int, dict[str, Any]]]  # candidates sharing this run, by index
    config: TrainConfig


def _jobs(
    base: TrainConfig, candidates: Sequence[dict[str, Any]], seeds: Sequence[int], fraction: float
) -> list[_Job]:
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, settings in enumerate(candidates):
        for name in settings:
            _check_tunable(name)
        rest = {k: v for k, v in settings.items() if k != "epochs"}
        groups.setdefault(repr(sorted(rest.items())), []).append((i, settings))
    jobs = []
    for members in groups.values():
        config = base.replace(**{k: v for k, v in members[0][1].items() if k != "epochs"})
        epochs = [int(s.get("epochs", base.epochs)) for _, s in members]
        batches = [members] if _epoch_free(config, epochs) else [[m] for m in members]
        for batch in batches:
            longest = max(int(s.get("epochs", base.epochs)) for _, s in batch)
            for seed in seeds:
                config_s = config.replace(epochs=longest, seed=seed, validation=fraction)
                jobs.append(_Job(batch, config_s))
    return jobs


def _epochs(settings: dict[str, Any], base: TrainConfig) -> int:
    return int(settings.get("epochs", base.epochs))


def count_runs(
    base: TrainConfig,
    candidates: Sequence[dict[str, Any]],
    budget: Budget = Budget(),
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


def tune(
    base: TrainConfig,
    candidates: Sequence[dict[str, Any]],
    *,
    budget: Budget = Budget(),
    rounds: int = 10,
    validation: float = 0.2,
    map: Mapper[Any, Any] = map,
    progress: Progress | None = None,
) -> TuneResult:
    """Choose among ``candidates`` for ``base`` on validation data (two stages, see the
    module's help), then measure the choice's test accuracy over ``rounds`` rounds whose
    seeds are ``base.seed``, ``base.seed + 1``, ... as in a sweep."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    round_seeds = [base.seed + r for r in range(rounds)]
    tuned = set(budget.seeds) | set(budget.confirm_seeds)
    if tuned & set(round_seeds):
        clash = sorted(tuned & set(round_seeds))
        raise ValueError(f"round seeds must be fresh, but {clash} also tune; choose another --seed")

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
    known = table_i_row(config.activation, config.optimizer)
    row = RowResult(
        Row(
            config.activation,
            config.optimizer,
            config.lr,
            config.beta1,
            config.beta2,
            known.report_mean if known else None,
            known.report_std if known else None,
        )
    )
    outcomes: Iterable[RoundResult] = map(run_round, [config.replace(seed=s) for s in round_seeds])
    for r, outcome in enumerate(outcomes):
        if outcome.test_accuracy is None or outcome.train_accuracy is None:
            row.diverged.append(r)
            row.errors.append(outcome.error)
        else:
            row.accuracies.append(outcome.test_accuracy)
            row.train_accuracies.append(outcome.train_accuracy)
        if progress is not None:
            progress(1)
    return TuneResult(config, chosen, trials, row, validation)


CandidateFactory = Callable[[str, str], list[dict[str, Any]]]


def table_runs(
    rows: Sequence[tuple[str, str]],
    base: TrainConfig,
    candidates: CandidateFactory,
    budget: Budget = Budget(),
    rounds: int = 10,
) -> int:
    """How many training runs :func:`tune_table` will make."""
    return sum(
        count_runs(base.replace(activation=a, optimizer=o), candidates(a, o), budget, rounds)
        for a, o in rows
    )


def tune_table(
    rows: Sequence[tuple[str, str]] = TABLE_ONE,
    base: TrainConfig | None = None,
    *,
    candidates: CandidateFactory | None = None,
    budget: Budget = Budget(),
    rounds: int = 10,
    validation: float = 0.2,
    jobs: int = 1,
    plugins: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[TuneResult]:
    """``minidl-run tune`` as code: tune each (activation, optimizer) row of ``rows``
    (Table I by default) with ``candidates(activation, optimizer)`` (by default
    :func:`default_candidates` over the budget's epochs), sharing one pool of ``jobs``
    worker processes (the sweep's) among all of them. ``progress(done, total)`` counts runs.
    """
    base = base or TrainConfig()
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if candidates is None:

        def candidates(activation: str, optimizer: str) -> list[dict[str, Any]]:
            return default_candidates(activation, optimizer, epochs=budget.epochs)

    configs = [base.replace(activation=a, optimizer=o) for a, o in rows]
    grids = [candidates(a, o) for a, o in rows]
    for config in configs:  # a bad name or option fails here, not in a worker
        setup(config.replace(validation=validation))
    total = table_runs(rows, base, candidates, budget, rounds)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def tune_all(mapper: Mapper[Any, Any]) -> list[TuneResult]:
        return [
            tune(
                config,
                grid_,
                budget=budget,
                rounds=rounds,
                validation=validation,
                map=mapper,
                progress=tick,
            )
            for config, grid_ in zip(configs, grids, strict=True)
        ]

    if jobs == 1:
        return tune_all(map)
    pool = worker_pool(jobs, plugins)
    try:
        results = tune_all(pool.map)
    except BaseException:
        stop_workers(pool)  # no worker outlives the tuning, and none keeps Ctrl-C waiting
        raise
    pool.shutdown()
    return results
