"""``minidl-run predict``: outputs of a model saved by ``train --out``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from minidl import Sequential, load_csv, load_model
from minidl.errors import DataError
from minidl.experiment import labels
from minidl.experiment import predict as model_predict

from .output import echo_json, percent


def input_width(model: Sequential, metadata: dict[str, Any]) -> int | None:
    if isinstance(metadata.get("in_features"), int):
        return int(metadata["in_features"])
    for layer in model.layers:
        for attribute in (
            "in_features",
            "out_features",
        ):  # Standardize keeps its width as out_features
            width = getattr(layer, attribute, None)
            if isinstance(width, int):
                return width
    return None


def output_width(model: Sequential, metadata: dict[str, Any]) -> int:
    if isinstance(metadata.get("outputs"), int):
        return int(metadata["outputs"])
    widths = [
        w
        for w in (getattr(layer, "out_features", None) for layer in model.layers)
        if isinstance(w, int)
    ]
    return widths[-1] if widths else 1


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("values", nargs=-1, type=float, metavar="[X Y ...]")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="A CSV of inputs (with the targets as last columns, accuracy is reported too).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def predict(model_dir: str, values: tuple[float, ...], data: str | None, as_json: bool) -> None:
    """Predict with a model saved by `minidl-run train --out MODEL_DIR`.

    Give the inputs of one or more points as numbers (X Y for the disc model; several
    points one after the other), or a CSV file with --data.
    """
    model, metadata = load_model(model_dir)
    width = input_width(model, metadata)
    if values and data:
        raise click.UsageError("give the inputs as numbers or with --data, not both")
    targets: torch.Tensor | None = None
    if data:
        x, targets = read_inputs(data, width, output_width(model, metadata))
    elif values:
        if width is None:
            width = len(values)
        if len(values) % width:
            raise click.BadParameter(
                f"got {len(values)} numbers, but the model takes {width} inputs per point",
                param_hint="'X Y ...'",
            )
        x = torch.tensor(values, dtype=torch.float64).reshape(-1, width)
    else:
        raise click.UsageError(f"give the inputs of a point ({width or 'N'} numbers) or --data CSV")
    output = model_predict(model, x).detach().to("cpu", torch.float64)
    predicted = labels(output)
    records = []
    for i in range(len(x)):
        record: dict[str, Any] = {
            "input": [float(v) for v in x[i].tolist()],
            "output": [float(v) for v in output[i].tolist()],
            "label": int(predicted[i]),
        }
        if targets is not None:
            record["actual"] = int(labels(targets[i : i + 1])[0])
        records.append(record)
    document: dict[str, Any] = {"model": str(Path(model_dir)), "predictions": records}
    if targets is not None:
        document["accuracy"] = float((predicted == labels(targets)).double().mean())
    if as_json:
        echo_json(document)
        return
    for r in records:
        inputs = ", ".join(f"{v:g}" for v in r["input"])
        outputs = ", ".join(f"{v:.4f}" for v in r["output"])
        actual = f"  actual {r['actual']}" if "actual" in r else ""
        click.echo(f"({inputs}) -> {outputs}  label {r['label']}{actual}")
    if targets is not None:
        correct = sum(r["label"] == r["actual"] for r in records)
        click.echo(f"accuracy {percent(document['accuracy'])}% ({correct} of {len(records)})")


def read_inputs(
    path: str, width: int | None, outputs: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs only (``width`` columns) or inputs then targets (``width + outputs`` columns)."""
    probe = load_csv(path)
    columns = probe.features + probe.y.shape[1]
    if width is None or columns == width:
        return torch.cat([probe.x, probe.y], 1).to(torch.float64), None
    if columns == width + outputs:
        both = load_csv(path, targets=outputs)
        return both.x.to(torch.float64), both.y.to(torch.float64)
    raise DataError(
        f"{path}: {columns} columns, but the model takes {width} inputs "
        f"({width} columns, or {width + outputs} with the targets last)"
    )
