"""What the commands write: one-line errors, JSON on stdout, progress bars, files in --out."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from minidl import Callback, Module, Trainer
from minidl.io import atomic_write


def is_tty() -> bool:
    """Progress bars go to stderr, and only when a person is watching it."""
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """``update(done)`` callable driving a progress bar on stderr; a no-op off a terminal."""
    if not is_tty() or total < 1:
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True) as bar:
        position = 0

        def update(done: int) -> None:
            nonlocal position
            bar.update(done - position)
            position = done

        yield update


def epoch_line(record: dict[str, Any]) -> str:
    """``loss 0.0123 acc 98.20%  val loss ... acc ...``: an epoch's numbers, for people."""
    parts = []
    for split, label in (("train", ""), ("val", "val "), ("test", "test ")):
        if f"{split}_loss" in record:
            text = f"{label}loss {record[f'{split}_loss']:.4f}"
            if f"{split}_accuracy" in record:
                text += f" acc {percent(record[f'{split}_accuracy'])}%"
            parts.append(text)
    return "  ".join(parts)


class Progress(Callback):
    """What a person sees while a run trains, on stderr: on a terminal a bar with the last
    epoch's loss and accuracy; elsewhere (a pipe, a log file) one line every ``every``
    epochs, and the last; with ``quiet``, nothing. A stop is said in one line."""

    def __init__(self, every: int = 1, quiet: bool = False, tty: bool | None = None) -> None:
        self.every, self.quiet = every, quiet
        self.tty = is_tty() if tty is None else tty
        self.bar: Any = None
        self.text = ""

    def on_train_start(self, trainer: Trainer, model: Module) -> None:
        if self.quiet or not self.tty:
            return
        self.bar = click.progressbar(
            length=trainer.max_epochs,
            label="training",
            file=sys.stderr,
            show_eta=True,
            item_show_func=lambda _: self.text,
        )
        self.bar.__enter__()
        self.bar.update(trainer.epoch)  # a resumed run's epochs

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        self.text = f"epoch {trainer.epoch}  {epoch_line(trainer.record)}"
        if self.bar is not None:
            self.bar.update(1, self.text)
        elif not self.quiet and (
            trainer.epoch % self.every == 0
            or trainer.epoch == trainer.max_epochs
            or trainer.should_stop
        ):
            width = len(str(trainer.max_epochs))
            click.echo(
                f"epoch {trainer.epoch:>{width}}/{trainer.max_epochs}  {epoch_line(trainer.record)}",
                err=True,
            )

    def on_train_end(self, trainer: Trainer, model: Module) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        if not self.quiet and "stop_reason" in trainer.info:
            click.echo(
                f"stopped after epoch {trainer.epoch}: {trainer.info['stop_reason']}", err=True
            )


def echo_json(data: Any) -> None:
    """Exactly one JSON document on stdout (NaN becomes null: JSON has no NaN)."""
    click.echo(json.dumps(_plain(data), indent=2))


def _plain(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def json_text(data: Any) -> str:
    return json.dumps(_plain(data), indent=2) + "\n"


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json_text(data))


def csv_text(rows: Sequence[dict[str, Any]], fields: Iterable[str] | None = None) -> str:
    """Rows of dicts as CSV; columns are ``fields`` or every key in order of appearance."""
    if fields is None:
        fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(_plain(value))
    return "" if value is None else value


def percent(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def one_line(message: str) -> str:
    """The first line of a message, for errors that carry a pointer below (model specs)."""
    lines = [line for line in str(message).splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else str(message)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def report(
    as_json: bool, document: dict[str, Any], text: str, files: list[str], directory: Any, note: str
) -> None:
    """What a command prints at the end: its JSON document (with the files it wrote), or its
    text and where it wrote them; a note (no plots without matplotlib) on stderr."""
    if as_json:
        echo_json({**document, "files": files} if files else document)
    else:
        click.echo(text)
        if files:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    if note:
        click.echo(note, err=True)
