"""The hooks a plugin may implement (mark each with ``@minidl.hookimpl``).

Every ``register_<kind>s`` hook receives ``register(name, factory)``: call it once per
name. Names are lower-case letters, digits and underscores, starting with a letter; a
name claimed by two plugins is an error naming both, never a silent override. A factory's
keyword arguments are its settings, given in a spec: ``"adam(eps=1e-6)"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("minidl")
hookimpl = pluggy.HookimplMarker("minidl")

#: What a ``register_*`` hook receives: ``register(name, factory)``.
Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def register_layers(register: Register) -> None:
    """Register layers: ``register("leaky_relu", LeakyReLU)``. ``factory(*args, **kwargs)``
    returns a module (``forward``, ``backward``, ``parameters``); model specs call it with
    the spec's arguments, and with the input's size first when its first parameter is named
    ``in_features`` (the last dimension) or ``in_channels`` (dimension 1).

    A container's factory receives built modules as positional arguments:
    ``residual(linear(16), relu)`` calls ``factory(Linear(16, 16), ReLU())``. The inner
    specs are built as a chain from the container's input (the first gets the container's
    input size, each next one the output size of the one before), then the container is
    made, and the layer after it gets the container's output size, probed as any layer's."""


@hookspec
def register_losses(register: Register) -> None:
    """Register losses: ``register("bce", BCEWithLogits)``. ``factory()`` returns a loss
    (``forward(prediction, target)`` -> 0-dim tensor, ``backward()`` -> gradient with respect
    to the prediction, optionally ``accuracy(prediction, target)`` -> float)."""


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers: ``register("momentum_sgd", MomentumSGD)``.
    ``factory(parameters, lr=..., **hyperparameters)`` returns an optimizer with a ``lr``
    attribute, ``step()`` and ``zero_grad()``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``register("spirals", spirals)``.
    ``factory(seed=..., **settings)`` returns ``(train, test)``, two :class:`minidl.Dataset`,
    the same for the same seed; ``n_train`` and ``n_test`` are passed only when the user
    gives them."""


@hookspec
def register_initializers(register: Register) -> None:
    """Register weight initializers for ``linear(..., init=NAME)``:
    ``factory(weight, bias, gain=...)`` fills both tensors in place."""


@hookspec
def register_schedules(register: Register) -> None:
    """Register learning-rate schedules: ``factory(base_lr, epochs, **options)`` returns
    ``lr_at(epoch)``, called before each epoch (epochs count from 1)."""


@hookspec
def register_callbacks(register: Register) -> None:
    """Register training callbacks: ``register("early_stopping", EarlyStopping)``.
    ``factory(**settings)`` returns an object with any of the events of
    :mod:`minidl.callbacks` (``on_epoch_end(trainer, model)``, ...); ``--callback SPEC``
    makes one per run (and per data-parallel rank)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to ``minidl-run``: ``cli`` is its click group; use
    ``@cli.command()`` or ``cli.add_command(command)``. A command name that is already
    taken is refused with a warning."""
