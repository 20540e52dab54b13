"""minidl-extras: an example minidl plugin.

minidl imports this module through the entry point in pyproject.toml and calls each
function marked with ``@minidl.hookimpl``; each ``register_*`` hook registers names with
``register``, and ``register_commands`` adds a command to ``minidl-run``. A factory's
keyword arguments are its settings, given in spec syntax wherever the name is:
``--optimizer "momentum_sgd(momentum=0.8)"``, ``--dataset "spirals(turns=1.5)"``.
"""

from __future__ import annotations

import click

from minidl import hookimpl
from minidl.hookspecs import Register

from .commands import extras_info
from .datasets import spirals
from .layers import LeakyReLU
from .losses import BCEWithLogits
from .optimizers import MomentumSGD

__version__ = "0.1.0"
__all__ = ["BCEWithLogits", "LeakyReLU", "MomentumSGD", "spirals"]


@hookimpl
def register_layers(register: Register) -> None:
    register("leaky_relu", LeakyReLU)  # the class itself, so a saved model can name it


@hookimpl
def register_losses(register: Register) -> None:
    register("bce", BCEWithLogits)


@hookimpl
def register_optimizers(register: Register) -> None:
    register("momentum_sgd", MomentumSGD)


@hookimpl
def register_datasets(register: Register) -> None:
    register("spirals", spirals)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(extras_info)
