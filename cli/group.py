"""The ``minidl-run`` group: global options, plugin commands, and errors as one line."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click

import minidl
from minidl import distributed, registry
from minidl.errors import MinidlError, NonFiniteError, PluginError
from minidl.sweep import RoundFailed

from .output import one_line
from .signals import Interrupted, handle_signals

#: ctx.meta key holding the --layer-plugin specs, which sweep workers must load too
PLUGIN_SPECS = "minidl.layer_plugins"


def fail(message: str, code: int) -> None:
    rank, _, world_size = distributed.world_from_env()
    where = f"rank {rank}: " if world_size > 1 else ""  # which worker of a data-parallel job
    click.echo(f"Error: {where}{one_line(message)}", err=True)
    if world_size > 1:
        distributed.report_failure(rank, one_line(message))  # for `--nproc`'s launcher
    sys.exit(code)


def _one_line_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    click.echo(f"Warning: {one_line(str(message))}", err=True)


class MinidlGroup(click.Group):
    """A click group whose errors are one line on stderr, never a traceback:
    usage errors (a bad option, name, spec, data file or model directory) exit with 2,
    a diverged training, a failed worker or a failed write with 1, SIGINT (Ctrl-C) and
    SIGTERM with 130 and 143 (see docs/errors.md). Commands that plugins add through the
    ``register_commands(cli)`` hook appear once plugins are loaded."""

    _builtin: set[str] | None = None
    _hooked: frozenset[int] | None = None
    #: the command line as given, for `train --nproc N` to start N copies of it
    raw_args: list[str] = []

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        self.raw_args = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        with warnings.catch_warnings(), handle_signals():
            warnings.showwarning = _one_line_warning
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.UsageError as e:
                hint = ""
                if e.ctx is not None and not isinstance(e, click.BadParameter):
                    hint = f" (see '{e.ctx.command_path} --help')"
                fail(e.format_message() + hint, e.exit_code)
            except click.ClickException as e:
                fail(e.format_message(), e.exit_code)
            except click.Abort as e:
                if isinstance(e.__context__, KeyboardInterrupt):  # no handler of ours ran
                    fail(Interrupted(2).message, 130)
                fail("aborted", 1)
            except Interrupted as e:
                if os.environ.get(distributed.LAUNCHED):
                    sys.exit(e.code)  # the launcher that stopped this rank says so, once
                fail(e.message, e.code)
            except (NonFiniteError, distributed.WorkerFailed, RoundFailed) as e:
                fail(str(e), 1)
            except (MinidlError, ValueError) as e:
                fail(str(e), 2)
            except OSError as e:
                fail(str(e), 1)
            except Exception as e:
                # A bug here or in a plugin: one line by default, the traceback on request.
                if os.environ.get("MINIDL_TRACEBACK"):
                    raise
                fail(f"{type(e).__name__}: {e} (set MINIDL_TRACEBACK=1 to see where)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def _add_plugin_commands(self) -> None:
        # Re-run the hook whenever the set of plugins changed (a --layer-plugin was loaded).
        registry.load_plugins()
        key = frozenset(id(p) for p in registry.pm.get_plugins())
        if key == self._hooked:
            return
        self._hooked = key
        if self._builtin is None:
            self._builtin = set(self.commands)
        builtins = {name: self.commands[name] for name in self._builtin}
        registry.call_hook("register_commands", cli=self)
        for name, command in builtins.items():
            if self.commands.get(name) is not command:
                warnings.warn(
                    f"a plugin's register_commands replaced the built-in command {name!r}; "
                    "the built-in one is kept: give the plugin's command another name",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.commands[name] = command

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)


def _load_layer_plugins(ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]) -> None:
    # Eager, so plugins are in before any other option is checked or command looked up.
    for spec in specs:
        try:
            registry.load_plugin(spec)
        except PluginError as e:
            raise click.BadParameter(one_line(str(e)), ctx=ctx, param=param) from None
    ctx.meta[PLUGIN_SPECS] = list(specs)


@click.group(cls=MinidlGroup, invoke_without_command=True)
@click.option(
    "--layer-plugin",
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
        from .train import execute

        execute(minidl.TrainConfig())


def plugin_specs(ctx: click.Context) -> list[str]:
    """The --layer-plugin specs given to this run."""
    return list(ctx.find_root().meta.get(PLUGIN_SPECS, []))


def main() -> None:
    cli.main(prog_name="minidl-run")
