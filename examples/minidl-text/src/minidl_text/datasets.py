"""minGPT's two toy sequence tasks, as next-token prediction over int64 tokens.

Each example is a sequence of tokens, a prompt then its answer: the input is the sequence
without its last token, ``(T,)``, and the target the sequence shifted by one, with -100
(cross-entropy's ``ignore_index``) where the next token is still part of the prompt. So a
model is trained, and scored, on the answer alone. Every problem of a task is enumerated
and shuffled by the seed; the test split is problems that never appear in training.

Each task also says how to read a prompt written by a person and how to show the answer
(:data:`TASKS`), which ``minidl-run generate`` uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from minidl import DataError, Dataset

#: cross-entropy's ignore_index: no loss, no accuracy on these positions.
IGNORE = -100
_MAX_PROBLEMS = 10**6


def _sizes(
    name: str, train: Tensor, test: Tensor, n_train: int | None, n_test: int | None
) -> tuple[Tensor, Tensor]:
    """The first ``n_train`` and ``n_test`` of each shuffled split, all of it by default."""
    chosen = []
    for label, problems, n in (("n_train", train, n_train), ("n_test", test, n_test)):
        if n is None:
            chosen.append(problems)
            continue
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(problems):
            raise DataError(
                f"{name}: {label} must be a whole number from 1 to {len(problems)} (the "
                f"problems of that split), got {n!r}"
            )
        chosen.append(problems[:n])
    return chosen[0], chosen[1]


def _examples(sequences: Tensor, prompt_length: int) -> Dataset:
    """Inputs ``sequences[:, :-1]``, targets ``sequences[:, 1:]`` with the prompt's next
    tokens (all but the last prompt position's) ignored."""
    x = sequences[:, :-1].clone()
    y = sequences[:, 1:].clone()
    y[:, : prompt_length - 1] = IGNORE
    return Dataset(x, y)


def _digits_of(numbers: Tensor, width: int) -> Tensor:
    """Each number's ``width`` decimal digits, most significant first: ``(N, width)``."""
    powers = 10 ** torch.arange(width - 1, -1, -1)
    return numbers.unsqueeze(1).div(powers, rounding_mode="floor") % 10


def addition(
    seed: int = 0, n_train: int | None = None, n_test: int | None = None, digits: int = 2
) -> tuple[Dataset, Dataset]:
    """``a + b`` for every pair of ``digits``-digit numbers (minGPT's adder): the tokens are
    the digits 0-9, ``a`` and ``b`` zero-padded to ``digits`` each, then the sum's
    ``digits + 1`` digits *reversed* (least significant first, as one adds by hand). So
    ``12 + 34`` is ``1 2 3 4 6 4 0``; inputs are ``(N, 3 * digits)``. The test split is
    20% of the problems, at most 500; the training split is the rest (9,500 for two digits).
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 3:
        raise DataError(f"addition: digits must be 1, 2 or 3, got {digits!r}")
    total = 10 ** (2 * digits)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    held_out = min(total // 5, 500)
    train, test = _sizes(
        f"addition(digits={digits})", order[held_out:], order[:held_out], n_train, n_test
    )

    def sequences(problems: Tensor) -> Tensor:
        a, b = problems // 10**digits, problems % 10**digits
        answer = _digits_of(a + b, digits + 1).flip(1)
        return torch.cat([_digits_of(a, digits), _digits_of(b, digits), answer], 1)

    return _examples(sequences(train), 2 * digits), _examples(sequences(test), 2 * digits)


def sort(
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    length: int = 6,
    vocab: int = 3,
) -> tuple[Dataset, Dataset]:
    """Sort ``length`` tokens from ``0 .. vocab - 1`` (minGPT's demo): the sequence, then
    the same tokens in ascending order; inputs are ``(N, 2 * length - 1)``. Of the
    ``vocab ** length`` sequences a quarter are the test split, the rest the training one.
    """
    for label, n in (("length", length), ("vocab", vocab)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"sort: {label} must be a positive integer, got {n!r}")
    total = vocab**length
    if total > _MAX_PROBLEMS or total < 2:
        raise DataError(
            f"sort: vocab ** length = {total} problems; choose length and vocab to give "
            f"from 2 to {_MAX_PROBLEMS:,}"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    held_out = max(total // 4, 1)
    train, test = _sizes(
        f"sort(length={length}, vocab={vocab})", order[held_out:], order[:held_out], n_train, n_test
    )

    def sequences(problems: Tensor) -> Tensor:
        powers = vocab ** torch.arange(length - 1, -1, -1)
        tokens = problems.unsqueeze(1).div(powers, rounding_mode="floor") % vocab
        return torch.cat([tokens, tokens.sort(1).values], 1)

    return _examples(sequences(train), length), _examples(sequences(test), length)


@dataclass(frozen=True)
class Task:
    """How ``minidl-run generate`` talks to a task: ``prompt(text, **settings)`` gives the
    prompt's tokens, ``answer_length(**settings)`` how many tokens to generate, and
    ``show(prompt, answer, **settings)`` the line to print."""

    prompt: Callable[..., list[int]]
    answer_length: Callable[..., int]
    show: Callable[..., str]


def _addition_prompt(text: str, digits: int = 2, **_: Any) -> list[int]:
    text = text.replace(" ", "")
    match = re.fullmatch(rf"(\d{{1,{digits}}})\+(\d{{1,{digits}}})", text)
    if match:
        a, b = (int(g) for g in match.groups())
    elif re.fullmatch(rf"\d{{{2 * digits}}}", text):
        a, b = int(text[:digits]), int(text[digits:])
    else:
        raise ValueError(
            f"addition(digits={digits}) takes a prompt like '{'1' * digits}+{'2' * digits}' "
            f"(numbers of at most {digits} digits) or the {2 * digits} digits of both, got {text!r}"
        )
    return [int(c) for c in f"{a:0{digits}d}{b:0{digits}d}"]


def _addition_show(prompt: list[int], answer: list[int], digits: int = 2, **_: Any) -> str:
    a = int("".join(map(str, prompt[:digits])))
    b = int("".join(map(str, prompt[digits:])))
    return f"{a}+{b}={int(''.join(map(str, reversed(answer))))}"


def _sort_prompt(text: str, length: int = 6, vocab: int = 3, **_: Any) -> list[int]:
    tokens = (
        [int(t) for t in re.findall(r"\d+", text)]
        if re.search(r"\s|,", text.strip())
        else [int(c) for c in text.strip() if c.isdigit()]
    )
    if len(tokens) != length or any(not 0 <= t < vocab for t in tokens):
        raise ValueError(
            f"sort(length={length}, vocab={vocab}) takes {length} tokens from 0 to {vocab - 1}, "
            f"such as {' '.join(str(i % vocab) for i in range(length, 0, -1))}, got {text!r}"
        )
    return tokens


def _sort_show(prompt: list[int], answer: list[int], **_: Any) -> str:
    return f"{' '.join(map(str, prompt))} -> {' '.join(map(str, answer))}"


#: The tasks by dataset name, for ``minidl-run generate``.
TASKS = {
    "addition": Task(_addition_prompt, lambda digits=2, **_: digits + 1, _addition_show),
    "sort": Task(_sort_prompt, lambda length=6, **_: length, _sort_show),
}

__all__ = ["IGNORE", "TASKS", "Task", "addition", "sort"]
