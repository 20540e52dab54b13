"""Click parameter types for minidl's values: registered names and specs (with shell
completion and "Available names"), model specs, comma-separated lists, devices."""

from __future__ import annotations

import ast
import inspect
import math
from typing import Any

import click
import torch
from click.shell_completion import CompletionItem

import minidl
from minidl.spec import check_settings, parse, parse_one

from .output import one_line


def _names(kind: str) -> list[str]:
    if kind == "activation":
        table = minidl.registry.table("layer")
        return sorted(n for n, e in table.items() if _is_activation(e.factory))
    return minidl.registry.names(kind)


def _is_activation(factory: Any) -> bool:
    """A hidden activation is an element-wise layer that needs no arguments. A layer
    class declares that it is not element-wise with ``elementwise = False``; one that
    declares nothing (any plugin written before the attribute) counts as element-wise."""
    return _takes_no_arguments(factory) and getattr(factory, "elementwise", True) is not False


def _takes_no_arguments(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )


class Name(click.ParamType):
    """A registered name of one kind (``"activation"``: an element-wise layer without
    arguments), or with
    ``specs`` a spec: the name with settings, ``adam(eps=1e-6)``. The value stays text."""

    def __init__(self, kind: str, specs: bool = True) -> None:
        self.kind, self.specs = kind, specs
        self.name = "spec" if specs else "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        try:
            item = parse_one(text, self.kind) if self.specs else minidl.Spec(text.lower())
        except minidl.SpecError as e:
            self.fail(one_line(e.message), param, ctx)
        name = item.name
        valid = _names(self.kind)
        if name not in valid:
            why = f"unknown {self.kind} {name!r}"
            layers = minidl.registry.table("layer")
            if self.kind == "activation" and name in layers:
                why = f"layer {name!r} needs arguments, so it cannot be an activation"
                if _takes_no_arguments(layers[name].factory):
                    why = (
                        f"layer {name!r} declares itself not element-wise (elementwise = "
                        "False), so it cannot be an activation"
                    )
            self.fail(f"{why}. Available names: {', '.join(valid)}", param, ctx)
        kind = "layer" if self.kind == "activation" else self.kind
        try:  # a clash names both plugins and how to pick one
            check_settings(kind, item, minidl.registry.get(kind, name))
        except minidl.MinidlError as e:
            self.fail(e.message, param, ctx)
        return text if self.specs else name

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(n) for n in _names(self.kind) if n.startswith(incomplete)]


class ModelSpec(click.ParamType):
    """A model spec; its syntax and layer names are checked now, its arguments when built."""

    name = "spec"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            items = parse(str(value))
        except minidl.SpecError as e:
            self.fail(f"{value!r}: {one_line(e.message)}", param, ctx)
        for i, item in enumerate(items):
            try:
                minidl.registry.get("layer", item.name)
            except minidl.MinidlError as e:  # unknown (listing the names), or a clash
                self.fail(f"{value!r}: model spec item {i + 1}: {e.message}", param, ctx)
        return str(value)


class CommaList(click.ParamType):
    """Comma-separated values of another type (a TOML list works too), duplicates dropped.
    Items that are specs may hold commas inside their parentheses."""

    def __init__(self, item: click.ParamType) -> None:
        self.item = item
        self.name = f"{item.name}s"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list | tuple):
            parts = list(value)
        elif isinstance(self.item, Name) and self.item.specs:
            try:
                parse(str(value), f"{self.item.kind} list")
            except minidl.SpecError as e:
                self.fail(one_line(e.message), param, ctx)
            # Each item as the user wrote it: its place in the list the parser read.
            tree = ast.parse(f"[{value}]", mode="eval").body
            parts = [ast.get_source_segment(f"[{value}]", node) for node in tree.elts]  # type: ignore[attr-defined]
        else:
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail(f"{value!r} holds no {self.item.name}", param, ctx)
        return list(dict.fromkeys(self.item.convert(p, param, ctx) for p in parts))

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        head, _, last = incomplete.rpartition(",")
        items = self.item.shell_complete(ctx, param, last)
        return [CompletionItem(f"{head},{c.value}" if head else c.value) for c in items]


class Widths(click.ParamType):
    """Hidden layer widths: ``25,25,25`` (or a TOML list of integers)."""

    name = "widths"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parts = value if isinstance(value, list | tuple) else str(value).split(",")
        try:
            sizes = [int(str(p).strip()) for p in parts]
        except ValueError:
            sizes = [0]
        if not sizes or any(s < 1 for s in sizes):
            self.fail(
                f"{value!r} is not a comma-separated list of positive widths (example: 25,25,25)",
                param,
                ctx,
            )
        return sizes


class Positive(click.ParamType):
    """A finite number > 0."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a finite number > 0", param, ctx)
        return number


class Device(click.ParamType):
    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            device = torch.device(str(value))
        except (RuntimeError, ValueError):
            self.fail(f"{value!r} is not a device; examples: cpu, cuda, cuda:1, mps", param, ctx)
        if device.type == "cuda" and not torch.cuda.is_available():
            self.fail(f"{value!r}: CUDA is not available on this machine", param, ctx)
        if device.type == "mps" and not torch.backends.mps.is_available():
            self.fail(f"{value!r}: MPS is not available on this machine", param, ctx)
        return str(value)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        return [CompletionItem(d) for d in devices if d.startswith(incomplete)]


#: torch seeds are 64-bit; a sweep adds the round to the seed
SEED = click.IntRange(0, 2**63 - 1)
