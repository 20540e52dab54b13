"""The seed's disc dataset."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from minidl import Dataset, hookimpl

#: The seed's disc: centre (0.5, 0.5) and radius 1/sqrt(2*pi), so its area is 1/2 and the
#: two classes are balanced. (The report's text also gives 1/(2*pi); its arithmetic uses this.)
CENTRE = (0.5, 0.5)
RADIUS = 1 / math.sqrt(2 * math.pi)


def disc(n: int, generator: torch.Generator | None = None) -> Dataset:
    """``n`` points uniform in [0, 1]^2, target 1.0 inside the disc and 0.0 outside."""
    x = torch.rand(n, 2, generator=generator)
    inside = (x - 0.5).pow(2).sum(1) < 1 / (2 * math.pi)  # RADIUS**2, as the seed computed it
    return Dataset(x, inside.to(x.dtype).unsqueeze(1))


def disc_dataset(seed: int = 0, n_train: int = 1000, n_test: int = 1000) -> tuple[Dataset, Dataset]:
    """The seed's task: training and test points drawn from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return disc(n_train, generator), disc(n_test, generator)


@hookimpl
def register_datasets(register: Callable[[str, Any], None]) -> None:
    register("disc", disc_dataset)
