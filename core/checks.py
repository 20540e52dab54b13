"""The first training step's checks: each layer's shapes, and targets the model can reach.

:func:`minidl.fit` runs its first step through :func:`checked_step`, one layer at a time,
so that a layer or loss that does not fit is named with the shapes involved; every later
step takes the fast path.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .data import Dataset
from .errors import DataError, PluginError, SpecError
from .module import children
from .protocols import Loss, Module
from .registry import registry
from .sequential import Sequential

#: A layer's place in a model: its position among its container's children, at each depth.
Path = tuple[int, ...]


def layer_at(model: Module, path: Path) -> Any:
    for i in path:
        model = children(model)[i]
    return model


def layer_label(model: Module, *path: int) -> str:
    """``layer 3 (linear)``, or inside a container ``layer 2 (residual) > layer 1
    (linear)``: positions from 1, each with its registered name, or else its class's; the
    model itself, ``layer (residual)``, for no path."""
    parts = [
        f"layer {path[d] + 1} ({layer_name(layer_at(model, path[: d + 1]))})"
        for d in range(len(path))
    ]
    return " > ".join(parts) or f"layer ({layer_name(model)})"


def layer_name(layer: Any) -> str:
    return registry.name_of("layer", type(layer)) or type(layer).__name__


def steps(model: Module) -> list[tuple[Path, Module]]:
    """What the model's forward runs one after the other, each with its path: the items of
    a Sequential, and of a Sequential among them (not of a subclass: it may do more than
    chain them); a model that is no Sequential is one step."""
    if type(model) is not Sequential:
        return [((), model)]
    return [((i, *path), m) for i, child in enumerate(model) for path, m in steps(child)]


def of_dtype(x: Tensor) -> str:
    """`` and dtype int64`` for inputs that are not floating point (token ids), else nothing."""
    return "" if x.is_floating_point() else f" and dtype {str(x.dtype).removeprefix('torch.')}"


def mismatch(layer: Module, x: Tensor) -> str | None:
    """Why integer inputs do not suit a layer of floating parameters, or None."""
    floats = [p.data.dtype for p in layer.parameters() if p.data.is_floating_point()]
    if x.is_floating_point() or not floats:
        return None
    return (
        f"its inputs are {str(x.dtype).removeprefix('torch.')} ids, but it computes in "
        f"{str(floats[0]).removeprefix('torch.')}: only a layer that takes ids (such as an "
        "embedding) can take integer inputs"
    )


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def checked_step(model: Module, loss: Loss, x: Tensor, y: Tensor) -> Tensor:
    """One training step's forward and backward, as the model's own would compute them but
    one layer at a time, so that a layer that cannot take its input, or whose ``backward``
    returns a gradient of the wrong shape, is named with the shapes involved (rather than
    failing deep inside a matrix product). :func:`fit` runs its first step this way only.

    A container runs whole; when it fails, its children are run again as a chain from its
    input, the rule model specs build them by, to name the innermost layer that fails."""
    chain = steps(model)
    inputs = []
    h = x
    for path, layer in chain:
        inputs.append(h)
        try:
            h = layer.forward(h)
        except Exception as e:
            where, h, e = _locate(model, path, h, e)
            raise SpecError(_forward_failure(model, where, h, e)) from e
        if not isinstance(h, Tensor):
            raise PluginError(
                f"model {layer_label(model, *path)}: forward returned {type(h).__name__}, not a tensor"
            )
    value = _checked_loss(loss, h, y)
    grad = loss.backward()
    if not isinstance(grad, Tensor) or grad.shape != h.shape:
        raise PluginError(
            f"loss {loss!r}: backward returned a gradient of shape {_shape(grad)}, but the "
            f"prediction has shape {_shape(h)}; it must return the gradient with respect to "
            "the prediction"
        )
    for (path, layer), given in zip(reversed(chain), reversed(inputs), strict=True):
        grad = layer.backward(grad)
        if not isinstance(grad, Tensor) or grad.shape != given.shape:
            raise PluginError(
                f"model {layer_label(model, *path)}: backward returned a gradient of shape "
                f"{_shape(grad)}, but its input had shape {_shape(given)}; backward must "
                "return the gradient with respect to the layer's input"
            )
    return value


def _locate(model: Module, path: Path, x: Tensor, e: Exception) -> tuple[Path, Tensor, Exception]:
    """The innermost layer under ``path`` that fails on its input, with that input and its
    exception (``path`` itself when none of its children fails)."""
    h = x
    for i, child in enumerate(children(layer_at(model, path))):
        try:
            h = child.forward(h)
        except Exception as inner:
            return _locate(model, (*path, i), h, inner)
    return path, x, e


def _forward_failure(model: Module, path: Path, h: Tensor, e: Exception) -> str:
    layer = layer_at(model, path)
    message = (
        f"model {layer_label(model, *path)} cannot take an input of shape {_shape(h)}{of_dtype(h)}"
    )
    wants = getattr(layer, "in_features", None)
    if isinstance(wants, int) and h.dim() >= 2 and wants != h.shape[-1] and h.is_floating_point():
        first = not any(path)
        before = (*path[:-1], path[-1] - 1) if path and path[-1] > 0 else None
        if before is None:
            source = "the data" if first else f"the input of {layer_label(model, *path[:-1])}"
        else:
            source = layer_label(model, *before)
        message += f": it takes {wants} features per example, but {source} gives {h.shape[-1]}"
        if before is not None and getattr(layer_at(model, before), "out_features", None) is None:
            message += (
                f" ({layer_label(model, *before).rpartition(' (')[0]} does not say how many "
                "it gives, so the input size could not be inferred; give in_features= explicitly)"
            )
        elif first:
            message += " (leave in_features out: it is inferred from the data)"
        return message
    return f"{message}: {mismatch(layer, h) or f'{type(e).__name__}: {e}'}"


def _checked_loss(loss: Loss, prediction: Tensor, y: Tensor) -> Tensor:
    try:
        return loss.forward(prediction, y)
    except Exception as e:
        raise DataError(
            f"loss {loss!r} cannot compare the model's output of shape {_shape(prediction)} "
            f"with targets of shape {_shape(y)}: {e}"
        ) from e


def check_targets(model: Module, loss: Loss, data: Dataset, which: str) -> None:
    """Targets that the loss cannot use, or that the model's last layer can never output
    (say 7 after a sigmoid), are a data error now rather than a run that learns nothing.

    A loss may define ``check_target(target)`` raising ValueError; a layer may declare the
    closed range its outputs lie in as ``output_range = (low, high)``."""
    if len(data) == 0:
        return
    check = getattr(loss, "check_target", None)
    if callable(check):
        try:
            check(data.y)
        except ValueError as e:
            raise DataError(f"the {which} targets do not suit the loss {loss!r}: {e}") from None
    path, last = steps(model)[-1]
    bounds = getattr(last, "output_range", None)
    if bounds is None or not data.y.is_floating_point():
        return  # class indices are the loss's to check
    low, high = bounds
    smallest, largest = float(data.y.min()), float(data.y.max())
    if smallest < low or largest > high:
        raise DataError(
            f"the {which} targets range over [{smallest:g}, {largest:g}], but the model's last "
            f"{layer_label(model, *path)} outputs values in [{low:g}, {high:g}]: "
            "rescale the target column, or end the model with another layer (class labels? "
            "a loss that takes class indices reads them as classes)"
        )
