"""``minidl-run train``: one training run, its numbers, and optionally its files."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Any

import click

import minidl
from minidl.plugins import CSVLogger

from .. import distributed, plots
from ..app import ARGS, plugin_specs
from ..checkpoint import CHECKPOINT, Checkpoint, load_checkpoint, not_resumable
from ..experiment import (
    RunResult,
    TrainConfig,
    make_callbacks,
    make_schedule,
    run,
    setup,
    summary,
)
from ..launch import launch, torchrun_variables
from ..options import config_from, given, out_dir, training_options
from ..output import Progress, echo_json, percent, table
from ..results import FILES, is_disc, save_run, wrong_examples
from ..signals import Interrupted


@click.command()
@training_options(
    out="Write the results, the model and plots into this directory, and "
    "checkpoint the run there as it trains (see --resume)."
)
@click.option(
    "--diagnostics/--no-diagnostics",
    default=None,
    help="Record each layer's gradient norm and each activation's saturation and spread per "
    "epoch, in the history and as diagnostics.png  [default: on with --out]",
)
@click.option(
    "--nproc",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Train data-parallel in N local processes (gloo on CPU, NCCL on CUDA). Under "
    "torchrun, leave it out: the ranks come from the environment.",
)
@click.option(
    "--validation",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Hold out this fraction of the training examples (seeded) as a validation set: "
    "val_loss and val_accuracy in the history, what early stopping looks at. The test set "
    "is still only reported.",
)
@click.option(
    "--log-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    metavar="N",
    help="Off a terminal, print a progress line every N epochs (and the last) on stderr.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print no progress while training.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted run whose --out DIR is given, from its last checkpoint, to "
    "the result it would have had. Its options come from the checkpoint; any given must agree.",
)
@click.option(
    "--show-misclassified",
    is_flag=True,
    help="List the misclassified test examples (for the disc, with their distance to its "
    "centre, as in the report's Fig. 3).",
)
@click.pass_context
def train(ctx: click.Context, **options: Any) -> None:
    """Train one network and report its accuracy and error.

    By default this is the seed report's experiment; every option changes one thing.
    """
    config = config_from(ctx, options)
    if options["nproc"] > 1 and torchrun_variables():
        raise click.BadParameter(
            f"torchrun started this command ({', '.join(torchrun_variables())} in the "
            "environment) and sets the ranks itself: leave --nproc out, and give torchrun "
            f"--nproc-per-node {options['nproc']} instead",
            param_hint="'--nproc'",
        )
    if options["diagnostics"] is None and options["out"]:
        config = config.replace(diagnostics=True)
    if options["validation"] is not None:
        config = config.replace(validation=options["validation"])
    resume = resumed(ctx, config, options["out"]) if options["resume"] else None
    if resume is not None:
        config = TrainConfig(**resume.config)
    display = {"log_every": options["log_every"], "quiet": options["quiet"]}
    job = (config, options["out"], options["as_json"], options["show_misclassified"], resume)
    _, _, world_size = distributed.world_from_env()
    if options["nproc"] > 1 and world_size == 1:
        if options["out"]:
            out_dir(options["out"])  # held by the launcher for its ranks (rank 0 writes)
        try:
            launch(train_rank, options["nproc"], (plugin_specs(ctx), display, *job))
        except Interrupted as e:
            e.hint = hint(options["out"])
            raise
        return
    if world_size > 1:  # a rank of torchrun's
        train_rank(plugin_specs(ctx), display, *job)
    else:
        execute(*job, **display)


def train_rank(
    plugins: list[str], display: dict[str, Any], config: TrainConfig, *rest: Any
) -> None:
    """One rank of a data-parallel job: every rank trains; rank 0 alone prints and writes."""
    for spec in plugins:
        minidl.registry.load(spec)
    rank, _, _ = distributed.world_from_env()
    config = config.replace(device=distributed.init_from_env(config.device))
    try:
        if rank == 0:
            execute(config, *rest, **display, data_parallel=True)
        else:
            run(config, data_parallel=True, resume=rest[-1])
    finally:
        distributed.shutdown()


def resumed(ctx: click.Context, config: TrainConfig, out: str | None) -> Checkpoint:
    """The checkpoint of the interrupted run in ``out``; the options given on this command
    line must agree with the run's, and the run must be one that can be resumed."""
    if not out:
        raise click.UsageError(
            "--resume needs --out DIR, the directory of the interrupted run", ctx
        )
    parts = setup(config)
    reason = not_resumable(parts.optimizer, make_schedule(config), make_callbacks(config))
    if reason:
        raise click.BadParameter(reason, param_hint="'--resume'")
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        finished = " (the run there finished)" if (Path(out) / "metrics.json").is_file() else ""
        raise click.BadParameter(
            f"no checkpoint to resume from in {out}{finished}: a run with --out DIR saves "
            f"DIR/{CHECKPOINT} as it trains and removes it once its results are written",
            param_hint="'--resume'",
        )
    checkpoint = load_checkpoint(path)
    fields = TrainConfig.__dataclass_fields__
    unknown = sorted(set(checkpoint.config) - set(fields))
    if unknown:
        raise click.BadParameter(
            f"{path}: written by another minidl (unknown settings {', '.join(unknown)})",
            param_hint="'--resume'",
        )
    saved = TrainConfig(**checkpoint.config)
    differ = [
        f"--{name.replace('_', '-')} {getattr(saved, name)!r} there, {getattr(config, name)!r} here"
        for name in fields
        if given(ctx, name) and getattr(saved, name) != getattr(config, name)
    ]
    if differ:
        raise click.BadParameter(
            f"the run in {out} had other options: {'; '.join(differ)} (leave them out to "
            "resume it as it was)",
            param_hint="'--resume'",
        )
    return checkpoint


def hint(out: str | None) -> str:
    """How to continue an interrupted run: this command line with --resume."""
    if not out or not (Path(out) / CHECKPOINT).exists():
        return ""
    ctx = click.get_current_context(silent=True)
    args = list(ctx.find_root().meta.get(ARGS, [])) if ctx else []
    return f"continue from the checkpoint with: {shlex.join(['minidl-run', *args, *(['--resume'] if '--resume' not in args else [])])}"


def execute(
    config: TrainConfig,
    out: str | None = None,
    as_json: bool = False,
    show_misclassified: bool = False,
    resume: Checkpoint | None = None,
    log_every: int = 1,
    quiet: bool = False,
    data_parallel: bool = False,
) -> RunResult:
    """Train as ``config`` says, showing its progress on stderr (every ``log_every``
    epochs off a terminal, never when ``quiet``), then print and write what the options
    ask for."""
    fresh = out is not None and not Path(out).exists()
    directory = out_dir(out) if out else None
    checkpoint = directory / CHECKPOINT if directory is not None else None
    if checkpoint is not None and resume is None and checkpoint.exists():
        warnings.warn(
            f"{out} holds the checkpoint of an unfinished run; starting a new run over it "
            "(to continue that one instead: add --resume)",
            UserWarning,
            stacklevel=1,
        )
        checkpoint.unlink()
    if directory is not None and resume is None:
        clear_results(directory)
    if resume is not None:
        click.echo(
            f"resuming the run in {out} after epoch {resume.epoch} of {config.epochs}", err=True
        )
    display: list[Any] = [Progress(log_every, quiet)]
    if directory is not None:  # history.csv gains its row as each epoch ends
        display.insert(0, CSVLogger())
    try:
        result = run(
            config,
            display,
            checkpoint=checkpoint,
            resume=resume,
            data_parallel=data_parallel,
            log_dir=directory,
        )
    except BaseException as e:
        if isinstance(e, minidl.NonFiniteError) and directory is not None:
            # A diverged run would diverge again, and its history is no result.
            checkpoint.unlink(missing_ok=True)  # type: ignore[union-attr]
            if fresh:
                (directory / "history.csv").unlink(missing_ok=True)
        if fresh and directory is not None and not any(directory.iterdir()):
            directory.rmdir()  # a failed run leaves nothing behind
        if isinstance(e, Interrupted):
            e.hint = hint(out)
        raise
    wrong = wrong_examples(result)
    files = save_run(directory, result, wrong) if directory is not None else []
    if directory is not None and not plots.available():
        click.echo(plots.MISSING, err=True)
    if as_json:
        document = summary(result)
        document["history"] = result.history
        if show_misclassified:
            document["misclassified"] = wrong
        if directory is not None:
            document["files"] = files
        echo_json(document)
    else:
        print_summary(result)
        if show_misclassified:
            print_misclassified(wrong, len(result.test), is_disc(result))
        if directory is not None:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    return result


def clear_results(directory: Path) -> None:
    """A new run's history.csv grows as it trains, so an earlier run's results in its
    directory would be mixed with it: they go first (metrics.json, which marks results
    as whole, before the rest), and a warning says so."""
    earlier = [directory / name for name in FILES if (directory / name).exists()]
    if not earlier:
        return
    warnings.warn(
        f"{directory} holds the results of an earlier run; the new run replaces them",
        UserWarning,
        stacklevel=1,
    )
    for path in sorted(earlier, key=lambda p: p.name != "metrics.json"):
        path.unlink()


def print_summary(result: RunResult) -> None:
    s = summary(result)
    for split in ("train", "test"):
        click.echo(
            f"{split:<5} accuracy {percent(s[f'{split}_accuracy'])}%  error "
            f"{percent(s[f'{split}_error'])}%  loss {s[f'{split}_loss']:.4f}  "
            f"({s[f'{split}_points']} points)"
        )


def print_misclassified(records: list[dict[str, Any]], total: int, disc: bool) -> None:
    click.echo(f"misclassified test examples: {len(records)} of {total}")
    if not records:
        return
    header = ["#", "input", "output", "predicted", "actual"]
    header += ["distance to centre", "inside"] if disc else []
    rows = []
    for n, r in enumerate(records, 1):
        row = [
            str(n),
            "("
            + ", ".join(f"{v:.4f}" for v in r["input"][:4])
            + (", ...)" if len(r["input"]) > 4 else ")"),
            ", ".join(f"{v:.3f}" for v in r["output"][:4])
            + (", ..." if len(r["output"]) > 4 else ""),
            str(r["predicted"]),
            str(r["actual"]),
        ]
        if disc:
            row += [f"{r['distance']:.4f}", "yes" if r["inside"] else "no"]
        rows.append(row)
    click.echo(table(header, rows))


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(train)
