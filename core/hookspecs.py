"""The hooks a plugin may implement; each receives a ``register(name, factory)`` callable."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("minidl")
hookimpl = pluggy.HookimplMarker("minidl")


@hookspec
def register_layers(register: Any) -> None:
    """Register layer factories: ``register("relu", ReLU)``; a factory returns a module."""


@hookspec
def register_losses(register: Any) -> None:
    """Register loss factories: ``register("mse", MSE)``; a factory returns a loss."""


@hookspec
def register_optimizers(register: Any) -> None:
    """Register optimizer factories, called as ``factory(parameters, lr=..., **hyperparameters)``."""


@hookspec
def register_datasets(register: Any) -> None:
    """Register dataset factories, called as ``factory(seed=..., n_train=..., n_test=...)`` -> (train, test)."""


@hookspec
def register_initializers(register: Any) -> None:
    """Register weight initializers, called as ``init(weight, bias, gain=...)`` to fill both in place."""


@hookspec
def register_schedules(register: Any) -> None:
    """Register learning-rate schedules, called as ``factory(base_lr, epochs, **options)`` -> ``lr_at(epoch)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``minidl-run`` group: ``cli.add_command(...)`` or ``@cli.command()``."""
