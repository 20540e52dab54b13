"""minidl-vision: small convnets for minidl.

Layers ``conv2d``, ``maxpool2d``, ``flatten``, ``batchnorm1d`` and ``batchnorm2d``, each
equal to its torch.nn namesake, and the ``digits`` dataset. minidl imports this module
through the entry point in pyproject.toml and calls the hooks below. ``dropout`` began
here and is now a minidl built-in; ``minidl_vision.Dropout`` is that class, re-exported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minidl import hookimpl
from minidl.plugins import Dropout

from .conv import Conv2d, Flatten, MaxPool2d
from .datasets import digits
from .norm import BatchNorm1d, BatchNorm2d

__version__ = "0.1.0"
__all__ = ["BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "MaxPool2d", "digits"]


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    # The classes themselves, so that a saved model can name its layers.
    register("conv2d", Conv2d)
    register("maxpool2d", MaxPool2d)
    register("flatten", Flatten)
    register("batchnorm1d", BatchNorm1d)
    register("batchnorm2d", BatchNorm2d)


@hookimpl
def register_datasets(register: Callable[[str, Any], None]) -> None:
    register("digits", digits)
