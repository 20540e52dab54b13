"""``minidl.summary(model, input_shape)``: each layer's output shape and parameter count,
as Keras's ``model.summary()`` and torchinfo print them.

The shapes come from a batch of two zeros run through the model in eval mode, as
:func:`minidl.build` probes: no random number is drawn and no running statistic moves, and
the model is left in the mode it had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .module import named_buffers, set_mode
from .registry import registry
from .train import model_dtype_device


@dataclass
class Summary:
    """What :func:`summary` found. ``rows``: one dict per module below the model, in order
    (a nested module's children after it, one ``depth`` deeper), with ``name`` (dotted, as
    in ``state_dict`` keys), ``layer`` (the registered name, or the class's),
    ``output_shape`` (one example's; None for a child its container did not call),
    ``parameters`` (trained; a container's include its children's) and ``buffers``
    (numbers kept but not trained: a standardisation's mean and std).

    ``total_parameters`` counts both, as Keras does; ``trainable_parameters`` only the
    parameters (what ``sum(p.numel() for p in net.parameters())`` gives for torch.nn)."""

    input_shape: tuple[int, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    trainable_parameters: int = 0
    total_parameters: int = 0

    @property
    def non_trainable_parameters(self) -> int:
        return self.total_parameters - self.trainable_parameters

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "rows": self.rows,
            "total_parameters": self.total_parameters,
            "trainable_parameters": self.trainable_parameters,
            "non_trainable_parameters": self.non_trainable_parameters,
        }

    def __str__(self) -> str:
        header = ["name", "layer", "output shape", "parameters"]
        cells = [
            [
                r["name"],
                "  " * r["depth"] + r["layer"],
                "-" if r["output_shape"] is None else str(tuple(r["output_shape"])),
                f"{r['parameters']:,}",
            ]
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]
        lines = [
            "  ".join(
                c.rjust(w) if i == 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
            for line in [header, *cells]
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines += [
            "-" * len(lines[0]),
            f"input shape {tuple(self.input_shape)} per example",
            f"total parameters {self.total_parameters:,}: trainable "
            f"{self.trainable_parameters:,}, non-trainable (buffers) "
            f"{self.non_trainable_parameters:,}",
        ]
        return "\n".join(line.rstrip() for line in lines)


def _children(module: Any) -> list[tuple[str, Any]]:
    """A container's modules with their names: a chain's ``layers``, else
    ``named_children()`` or ``children()`` where the module has them."""
    layers = getattr(module, "layers", None)
    if isinstance(layers, list | tuple):
        return [(str(i), m) for i, m in enumerate(layers)]
    for method in ("named_children", "children"):
        found = getattr(module, method, None)
        if callable(found):
            items = list(found())
            return (
                items if method == "named_children" else [(str(i), m) for i, m in enumerate(items)]
            )
    return []


def _count(tensors: Sequence[Any]) -> int:
    return sum(int(getattr(t, "data", t).numel()) for t in tensors)


def _walk(
    module: Any, x: Tensor | None, name: str, depth: int, rows: list[dict[str, Any]]
) -> Tensor | None:
    """Add the rows of ``module`` (unless it is the model itself, ``depth`` -1) and of
    its children; return its output for ``x`` (None: it was not called)."""
    row = {
        "name": name,
        "layer": registry.name_of("layer", type(module)) or type(module).__name__,
        "depth": depth,
        "output_shape": None,
        "parameters": _count(module.parameters()),
        "buffers": _count([b for _, b in named_buffers(module)]),
    }
    if depth >= 0:
        rows.append(row)
    children = _children(module)
    chain = isinstance(getattr(module, "layers", None), list | tuple)
    inputs: dict[int, Tensor] = {}
    y = x
    if x is not None and not chain:
        # A container other than a chain calls its children as it likes: note what each
        # is given, so that each can be probed in turn.
        patched = [c for _, c in children if _record_inputs(c, inputs)]
        try:
            y = _forward(module, x, name)
        finally:
            for child in patched:
                del child.forward
    prefix = f"{name}." if name else ""
    for child_name, child in children:
        out = _walk(
            child, y if chain else inputs.get(id(child)), prefix + child_name, depth + 1, rows
        )
        if chain:
            y = out
    if y is not None:
        row["output_shape"] = list(y.shape[1:])
    return y


def _record_inputs(child: Any, inputs: dict[int, Tensor]) -> bool:
    """Make ``child.forward`` note its first input in ``inputs``, until the attribute is
    deleted; False where the object takes no new attribute."""
    forward = child.forward

    def record(x: Tensor) -> Any:
        inputs.setdefault(id(child), x)
        return forward(x)

    try:
        child.forward = record
    except AttributeError:
        return False
    return True


def _forward(module: Any, x: Tensor, name: str) -> Tensor:
    try:
        return module.forward(x)  # type: ignore[no-any-return]
    except Exception as e:
        layer = registry.name_of("layer", type(module)) or type(module).__name__
        where = f"layer {name} ({layer})" if name else f"the model ({layer})"
        raise ValueError(
            f"{where} cannot take an input of shape {tuple(x.shape[1:])} (per example): "
            f"{type(e).__name__}: {e}"
        ) from e


@torch.no_grad()
def summary(
    model: Any, input_shape: Sequence[int] | int, dtype: torch.dtype | None = None
) -> Summary:
    """Each module of ``model`` with its output shape for inputs of ``input_shape`` (one
    example's, as :func:`minidl.build` takes it) and its parameter count, and the totals.
    ``print()`` it for a table; ``as_dict()`` is JSON-friendly. The probe is in the model's
    dtype and on its device (``dtype``: another, say ``torch.long`` for token indices)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ValueError(
            f"input_shape must be positive integers (one example's shape), got {input_shape!r}"
        )
    model_dtype, device = model_dtype_device(model)
    x = torch.zeros(2, *shape, dtype=dtype or model_dtype, device=device)
    result = Summary(shape)
    was = getattr(model, "training", True)
    set_mode(model, False)
    try:
        _walk(model, x, "", -1 if _children(model) else 0, result.rows)
    finally:
        set_mode(model, was)
    result.trainable_parameters = _count(model.parameters())
    buffers = _count([b for _, b in named_buffers(model)])
    result.total_parameters = result.trainable_parameters + buffers
    return result
