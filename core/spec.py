"""Specs: ``"linear(25), relu, linear(1), sigmoid"`` for a model, ``"adam(eps=1e-6)"`` for
any other registered factory: a name, optionally with literal arguments (its settings).
A layer's positional arguments may be layer specs themselves, ``residual(linear(8), relu)``:
a container's, built before it.

In a model spec, a layer whose factory's first parameter is ``in_features`` gets the size
of the last dimension of its input, and one whose first is ``in_channels`` gets dimension
1: the input's shape comes from a small probe batch run through the layers built so far,
so sizes are never repeated. A container's inner specs are built as a chain from the
container's input.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from dataclasses import dataclass, field
from typing import Any

import torch

from .checks import mismatch, of_dtype
from .errors import SpecError, UnknownNameError
from .module import set_mode
from .registry import registry
from .sequential import Sequential, check_module

#: The first parameter names that a model spec fills in from the input's shape, and the
#: dimension each takes.
INFERRED = {"in_features": -1, "in_channels": 1}


@dataclass
class Spec:
    """One registered name plus arguments; JSON-friendly, so models can be saved."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [str(a) if isinstance(a, Spec) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def parse(spec: str, what: str = "model spec", nested: bool = True) -> list[Spec]:
    """Parse a comma-separated list of items; errors point at the offending column. With
    ``nested``, a positional argument that is a name or a call is an item itself (a
    :class:`Spec` among the arguments); otherwise every argument is a literal."""
    try:
        tree = ast.parse(f"[{spec}]", mode="eval")
    except SyntaxError as e:
        column = max((e.offset or 2) - 2, 0)
        message = _syntax_message(e.msg)
        if "forgot a comma" in e.msg:  # Python points at the first of the two items
            gap = _missing_comma(spec, column)
            if gap is not None:
                column, message = gap[0], f"invalid syntax: a comma is missing before {gap[1]!r}"
        raise SpecError(_pointing(what, spec, column, message)) from None
    if not isinstance(tree.body, ast.List):  # a "]" in the spec closed ours: "][0"
        column = _unmatched_close(spec)
        raise SpecError(
            _pointing(what, spec, column, f"invalid syntax: unmatched {spec[column]!r}")
        )
    if not tree.body.elts:
        raise SpecError(
            f"{what} is empty; give registered names, with settings where wanted: 'name(1, key=2), other'"
        )
    return [_item(what, spec, node, nested) for node in tree.body.elts]


def _item(what: str, spec: str, node: ast.expr, nested: bool) -> Spec:
    if isinstance(node, ast.Name):
        return Spec(node.id.lower())
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecError(
            _pointing(what, spec, node.col_offset - 1, "expected a name or name(arguments)")
        )
    args = [
        _item(what, spec, a, nested)
        if nested and isinstance(a, ast.Name | ast.Call)
        else _literal(what, spec, a)
        for a in node.args
    ]
    kwargs = {}
    for k in node.keywords:
        if k.arg is None:
            raise SpecError(_pointing(what, spec, k.value.col_offset - 3, "'**' is not allowed"))
        kwargs[k.arg] = _literal(what, spec, k.value)
    return Spec(node.func.id.lower(), args, kwargs)


def _literal(what: str, spec: str, node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        message = "arguments must be literal numbers, strings, lists or dicts"
        if isinstance(node, ast.Name):
            message += f"; quote strings: '{node.id}'"
        raise SpecError(_pointing(what, spec, node.col_offset - 1, message)) from None


def _unmatched_close(spec: str) -> int:
    """The column of the first closing bracket with no opening one before it."""
    depth = 0
    for column, char in enumerate(spec):
        depth += (char in "([{") - (char in ")]}")
        if depth < 0:
            return column
    return 0


def _missing_comma(spec: str, start: int) -> tuple[int, str] | None:
    """The column and text of the first item after ``start`` that follows another with no
    comma between them."""
    ends = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING}
    previous = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(spec).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                continue
            ended = previous is not None and (
                previous.type in ends or previous.string in (")", "]", "}")
            )
            if token.start[1] >= start and ended and token.type in ends:
                return int(token.start[1]), token.string
            previous = token
    except (tokenize.TokenError, SyntaxError):
        pass
    return None


def _syntax_message(msg: str) -> str:
    # The spec is parsed inside [...]; say nothing about brackets the user did not write.
    if "does not match opening parenthesis '('" in msg:
        return "invalid syntax: '(' was never closed"
    if "does not match opening parenthesis '['" in msg:
        return f"invalid syntax: unmatched {msg.split(chr(39))[1]!r}"
    return msg if msg.startswith("invalid syntax") else f"invalid syntax ({msg})"


def _pointing(what: str, spec: str, column: int, message: str) -> str:
    return f"{what}: {message} at column {column + 1}:\n  {spec}\n  {' ' * column}^"


def parse_one(spec: str | Spec, kind: str) -> Spec:
    """One item: ``"adam"`` or ``"adam(eps=1e-6)"``."""
    if isinstance(spec, Spec):
        return spec
    items = parse(spec, f"{kind} spec", nested=kind == "layer")
    if len(items) != 1:
        raise SpecError(f"{kind} spec {spec!r} names {len(items)} {kind}s; give one")
    return items[0]


#: What minidl passes a factory of each kind itself, before a spec's settings: how many
#: leading positional arguments, and which keywords.
PASSED = {
    "optimizer": (1, ("lr",)),
    "schedule": (2, ()),
    "initializer": (2, ()),
    "dataset": (0, ("seed",)),
    "layer": (0, tuple(INFERRED)),
}


def settings(factory: Any, kind: str = "") -> dict[str, Any]:
    """A factory's settings and their defaults (``None`` for required ones), read from its
    signature, without the arguments that minidl passes itself (see :data:`PASSED`)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return {}
    skip, passed = PASSED.get(kind, (0, ()))
    return {
        p.name: None if p.default is p.empty else p.default
        for p in params[skip:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in passed
    }


def check_settings(kind: str, item: Spec, factory: Any) -> None:
    """Refuse a keyword the factory does not take, naming the ones it does."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in item.kwargs:
        if key not in params:
            accepted = ", ".join(settings(factory, kind)) or "(none)"
            raise SpecError(
                f"{kind} {item.name!r} has no setting {key!r}; its settings: {accepted}"
            )


def create(kind: str, spec: str | Spec, *leading: Any, **given: Any) -> Any:
    """Make the registered ``kind`` that ``spec`` names: ``factory(*leading, *spec.args,
    **given, **spec.kwargs)``. A keyword the factory does not take is named, with the ones
    it does take."""
    item = parse_one(spec, kind)
    try:
        factory = registry.get(kind, item.name)
    except UnknownNameError as e:
        raise SpecError(e.message) from None
    check_settings(kind, item, factory)
    try:
        return factory(*leading, *item.args, **{**given, **item.kwargs})
    except (TypeError, ValueError, LookupError, OverflowError, RuntimeError) as e:
        # RuntimeError: torch's, say a weight too large to allocate
        raise SpecError(f"cannot make {kind} {item}: {e}") from None


def build(
    spec: str | list[Spec], input_shape: tuple[int, ...] | None, dtype: torch.dtype | None = None
) -> Sequential:
    """Build a Sequential from a model spec, inferring sizes from ``input_shape`` (one
    example's shape, without the batch dimension); ``None`` builds the spec as it stands.

    ``dtype`` is the inputs' dtype: integer inputs (token ids) are probed as zeros of their
    own dtype, floating ones in the default dtype the layers are made in (:func:`fit` and
    :func:`predict` cast floating inputs to the model's dtype, never integer ones).

    A spec among a layer's positional arguments is built first, the inner specs together
    as a chain from the container's input, and the factory receives the built modules in
    their places: ``residual(linear(8), relu)`` calls ``factory(Linear(8, 8), ReLU())``.
    """
    items = parse(spec) if isinstance(spec, str) else spec
    ids = dtype if dtype is not None and not dtype.is_floating_point else None
    probe = None if input_shape is None else torch.zeros(2, *input_shape, dtype=ids)
    return Sequential(*_chain(items, probe, "model spec ")[0])


def _chain(
    items: list[Spec], probe: torch.Tensor | None, where: str
) -> tuple[list[Any], torch.Tensor | None]:
    """The layers of ``items``, each built for the probe's output of those before it."""
    layers = []
    for i, item in enumerate(items):
        at = f"{where}item {i + 1}"
        try:
            factory = registry.get("layer", item.name)
        except UnknownNameError as e:
            hint = f" (a name inside a call is a layer; quote a string: '{item.name}')"
            raise SpecError(f"{at}: {e.message}{hint if where.endswith('> ') else ''}") from None
        here = f"{at} ({item.name})"
        inner = [a for a in item.args if isinstance(a, Spec)]
        built = iter(_chain(inner, probe, f"{here} > ")[0])
        args = [next(built) if isinstance(a, Spec) else a for a in item.args]
        first = _first_parameter(factory)
        if probe is not None and first in INFERRED and first not in item.kwargs:
            args.insert(0, probe.shape[INFERRED[first]] if probe.dim() > 1 else 1)
        try:
            layer = create("layer", Spec(item.name, args, item.kwargs))
            check_module(layer, here)
        except (SpecError, TypeError) as e:
            raise SpecError(f"{at}: {e}") from None
        if not hasattr(layer, "init_args"):  # so that the model can be saved
            try:
                layer.init_args = (tuple(args), dict(item.kwargs))
            except AttributeError:
                pass
        if probe is not None:
            probe = _probe(layer, probe, here)
        layers.append(layer)
    return layers, probe


def _probe(layer: Any, x: torch.Tensor, where: str) -> torch.Tensor:
    """The layer's output for ``x`` in eval mode: no running statistic moves and no random
    number is drawn."""
    was = getattr(layer, "training", True)
    set_mode(layer, False)
    try:
        return layer.forward(x)  # type: ignore[no-any-return]
    except Exception as e:
        why = mismatch(layer, x) or f"{type(e).__name__}: {e}"
        wants = getattr(layer, "in_features", None)
        if isinstance(wants, int) and x.dim() > 1 and wants != x.shape[-1]:
            why = f"it takes {wants} features per example, but its input has {x.shape[-1]}"
        raise SpecError(
            f"{where} cannot take an input of shape {tuple(x.shape[1:])} (per example)"
            f"{of_dtype(x)}: {why}"
        ) from None
    finally:
        set_mode(layer, was)


def _first_parameter(factory: Any) -> str | None:
    try:
        params = list(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return None
    return params[0] if params else None
