"""``minidl-run summary``: the network that ``train`` would build, layer by layer."""

from __future__ import annotations

from typing import Any

import click

import minidl

from ..experiment import model_spec, setup
from ..options import config_from, training_options
from ..output import echo_json

#: The options that change training but not the network: summary has no use for them.
TRAINING_ONLY = (
    "optimizer",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "schedule",
    "epochs",
    "batch_size",
    "device",
    "dtype",
    "callbacks",
    "out",
)


@click.command("summary")
@training_options(exclude=TRAINING_ONLY)
@click.pass_context
def summary_command(ctx: click.Context, **options: Any) -> None:
    """Print each layer of the network that `train` builds from the same options, with its
    output shape and parameter count, and the totals.

    The model and data options are train's: the network is built for the data exactly as
    a run would build it (a --standardize layer fitted to the training inputs, one output
    per class with cross_entropy), and nothing is trained.
    """
    config = config_from(ctx, options)
    model, _, _, train, validation, test = setup(config)
    found = minidl.summary(model, tuple(train.x.shape[1:]))
    if options["as_json"]:
        echo_json({"model": model_spec(config, train, validation, test), **found.as_dict()})
        return
    click.echo(f"model: {model_spec(config, train, validation, test)}")
    click.echo(str(found))


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(summary_command)
