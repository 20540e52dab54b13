"""Datasets: inputs and targets as two tensors, shuffled mini-batches, CSV files."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError


@dataclass(frozen=True)
class Dataset:
    """``x`` of shape ``(N, ...)``, batch first; ``y`` either ``(N, k)`` floats or ``(N,)``
    int64 class indices."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() < 1 or self.y.dim() not in (1, 2):
            raise DataError(
                f"a dataset needs inputs of shape (N, ...) and targets of shape (N, k) or (N,), "
                f"got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        if self.y.dim() == 1 and self.y.is_floating_point():
            raise DataError(
                f"targets of shape {tuple(self.y.shape)} are class indices and must be int64, "
                f"got {self.y.dtype}; give float targets as (N, k)"
            )
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def features(self) -> int:
        """The size of one example's last dimension (the columns of a table)."""
        return self.x.shape[-1]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Dataset:
        """Moved, with floating tensors cast to ``dtype``; class indices stay int64."""

        def cast(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Dataset(cast(self.x), cast(self.y))

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches in a random order drawn from ``generator`` (in order without one)."""
        x, y = self.x, self.y
        if generator is not None:
            order = torch.randperm(len(x), generator=generator).to(x.device)
            x, y = x[order], y[order]  # one gather per epoch; batches are then cheap views
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def split(
        self, fraction: float, generator: torch.Generator | None = None
    ) -> tuple[Dataset, Dataset]:
        """Two random parts, the first with ``fraction`` of the examples."""
        if not 0 < fraction < 1:
            raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
        order = torch.randperm(len(self), generator=generator).to(self.x.device)
        cut = int(round(fraction * len(self)))
        if not 0 < cut < len(self):
            raise DataError(
                f"cannot split {len(self)} example(s) into parts of {fraction:.0%} and "
                f"{1 - fraction:.0%} with at least one in each; use more data"
            )
        a, b = order[:cut], order[cut:]
        return Dataset(self.x[a], self.y[a]), Dataset(self.x[b], self.y[b])


def load_csv(path: str | Path, *, targets: int = 1, classes: bool = False) -> Dataset:
    """Numeric columns, the last ``targets`` of them the target; an optional header row
    (a first row in which no cell is a number). Errors name the file, the line and the cell.

    With ``classes``, a last column of integer labels 0..k-1 becomes ``(N,)`` int64 class
    indices (for a loss that takes them); any other column stays a float target."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets start with a BOM
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected rows of numbers, the target last")
    rows: list[list[float]] = []
    lines: list[int] = []
    width = 0
    header = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        numeric = [_is_float(c) for c in cells]
        if not all(numeric):
            if not rows and width == 0 and not any(numeric):
                width, header = len(cells), True  # a header row: it fixes the width
                continue
            column = numeric.index(False)
            raise DataError(
                f"{path}, line {lineno}: cell {cells[column]!r} (column {column + 1}) is not a "
                f"number: {_quote(line)}"
            )
        values = [float(c) for c in cells]
        if width == 0:
            width = len(values)
        if len(values) != width:
            expected = f"{width} (as {'the header' if header else 'the first row'})"
            raise DataError(
                f"{path}, line {lineno}: {len(values)} columns, expected {expected}: {_quote(line)}"
            )
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}, line {lineno}: NaN or infinite value: {_quote(line)}")
        rows.append(values)
        lines.append(lineno)
    if not rows:
        only = "a header" if header else "blank lines and # comments"
        raise DataError(f"{path}: no data rows, only {only}")
    if width <= targets:
        raise DataError(
            f"{path}: {width} column(s); need at least one feature column and {targets} target column(s)"
        )
    data = torch.tensor(rows, dtype=torch.get_default_dtype())
    finite = torch.isfinite(data).all(1)
    if not bool(finite.all()):  # a value beyond the dtype's range, e.g. 1e39 in float32
        i = int((~finite).nonzero()[0])
        raise DataError(
            f"{path}, line {lines[i]}: a value too large for {str(data.dtype).removeprefix('torch.')}: "
            f"{_quote(text.splitlines()[lines[i] - 1])}"
        )
    y = data[:, -targets:]
    if classes and targets == 1 and bool((y == y.round()).all()) and float(y.min()) >= 0:
        return Dataset(data[:, :-1], y[:, 0].long())
    return Dataset(data[:, :-targets], y)


def _quote(line: str, limit: int = 80) -> str:
    line = line.strip()
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
