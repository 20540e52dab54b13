"""What a run leaves in its ``--out`` directory: numbers, history, model, plots.

A command's results appear together or not at all (:func:`staged`): they are written
into a staging folder inside the directory, then moved over the directory's own in one
step that a signal waits for, the command's marker file (``metrics.json``,
``sweep.json``, ``tune.json``) last. A directory that holds the marker holds one
command's results, whole; one without it holds none that can be trusted (a run killed
by SIGKILL while it moved them). The lock (:mod:`minidl.cli.lock`) keeps a second
command from writing meanwhile.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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

#: What sweep and tune leave in --out (either may have left them there before the other):
#: a table's files, and tune's per-row diagnostics plots.
TABLE_FILES = (
    "sweep.json",
    "tune.json",
    "table.csv",
    "table.md",
    "accuracy.png",
    "diagnostics-*.png",
)


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
    """Write the run's files into ``directory``, all or none, ``metrics.json`` last, and
    then remove the run's checkpoint; return their names."""
    with staged(directory, "metrics.json", FILES, remove=[CHECKPOINT]) as stage:
        return _write_run(stage, result, wrong)


def _write_run(directory: Path, result: RunResult, wrong: list[dict[str, Any]]) -> list[str]:
    metrics = summary(result)
    metrics["minidl_version"] = minidl.__version__
    metrics["misclassified"] = len(wrong)
    first = minidl.predict(result.model, result.test.x[:1])
    outputs = first.shape[-1]  # per position, for a sequence
    fields = ["index", *(f"x{i}" for i in range(result.test.x[0].numel()))]
    fields += [f"output{i}" for i in range(first[0].numel())] + ["predicted", "actual"]
    fields += ["distance", "inside"] if is_disc(result) else []
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


#: The staging folder inside an --out directory (a killed command's is cleared by the next).
STAGING = ".minidl.staging"


@contextmanager
def staged(
    directory: Path, marker: str, known: Iterable[str] = (), remove: Iterable[str] = ()
) -> Iterator[Path]:
    """A staging folder for a command's result files. When the block ends normally, they
    replace ``directory``'s in one step (a signal waits until it is done): the old
    ``marker`` goes first, then the old files named in ``known`` (or matching one of its
    glob patterns) that this command did not write, then the new files come in with the
    marker last, and ``remove`` is removed. A block left by an exception or a signal
    leaves ``directory`` as it was."""
    stage = directory / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        with signals.deferred():
            new = sorted(p.name for p in stage.iterdir())
            (directory / marker).unlink(missing_ok=True)  # uncommitted from here
            for pattern in known:
                for old in directory.glob(pattern):
                    if old.name not in new and old.is_file():
                        old.unlink()
            for name in sorted(new, key=lambda n: n == marker):
                _keep_mode(stage / name, directory / name)
                os.replace(stage / name, directory / name)
            for name in remove:
                (directory / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _keep_mode(new: Path, old: Path) -> None:
    """Replacing a file keeps its mode, as :func:`minidl.io.atomic_write` does."""
    try:
        os.chmod(new, stat.S_IMODE(old.stat().st_mode))
    except FileNotFoundError:
        pass


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in record.items() if k not in ("input", "output")}
    flat.update({f"x{i}": v for i, v in enumerate(record["input"])})
    flat.update({f"output{i}": v for i, v in enumerate(record["output"])})
    return flat
