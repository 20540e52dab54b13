"""``minidl-run tune``: choose settings per row on validation data, then test over rounds."""

from __future__ import annotations

from typing import Any

import click

import minidl

from .. import plots, tables
from ..app import plugin_specs
from ..options import config_from, out_dir, rounds_and_jobs, training_options
from ..output import progress, report
from ..results import TABLE_FILES, staged
from ..tune import (
    BUDGETS,
    candidate_factory,
    check_round_seeds,
    diagnostic_runs,
    table_runs,
    tune_rows,
    tune_table,
)

#: The options that make the rows and the candidates: comma lists.
ROWS = ("activation", "optimizer")
CANDIDATES = ("lr", "epochs", "init", "gain", "schedule", "batch_size", "standardize")


@click.command("tune")
@training_options(
    lists=ROWS + CANDIDATES,
    activation="Rows: comma-separated activations [default: Table I's rows]. Not with "
    "--model, which has its own.",
    optimizer="Rows: comma-separated optimizer specs [default: Table I's rows; with "
    "--model, sgd,adam].",
    lr="Candidate learning rates [default: 0.3,1,3 for SGD, 1e-3,3e-3,1e-2 otherwise].",
    epochs="Candidate epoch counts [default: the budget's].",
    init="Candidate initializers [default: default,he for ReLU, default,xavier for tanh "
    "and others, xavier with gains 2,4 for sigmoid].",
    gain="Candidate gains for the initializers [default: the initializer's own].",
    schedule="Candidate learning-rate schedules [default: cosine].",
    batch_size="Candidate batch sizes [default: 100].",
    standardize="Candidate input standardisation: on, off or on,off [default: on].",
    seed="Seed of test round 0: round r uses seed + r (never a tuning seed).",
    out="Write tune.json, table.csv, table.md, accuracy.png and per-row diagnostics plots "
    "into this directory.",
)
@click.option(
    "--budget",
    type=click.Choice(list(BUDGETS)),
    default="default",
    show_default=True,
    help="How much to search: quick (2 tuning seeds, epochs 100,200, 2 finalists on 2 more "
    "seeds), default (3 seeds, epochs 100,200,400, 3 finalists on 5 more), thorough (5 "
    "seeds, epochs up to 800, 6 finalists on 15 more).",
)
@click.option(
    "--validation",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Fraction of the training points held out to score candidates (never the test set).",
)
@rounds_and_jobs("Test rounds of each row's chosen settings (round r uses seed --seed + r).")
@click.pass_context
def tune_command(ctx: click.Context, **options: Any) -> None:
    """Choose each row's settings on a validation split of the training points, then
    report the test accuracy of the choice over --rounds fresh rounds.

    By default the rows are Table I's six (ReLU, Sigmoid, Tanh with SGD and Adam) and the
    candidates are docs/tuning.md's: standardised inputs, per-activation initialisation,
    three learning rates, cosine schedule, the budget's epoch counts. Candidates train on
    the training points minus the validation part for the budget's tuning seeds; the best
    few are confirmed on more seeds; the winner retrains on all training points for each
    round, and only then is the test set read. Row and candidate options take comma
    lists; every other option sets the base of every row, as it does for train.
    """
    if options["activation"] and options["model"]:
        raise click.UsageError(
            "--activation and --model exclude each other: the model spec has its own "
            "activations (tune one row per --optimizer instead)",
            ctx,
        )
    base = config_from(ctx, {k: v for k, v in options.items() if k != "validation"})
    budget = BUDGETS[options["budget"]]
    rows = tune_rows(options["activation"], options["optimizer"], model=bool(base.model))
    candidates = candidate_factory(
        budget,
        lrs=options["lr"],
        epochs=options["epochs"],
        inits=options["init"],
        gains=options["gain"],
        schedules=options["schedule"],
        batch_sizes=options["batch_size"],
        standardize=options["standardize"],
    )
    directory = out_dir(options["out"]) if options["out"] else None
    rounds = options["rounds"]
    check_round_seeds(base.seed, rounds, budget)
    total = table_runs(rows, base, candidates, budget, rounds)
    with progress(total, f"tuning {len(rows)} row{'s' if len(rows) > 1 else ''}") as advance:
        results = tune_table(
            rows,
            base,
            candidates=candidates,
            budget=budget,
            rounds=rounds,
            validation=options["validation"],
            jobs=options["jobs"],
            plugins=plugin_specs(ctx),
            progress=lambda done, total: advance(done),
        )
    files, note = [], ""
    if directory is not None:
        # Round 0 again with diagnostics, for each row's plot (only when it can be drawn).
        runs = [diagnostic_runs(r, base) for r in results] if plots.available() else []
        with staged(directory, "tune.json", TABLE_FILES) as stage:
            files, note = tables.tune_save(stage, results, base, rounds, options["budget"], runs)
    document = tables.tune_document(results, base, rounds, options["budget"])
    report(
        options["as_json"],
        document,
        tables.tune_text(results, base, rounds),
        files,
        directory,
        note,
    )


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(tune_command)
