"""minidl: a small deep-learning framework on PyTorch tensors, without autograd.

Layers compute their own backward pass; layers, losses, optimizers and datasets come
from plugins (the built-in ones included) through a pluggy registry.
"""

from __future__ import annotations

import torch

from . import registry
from .data import Dataset, load_csv
from .errors import (
    DataError,
    DivergenceError,
    DuplicateNameError,
    MinidlError,
    ModelFileError,
    NonFiniteError,
    PluginError,
    SpecError,
    UnknownNameError,
)
from .experiment import RunResult, TrainConfig, run
from .flat import FlatParameters
from .hookspecs import hookimpl
from .io import load_model, save_model
from .module import ModuleBase
from .optim import FlatOptimizer
from .parameter import Parameter
from .protocols import Loss, Module, Optimizer
from .registry import load_plugins
from .sequential import Sequential
from .spec import LayerSpec, mlp
from .spec import build as build_model
from .train import accuracy, evaluate, fit

__version__ = "0.1.0"

# The framework's rule: gradients are computed by hand, so autograd stays off.
torch.set_grad_enabled(False)

__all__ = [
    "DataError",
    "Dataset",
    "DivergenceError",
    "DuplicateNameError",
    "FlatOptimizer",
    "FlatParameters",
    "LayerSpec",
    "Loss",
    "MinidlError",
    "ModelFileError",
    "Module",
    "NonFiniteError",
    "ModuleBase",
    "Optimizer",
    "Parameter",
    "PluginError",
    "RunResult",
    "Sequential",
    "SpecError",
    "TrainConfig",
    "UnknownNameError",
    "accuracy",
    "build_model",
    "evaluate",
    "fit",
    "hookimpl",
    "load_csv",
    "load_model",
    "load_plugins",
    "mlp",
    "registry",
    "run",
    "save_model",
]
