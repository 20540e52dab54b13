"""``minidl-run predict``: outputs of a model saved by ``train --out``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import torch

import minidl
from minidl import DataError, NonFiniteError
from minidl.module import named_modules

from ..output import echo_json, percent


def input_shape(model: minidl.Module, metadata: dict[str, Any]) -> tuple[int, ...] | None:
    """One example's shape: as the training run recorded it, or the first layer's width."""
    shape = metadata.get("input_shape")
    if isinstance(shape, list) and all(isinstance(n, int) for n in shape):
        return tuple(shape)
    for _, layer in named_modules(model):
        for attribute in ("in_features", "out_features"):  # Standardize: out_features
            width = getattr(layer, attribute, None)
            if isinstance(width, int):
                return (width,)
    return None


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("values", nargs=-1, type=float, metavar="[X Y ...]")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="A CSV of inputs, one example a row (with the targets as last columns, accuracy is "
    "reported too).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def predict(model_dir: str, values: tuple[float, ...], data: str | None, as_json: bool) -> None:
    """Predict with a model saved by `minidl-run train --out MODEL_DIR`.

    Give the inputs of one or more examples as numbers (X Y for the disc model; several
    examples one after the other), or a CSV file with --data.
    """
    model, metadata = minidl.load_model(model_dir)
    shape = input_shape(model, metadata) or (len(values) or 1,)
    width = math.prod(shape)
    if values and data:
        raise click.UsageError("give the inputs as numbers or with --data, not both")
    targets = None
    if data:
        x, targets = read_csv(data, width, int(metadata.get("outputs", 1)))
    elif values:
        if len(values) % width:
            raise click.BadParameter(
                f"got {len(values)} number{'s' if len(values) != 1 else ''}, but the model takes "
                f"{width} inputs per example",
                param_hint="'X Y ...'",
            )
        bad = next((v for v in values if not math.isfinite(v)), None)
        if bad is not None:
            raise click.BadParameter(f"{bad} is not a finite number", param_hint="'X Y ...'")
        x = torch.tensor(values, dtype=torch.float64)
    else:
        raise click.UsageError(f"give the inputs of an example ({width} numbers) or --data CSV")
    x = x.reshape(-1, *shape)
    ids = getattr(torch, str(metadata.get("input_dtype")), None)
    if isinstance(ids, torch.dtype) and not ids.is_floating_point:  # token ids stay integers
        if not bool((x == x.round()).all()):
            raise click.BadParameter("the model takes integer inputs (ids)", param_hint="'X Y ...'")
        x = x.to(ids)
    raw = minidl.predict(model, x).to("cpu", torch.float64)
    output = raw.flatten(1)
    finite = torch.isfinite(output).all(1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"the model's output for example {i + 1} is not finite: its inputs overflow the "
            "model's arithmetic (far outside the training data's range?)"
        )
    predicted = minidl.labels(raw if raw.dim() > 2 else output)  # a sequence: a label each
    records = []
    for i in range(len(x)):
        record: dict[str, Any] = {
            "input": [float(v) for v in x[i].flatten().tolist()],
            "output": [float(v) for v in output[i].tolist()],
            "label": predicted[i].tolist(),
        }
        if targets is not None:
            record["actual"] = int(minidl.labels(targets[i : i + 1])[0])
        records.append(record)
    document: dict[str, Any] = {"model": str(Path(model_dir)), "predictions": records}
    if targets is not None:
        document["accuracy"] = minidl.accuracy(output, targets)
    if as_json:
        echo_json(document)
        return
    for r in records:
        inputs = ", ".join(f"{v:g}" for v in r["input"][:8]) + (
            ", ..." if len(r["input"]) > 8 else ""
        )
        outputs = ", ".join(f"{v:.4f}" for v in r["output"])
        actual = f"  actual {r['actual']}" if "actual" in r else ""
        click.echo(f"({inputs}) -> {outputs}  label {r['label']}{actual}")
    if targets is not None:
        correct = sum(r["label"] == r["actual"] for r in records)
        click.echo(f"accuracy {percent(document['accuracy'])}% ({correct} of {len(records)})")


def read_csv(path: str, width: int, outputs: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs only (``width`` columns), or inputs then targets: ``outputs`` columns, or
    one column of class labels for a model of several outputs."""
    table = minidl.load_csv(path)
    columns = table.x.shape[1] + 1
    if columns == width:
        return torch.cat([table.x, table.y], 1).to(torch.float64), None
    if columns == width + 1 and outputs > 1:
        return table.x.to(torch.float64), table.y[:, 0].long()
    if columns == width + outputs:
        both = minidl.load_csv(path, targets=outputs)
        return both.x.to(torch.float64), both.y.to(torch.float64)
    raise DataError(
        f"{path}: {columns} columns, but the model takes {width} inputs ({width} columns, or "
        f"{width + outputs} with the targets last"
        + (f", or {width + 1} with a column of class labels last)" if outputs > 1 else ")")
    )


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(predict)
