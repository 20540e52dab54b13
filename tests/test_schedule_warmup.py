"""The cosine schedule's linear warm-up against its formula."""

from __future__ import annotations

import math

import pytest

import minidl
from minidl.plugins.schedules import cosine


def expected(epoch: int, base: float, epochs: int, min_lr: float, warmup: int) -> float:
    if epoch <= warmup:
        return base * epoch / warmup
    start = max(warmup, 1)
    progress = (epoch - start) / max(epochs - start, 1)
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup", [0, 1, 3, 10])
@pytest.mark.parametrize("min_lr", [0.0, 0.01])
def test_cosine_with_warmup_follows_the_formula(warmup: int, min_lr: float) -> None:
    lr_at = minidl.create("schedule", f"cosine(warmup={warmup}, min_lr={min_lr})", 0.1, 10)
    for epoch in range(1, 11):
        assert lr_at(epoch) == pytest.approx(expected(epoch, 0.1, 10, min_lr, warmup), abs=1e-15)
    lrs = [lr_at(e) for e in range(1, 11)]
    assert max(lrs) == pytest.approx(0.1)  # base is reached, at the warm-up's end
    assert lrs[max(warmup, 1) - 1] == pytest.approx(0.1)
    top = max(warmup, 1) - 1  # the epoch of the base rate, counting from 0
    assert all(a < b for a, b in zip(lrs[:top], lrs[1 : top + 1], strict=True))  # rising
    assert all(a >= b for a, b in zip(lrs[top:-1], lrs[top + 1 :], strict=True))  # falling
    if warmup < 10:
        assert lrs[-1] == pytest.approx(min_lr)


def test_no_warmup_is_the_plain_half_cosine() -> None:
    plain, warm = cosine(0.5, 7), cosine(0.5, 7, warmup=0)
    assert [plain(e) for e in range(1, 8)] == [warm(e) for e in range(1, 8)]
    assert plain(1) == 0.5 and plain(7) == pytest.approx(0.0, abs=1e-15)
    assert cosine(0.5, 7, warmup=2)(1) == 0.25


@pytest.mark.parametrize("warmup", [-1, 11, 2.5, True])
def test_warmup_must_be_whole_epochs_within_the_run(warmup: object) -> None:
    with pytest.raises(
        ValueError, match="warmup must be a whole number of epochs from 0 to the 10 epochs"
    ):
        cosine(0.1, 10, warmup=warmup)  # type: ignore[arg-type]
