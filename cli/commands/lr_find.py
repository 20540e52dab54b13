"""``minidl-run lr-find``: the learning-rate range test, and the rate it suggests."""

from __future__ import annotations

from typing import Any

import click

import minidl

from .. import plots
from ..app import Failed
from ..lr_find import lr_find
from ..options import config_from, out_dir, training_options
from ..output import echo_json
from ..params import Positive

#: The options the range test sets itself: the learning rate, and how long it trains.
SET_BY_THE_TEST = ("lr", "schedule", "epochs", "callbacks")


@click.command("lr-find")
@training_options(
    exclude=SET_BY_THE_TEST,
    out="Write lr_find.png (loss against learning rate, the suggestion marked) into this "
    "directory. Without it no file is written.",
)
@click.option(
    "--steps",
    type=click.IntRange(2),
    default=100,
    show_default=True,
    help="Mini-batches to train, one learning rate each (over as many epochs as they take).",
)
@click.option(
    "--min-lr", type=Positive(), default=1e-7, show_default=True, help="The first learning rate."
)
@click.option(
    "--max-lr", type=Positive(), default=10.0, show_default=True, help="The last learning rate."
)
@click.pass_context
def lr_find_command(ctx: click.Context, **options: Any) -> None:
    """Suggest a learning rate: train a fresh network for --steps mini-batches while the
    rate grows exponentially from --min-lr to --max-lr, and report the rate where the
    smoothed training loss falls fastest.

    The model, data, loss and optimizer options are train's; the network is thrown away
    afterwards. The test stops early once the smoothed loss exceeds 4 times its best.
    """
    if options["min_lr"] >= options["max_lr"]:
        raise click.BadParameter(
            f"--min-lr {options['min_lr']:g} must be below --max-lr {options['max_lr']:g}",
            param_hint="'--min-lr' / '--max-lr'",
        )
    config = config_from(ctx, options)
    directory = out_dir(options["out"]) if options["out"] else None
    result = lr_find(config, options["steps"], options["min_lr"], options["max_lr"])
    files, note = [], ""
    if directory is not None and plots.available():
        title = (
            f"range test: {config.optimizer}, batches of {config.batch_size}, "
            f"{len(result.losses)} steps{' (stopped: the loss diverged)' if result.diverged else ''}"
        )
        plots.lr_curve(
            result.lrs,
            result.losses,
            result.suggestion,
            directory / "lr_find.png",
            title,
            result.raw_losses,
        )
        files.append("lr_find.png")
    elif directory is not None:
        note = plots.MISSING
    if options["as_json"]:
        echo_json(
            {**result.as_dict(), "config": config.as_dict(), **({"files": files} if files else {})}
        )
    else:
        click.echo(
            f"{len(result.losses)} steps, lr {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}: "
            f"{result.stop_reason}"
        )
        if result.suggestion is not None:
            click.echo(
                f"suggested learning rate {result.suggestion:.3g} (the steepest descent of the "
                f"smoothed loss, at step {result.suggestion_step})"
            )
        if files:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    if note:
        click.echo(note, err=True)
    if result.suggestion is None:
        raise Failed(
            f"no suggestion: only {len(result.losses)} steps were recorded ({result.stop_reason}); "
            "the suggestion needs more than 12: give more --steps, or a lower --max-lr"
        )


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(lr_find_command)
