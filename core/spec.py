"""Model specs: ``"linear(25), relu, linear(1), sigmoid"`` -> a Sequential of registered layers.

Each item is a registered layer name, optionally with literal arguments. A layer whose
factory's first parameter is ``in_features`` gets the current width as that argument, so
sizes are never repeated; after each layer the width becomes its ``out_features`` if it has one.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .errors import SpecError, UnknownNameError
from .sequential import Sequential, check_module


@dataclass
class LayerSpec:
    """One layer as registered name plus arguments; JSON-friendly, so models can be saved."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def parse(spec: str) -> list[LayerSpec]:
    """Parse the compact syntax; errors point at the offending column."""
    try:
        tree = ast.parse(f"[{spec}]", mode="eval")
    except SyntaxError as e:
        column = max((e.offset or 2) - 2, 0)
        raise SpecError(_pointing(spec, column, _syntax_message(e.msg))) from None
    assert isinstance(tree.body, ast.List)
    if not tree.body.elts:
        raise SpecError("model spec is empty; example: 'linear(25), relu, linear(1), sigmoid'")
    layers = []
    for node in tree.body.elts:
        if isinstance(node, ast.Name):
            layers.append(LayerSpec(node.id.lower()))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [_literal(spec, a) for a in node.args]
            kwargs = {}
            for k in node.keywords:
                if k.arg is None:
                    raise SpecError(_pointing(spec, k.value.col_offset - 3, "'**' is not allowed"))
                kwargs[k.arg] = _literal(spec, k.value)
            layers.append(LayerSpec(node.func.id.lower(), args, kwargs))
        else:
            raise SpecError(
                _pointing(spec, node.col_offset - 1, "expected a layer name or name(arguments)")
            )
    return layers


def _literal(spec: str, node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        message = "layer arguments must be literal numbers, strings, lists or dicts"
        if isinstance(node, ast.Name):
            message += f"; quote strings: '{node.id}'"
        raise SpecError(_pointing(spec, node.col_offset - 1, message)) from None


def _syntax_message(msg: str) -> str:
    # The spec is parsed inside [...]; say nothing about brackets the user did not write.
    if "does not match opening parenthesis '('" in msg:
        return "invalid syntax: '(' was never closed"
    if "does not match opening parenthesis '['" in msg:
        return f"invalid syntax: unmatched {msg.split(chr(39))[1]!r}"
    return msg if msg.startswith("invalid syntax") else f"invalid syntax ({msg})"


def _pointing(spec: str, column: int, message: str) -> str:
    return f"model spec: {message} at column {column + 1}:\n  {spec}\n  {' ' * column}^"


def build(spec: str | list[LayerSpec], in_features: int | None) -> Sequential:
    """Build a Sequential from a spec; the resolved spec is kept in ``model.spec``.

    ``in_features=None`` builds a resolved spec (one from ``model.spec``) as it stands.
    """
    items = parse(spec) if isinstance(spec, str) else spec
    infer, width = in_features is not None, in_features
    layers, resolved = [], []
    for i, item in enumerate(items):
        try:
            factory = registry.get("layer", item.name)
        except UnknownNameError as e:
            raise SpecError(f"model spec item {i + 1}: {e}") from None
        args, kwargs = list(item.args), dict(item.kwargs)
        if infer and _takes_in_features(factory) and "in_features" not in kwargs:
            args.insert(0, width)
        try:
            layer = factory(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise SpecError(
                f"model spec item {i + 1}: cannot build {LayerSpec(item.name, args, kwargs)}: {e}"
            ) from None
        try:
            check_module(layer, f"model spec item {i + 1} ({item.name})")
        except TypeError as e:  # a plugin's bug, reported like any other bad spec item
            raise SpecError(str(e)) from None
        width = getattr(layer, "out_features", width)
        layers.append(layer)
        resolved.append(LayerSpec(item.name, args, kwargs))
    model = Sequential(*layers)
    model.spec = resolved
    return model


def _takes_in_features(factory: Any) -> bool:
    try:
        params = list(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "in_features"


def mlp(
    hidden: list[int], activation: str = "relu", outputs: int = 1, output: str = "sigmoid"
) -> str:
    """The seed's family of networks as a spec: ``mlp([25, 25, 25])`` is its 2-25-25-25-1 net."""
    items = [f"linear({h}), {activation}" for h in hidden]
    items.append(f"linear({outputs})")
    if output:
        items.append(output)
    return ", ".join(items)
