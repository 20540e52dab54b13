"""The seed's disc dataset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minidl import Dataset, hookimpl
from minidl.data import disc


def disc_dataset(seed: int = 0, n_train: int = 1000, n_test: int = 1000) -> tuple[Dataset, Dataset]:
    """Train and test points in [0, 1]^2, label 1 inside the disc of radius 1/sqrt(2*pi)."""
    generator = torch.Generator().manual_seed(seed)
    return disc(n_train, generator), disc(n_test, generator)


@hookimpl
def register_datasets(register: Callable[[str, Any], None]) -> None:
    register("disc", disc_dataset)
