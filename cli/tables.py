"""Sweep and tuning results as people read them: the printed table, table.md, the JSON
document, table.csv and the plots, with notes wherever the protocol is not the report's."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from minidl.io import atomic_write

from . import output, plots, signals
from .candidates import Budget
from .experiment import TrainConfig
from .rows import Row, protocol_notes, text_of
from .sweep import RowResult
from .tune import TuneResult

#: The columns a row's changes come first in; any others follow.
AXES = ("activation", "optimizer", "lr", "beta1", "beta2")
DIVERGED_NOTE = (
    "diverged rounds (the loss became NaN or infinite) are left out of the mean and std, "
    "which are over the other rounds"
)
#: file -> what it holds, for ``--out``
FILES = {
    "sweep.json": "the rows, their per-round accuracies, and the base config",
    "table.csv": "one line per row: settings, mean, std, per-round accuracies",
    "table.md": "the table as printed, beside the report's numbers, with its notes",
    "accuracy.png": "mean test accuracy per row with one-standard-deviation error bars",
}


def mean_std(result: RowResult) -> str:
    """``93.37 ± 3.73``, with how many rounds diverged; never NaN."""
    total = len(result.accuracies) + len(result.diverged)
    if not result.accuracies:
        return f"all {total} diverged"
    text = f"{_percent(result.mean)} ± {_percent(result.std)}"
    if result.diverged:
        text += f" ({len(result.diverged)} of {total} diverged)"
    return text


def _percent(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def report_cell(row: Row) -> str:
    return (
        "-"
        if row.report_mean is None
        else f"{_percent(row.report_mean)} ± {_percent(row.report_std)}"
    )


def setting_columns(rows: Sequence[Row]) -> list[str]:
    """The columns that say what each row changes: ``row`` (its label) when some label is
    not the default one, then each setting some row changes."""
    names = list(dict.fromkeys(k for row in rows for k in row.changes))
    ordered = [k for k in AXES if k in names] + [k for k in names if k not in AXES]
    labelled = any(row.label != row.default_label() for row in rows)
    return (["row"] if labelled or not ordered else []) + ordered


def setting_cells(row: Row, columns: Sequence[str]) -> list[str]:
    return [row.label if c == "row" else text_of(row.changes.get(c)) for c in columns]


def sweep_cells(
    results: Sequence[RowResult], ours: str = "minidl"
) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as text: the rows' settings, ``ours`` (mean ± std in
    %), and the report's numbers when some row has them."""
    rows = [r.row for r in results]
    columns = setting_columns(rows)
    report = any(row.report_mean is not None for row in rows)
    header = [*columns, ours, *(["report"] if report else [])]
    body = [
        [*setting_cells(r.row, columns), mean_std(r), *([report_cell(r.row)] if report else [])]
        for r in results
    ]
    return header, body


def has_report(results: Sequence[RowResult]) -> bool:
    return any(r.row.report_mean is not None for r in results)


def sweep_notes(results: Sequence[RowResult], base: TrainConfig, rounds: int) -> list[str]:
    """The table's notes: how it differs from the report's protocol (when it shows the
    report's numbers) and that diverged rounds are left out (when some did)."""
    lines = protocol_notes(base, rounds) if has_report(results) else []
    if any(r.diverged for r in results):
        lines.append(DIVERGED_NOTE)
    return lines


def sweep_heading(base: TrainConfig, rounds: int) -> str:
    return (
        f"test accuracy (%) after {base.epochs} epoch{'s' if base.epochs != 1 else ''}, over "
        f"{rounds} round{'s' if rounds != 1 else ''} per row: mean ± std (sample std)"
    )


def diverged_lines(results: Sequence[RowResult]) -> list[str]:
    return [
        f"{r.row.title}: {len(r.diverged)} of {len(r.diverged) + len(r.accuracies)} rounds "
        f"diverged (left out): {r.errors[0]}"
        for r in results
        if r.diverged
    ]


def sweep_text(results: Sequence[RowResult], base: TrainConfig, rounds: int) -> str:
    """What ``minidl-run sweep`` prints: a heading, the table, its notes, the rows whose
    rounds diverged."""
    header, body = sweep_cells(results)
    lines = [sweep_heading(base, rounds), output.table(header, body)]
    lines += [f"note: {n}" for n in sweep_notes(results, base, rounds)]
    return "\n".join(lines + diverged_lines(results))


def sweep_markdown(results: Sequence[RowResult], base: TrainConfig, rounds: int) -> str:
    """table.md: the table (its column says the epochs and rounds), then its notes."""
    header, body = sweep_cells(results, f"minidl, {base.epochs} epochs, {rounds} rounds (%)")
    header = [f"{h} (%)" if h == "report" else h for h in header]
    md = output.markdown_table(header, body)
    for line in sweep_notes(results, base, rounds):
        md += f"\n{line[0].upper()}{line[1:]}.\n"
    return md


def sweep_document(results: Sequence[RowResult], base: TrainConfig, rounds: int) -> dict[str, Any]:
    """sweep.json and ``--json``: ``rounds``, ``seed`` (of round 0), ``epochs``, the base
    ``config``, the table's ``notes`` and the ``rows`` (:meth:`RowResult.as_dict`)."""
    return {
        "rounds": rounds,
        "seed": base.seed,
        "epochs": base.epochs,
        "config": base.as_dict(),
        "notes": sweep_notes(results, base, rounds),
        "rows": [r.as_dict() for r in results],
    }


def sweep_csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A row of table.csv from a row of sweep.json: lists of rounds become counts or text."""
    row = {
        k: v
        for k, v in record.items()
        if k not in ("accuracies", "train_accuracies", "errors", "diverged")
    }
    row["diverged"] = len(record["diverged"])
    row["accuracies"] = ";".join(f"{a:.4f}" for a in record["accuracies"])
    return row


def plot_records(results: Sequence[RowResult], base: TrainConfig) -> list[dict[str, Any]]:
    """The rows as :func:`minidl.cli.plots.sweep_bars` draws them: each named by its title
    (its label and what else it changes), with its numbers."""
    return [{**r.as_dict(), "title": r.row.title} for r in results]


def bars_label(base: TrainConfig | None, what: str = "minidl") -> str:
    """The plot's legend for our bars (sweep_bars adds the rounds): the epochs too."""
    return what if base is None else f"{what}, {base.epochs} epochs"


def sweep_save(
    directory: Path, results: Sequence[RowResult], base: TrainConfig, rounds: int
) -> tuple[list[str], str]:
    """Write sweep.json, table.csv and table.md (all or none: a signal waits until the
    three are written) and, with matplotlib, accuracy.png into ``directory``. Returns the
    names written, and a note when the plot could not be drawn."""
    doc = sweep_document(results, base, rounds)
    with signals.deferred():
        output.write_json(directory / "sweep.json", doc)
        atomic_write(
            directory / "table.csv", output.csv_text([sweep_csv_row(r) for r in doc["rows"]])
        )
        atomic_write(directory / "table.md", sweep_markdown(results, base, rounds))
    files = ["sweep.json", "table.csv", "table.md"]
    if not plots.available():
        return files, plots.MISSING
    plots.sweep_bars(
        plot_records(results, base), directory / "accuracy.png", rounds, label=bars_label(base)
    )
    return [*files, "accuracy.png"], ""


# --- tuning ---------------------------------------------------------------------------------

SETTINGS_HEADER = ["standardize", "init", "lr", "schedule", "epochs", "batch"]


def _settings(c: TrainConfig) -> list[str]:
    init = c.init if c.gain is None else f"{c.init} x{c.gain:g}"
    return [
        "yes" if c.standardize else "no",
        init,
        f"{c.lr:g}",
        c.schedule,
        str(c.epochs),
        str(c.batch_size),
    ]


def tune_cells(
    results: Sequence[TuneResult], ours: str = "tuned"
) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as text: each row's label columns, the chosen settings,
    the validation accuracy, the tuned test accuracy (mean ± std, %) and the report's."""
    rows_ = [r.table_row.row.keep("activation", "optimizer") for r in results]
    columns = setting_columns(rows_)
    report = has_report([r.table_row for r in results])
    header = [*columns, *SETTINGS_HEADER, "validation", ours, *(["report"] if report else [])]
    body = []
    for row, r in zip(rows_, results, strict=True):
        line = [
            *setting_cells(row, columns),
            *_settings(r.config),
            _percent(r.validation.mean),
        ]
        line.append(mean_std(r.table_row))
        body.append(line + ([report_cell(row)] if report else []))
    return header, body


def tune_notes(results: Sequence[TuneResult], base: TrainConfig, rounds: int) -> list[str]:
    """How the rounds differ from the report's protocol (when the table shows its numbers;
    the epochs are tuning's choice), and that diverged rounds are left out."""
    table = [r.table_row for r in results]
    lines = protocol_notes(base, rounds, epochs=False) if has_report(table) else []
    if any(r.diverged for r in table):
        lines.append(DIVERGED_NOTE)
    return lines


def tune_heading(validation: float, rounds: int) -> str:
    return (
        f"settings chosen on a validation split ({validation:.0%} of the training points, "
        f"never the test set); test accuracy (%) over {rounds} round{'s' if rounds != 1 else ''} "
        "per row: mean ± std (sample std)"
    )


def tune_text(results: Sequence[TuneResult], base: TrainConfig, rounds: int) -> str:
    """What ``minidl-run tune`` prints: a heading, the table, its notes, the rows whose
    rounds diverged."""
    fraction = results[0].fraction if results else 0.0
    header, body = tune_cells(results)
    lines = [tune_heading(fraction, rounds), output.table(header, body)]
    lines += [f"note: {n}" for n in tune_notes(results, base, rounds)]
    return "\n".join(lines + diverged_lines([r.table_row for r in results]))


def tune_markdown(results: Sequence[TuneResult], base: TrainConfig, rounds: int) -> str:
    header, body = tune_cells(results, f"tuned, {rounds} rounds (%)")
    header = [f"{h} (%)" if h in ("report", "validation") else h for h in header]
    md = output.markdown_table(header, body)
    for line in tune_notes(results, base, rounds):
        md += f"\n{line[0].upper()}{line[1:]}.\n"
    return md


def tune_document(
    results: Sequence[TuneResult], base: TrainConfig, rounds: int, budget: Budget | str = "default"
) -> dict[str, Any]:
    """tune.json and ``--json``: ``rounds``, ``seed`` (of round 0), ``budget`` (its name or
    its settings), ``validation`` (the held-out fraction), the base ``config``, the table's
    ``notes`` and the ``rows`` (:meth:`TuneResult.as_dict`)."""
    return {
        "rounds": rounds,
        "seed": base.seed,
        "budget": budget if isinstance(budget, str) else asdict(budget),
        "validation": results[0].fraction if results else None,
        "config": base.as_dict(),
        "notes": tune_notes(results, base, rounds),
        "rows": [r.as_dict() for r in results],
    }


def tune_csv_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: record[k] for k in ("label", "activation", "optimizer", "lr", "beta1", "beta2")}
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


def diagnostics_name(result: TuneResult) -> str:
    """``diagnostics-tanh-adam.png``: the row's label, made a safe file name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.table_row.row.label).strip("_.")
    return f"diagnostics-{slug or 'row'}.png"


def tune_save(
    directory: Path,
    results: Sequence[TuneResult],
    base: TrainConfig,
    rounds: int,
    budget: Budget | str = "default",
    diagnostics: Sequence[Sequence[tuple[str, Sequence[dict[str, Any]]]]] = (),
) -> tuple[list[str], str]:
    """Write tune.json, table.csv and table.md (all or none) and, with matplotlib,
    accuracy.png and, given ``diagnostics`` (one list of labelled histories per row, as
    :func:`minidl.cli.tune.diagnostic_runs` trains them), one diagnostics plot per row
    into ``directory``. Returns the names written, and a note when the plots could not
    be drawn."""
    doc = tune_document(results, base, rounds, budget)
    with signals.deferred():
        output.write_json(directory / "tune.json", doc)
        atomic_write(
            directory / "table.csv", output.csv_text([tune_csv_row(r) for r in doc["rows"]])
        )
        atomic_write(directory / "table.md", tune_markdown(results, base, rounds))
    files = ["tune.json", "table.csv", "table.md"]
    if not plots.available():
        return files, plots.MISSING
    records = plot_records([r.table_row for r in results], base)
    plots.sweep_bars(records, directory / "accuracy.png", rounds, label="minidl, tuned")
    files.append("accuracy.png")
    for r, runs in zip(results, diagnostics, strict=False):
        name = diagnostics_name(r)
        title = f"{r.table_row.row.label}, round 0 (seed {base.seed})"
        plots.diagnostics(runs, directory / name, title)
        files.append(name)
    return files, ""
