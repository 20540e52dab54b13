"""Learning-rate schedules: ``factory(base_lr, epochs, **options)`` returns ``lr_at(epoch)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from minidl import hookimpl


def constant(base_lr: float, epochs: int) -> Callable[[int], float]:
    return lambda epoch: base_lr


def step(
    base_lr: float, epochs: int, step_size: int = 30, gamma: float = 0.1
) -> Callable[[int], float]:
    """Multiply by ``gamma`` every ``step_size`` epochs (epochs count from 1)."""
    if step_size < 1:
        raise ValueError(f"step schedule: step_size must be at least 1, got {step_size}")
    return lambda epoch: base_lr * gamma ** ((epoch - 1) // step_size)


def cosine(
    base_lr: float, epochs: int, min_lr: float = 0.0, warmup: int = 0
) -> Callable[[int], float]:
    """Half a cosine from ``base_lr`` down to ``min_lr`` at the last epoch, after ``warmup``
    epochs of linear warm-up.

    With ``w = warmup`` epochs and ``s = max(w, 1)``, the learning rate at epoch ``e``
    (counting from 1, of ``E = epochs``) is ``base_lr * e / w`` for ``e <= w``, then
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * (e - s) / max(E - s, 1))) / 2``: it
    reaches ``base_lr`` at epoch ``w`` and the decay starts from there. ``warmup=0`` is
    the plain half cosine, ``base_lr`` at epoch 1.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= epochs:
        raise ValueError(
            f"cosine schedule: warmup must be a whole number of epochs from 0 to the "
            f"{epochs} epochs, got {warmup!r}"
        )
    start = max(warmup, 1)

    def lr_at(epoch: int) -> float:
        if epoch <= warmup:
            return base_lr * epoch / warmup
        progress = (epoch - start) / max(epochs - start, 1)
        return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2

    return lr_at


@hookimpl
def register_schedules(register: Callable[[str, Any], None]) -> None:
    register("constant", constant)
    register("step", step)
    register("cosine", cosine)
