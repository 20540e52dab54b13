"""The ``minidl-run`` command line: a click group and its commands, one module each."""

from __future__ import annotations

from .group import cli, main
from .plugins import plugins
from .predict import predict
from .sweep import sweep
from .train import train
from .tune import tune

cli.add_command(train)
cli.add_command(sweep)
cli.add_command(predict)
cli.add_command(plugins)
cli.add_command(tune)

__all__ = ["cli", "main"]
