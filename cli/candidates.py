"""What a tuning search tries: the candidate settings per row, and how much to search.

The defaults are the search the research in docs/tuning.md settled on: standardised
inputs, the activation's own initialisations, a few learning rates per optimizer, a
cosine schedule, and the budget's epoch counts. :mod:`minidl.cli.tune` runs the search.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from minidl.spec import parse_one

from .experiment import TrainConfig
from .rows import ACTIVATIONS, OPTIMIZERS, TABLE_I, Row, plain_optimizer, table_i_row

#: The TrainConfig fields a search may set.
TUNABLE = ("standardize", "init", "gain", "lr", "epochs", "batch_size", "schedule")

#: Initialisations worth trying per hidden activation, as (init, gain): for ReLU and tanh
#: the torch default and the scheme derived for them; for sigmoid, Glorot's weights scaled
#: up, because sigmoid's slope is at most 1/4 and unscaled weights shrink the gradient
#: about sevenfold per layer (docs/tuning.md has the measurements). Others (and a model
#: spec's) get :data:`OTHER_INITS`.
INITS: dict[str, list[tuple[str, float | None]]] = {
    "relu": [("default", None), ("he", None)],
    "tanh": [("default", None), ("xavier", None)],
    "sigmoid": [("xavier", 2.0), ("xavier", 4.0)],
}
OTHER_INITS: list[tuple[str, float | None]] = [("default", None), ("xavier", None)]
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


def tune_rows(
    activations: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    *,
    model: bool = False,
) -> list[Row]:
    """The rows to tune: each activation with each optimizer (a spec), with the report's
    numbers for Table I's pairs; by default Table I's six. Their learning rates and betas
    are left to the search (the optimizer's own betas unless the base sets them).

    ``model=True``: rows for a base with a model spec, which has its own activations: one
    per optimizer (by default Table I's sgd and adam), without the report's numbers."""
    if model:
        if activations:
            raise ValueError(
                "a model spec has its own activations, so rows for it cannot vary the "
                "activation; tune one row per optimizer"
            )
        return [Row({"optimizer": o}) for o in optimizers or OPTIMIZERS]
    if activations is None and optimizers is None:
        return [r.keep("activation", "optimizer") for r in TABLE_I]
    table = []
    for a, o in itertools.product(activations or ACTIVATIONS, optimizers or OPTIMIZERS):
        known = table_i_row(a, plain_optimizer(o))
        report = (known.report_mean, known.report_std) if known else (None, None)
        table.append(Row({"activation": a, "optimizer": o}, "", *report))
    return table


def candidate_grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values: ``candidate_grid(lr=[0.1, 1], epochs=[50, 100])``."""
    for name, values in axes.items():
        check_tunable(name)
        if not values:
            raise ValueError(f"no values to try for {name!r}")
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def default_candidates(
    activation: str | None,
    optimizer: str,
    *,
    epochs: Sequence[int] = Budget.epochs,
    lrs: Sequence[float] | None = None,
    inits: Sequence[tuple[str, float | None]] | None = None,
    schedules: Sequence[str] = SCHEDULES,
    standardize: Sequence[bool] = (True,),
    batch_sizes: Sequence[int] = (100,),
) -> list[dict[str, Any]]:
    """The search that the research in docs/tuning.md settled on, for one row:
    standardised inputs, the activation's initialisations (``activation=None`` for a
    model spec), a few learning rates for the optimizer (a spec), cosine schedule. Each
    keyword replaces one axis of it."""
    inits = inits or INITS.get(activation or "", OTHER_INITS)
    name = parse_one(optimizer, "optimizer").name
    lrs = lrs or LEARNING_RATES.get(name, LEARNING_RATES["adam"])
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


#: Gives a row's candidates from its configuration (the base with the row's changes).
CandidateFactory = Callable[[TrainConfig], list[dict[str, Any]]]


def inits_for(
    activation: str | None, names: Sequence[str] | None, gains: Sequence[float] | None
) -> list[tuple[str, float | None]] | None:
    """The (init, gain) pairs to try: every name with every gain; names left out are the
    activation's own (:data:`INITS`), gains left out the initializer's own. ``None`` when
    both are left out: the activation's own pairs."""
    if names is None and gains is None:
        return None
    if names is None:
        names = list(dict.fromkeys(n for n, _ in INITS.get(activation or "", OTHER_INITS)))
    row_gains: Sequence[float | None] = gains or [None]
    return [(n, g) for n in names for g in row_gains]


def candidate_factory(
    budget: Budget = Budget(),
    *,
    lrs: Sequence[float] | None = None,
    epochs: Sequence[int] | None = None,
    inits: Sequence[str] | None = None,
    gains: Sequence[float] | None = None,
    schedules: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    standardize: Sequence[bool] | None = None,
) -> CandidateFactory:
    """:func:`default_candidates` for each row, with the axes given here replaced (what
    ``tune``'s candidate options do); epochs default to the budget's."""

    def candidates(config: TrainConfig) -> list[dict[str, Any]]:
        activation = None if config.model else config.activation
        return default_candidates(
            activation,
            config.optimizer,
            epochs=epochs or budget.epochs,
            lrs=lrs,
            inits=inits_for(activation, inits, gains),
            schedules=schedules or SCHEDULES,
            standardize=standardize or (True,),
            batch_sizes=batch_sizes or (100,),
        )

    return candidates


def check_tunable(name: str) -> None:
    if name not in TUNABLE:
        raise ValueError(f"cannot tune {name!r}; tunable settings: {', '.join(TUNABLE)}")
