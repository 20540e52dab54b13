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
    """``x`` of shape (n, features), ``y`` of shape (n, outputs)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.y.dim() != 2:
            raise DataError(
                f"a dataset needs 2-D inputs and targets, got shapes "
                f"{tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def features(self) -> int:
        return self.x.shape[1]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Dataset:
        return Dataset(self.x.to(device=device, dtype=dtype), self.y.to(device=device, dtype=dtype))

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
        """Two random parts, the first with ``fraction`` of the points."""
        if not 0 < fraction < 1:
            raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
        order = torch.randperm(len(self), generator=generator).to(self.x.device)
        cut = int(round(fraction * len(self)))
        if not 0 < cut < len(self):
            raise DataError(
                f"cannot split {len(self)} point(s) into parts of {fraction:.0%} and "
                f"{1 - fraction:.0%} with at least one point in each; use more points "
                "(with --data, or give --test-data)"
            )
        a, b = order[:cut], order[cut:]
        return Dataset(self.x[a], self.y[a]), Dataset(self.x[b], self.y[b])


def disc(n: int, generator: torch.Generator | None = None) -> Dataset:
    """The seed's task: points uniform in [0, 1]^2, label 1 inside the disc of area 1/2
    centred at (0.5, 0.5), i.e. of radius 1/sqrt(2*pi)."""
    x = torch.rand(n, 2, generator=generator)
    inside = (x - 0.5).pow(2).sum(1) < 1 / (2 * math.pi)
    return Dataset(x, inside.to(x.dtype).unsqueeze(1))


def load_csv(path: str | Path, *, targets: int = 1) -> Dataset:
    """Numeric columns, the last ``targets`` of them the target; an optional header row
    (a first row in which no cell is a number). Errors name the file, the line and the cell."""
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
    return Dataset(data[:, :-targets], data[:, -targets:])


def _quote(line: str, limit: int = 80) -> str:
    line = line.strip()
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
