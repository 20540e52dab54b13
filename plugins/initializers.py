"""Weight initialisations for Linear; each fills ``weight`` and ``bias`` in place."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minidl import hookimpl


def _check(gain: float, weight: Tensor) -> None:
    """A gain the weights' dtype can hold: uniform bounds below a quarter of its largest."""
    largest = torch.finfo(weight.dtype).max / 4 if weight.is_floating_point() else math.inf
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not 0 <= gain <= largest:
        raise ValueError(f"gain must be a number in [0, {largest:g}], got {gain!r}")


def default(weight: Tensor, bias: Tensor, gain: float = 1.0) -> None:
    """``torch.nn.Linear``'s: uniform in +-gain/sqrt(fan_in), bias likewise, drawn in that order
    from the global generator, so a torch twin seeded alike gets the same weights."""
    _check(gain, weight)
    fan_in = weight.shape[1]
    # torch's own arithmetic (kaiming_uniform_ with a=sqrt(5)): equal in value to
    # 1/sqrt(fan_in) but not always in the last bit, which float64 weights would show.
    bound = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + math.sqrt(5) ** 2)) / math.sqrt(fan_in))
    weight.uniform_(-gain * bound, gain * bound)
    bias.uniform_(-gain / math.sqrt(fan_in), gain / math.sqrt(fan_in))


def xavier(weight: Tensor, bias: Tensor, gain: float = 1.0) -> None:
    """Glorot uniform: variance 2 / (fan_in + fan_out) times gain^2; zero bias."""
    _check(gain, weight)
    fan_out, fan_in = weight.shape
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    weight.uniform_(-bound, bound)
    bias.zero_()


def xavier_normal(weight: Tensor, bias: Tensor, gain: float = 1.0) -> None:
    _check(gain, weight)
    fan_out, fan_in = weight.shape
    weight.normal_(0, gain * math.sqrt(2 / (fan_in + fan_out)))
    bias.zero_()


def he(weight: Tensor, bias: Tensor, gain: float = math.sqrt(2)) -> None:
    """Kaiming uniform for ReLU: variance gain^2 / fan_in; zero bias."""
    _check(gain, weight)
    bound = gain * math.sqrt(3 / weight.shape[1])
    weight.uniform_(-bound, bound)
    bias.zero_()


def he_normal(weight: Tensor, bias: Tensor, gain: float = math.sqrt(2)) -> None:
    _check(gain, weight)
    weight.normal_(0, gain / math.sqrt(weight.shape[1]))
    bias.zero_()


@hookimpl
def register_initializers(register: Callable[[str, Any], None]) -> None:
    register("default", default)
    register("xavier", xavier)
    register("xavier_normal", xavier_normal)
    register("he", he)
    register("he_normal", he_normal)
