"""Two interleaved spirals: a 2-D task a straight or round boundary cannot solve."""

from __future__ import annotations

import math

import torch

from minidl import Dataset


def spirals(
    seed: int = 0,
    n_train: int = 1000,
    n_test: int = 1000,
    *,
    turns: float = 1.0,
    noise: float = 0.03,
) -> tuple[Dataset, Dataset]:
    """Train and test points in about [0, 1]^2: half on each of two spiral arms, one the
    other turned by half a circle, label 1 on the second. Seeded: same seed, same points."""
    if turns <= 0 or noise < 0:
        raise ValueError(
            f"spirals: turns must be positive and noise non-negative, got {turns}, {noise}"
        )
    generator = torch.Generator().manual_seed(seed)
    return _spirals(n_train, generator, turns, noise), _spirals(n_test, generator, turns, noise)


def _spirals(n: int, generator: torch.Generator, turns: float, noise: float) -> Dataset:
    label = torch.randperm(n, generator=generator) % 2  # balanced, in random order
    # sqrt spreads points evenly over the area; the arms start off-centre, where they meet.
    radius = 0.1 + 0.9 * torch.rand(n, generator=generator).sqrt()
    angle = radius * turns * 2 * math.pi + math.pi * label
    xy = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    xy = xy + noise * torch.randn(n, 2, generator=generator)
    dtype = torch.get_default_dtype()
    return Dataset((0.5 + 0.5 * xy).to(dtype), label.to(dtype).unsqueeze(1))
