"""``minidl-run sweep``: the report's Table I (or a grid), several rounds per row."""

from __future__ import annotations

from typing import Any

import click

from minidl.io import atomic_write
from minidl.sweep import TABLE_I, RowResult, grid
from minidl.sweep import sweep as run_sweep

from . import plots, signals
from .group import plugin_specs
from .options import (
    SEED,
    base_config,
    check_data_options,
    common_training_options,
    config_option,
    names_callback,
    numbers_callback,
    out_dir,
)
from .output import csv_text, echo_json, markdown_table, percent, progress, table, write_json

GRID = ("activation", "optimizer", "lr", "beta1", "beta2")


@click.command()
@config_option
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Rounds per row, each on fresh data (round r uses seed --seed + r).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Worker processes; the numbers do not depend on it.",
)
@click.option(
    "--activation",
    callback=names_callback("activation"),
    metavar="NAMES",
    help="Grid: comma-separated activations.",
)
@click.option(
    "--optimizer",
    callback=names_callback("optimizer"),
    metavar="NAMES",
    help="Grid: comma-separated optimizers.",
)
@click.option(
    "--lr",
    callback=numbers_callback("learning rates > 0", low=0),
    metavar="RATES",
    help="Grid: comma-separated learning rates.",
)
@click.option(
    "--beta1",
    callback=numbers_callback("numbers in [0, 1)", low=0, high=1, low_open=False),
    metavar="VALUES",
    help="Grid: Adam's beta1 values.",
)
@click.option(
    "--beta2",
    callback=numbers_callback("numbers in [0, 1)", low=0, high=1, low_open=False),
    metavar="VALUES",
    help="Grid: Adam's beta2 values.",
)
@common_training_options
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of round 0.")
@click.pass_context
def sweep(ctx: click.Context, **options: Any) -> None:
    """Train every row for --rounds rounds and print mean ± std of the test accuracy.

    With no grid flag the rows are the seed report's Table I (ReLU, Sigmoid and Tanh with
    SGD and Adam at the report's learning rates and betas), printed beside its numbers.
    Grid flags take comma lists and replace the table by their combinations; a dimension
    not given takes Table I's values (and each pair the report's learning rate and betas).
    """
    check_data_options(ctx, options)
    if any(options[k] is not None for k in GRID):
        rows = grid(
            options["activation"],
            options["optimizer"],
            options["lr"],
            options["beta1"],
            options["beta2"],
        )
    else:
        rows = list(TABLE_I)
    base = base_config({k: v for k, v in options.items() if k not in GRID})
    directory = out_dir(options["out"]) if options["out"] else None
    rounds = options["rounds"]
    with progress(len(rows) * rounds, f"{len(rows)} rows x {rounds} rounds") as update:
        results = run_sweep(
            rows,
            base,
            rounds=rounds,
            jobs=options["jobs"],
            plugins=plugin_specs(ctx),
            progress=lambda done, total: update(done),
        )
    records = [r.as_dict() for r in results]
    document: dict[str, Any] = {
        "rounds": rounds,
        "seed": base.seed,
        "epochs": base.epochs,
        "rows": records,
    }
    files: list[str] = []
    note = ""
    if directory is not None:
        with signals.deferred():  # each file whole, and the three from the same sweep
            write_json(directory / "sweep.json", document)
            atomic_write(directory / "table.csv", csv_text([_csv_row(r) for r in records]))
            atomic_write(directory / "table.md", markdown_text(results, rounds))
        files = ["sweep.json", "table.csv", "table.md"]
        if plots.available():
            plots.sweep_bars(records, directory / "accuracy.png", rounds)
            files.append("accuracy.png")
        else:
            note = plots.MISSING
    if options["as_json"]:
        if files:
            document["files"] = files
        echo_json(document)
    else:
        click.echo(f"test accuracy (%) over {rounds} rounds, mean ± std (sample std)")
        click.echo(text_table(results))
        if any(r.diverged for r in results):
            click.echo(DIVERGED_NOTE)
        for r in results:
            if r.diverged:
                click.echo(
                    f"{r.row.label} lr {r.row.lr:g}: {len(r.diverged)} of {rounds} rounds diverged (left out): {r.errors[0]}"
                )
        if files:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    if note:
        click.echo(note, err=True)


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {
        k: v
        for k, v in record.items()
        if k not in ("accuracies", "train_accuracies", "errors", "diverged")
    }
    row["diverged"] = len(record["diverged"])
    row["accuracies"] = ";".join(f"{a:.4f}" for a in record["accuracies"])
    return row


def _cells(r: RowResult) -> list[str]:
    row = r.row
    total = len(r.accuracies) + len(r.diverged)
    if not r.accuracies:
        ours = f"all {total} diverged"
    else:  # over how many rounds the numbers are
        ours = f"{percent(r.mean)} ± {percent(r.std)}"
        if r.diverged:
            ours += f" ({len(r.diverged)} of {total} diverged)"
    report = (
        f"{percent(row.report_mean)} ± {percent(row.report_std)}"
        if row.report_mean is not None
        else "-"
    )
    return [
        row.activation,
        row.optimizer,
        f"{row.lr:g}",
        "-" if row.beta1 is None else f"{row.beta1:g}",
        "-" if row.beta2 is None else f"{row.beta2:g}",
        ours,
        report,
    ]


DIVERGED_NOTE = (
    "diverged rounds (the loss became NaN or infinite) are left out of the mean and std, "
    "which are over the other rounds"
)

HEADER = ["activation", "optimizer", "lr", "beta1", "beta2", "minidl", "report"]


def text_table(results: list[RowResult]) -> str:
    return table(HEADER, [_cells(r) for r in results])


def markdown_text(results: list[RowResult], rounds: int) -> str:
    header = [*HEADER[:5], f"minidl, {rounds} rounds (%)", "report (%)"]
    text = markdown_table(header, [_cells(r) for r in results])
    if any(r.diverged for r in results):
        text += f"\n{DIVERGED_NOTE[0].upper()}{DIVERGED_NOTE[1:]}.\n"
    return text
