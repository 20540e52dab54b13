"""The first training step's checks: each layer's shapes, and targets the model can reach.

:func:`minidl.fit` runs its first step through :func:`checked_step`, one layer at a time,
so that a layer or loss that does not fit is named with the shapes involved; every later
step takes the fast path.
"""

from __future__ import annotations

from torch import Tensor

from .data import Dataset
from .errors import DataError, PluginError, SpecError
from .protocols import Loss, Module
from .registry import registry


def layer_label(model: Module, i: int) -> str:
    """``layer 3 (linear)``: its registered name, or else its class's."""
    layer = getattr(model, "layers", ())[i]
    return f"layer {i + 1} ({registry.name_of('layer', type(layer)) or type(layer).__name__})"


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def checked_step(model: Module, loss: Loss, x: Tensor, y: Tensor) -> Tensor:
    """One training step's forward and backward, as the model's own would compute them but
    one layer at a time, so that a layer that cannot take its input, or whose ``backward``
    returns a gradient of the wrong shape, is named with the shapes involved (rather than
    failing deep inside a matrix product). :func:`fit` runs its first step this way only."""
    layers = getattr(model, "layers", None)
    if layers is None:  # not a chain of layers: nothing to name
        prediction = model.forward(x)
        value = _checked_loss(loss, prediction, y)
        model.backward(loss.backward())
        return value
    inputs = []
    h = x
    for i, layer in enumerate(layers):
        inputs.append(h)
        try:
            h = layer.forward(h)
        except Exception as e:
            raise SpecError(_forward_failure(model, i, h, e)) from e
        if not isinstance(h, Tensor):
            raise PluginError(
                f"model {layer_label(model, i)}: forward returned {type(h).__name__}, not a tensor"
            )
    value = _checked_loss(loss, h, y)
    grad = loss.backward()
    if not isinstance(grad, Tensor) or grad.shape != h.shape:
        raise PluginError(
            f"loss {loss!r}: backward returned a gradient of shape {_shape(grad)}, but the "
            f"prediction has shape {_shape(h)}; it must return the gradient with respect to "
            "the prediction"
        )
    for i in reversed(range(len(layers))):
        grad = layers[i].backward(grad)
        if not isinstance(grad, Tensor) or grad.shape != inputs[i].shape:
            raise PluginError(
                f"model {layer_label(model, i)}: backward returned a gradient of shape "
                f"{_shape(grad)}, but its input had shape {_shape(inputs[i])}; backward must "
                "return the gradient with respect to the layer's input"
            )
    return value


def _forward_failure(model: Module, i: int, h: Tensor, e: Exception) -> str:
    layer = model.layers[i]  # type: ignore[attr-defined]
    message = f"model {layer_label(model, i)} cannot take an input of shape {_shape(h)}"
    wants = getattr(layer, "in_features", None)
    if isinstance(wants, int) and h.dim() >= 2 and wants != h.shape[-1]:
        source = "the data" if i == 0 else f"{layer_label(model, i - 1)}"
        message += f": it takes {wants} features per example, but {source} gives {h.shape[-1]}"
        if i > 0 and getattr(model.layers[i - 1], "out_features", None) is None:  # type: ignore[attr-defined]
            message += (
                f" (layer {i} does not say how many it gives, so the input size could not "
                "be inferred; give in_features= explicitly)"
            )
        elif i == 0:
            message += " (leave in_features out: it is inferred from the data)"
        return message
    return f"{message}: {type(e).__name__}: {e}"


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
    layers = getattr(model, "layers", None)
    bounds = getattr(layers[-1], "output_range", None) if layers else None
    if layers is None or bounds is None or not data.y.is_floating_point():
        return  # class indices are the loss's to check
    low, high = bounds
    smallest, largest = float(data.y.min()), float(data.y.max())
    if smallest < low or largest > high:
        raise DataError(
            f"the {which} targets range over [{smallest:g}, {largest:g}], but the model's last "
            f"{layer_label(model, len(layers) - 1)} outputs values in [{low:g}, {high:g}]: "
            "rescale the target column, or end the model with another layer (class labels? "
            "a loss that takes class indices reads them as classes)"
        )
