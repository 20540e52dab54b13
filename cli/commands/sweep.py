"""``minidl-run sweep``: the report's Table I (or a grid of rows), several rounds per row."""

from __future__ import annotations

from typing import Any

import click

import minidl

from .. import tables
from ..app import plugin_specs
from ..options import config_from, out_dir, rounds_and_jobs, training_options
from ..output import progress, report
from ..results import TABLE_FILES, staged
from ..sweep import TABLE_I, grid_rows, model_rows, sweep

#: The options that make the rows: comma lists, their combinations the grid.
GRID = ("activation", "optimizer", "lr", "beta1", "beta2")


@click.command("sweep")
@training_options(
    lists=GRID,
    activation="Rows: comma-separated hidden-layer activations [default: Table I's relu, "
    "sigmoid, tanh]. Not with --model, which has its own.",
    optimizer="Rows: comma-separated optimizer specs, e.g. 'sgd,adam(betas=(0.9, 0.99))' "
    "[default: Table I's sgd, adam].",
    lr="Rows: comma-separated learning rates [default: Table I's for each row].",
    beta1="Rows: comma-separated beta1 values, for optimizers that take betas [default: "
    "Table I's].",
    beta2="Rows: comma-separated beta2 values, for optimizers that take betas [default: "
    "Table I's].",
    seed="Seed of round 0: round r uses seed + r for its data, weights and shuffling.",
    out="Write sweep.json, table.csv, table.md and accuracy.png into this directory.",
)
@rounds_and_jobs("Rounds per row, each on fresh data (round r uses seed --seed + r).")
@click.pass_context
def sweep_command(ctx: click.Context, **options: Any) -> None:
    """Train every row for --rounds rounds and print mean ± std of the test accuracy.

    With no row option the rows are the seed report's Table I (ReLU, Sigmoid and Tanh with
    SGD and Adam at the report's learning rates and betas), printed beside its numbers.
    Row options take comma lists and replace the table by their combinations; one not
    given takes Table I's values. With --model the rows vary the optimizer, learning rate
    and betas (by default Table I's optimizer settings). Every other option sets the base
    of every row, as it does for train.
    """
    if options["activation"] and options["model"]:
        raise click.UsageError(
            "--activation and --model exclude each other: the model spec has its own "
            "activations (vary --optimizer, --lr, --beta1, --beta2 instead)",
            ctx,
        )
    base = config_from(ctx, options)
    axes = [options[k] for k in GRID]
    if any(a is not None for a in axes):
        rows = grid_rows(*axes, model=bool(base.model))
    else:
        rows = model_rows() if base.model else list(TABLE_I)
    directory = out_dir(options["out"]) if options["out"] else None
    rounds = options["rounds"]
    with progress(len(rows) * rounds, f"{len(rows)} rows x {rounds} rounds") as update:
        results = sweep(
            rows,
            base,
            rounds=rounds,
            jobs=options["jobs"],
            plugins=plugin_specs(ctx),
            progress=lambda done, total: update(done),
        )
    files, note = [], ""
    if directory is not None:
        with staged(directory, "sweep.json", TABLE_FILES) as stage:
            files, note = tables.sweep_save(stage, results, base, rounds)
    document = tables.sweep_document(results, base, rounds)
    report(
        options["as_json"],
        document,
        tables.sweep_text(results, base, rounds),
        files,
        directory,
        note,
    )


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(sweep_command)
