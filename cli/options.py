"""Options shared by the commands, and their checks: a bad value is a usage error (exit 2)
whose one line names the option, the value and, for names, the valid ones."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from minidl import registry
from minidl.errors import MinidlError, SpecError, UnknownNameError
from minidl.experiment import DTYPES, TrainConfig
from minidl.spec import parse

from .output import one_line

DEFAULTS = TrainConfig()
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _apply(*decorators: Decorator) -> Decorator:
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap


# --- names ---------------------------------------------------------------------------


def takes_no_arguments(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )


def activations() -> list[str]:
    """Registered layers that can be built without arguments: the possible activations."""
    return sorted(n for n, e in registry.table("layer").items() if takes_no_arguments(e.factory))


def check_activation(name: str) -> str:
    name = name.strip().lower()
    valid = activations()
    if name not in valid:
        if name in registry.table("layer"):
            raise click.BadParameter(
                f"layer {name!r} needs arguments, so it cannot be an activation; available: {', '.join(valid)}"
            )
        raise click.BadParameter(f"unknown activation {name!r}; available: {', '.join(valid)}")
    return name


def check_name(kind: str, name: str) -> str:
    try:
        registry.get(kind, name)
    except MinidlError as e:
        raise click.BadParameter(str(e)) from None
    return name.strip().lower()


def name_callback(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        return None if value is None else check_name(kind, value)

    return callback


def activation_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    return None if value is None else check_activation(value)


def split(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def names_callback(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A comma list of names of ``kind`` (``"activation"`` or a registry kind)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
        if value is None:
            return None
        items = split(value)
        if not items:
            raise click.BadParameter(f"{value!r} names no {kind}")
        check = check_activation if kind == "activation" else lambda n: check_name(kind, n)
        return list(dict.fromkeys(check(n) for n in items))

    return callback


def numbers_callback(
    what: str, low: float, high: float | None = None, low_open: bool = True
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A comma list of numbers in (low, high) ([low, high) when not ``low_open``)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list[Any] | None:
        if value is None:
            return None
        try:
            numbers = [float(v) for v in split(value)]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {what}") from None
        if not numbers:
            raise click.BadParameter(f"{value!r} holds no {what}")
        for x in numbers:
            above = x > low if low_open else x >= low
            if not (above and (high is None or x < high)):
                raise click.BadParameter(f"{x:g} in {value!r} is out of range: need {what}")
        return list(dict.fromkeys(numbers))

    return callback


def hidden_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in split(value)]
    except ValueError:
        sizes = [0]
    if any(s < 1 for s in sizes):
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of positive layer widths (example: 25,25,25)"
        )
    return sizes


def model_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check the syntax and the layer names now; arguments are checked when the model is built."""
    if value is None:
        return None
    try:
        for i, item in enumerate(parse(value)):
            try:
                registry.get("layer", item.name)
            except UnknownNameError as e:
                raise SpecError(f"model spec item {i + 1}: {e}") from None
    except MinidlError as e:
        raise click.BadParameter(f"{value!r}: {one_line(str(e))}") from None
    return value


def device_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not a device; examples: cpu, cuda, cuda:1, mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{value!r}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise click.BadParameter(f"{value!r}: MPS is not available on this machine")
    return value


# --- --config FILE.toml ----------------------------------------------------------------


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


def config_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Options from a TOML file become defaults, so flags on the command line win.

    Keys are option names (``batch-size`` or ``batch_size``); a table named after the
    command (``[train]``, ``[sweep]``) applies to that command only.
    """
    if value is None:
        return
    data = _read_toml(value)
    settings = {k: v for k, v in data.items() if not isinstance(v, dict)}
    section = data.get(ctx.info_name or "", {})
    if isinstance(section, dict):
        settings.update(section)
    options: dict[str, click.Option] = {}
    for p in ctx.command.params:
        if isinstance(p, click.Option) and p.name != "config" and not p.hidden:
            for opt in [*p.opts, *p.secondary_opts]:
                options[opt.lstrip("-").replace("-", "_")] = p
    defaults: dict[str, Any] = dict(ctx.default_map or {})
    for key, v in settings.items():
        option = options.get(key.replace("-", "_"))
        if option is None or option.name is None:
            available = sorted({o.opts[0].lstrip("-") for o in options.values()})
            raise click.BadParameter(
                f"{value}: unknown option {key!r}; available: {', '.join(available)}"
            )
        if isinstance(v, list):
            v = ",".join(str(x) for x in v)
        if option.is_flag and option.secondary_opts and key.replace("-", "_").startswith("no_"):
            v = not v
        defaults[option.name] = v
    ctx.default_map = defaults


config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=config_callback,
    help="Read options from a TOML file (keys are option names); flags given here win.",
)


def explicit(ctx: click.Context, name: str) -> bool:
    """Whether an option was given (on the command line, in --config or in the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def check_data_options(ctx: click.Context, options: dict[str, Any]) -> None:
    if options.get("data") is not None and explicit(ctx, "dataset"):
        raise click.UsageError("--dataset and --data exclude each other: give one", ctx)
    if options.get("test_data") is not None and options.get("data") is None:
        raise click.UsageError("--test-data needs --data (the training CSV)", ctx)


# --- the options themselves ---------------------------------------------------------------

data_options = _apply(
    click.option(
        "--dataset",
        default=DEFAULTS.dataset,
        show_default=True,
        callback=name_callback("dataset"),
        help="A registered dataset (see `minidl-run plugins`).",
    ),
    click.option(
        "--data",
        type=click.Path(dir_okay=False),
        help="Train on a CSV file instead: numeric columns, the last one the target, an optional header.",
    ),
    click.option(
        "--test-data",
        type=click.Path(dir_okay=False),
        help="Test CSV for --data; without it a fifth of --data is held out (seeded).",
    ),
    click.option(
        "--n-train",
        type=click.IntRange(1),
        default=DEFAULTS.n_train,
        show_default=True,
        help="Training points of --dataset.",
    ),
    click.option(
        "--n-test",
        type=click.IntRange(1),
        default=DEFAULTS.n_test,
        show_default=True,
        help="Test points of --dataset.",
    ),
)

common_training_options = _apply(
    click.option(
        "--hidden",
        default=",".join(map(str, DEFAULTS.hidden)),
        show_default=True,
        callback=hidden_callback,
        help="Hidden layer widths, comma-separated.",
    ),
    click.option(
        "--loss",
        default=DEFAULTS.loss,
        show_default=True,
        callback=name_callback("loss"),
        help="A registered loss.",
    ),
    click.option(
        "--eps",
        type=click.FloatRange(0),
        default=None,
        help="Adam's epsilon [default: the optimizer's, 1e-8].",
    ),
    click.option("--epochs", type=click.IntRange(1), default=DEFAULTS.epochs, show_default=True),
    click.option(
        "--batch-size", type=click.IntRange(1), default=DEFAULTS.batch_size, show_default=True
    ),
    click.option(
        "--init",
        default=DEFAULTS.init,
        show_default=True,
        callback=name_callback("initializer"),
        help="A registered weight initializer for the linear layers.",
    ),
    click.option("--gain", type=float, default=None, help="Gain passed to the initializer."),
    click.option(
        "--standardize/--no-standardize",
        default=DEFAULTS.standardize,
        show_default=True,
        help="Put a standardisation layer fitted on the training inputs first (saved with the model).",
    ),
    click.option(
        "--schedule",
        default=DEFAULTS.schedule,
        show_default=True,
        callback=name_callback("schedule"),
        help="A registered learning-rate schedule.",
    ),
    data_options,
    click.option(
        "--device",
        default=DEFAULTS.device,
        show_default=True,
        callback=device_callback,
        help="cpu, cuda, cuda:N, mps.",
    ),
    click.option(
        "--dtype", type=click.Choice(list(DTYPES)), default=DEFAULTS.dtype, show_default=True
    ),
    click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text."
    ),
    click.option(
        "--out",
        type=click.Path(file_okay=False),
        default=None,
        help="Write the results, plots and (train) the model into this directory.",
    ),
)


def base_config(options: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from the options that are its fields."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in options.items() if k in fields and v is not None})


def out_dir(path: str) -> Path:
    directory = Path(path)
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
    return directory
