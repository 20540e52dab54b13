"""What a run leaves in its ``--out`` directory: numbers, history, model, plots.

Each file is replaced whole (:func:`minidl.io.atomic_write`), and the files that belong
together are written all or none: a signal waits the few milliseconds until they are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import minidl
from minidl.plugins.datasets import CENTRE, RADIUS

from . import plots, signals
from .checkpoint import CHECKPOINT
from .experiment import RunResult, misclassified, summary, used_config
from .output import csv_text, write_json

#: file -> what it holds; docs/cli.md lists the same (a test keeps them in step)
FILES = {
    "metrics.json": "final accuracies, errors and losses, and the config that was used",
    "history.csv": "one row per epoch: lr, losses, accuracies (and diagnostics)",
    "misclassified.csv": "the test examples the model gets wrong",
    "model.json": "the architecture: each layer's registered name and arguments",
    "model.safetensors": "the weights and buffers (state_dict)",
    "loss.png": "train and test loss per epoch",
    "accuracy.png": "train and test accuracy per epoch",
    "diagnostics.png": "gradient norms, saturation and spread per layer (with --diagnostics)",
    "decision_boundary.png": "decision regions and misclassified points (2-D inputs)",
}


def is_disc(result: RunResult) -> bool:
    return result.config.data is None and result.config.dataset == "disc"


def wrong_examples(result: RunResult) -> list[dict[str, Any]]:
    """The misclassified test examples; for the disc, with their distance to its centre
    (the report's Fig. 3)."""
    wrong = misclassified(result.model, result.test)
    if is_disc(result):
        for record in wrong:
            record["distance"] = math.dist(record["input"], CENTRE)
            record["inside"] = record["distance"] < RADIUS
    return wrong


def plot_title(result: RunResult) -> str:
    """A plot title: the model and the optimizer."""
    config = used_config(result)
    return f"{config['model']}; {result.config.optimizer} lr {result.config.lr:g}"


def save_run(directory: Path, result: RunResult, wrong: list[dict[str, Any]]) -> list[str]:
    """Write the run's files into ``directory``; return their names."""
    metrics = summary(result)
    metrics["minidl_version"] = minidl.__version__
    metrics["misclassified"] = len(wrong)
    first = minidl.predict(result.model, result.test.x[:1])
    outputs = first.shape[-1]  # per position, for a sequence
    fields = ["index", *(f"x{i}" for i in range(result.test.x[0].numel()))]
    fields += [f"output{i}" for i in range(first[0].numel())] + ["predicted", "actual"]
    fields += ["distance", "inside"] if is_disc(result) else []
    with signals.deferred():
        write_json(directory / "metrics.json", metrics)
        minidl.io.atomic_write(directory / "history.csv", csv_text(result.history))
        minidl.io.atomic_write(
            directory / "misclassified.csv", csv_text([_flat(r) for r in wrong], fields)
        )
        minidl.save_model(
            result.model,
            directory,
            metadata={
                "config": metrics["config"],
                "input_shape": list(result.train.x.shape[1:]),
                "input_dtype": str(result.train.x.dtype).removeprefix("torch."),
                "outputs": outputs,
                "train_accuracy": result.train_accuracy,
                "test_accuracy": result.test_accuracy,
                "minidl_version": minidl.__version__,
            },
        )
        (directory / CHECKPOINT).unlink(missing_ok=True)  # the run is complete
    files = ["metrics.json", "history.csv", "misclassified.csv", "model.json", "model.safetensors"]
    if not plots.available():
        return files
    title = plot_title(result)
    plots.curves(result.history, directory, title)
    files += ["loss.png", "accuracy.png"]
    if any(k.startswith("grad_norm/") for k in result.history[-1]):
        plots.diagnostics([(title, result.history)], directory / "diagnostics.png", title)
        files.append("diagnostics.png")
    if result.test.x.dim() == 2 and result.test.features == 2 and result.test.x.is_floating_point():
        path = directory / "decision_boundary.png"
        plots.decision_boundary(result.model, result.test, wrong, path, title, disc=is_disc(result))
        files.append("decision_boundary.png")
    return files


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in record.items() if k not in ("input", "output")}
    flat.update({f"x{i}": v for i, v in enumerate(record["input"])})
    flat.update({f"output{i}": v for i, v in enumerate(record["output"])})
    return flat
