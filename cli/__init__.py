"""The ``minidl-run`` command line."""

from __future__ import annotations

import click

import minidl


@click.group(invoke_without_command=True)
@click.version_option(minidl.__version__, prog_name="minidl-run")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Train small networks with minidl. With no command, run the seed's experiment."""
    if ctx.invoked_subcommand is None:
        result = minidl.run()
        click.echo(
            f"train accuracy {result.train_accuracy:.2%}  test accuracy {result.test_accuracy:.2%}"
        )


def main() -> None:
    cli()
