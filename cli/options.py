"""The options that train, sweep and tune share, declared once, and ``--config FILE.toml``."""

from __future__ import annotations

import difflib
import os
import shlex
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import lock
from .app import ARGS
from .experiment import DTYPES, TrainConfig
from .params import SEED, CommaList, Device, ModelSpec, Name, Positive, Widths
from .rows import REPORT_ROUNDS

DEFAULTS = TrainConfig()
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: name -> (flags, type, help); the default is TrainConfig's.
TRAINING: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "dataset": (
        ("--dataset",),
        Name("dataset"),
        "A registered dataset, optionally with settings: 'disc'.",
    ),
    "data": (
        ("--data",),
        click.Path(dir_okay=False),
        "Train on a CSV file instead: numeric columns, the last one the target, an optional "
        "header. With a loss that takes class indices (cross_entropy), a last column of "
        "integer labels 0..k-1 is k classes.",
    ),
    "test_data": (
        ("--test-data",),
        click.Path(dir_okay=False),
        "Test CSV for --data; without it a fifth of --data is held out (seeded).",
    ),
    "n_train": (
        ("--n-train",),
        click.IntRange(1),
        "Training examples of --dataset [default: its own].",
    ),
    "n_test": (("--n-test",), click.IntRange(1), "Test examples of --dataset [default: its own]."),
    "model": (
        ("--model",),
        ModelSpec(),
        "The whole network as a spec, e.g. 'linear(25), relu, linear(1), sigmoid' (input "
        "sizes inferred); replaces --hidden and --activation.",
    ),
    "hidden": (("--hidden",), Widths(), "Hidden layer widths of the MLP, comma-separated."),
    "activation": (
        ("--activation",),
        Name("activation", specs=False),
        "Hidden-layer activation of the MLP: any registered element-wise layer that takes no "
        "arguments.",
    ),
    "loss": (("--loss",), Name("loss"), "A registered loss, optionally with settings."),
    "optimizer": (
        ("--optimizer",),
        Name("optimizer"),
        "A registered optimizer, optionally with settings: 'adam(betas=(0.9, 0.99))'.",
    ),
    "lr": (("--lr",), Positive(), "Learning rate."),
    "beta1": (("--beta1",), click.FloatRange(0, 1, max_open=True), "Adam's beta1 [default: 0.9]."),
    "beta2": (
        ("--beta2",),
        click.FloatRange(0, 1, max_open=True),
        "Adam's beta2 [default: 0.999].",
    ),
    "eps": (("--eps",), click.FloatRange(0), "Adam's epsilon [default: 1e-8]."),
    "init": (
        ("--init",),
        Name("initializer"),
        "A registered weight initializer for the layers that take one (linear).",
    ),
    "gain": (("--gain",), Positive(), "Gain passed to the initializer (a number > 0)."),
    "standardize": (
        ("--standardize/--no-standardize",),
        click.BOOL,
        "Put a standardisation layer fitted on the training inputs first (saved with the model).",
    ),
    "schedule": (
        ("--schedule",),
        Name("schedule"),
        "A registered learning-rate schedule, optionally with settings: 'step(step_size=30)'.",
    ),
    "epochs": (("--epochs",), click.IntRange(1), "Epochs of training."),
    "batch_size": (("--batch-size",), click.IntRange(1), "Examples per mini-batch."),
    "seed": (("--seed",), SEED, "Seeds the data, the initial weights and the shuffling."),
    "device": (("--device",), Device(), "cpu, cuda, cuda:N, mps."),
    "callbacks": (
        ("--callback",),
        Name("callback"),
        "A registered training callback, optionally with settings; repeat for several "
        "(they run in the order given): 'early_stopping(patience=5)'.",
    ),
    "dtype": (("--dtype",), click.Choice(list(DTYPES)), "Floating-point type of the model."),
}


#: Options given once per item (``--callback A --callback B``), a list in TrainConfig.
REPEATABLE = ("callbacks",)


def training_options(
    lists: Collection[str] = (), exclude: Collection[str] = (), **helps: str
) -> Decorator:
    """Decorate a command with the shared options, ``--config``, ``--json`` and ``--out``.
    The options named in ``lists`` take comma-separated lists (a sweep's rows, a search's
    candidates), default to none, and say so in the help text given in ``helps``; those
    named in ``exclude`` (``out`` among them) are left out, for a command that trains
    less than a run (``summary``, ``lr-find``)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        out_help = helps.pop("out", "Write the results and plots into this directory.")
        decorators = [config_option]
        for name, (flags, type_, help_) in TRAINING.items():
            if name in exclude:
                continue
            if name in lists:
                flag = flags[0].split("/")[0]
                decorators.append(
                    click.option(flag, name, type=CommaList(type_), help=helps.get(name, help_))
                )
                continue
            default = getattr(DEFAULTS, name)
            if name in REPEATABLE:
                decorators.append(click.option(*flags, name, type=type_, multiple=True, help=help_))
                continue
            decorators.append(
                click.option(
                    *flags,
                    name,
                    type=None if type_ is click.BOOL else type_,
                    default=",".join(map(str, default)) if isinstance(default, list) else default,
                    show_default=default is not None,
                    help=helps.get(name, help_),
                )
            )
        decorators += [
            click.option(
                "--json",
                "as_json",
                is_flag=True,
                help="Print one JSON object on stdout instead of text.",
            ),
        ]
        if "out" not in exclude:
            decorators.append(
                click.option("--out", type=click.Path(file_okay=False), help=out_help)
            )
        for d in reversed(decorators):
            f = d(f)
        return f

    return decorate


def rounds_and_jobs(rounds_help: str) -> Decorator:
    """``--rounds`` (by default the report's) and ``--jobs``, for sweep and tune."""
    rounds = click.option(
        "--rounds",
        type=click.IntRange(1),
        default=REPORT_ROUNDS,
        show_default=True,
        help=rounds_help,
    )
    jobs = click.option(
        "--jobs",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="Worker processes (fresh, one torch thread each); the numbers do not depend on it.",
    )
    return lambda f: rounds(jobs(f))


def config_from(ctx: click.Context, options: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from the options that are its fields (lists left out)."""
    if options.get("data") is not None and given(ctx, "dataset"):
        raise click.UsageError("--dataset and --data exclude each other: give one", ctx)
    if options.get("test_data") is not None and options.get("data") is None:
        raise click.UsageError("--test-data needs --data (the training CSV)", ctx)
    fields = TrainConfig.__dataclass_fields__
    chosen = {k: v for k, v in options.items() if k in fields and v is not None}
    for name in REPEATABLE:
        if name in chosen:
            chosen[name] = list(chosen[name])
    return TrainConfig(**{k: v for k, v in chosen.items() if not _is_list(ctx, k)})


def _param(ctx: click.Context, name: str) -> click.Parameter | None:
    return next((p for p in ctx.command.params if p.name == name), None)


def _is_list(ctx: click.Context, name: str) -> bool:
    p = _param(ctx, name)
    return p is not None and isinstance(p.type, CommaList)


def given(ctx: click.Context, name: str) -> bool:
    """Whether an option was given (on the command line, in --config or the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source is not ParameterSource.DEFAULT


# --- --config FILE.toml ------------------------------------------------------------------


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise click.BadParameter(
                "reading TOML on Python 3.10 needs: pip install tomli"
            ) from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise click.BadParameter(f"{path}: no such file") from None
    except OSError as e:
        raise click.BadParameter(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path}: not valid TOML: {e}") from None


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Options from a TOML file become defaults, so options on the command line win. Keys
    are option names (``batch-size`` or ``batch_size``); a table named after the command
    (``[train]``, ``[sweep]``) applies to that command only."""
    if value is None:
        return
    data = _read_toml(value)
    settings = {k: v for k, v in data.items() if not isinstance(v, dict)}
    section = data.get(ctx.info_name or "", {})
    if isinstance(section, dict):
        settings.update(section)
    options: dict[str, click.Option] = {}
    for p in ctx.command.params:
        if isinstance(p, click.Option) and p.name != "config":
            for opt in [*p.opts, *p.secondary_opts]:
                options[opt.lstrip("-").replace("-", "_")] = p
            if p.name in REPEATABLE:  # callbacks = [...] as well as callback = [...]
                options[p.name] = p
    defaults: dict[str, Any] = dict(ctx.default_map or {})
    for key, v in settings.items():
        option = options.get(key.replace("-", "_"))
        if option is None or option.name is None:
            names = sorted({o.opts[0].lstrip("-") for o in options.values()})
            close = difflib.get_close_matches(key.replace("_", "-"), names, 1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; available: {', '.join(names)}"
            raise click.BadParameter(f"{value}: unknown option {key!r}{hint}")
        if option.is_flag and option.secondary_opts and key.replace("-", "_").startswith("no_"):
            v = not v
        defaults[option.name] = v
    ctx.default_map = defaults


config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="Read options from a TOML file (keys are option names); options given here win.",
)


def out_dir(path: str) -> Path:
    """The ``--out`` directory, created if needed. Under a command (a click context), it
    is also held for the rest of the command (:mod:`minidl.cli.lock`): a second command
    into it fails at once, naming this one; a directory this command created and left
    empty is removed when it ends."""
    directory = Path(path)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise click.BadParameter(
            f"{path!r} exists and is not a directory", param_hint="'--out'"
        ) from None
    except OSError as e:
        raise click.BadParameter(
            f"cannot create {path!r}: {e.strerror}", param_hint="'--out'"
        ) from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        held = ctx.find_root().meta.setdefault(HELD, set())
        key = os.path.realpath(directory)
        if key not in held:
            ctx.with_resource(lock.hold(directory, command_line(ctx), created))
            held.add(key)
            ctx.call_on_close(lambda: held.discard(key))
    return directory


#: ctx.meta key: the directories this command holds (a second out_dir of one is a no-op)
HELD = "minidl.held"


def command_line(ctx: click.Context) -> str:
    """This command's line as the user typed it (for the lock file, so a second command
    can name the first)."""
    args = ctx.find_root().meta.get(ARGS)
    return shlex.join(["minidl-run", *args] if args is not None else sys.argv)
