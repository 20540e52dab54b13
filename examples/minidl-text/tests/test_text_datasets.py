"""addition and sort: the sequences, the ignored prompt positions, seeded disjoint splits."""

from __future__ import annotations

import itertools

import pytest
import torch
from minidl_text import TASKS, addition, sort

import minidl


def whole(data: minidl.Dataset) -> torch.Tensor:
    """The full sequences back: the input and the target's last token."""
    return torch.cat([data.x, data.y[:, -1:]], 1)


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_addition_sequences_are_minGPTs(digits: int) -> None:
    train, test = addition(seed=0, digits=digits, n_train=300 if digits == 3 else None)
    for data in (train, test):
        assert data.x.dtype == data.y.dtype == torch.int64
        assert data.x.shape[1] == data.y.shape[1] == 3 * digits
        # the target is the input shifted by one, the prompt's next tokens ignored
        assert torch.equal(data.y[:, 2 * digits - 1 :], whole(data)[:, 2 * digits :])
        assert (data.y[:, : 2 * digits - 1] == -100).all()
        for row in whole(data)[:50].tolist():
            a = int("".join(map(str, row[:digits])))
            b = int("".join(map(str, row[digits : 2 * digits])))
            answer = int("".join(map(str, reversed(row[2 * digits :]))))
            assert a + b == answer, row
    total = 10 ** (2 * digits)
    assert len(test) == min(total // 5, 500)
    if digits < 3:
        assert len(train) + len(test) == total


def test_addition_splits_are_seeded_disjoint_and_complete() -> None:
    train, test = addition(seed=3)
    again, _ = addition(seed=3)
    other, _ = addition(seed=4)
    assert torch.equal(train.x, again.x) and not torch.equal(train.x, other.x)
    seen = {tuple(r) for r in train.x[:, :4].tolist()}
    held = {tuple(r) for r in test.x[:, :4].tolist()}
    assert not seen & held  # no test problem is ever trained on
    assert seen | held == set(itertools.product(range(10), repeat=4))
    small, tiny = addition(seed=3, n_train=100, n_test=20)
    assert torch.equal(small.x, train.x[:100]) and torch.equal(tiny.x, test.x[:20])


def test_sort_sequences_and_splits() -> None:
    train, test = sort(seed=0)
    assert (len(train), len(test)) == (729 - 182, 182)
    for data in (train, test):
        full = whole(data)
        assert data.x.shape[1] == 11 and data.x.dtype == torch.int64
        assert torch.equal(full[:, 6:], full[:, :6].sort(1).values)
        assert torch.equal(data.y[:, 5:], full[:, 6:]) and (data.y[:, :5] == -100).all()
    problems = {tuple(r) for r in train.x[:, :6].tolist()}
    assert not problems & {tuple(r) for r in test.x[:, :6].tolist()}
    assert len(problems) == len(train)
    other, _ = sort(seed=1, length=4, vocab=5, n_train=50)
    assert other.x.shape == (50, 7) and int(other.x.max()) <= 4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: addition(digits=4), "digits must be 1, 2 or 3"),
        (lambda: addition(n_train=9501), r"n_train must be a whole number from 1 to 9500"),
        (lambda: addition(n_test=0), r"n_test must be a whole number from 1 to 500"),
        (lambda: sort(length=20, vocab=10), "choose length and vocab"),
        (lambda: sort(vocab=0), "vocab must be a positive integer"),
    ],
)
def test_dataset_errors(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(minidl.DataError, match=message):
        call()


def test_registered_and_made_through_specs() -> None:
    train, test = minidl.create("dataset", "addition(digits=1)", seed=0)
    assert (len(train), len(test)) == (80, 20)
    assert minidl.registry.get("dataset", "sort") is sort


def test_task_encodings() -> None:
    add = TASKS["addition"]
    assert add.prompt("12+34") == add.prompt("1234") == [1, 2, 3, 4]
    assert add.prompt("7+5") == [0, 7, 0, 5] and add.prompt("7+5", digits=1) == [7, 5]
    assert add.answer_length(digits=2) == 3
    assert add.show([1, 2, 3, 4], [6, 4, 0]) == "12+34=46"
    with pytest.raises(ValueError, match=r"takes a prompt like '11\+22'"):
        add.prompt("123+4")
    srt = TASKS["sort"]
    assert srt.prompt("2 0 1 1 0 2") == srt.prompt("201102") == [2, 0, 1, 1, 0, 2]
    assert srt.show([2, 0], [0, 2]) == "2 0 -> 0 2"
    with pytest.raises(ValueError, match="takes 6 tokens from 0 to 2"):
        srt.prompt("2013")
