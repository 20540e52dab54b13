"""The ``minidl-run`` group: plugins first, then commands, errors as click's.

Its own commands (train, predict, sweep, tune, summary, lr-find, plugins) are built-in
plugins that add themselves through the ``register_commands(cli)`` hook, as a third
party's do. Errors
take click's form and exit codes: 2 for what the user gave (an option, a name, a spec,
data, a model file), 1 for a run that failed, 130 and 143 for SIGINT and SIGTERM (see
docs/errors.md).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

import minidl
from minidl.registry import PluginWarning

from .output import one_line
from .signals import Interrupted, handle_signals

#: The built-in commands, each the plugin ``minidl.cli.commands.<name, - as _>``,
#: registered like any plugin.
COMMANDS = ("train", "predict", "sweep", "tune", "summary", "lr-find", "plugins")
#: ctx.meta keys: the --layer-plugin specs (sweep workers load them too) and the argv
PLUGIN_SPECS, ARGS = "minidl.layer_plugins", "minidl.args"


class Failed(click.ClickException):
    """A run that failed for a reason other than the user's input: exit code 1."""


def as_click(error: minidl.MinidlError) -> click.ClickException:
    """The library's error as click's: ``Error: <message>``, exiting with its ``exit_code``
    (2 for the user's input, 1 for a failed run). The kernel knows nothing of click; this
    is the one place its errors meet it."""
    clicked = click.ClickException(error.message)
    clicked.exit_code = error.exit_code
    return clicked


@contextmanager
def errors_as_click() -> Iterator[None]:
    try:
        yield
    except minidl.MinidlError as e:
        raise as_click(e) from e


class MinidlGroup(click.Group):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hooked: set[str] = set()  # plugins whose register_commands has run
        self._owners: dict[str, str] = {}  # command -> the plugin that added it
        self._adding = ""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGS] = list(args)  # what `--resume` hints repeat
        with errors_as_click():  # --help lists commands: a built-in plugin may fail to load
            return super().parse_args(ctx, args)

    def _add_plugin_commands(self) -> None:
        registry = minidl.registry
        builtins = [f"minidl.cli.commands.{name.replace('-', '_')}" for name in COMMANDS]
        for plugin in builtins:
            if not registry.has_plugin(plugin):
                registry.add(importlib.import_module(plugin), plugin, "builtin")
        registry.load_plugins()
        impls = registry.hook.register_commands.get_hookimpls()
        # The built-ins first, so they keep their names even when a plugin that claims
        # one was registered before them (a -p plugin loads before any command is added).
        for impl in sorted(impls, key=lambda impl: impl.plugin_name not in builtins):
            plugin = impl.plugin_name
            if plugin in self._hooked or not registry.has_plugin(plugin):
                continue
            self._hooked.add(plugin)
            self._adding = plugin
            with registry.guard(plugin, "in hook register_commands of"):
                impl.function(cli=self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """A command name is kept by the plugin that added it first; a second is refused
        with a warning naming both."""
        name = name or cmd.name
        owner = self._owners.setdefault(name or "", self._adding)
        if owner != self._adding:
            warnings.warn(
                f'plugin "{self._adding}" adds the command {name!r}, which plugin "{owner}" '
                "added first; the first is kept: give the new one another name",
                PluginWarning,
                stacklevel=2,
            )
            return
        super().add_command(cmd, name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        """The library's own errors are click's; anything else becomes one line too."""
        try:
            try:
                return super().invoke(ctx)
            except Exception as e:  # a callback's own error: a failed run, named where
                where = getattr(e, "minidl_callback", None)
                if where is None or isinstance(e, minidl.MinidlError | click.ClickException):
                    raise
                if os.environ.get("MINIDL_TRACEBACK"):
                    raise
                raise Failed(f"{where}: {type(e).__name__}: {e}") from e
        except minidl.SpecError as e:
            settings = getattr(e, "settings", None)
            if not settings:
                raise as_click(e) from e
            hint = " / ".join(f"'--{s.replace('_', '-')}'" for s in settings)
            raise click.BadParameter(one_line(e.message), param_hint=hint) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Interrupted as e:
            click.echo(f"Error: {e.message}", err=True)
            ctx.exit(e.code)
        except minidl.MinidlError as e:  # before ValueError: a SpecError is one too
            raise as_click(e) from e
        except ValueError as e:
            raise click.UsageError(one_line(str(e))) from e
        except OSError as e:
            raise Failed(str(e)) from e
        except Exception as e:
            if os.environ.get("MINIDL_TRACEBACK"):  # a bug here or in a plugin: where?
                raise
            raise Failed(f"{type(e).__name__}: {e} (set MINIDL_TRACEBACK=1 to see where)") from e


def _load_layer_plugins(ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]) -> None:
    # Eager, so plugins are in before any other option is checked or command looked up.
    for spec in specs:
        try:
            minidl.registry.load(spec)
        except minidl.PluginError as e:
            raise click.BadParameter(one_line(e.message), ctx=ctx, param=param) from None
    ctx.meta[PLUGIN_SPECS] = list(specs)


@click.group(cls=MinidlGroup, invoke_without_command=True)
@click.option(
    "--layer-plugin",
    "-p",
    "layer_plugins",
    multiple=True,
    metavar="SPEC",
    is_eager=True,
    expose_value=False,
    callback=_load_layer_plugins,
    help="Load a plugin for this run: a .py file, a dotted module or an installed plugin's "
    "name; no:NAME blocks an installed one. Repeatable.",
)
@click.version_option(minidl.__version__, "--version", prog_name="minidl-run")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Train small networks with minidl.

    With no command, run the seed report's experiment: 1,000 training and 1,000 test points
    of the disc, a 2-25-25-25-1 network with ReLU and a sigmoid output, MSE, Adam at
    lr 1e-3, 100 epochs of batches of 100.
    """
    if ctx.invoked_subcommand is None:
        train = ctx.command.get_command(ctx, "train")  # type: ignore[attr-defined]
        ctx.invoke(train)


def plugin_specs(ctx: click.Context) -> list[str]:
    """The --layer-plugin specs given to this run."""
    return list(ctx.find_root().meta.get(PLUGIN_SPECS, []))


def _warning_line(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    click.echo(f"Warning: {one_line(str(message))}", err=True)


def main() -> None:
    """The ``minidl-run`` console script."""
    with warnings.catch_warnings(), handle_signals():
        warnings.showwarning = _warning_line
        cli.main(prog_name="minidl-run")
