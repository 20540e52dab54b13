"""``minidl-run train``: one training run, its numbers, and optionally its files."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Any

import click

import minidl
from minidl import distributed, registry
from minidl.errors import SpecError
from minidl.experiment import (
    DISC_CENTRE,
    DISC_RADIUS,
    RunResult,
    TrainConfig,
    config_dict,
    misclassified,
    run,
    summary,
)
from minidl.io import CHECKPOINT, Checkpoint, atomic_write, load_checkpoint

from . import plots, signals
from .options import (
    DEFAULTS,
    SEED,
    activation_callback,
    base_config,
    check_data_options,
    common_training_options,
    config_option,
    explicit,
    model_callback,
    name_callback,
    out_dir,
)
from .output import csv_text, echo_json, one_line, percent, progress, table, write_json
from .signals import Interrupted


def train_options(f: Any) -> Any:
    for decorator in reversed(
        [
            config_option,
            click.option(
                "--activation",
                default=DEFAULTS.activation,
                show_default=True,
                callback=activation_callback,
                help="Hidden-layer activation: any registered layer that takes no arguments.",
            ),
            click.option(
                "--model",
                default=None,
                callback=model_callback,
                metavar="SPEC",
                help="The whole network as a spec, e.g. 'linear(25), relu, linear(1), sigmoid' (input size inferred); replaces --hidden and --activation.",
            ),
            click.option(
                "--optimizer",
                default=DEFAULTS.optimizer,
                show_default=True,
                callback=name_callback("optimizer"),
                help="A registered optimizer.",
            ),
            click.option(
                "--lr",
                type=click.FloatRange(0, min_open=True),
                default=DEFAULTS.lr,
                show_default=True,
                help="Learning rate.",
            ),
            click.option(
                "--beta1",
                type=click.FloatRange(0, 1, max_open=True),
                default=None,
                help="Adam's beta1 [default: 0.9].",
            ),
            click.option(
                "--beta2",
                type=click.FloatRange(0, 1, max_open=True),
                default=None,
                help="Adam's beta2 [default: 0.999].",
            ),
            common_training_options,
            click.option(
                "--seed",
                type=SEED,
                default=DEFAULTS.seed,
                show_default=True,
                help="Seeds the data, the initial weights and the shuffling.",
            ),
            click.option(
                "--diagnostics/--no-diagnostics",
                default=None,
                help="Record each linear layer's gradient norm and each activation's saturation and spread per epoch (minidl.diagnostics), in the history and as diagnostics.png  [default: on with --out]",
            ),
            click.option(
                "--nproc",
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Train data-parallel in N local processes (gloo on CPU, NCCL on CUDA). "
                "Under torchrun, leave it out: the ranks come from the environment.",
            ),
            click.option(
                "--resume",
                is_flag=True,
                help="Continue the interrupted run whose --out DIR is given, from its last "
                "checkpoint (DIR/checkpoint.safetensors), to the result it would have had. Its "
                "options come from the checkpoint; any given must agree with them.",
            ),
            click.option(
                "--show-misclassified",
                is_flag=True,
                help="List the misclassified test points (with their distance to the disc's centre for 2-D inputs), as in the report's Fig. 3.",
            ),
        ]
    ):
        f = decorator(f)
    return f


@click.command()
@train_options
@click.pass_context
def train(ctx: click.Context, **options: Any) -> None:
    """Train one network and report its accuracy and error.

    By default this is the seed report's experiment; every option changes one thing.
    """
    check_data_options(ctx, options)
    config = base_config(options)
    if options["diagnostics"] is None and options["out"]:
        config = config.replace(diagnostics=True)
    resume = None
    if options["resume"]:
        config, resume = resumed(ctx, config, options["out"])
    rank, _, world_size = distributed.world_from_env()
    if options["nproc"] > 1 and world_size == 1:
        # Become the launcher: N copies of this command line, each a rank (as torchrun does).
        args = without_nproc(ctx.find_root().command.raw_args)  # type: ignore[attr-defined]
        try:
            distributed.launch([*distributed.self_command(), *args], options["nproc"])
        except Interrupted as e:  # rank 0 checkpointed; the ranks leave the message to us
            out = options["out"]
            if out and (Path(out) / CHECKPOINT).exists():
                e.hint = f"continue from the checkpoint with: {resume_command()}"
            raise
        return
    if world_size > 1:
        config.device = distributed.init_from_env(config.device)
        if rank != 0:  # every rank trains; rank 0 alone prints and writes
            run(config, data_parallel=True, resume=resume)
            distributed.shutdown()
            return
    execute(
        config,
        out=options["out"],
        as_json=options["as_json"],
        show_misclassified=options["show_misclassified"],
        data_parallel=world_size > 1,
        resume=resume,
    )
    distributed.shutdown()


def resumed(
    ctx: click.Context, config: TrainConfig, out: str | None
) -> tuple[TrainConfig, Checkpoint]:
    """The config and checkpoint of the interrupted run in ``out``; options given on this
    command line must agree with the run's."""
    if not out:
        raise click.UsageError(
            "--resume needs --out DIR, the directory of the interrupted run", ctx
        )
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
        if explicit(ctx, name) and getattr(saved, name) != getattr(config, name)
    ]
    if differ:
        raise click.BadParameter(
            f"the run in {out} had other options: {'; '.join(differ)} (leave them out to "
            "resume it as it was)",
            param_hint="'--resume'",
        )
    return saved, checkpoint


def resume_command() -> str:
    """This command line with --resume: the options given must agree with the checkpoint's,
    and repeating them does (plugins and --nproc included)."""
    ctx = click.get_current_context(silent=True)
    args = list(getattr(ctx.find_root().command, "raw_args", [])) if ctx else []
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["minidl-run", *args])


def without_nproc(args: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def execute(
    config: TrainConfig,
    *,
    out: str | None = None,
    as_json: bool = False,
    show_misclassified: bool = False,
    data_parallel: bool = False,
    resume: Checkpoint | None = None,
) -> RunResult:
    """Train as ``config`` says, then print and write what the options ask for. With
    ``out``, the run is checkpointed into it as it trains (see ``--resume``)."""
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
    if resume is not None:
        click.echo(
            f"resuming the run in {out} after epoch {resume.epoch} of {config.epochs}", err=True
        )
    with progress(config.epochs, "training") as update:
        try:
            result = run(
                config,
                callbacks=[lambda record, model: update(record["epoch"])],
                data_parallel=data_parallel,
                checkpoint=checkpoint,
                resume=resume,
            )
        except SpecError as e:
            hint = "'--model'" if config.model else "'--hidden' / '--activation'"
            raise click.BadParameter(one_line(str(e)), param_hint=hint) from None
        except Interrupted as e:
            if checkpoint is not None and checkpoint.exists():
                e.hint = f"continue from the checkpoint with: {resume_command()}"
            raise
    is_disc = config.data is None and config.dataset == "disc"
    wrong = misclassified(result.model, result.test)
    if is_disc:
        for record in wrong:
            record["radius"] = DISC_RADIUS
            record["inside"] = record["distance"] < DISC_RADIUS
    else:
        for record in wrong:
            record.pop("distance", None)
    files: list[str] = []
    note = ""
    if directory is not None:
        files, note = write_run(directory, result, wrong, is_disc)
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
            print_misclassified(wrong, len(result.test), is_disc)
        if directory is not None:
            click.echo(f"wrote {', '.join(files)} to {directory}")
    if note:
        click.echo(note, err=True)
    return result


def print_summary(result: RunResult) -> None:
    s = summary(result)
    click.echo(
        f"train accuracy {percent(s['train_accuracy'])}%  error {percent(s['train_error'])}%  "
        f"loss {s['train_loss']:.4f}  ({s['train_points']} points)"
    )
    click.echo(
        f"test  accuracy {percent(s['test_accuracy'])}%  error {percent(s['test_error'])}%  "
        f"loss {s['test_loss']:.4f}  ({s['test_points']} points)"
    )


def print_misclassified(records: list[dict[str, Any]], total: int, is_disc: bool) -> None:
    click.echo(f"misclassified test points: {len(records)} of {total}")
    if not records:
        return
    header = ["#", "input", "output", "predicted", "actual"]
    if is_disc:
        header += [f"distance to {DISC_CENTRE}", "radius", "inside"]
    rows = []
    for n, r in enumerate(records, 1):
        row = [
            str(n),
            "(" + ", ".join(f"{v:.4f}" for v in r["input"]) + ")",
            ", ".join(f"{v:.3f}" for v in r["output"]),
            str(r["predicted"]),
            str(r["actual"]),
        ]
        if is_disc:
            row += [f"{r['distance']:.4f}", f"{r['radius']:.4f}", "yes" if r["inside"] else "no"]
        rows.append(row)
    click.echo(table(header, rows))


def write_run(
    directory: Path, result: RunResult, wrong: list[dict[str, Any]], is_disc: bool
) -> tuple[list[str], str]:
    """metrics.json, history.csv, the model and the plots; returns the names and a note."""
    metrics = summary(result)
    metrics["minidl_version"] = minidl.__version__
    metrics["misclassified"] = len(wrong)
    # Each file is replaced whole (atomic_write); and these, which belong together, all or
    # none: a signal waits the few milliseconds until they are written.
    with signals.deferred():
        _write_results(directory, result, metrics, wrong, is_disc)
        (directory / CHECKPOINT).unlink(missing_ok=True)  # the run is complete
    files = ["metrics.json", "history.csv", "misclassified.csv", "model.json", "model.safetensors"]
    if not plots.available():
        return files, plots.MISSING
    title = describe(result.config)
    plots.curves(result.history, directory, title)
    files += ["loss.png", "accuracy.png"]
    if any(k.startswith("grad_norm/") for k in result.history[-1]):
        plots.diagnostics([(title, result.history)], directory / "diagnostics.png", title)
        files.append("diagnostics.png")
    if result.test.features == 2:
        plots.decision_boundary(
            result.model,
            result.test,
            wrong,
            directory / "decision_boundary.png",
            title,
            disc=is_disc,
        )
        files.append("decision_boundary.png")
    return files, ""


def _write_results(
    directory: Path,
    result: RunResult,
    metrics: dict[str, Any],
    wrong: list[dict[str, Any]],
    is_disc: bool,
) -> None:
    write_json(directory / "metrics.json", metrics)
    atomic_write(directory / "history.csv", csv_text(result.history))
    atomic_write(
        directory / "misclassified.csv",
        csv_text([_flat(r) for r in wrong], _fields(result, is_disc)),
    )
    minidl.save_model(
        result.model,
        directory,
        metadata={
            "config": config_dict(result.config),
            "in_features": result.train.features,
            "outputs": result.train.y.shape[1],
            "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy,
            "minidl_version": minidl.__version__,
            "plugins": {
                name: registry.plugin_of("layer", name)
                for name in sorted({s.name for s in result.model.spec or []})
            },
        },
    )


def describe(config: TrainConfig) -> str:
    model = config.model or f"{config.activation}, hidden {','.join(map(str, config.hidden))}"
    return f"{model}; {config.optimizer} lr {config.lr:g}"


def _fields(result: RunResult, is_disc: bool) -> list[str]:
    inputs = [f"x{i}" for i in range(result.test.features)]
    outputs = [f"output{i}" for i in range(result.test.y.shape[1])]
    extra = ["distance", "radius", "inside"] if is_disc else []
    return ["index", *inputs, *outputs, "predicted", "actual", *extra]


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in record.items() if k not in ("input", "output")}
    flat.update({f"x{i}": v for i, v in enumerate(record["input"])})
    flat.update({f"output{i}": v for i, v in enumerate(record["output"])})
    return flat
