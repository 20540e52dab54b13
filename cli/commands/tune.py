"""``minidl-run tune``: choose settings per row on validation data, then test over rounds."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click

from minidl.experiment import TrainConfig, run
from minidl.io import atomic_write
from minidl.sweep import round_config, table_i_row
from minidl.tune import (
    BUDGETS,
    INITS,
    TABLE_ONE,
    TuneResult,
    default_candidates,
    table_runs,
    tune_table,
)

from . import plots
from .group import plugin_specs
from .options import (
    DEFAULTS,
    base_config,
    check_data_options,
    config_option,
    data_options,
    device_callback,
    hidden_callback,
    name_callback,
    names_callback,
    numbers_callback,
    out_dir,
    split,
)
from .output import csv_text, echo_json, markdown_table, percent, progress, table, write_json

STANDARDIZE = {"on": (True,), "off": (False,), "both": (True, False)}


def counts_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        numbers = [int(v) for v in split(value)]
    except ValueError:
        numbers = []
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of positive integers")
    return list(dict.fromkeys(numbers))


def gains_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    return numbers_callback("gains > 0", low=0)(ctx, param, value)


@click.command()
@config_option
@click.option(
    "--activation",
    callback=names_callback("activation"),
    metavar="NAMES",
    help="Rows: comma-separated activations [default: Table I's rows].",
)
@click.option(
    "--optimizer",
    callback=names_callback("optimizer"),
    metavar="NAMES",
    help="Rows: comma-separated optimizers [default: Table I's rows].",
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
    "--lr",
    callback=numbers_callback("learning rates > 0", low=0),
    metavar="RATES",
    help="Candidate learning rates [default: 0.3,1,3 for SGD, 1e-3,3e-3,1e-2 otherwise].",
)
@click.option(
    "--epochs",
    callback=counts_callback,
    metavar="COUNTS",
    help="Candidate epoch counts [default: the budget's].",
)
@click.option(
    "--init",
    callback=names_callback("initializer"),
    metavar="NAMES",
    help="Candidate initializers [default: default,he for ReLU, default,xavier for tanh, "
    "xavier with gains 2,4 for sigmoid].",
)
@click.option(
    "--gain",
    callback=gains_callback,
    metavar="GAINS",
    help="Candidate gains for the initializers [default: the initializer's own].",
)
@click.option(
    "--schedule",
    callback=names_callback("schedule"),
    metavar="NAMES",
    help="Candidate learning-rate schedules [default: cosine].",
)
@click.option(
    "--batch-size",
    callback=counts_callback,
    metavar="SIZES",
    help="Candidate batch sizes [default: 100].",
)
@click.option(
    "--standardize",
    type=click.Choice(list(STANDARDIZE)),
    default="on",
    show_default=True,
    help="Candidate input standardisation: on, off or both.",
)
@click.option(
    "--validation",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Fraction of the training points held out to score candidates (never the test set).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Test rounds of each row's chosen settings (round r uses seed --seed + r).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Worker processes, as in sweep; the numbers do not depend on it.",
)
@click.option(
    "--hidden",
    default=",".join(map(str, DEFAULTS.hidden)),
    show_default=True,
    callback=hidden_callback,
    help="Hidden layer widths, comma-separated.",
)
@click.option(
    "--loss",
    default=DEFAULTS.loss,
    show_default=True,
    callback=name_callback("loss"),
    help="A registered loss.",
)
@data_options
@click.option(
    "--device",
    default=DEFAULTS.device,
    show_default=True,
    callback=device_callback,
    help="cpu, cuda, cuda:N, mps.",
)
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of test round 0.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the table (JSON, CSV, Markdown) and plots into this directory.",
)
@click.pass_context
def tune(ctx: click.Context, **options: Any) -> None:
    """Choose each row's settings on a validation split of the training points, then
    report the test accuracy of the choice over --rounds fresh rounds.

    By default the rows are Table I's six (ReLU, Sigmoid, Tanh with SGD and Adam) and the
    candidates are docs/tuning.md's: standardised inputs, per-activation initialisation,
    three learning rates, cosine schedule, the budget's epoch counts. Candidates train on
    the training points minus the validation part for the budget's tuning seeds; the best
    few are confirmed on more seeds; the winner retrains on all training points for each
    round, and only then is the test set read. Grid flags take comma lists.
    """
    check_data_options(ctx, options)
    budget = BUDGETS[options["budget"]]
    rows = _rows(options["activation"], options["optimizer"])
    base = base_config(
        {k: v for k, v in options.items() if k not in _GRID and k not in ("validation",)}
    )

    def candidates(activation: str, optimizer: str) -> list[dict[str, Any]]:
        return default_candidates(
            activation,
            optimizer,
            epochs=options["epochs"] or budget.epochs,
            lrs=options["lr"],
            inits=_inits(activation, options["init"], options["gain"]),
            schedules=options["schedule"] or ("cosine",),
            standardize=STANDARDIZE[options["standardize"]],
            batch_sizes=options["batch_size"] or (100,),
        )

    directory = out_dir(options["out"]) if options["out"] else None
    total = table_runs(rows, base, candidates, budget, options["rounds"])
    label = f"tuning {len(rows)} row{'s' if len(rows) > 1 else ''}"
    with progress(total, label) as advance:
        results = tune_table(
            rows,
            base,
            candidates=candidates,
            budget=budget,
            rounds=options["rounds"],
            validation=options["validation"],
            jobs=options["jobs"],
            plugins=plugin_specs(ctx),
            progress=lambda done, total: advance(done),
        )
    records = [r.as_dict() for r in results]
    document: dict[str, Any] = {
        "rounds": options["rounds"],
        "seed": base.seed,
        "budget": options["budget"],
        "validation": options["validation"],
        "rows": records,
    }
    files: list[str] = []
    note = ""
    if directory is not None:
        files, note = write_out(directory, results, records, base, options["rounds"])
    if options["as_json"]:
        if files:
            document["files"] = files
        echo_json(document)
    else:
        click.echo(
            f"settings chosen on a validation split ({options['validation']:.0%} of the training "
            f"points, never the test set); test accuracy (%) over {options['rounds']} rounds, "
            "mean ± std (sample std)"
        )
        click.echo(table(HEADER, [_cells(r) for r in results]))
        for r in results:
            if r.table_row.diverged:
                click.echo(
                    f"{r.table_row.row.label}: {len(r.table_row.diverged)} of "
                    f"{options['rounds']} rounds diverged (left out): {r.table_row.errors[0]}"
                )
        if files:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    if note:
        click.echo(note, err=True)


_GRID = ("activation", "optimizer", "lr", "epochs", "init", "gain", "schedule", "batch_size")
_GRID += ("standardize",)


def _rows(activations: list[str] | None, optimizers: list[str] | None) -> list[tuple[str, str]]:
    if activations is None and optimizers is None:
        return list(TABLE_ONE)
    return list(
        itertools.product(activations or ["relu", "sigmoid", "tanh"], optimizers or ["sgd", "adam"])
    )


def _inits(
    activation: str, names: list[str] | None, gains: list[float] | None
) -> list[tuple[str, float | None]] | None:
    if names is None and gains is None:
        return None  # the activation's own
    if names is None:
        names = list(dict.fromkeys(n for n, _ in INITS.get(activation, [("default", None)])))
    return [(n, g) for n in names for g in (gains or [None])]


def _settings(r: TuneResult) -> list[str]:
    c = r.config
    init = c.init if c.gain is None else f"{c.init} x{c.gain:g}"
    return [
        "yes" if c.standardize else "no",
        init,
        f"{c.lr:g}",
        c.schedule,
        str(c.epochs),
        str(c.batch_size),
    ]


def _cells(r: TuneResult) -> list[str]:
    row = r.table_row.row
    tuned = f"{percent(r.mean)} ± {percent(r.std)}" if r.accuracies else "diverged"
    report = (
        f"{percent(row.report_mean)} ± {percent(row.report_std)}"
        if row.report_mean is not None
        else "-"
    )
    return [
        row.activation,
        row.optimizer,
        *_settings(r),
        percent(r.validation.mean),
        tuned,
        report,
    ]


HEADER = [
    "activation",
    "optimizer",
    "standardize",
    "init",
    "lr",
    "schedule",
    "epochs",
    "batch",
    "validation",
    "tuned",
    "report",
]


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: record[k] for k in ("activation", "optimizer", "lr", "beta1", "beta2")}
    row.update(record["settings"])
    row.update(
        validation_mean=record["validation"]["mean"],
        mean=record["mean"],
        std=record["std"],
        rounds=record["rounds"],
        diverged=len(record["diverged"]),
        accuracies=";".join(f"{a:.4f}" for a in record["accuracies"]),
        report_mean=record["report_mean"],
        report_std=record["report_std"],
    )
    return row


def write_out(
    directory: Path,
    results: list[TuneResult],
    records: list[dict[str, Any]],
    base: TrainConfig,
    rounds: int,
) -> tuple[list[str], str]:
    """tune.json, table.csv, table.md and, with matplotlib, accuracy.png and one
    diagnostics plot per row: the report's settings against the tuned ones, round 0."""
    write_json(directory / "tune.json", {"rows": records})
    atomic_write(directory / "table.csv", csv_text([_csv_row(r) for r in records]))
    header = [*HEADER[:-2], f"tuned, {rounds} rounds (%)", "report (%)"]
    atomic_write(directory / "table.md", markdown_table(header, [_cells(r) for r in results]))
    files = ["tune.json", "table.csv", "table.md"]
    if not plots.available():
        return files, plots.MISSING
    plots.sweep_bars(records, directory / "accuracy.png", rounds, label="minidl, tuned")
    files.append("accuracy.png")
    for r in results:
        name = f"diagnostics-{r.config.activation}-{r.config.optimizer}.png"
        runs = diagnostic_runs(r, base)
        title = f"{r.config.activation} / {r.config.optimizer}, round 0 (seed {base.seed})"
        plots.diagnostics(runs, directory / name, title)
        files.append(name)
    return files, ""


def diagnostic_runs(
    result: TuneResult, base: TrainConfig
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Round 0 of the tuned settings, and of the report's where the row is one of Table I's,
    trained with diagnostics recorded."""
    c = result.config
    runs = []
    known = table_i_row(c.activation, c.optimizer)
    if known is not None:
        report = round_config(base, known, 0).replace(diagnostics=True)
        runs.append((f"report: lr {known.lr:g}", run(report).history))
    tuned = c.replace(seed=base.seed, diagnostics=True)
    runs.append((f"tuned: {_describe(c)}", run(tuned).history))
    return runs


def _describe(c: TrainConfig) -> str:
    init = c.init if c.gain is None else f"{c.init} x{c.gain:g}"
    standardized = ", standardized" if c.standardize else ""
    return f"{init}{standardized}, lr {c.lr:g} {c.schedule}, {c.epochs} epochs"
