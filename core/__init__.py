"""minidl: a small deep-learning framework on PyTorch tensors, without autograd.

Layers compute their own backward pass; layers, losses, optimizers and datasets come
from plugins (the built-in ones included) through a pluggy registry. Importing minidl
changes no global state of torch: its entry points switch gradient recording off for
their own work only.
"""

from __future__ import annotations

from .callbacks import Callback, Trainer
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
from .flat import FlatParameters
from .hookspecs import hookimpl
from .io import load_model, save_model
from .module import ModuleBase
from .optim import FlatOptimizer
from .parameter import Parameter
from .protocols import Loss, Module, Optimizer
from .registry import registry
from .sequential import Sequential
from .spec import Spec, build, create, parse
from .summary import Summary, summary
from .train import History, accuracy, evaluate, fit, labels, predict

__version__ = "0.3.0"

__all__ = [
    "Callback",
    "History",
    "Trainer",
    "DataError",
    "Dataset",
    "DivergenceError",
    "DuplicateNameError",
    "FlatOptimizer",
    "FlatParameters",
    "Loss",
    "MinidlError",
    "ModelFileError",
    "Module",
    "ModuleBase",
    "NonFiniteError",
    "Optimizer",
    "Parameter",
    "PluginError",
    "Sequential",
    "Spec",
    "SpecError",
    "Summary",
    "UnknownNameError",
    "accuracy",
    "build",
    "create",
    "evaluate",
    "fit",
    "hookimpl",
    "labels",
    "load_csv",
    "load_model",
    "parse",
    "predict",
    "registry",
    "save_model",
    "summary",
]
