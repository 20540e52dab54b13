"""Saved models: a JSON architecture of registered layers plus safetensors weights.

Loading never executes code from the files: the architecture is data naming registered
layers, and safetensors holds raw tensors only (no pickle).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from . import registry
from .errors import ModelFileError, SpecError
from .protocols import Module, Optimizer
from .sequential import Sequential
from .spec import LayerSpec, build

FORMAT = "minidl-model"
VERSION = 1
ARCHITECTURE = "model.json"
WEIGHTS = "model.safetensors"
_MAX_JSON = 16 * 2**20


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: readers see
    the old file or the new one, never half of one."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)  # replacing a file keeps its mode
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_model(
    model: Sequential, directory: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
    if getattr(model, "spec", None) is None:
        raise ValueError(
            "only models built from registered layers can be saved: build it with "
            "minidl.build_model(spec, in_features)"
        )
    assert model.spec is not None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = model.parameters()
    names = [
        f"{i}.{j}" for i, layer in enumerate(model.layers) for j in range(len(layer.parameters()))
    ]
    tensors = {
        n: p.data.detach().to("cpu").contiguous() for n, p in zip(names, params, strict=True)
    }
    architecture = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": str(params[0].data.dtype).removeprefix("torch.") if params else "float32",
        "layers": [{"name": s.name, "args": s.args, "kwargs": s.kwargs} for s in model.spec],
        "metadata": metadata or {},
    }
    try:  # before writing anything: a failure must not leave new weights beside old JSON
        text = json.dumps(architecture, indent=2)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"model metadata must be JSON data (strings, numbers, lists, dicts): {e}"
        ) from None
    atomic_write(directory / WEIGHTS, save_tensors(tensors))
    atomic_write(directory / ARCHITECTURE, text)


def read_architecture(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ARCHITECTURE
    if not path.is_file():
        raise ModelFileError(f"{directory}: not a saved model (no {ARCHITECTURE})")
    if path.stat().st_size > _MAX_JSON:
        raise ModelFileError(f"{path}: too large for a model architecture")
    try:
        architecture = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(architecture, dict) or architecture.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file")
    if architecture.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: format version {architecture.get('version')!r}; this minidl reads version {VERSION}"
        )
    layers = architecture.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(x, dict)
        and isinstance(x.get("name"), str)
        and isinstance(x.get("args", []), list)
        and isinstance(x.get("kwargs", {}), dict)
        for x in layers
    ):
        raise ModelFileError(f"{path}: 'layers' must be a list of {{name, args, kwargs}} objects")
    return architecture


def _check_layers_known(directory: Path, architecture: dict[str, Any]) -> None:
    """A layer no loaded plugin provides: name it, and the plugin the saving run took it from."""
    known = set(registry.names("layer"))
    missing = [x["name"] for x in architecture["layers"] if x["name"].lower() not in known]
    if not missing:
        return
    name = missing[0]
    metadata = architecture.get("metadata")
    origins = metadata.get("plugins") if isinstance(metadata, dict) else None
    plugin = origins.get(name) if isinstance(origins, dict) else None
    if isinstance(plugin, str) and plugin:
        how = f"it came from plugin {plugin!r}: install it, or load it with --layer-plugin {plugin}"
    else:
        how = "install it, or load it with --layer-plugin FILE.py"
    raise ModelFileError(
        f"{directory}: unknown layer {name!r}; is the plugin that provides it installed? {how} "
        f"(available layers: {', '.join(sorted(known))})"
    )


def load_model(directory: str | Path) -> tuple[Sequential, dict[str, Any]]:
    """The saved model and its metadata. A layer that no loaded plugin registers is named
    in the error, so the user knows which plugin to install."""
    directory = Path(directory)
    architecture = read_architecture(directory)
    _check_layers_known(directory, architecture)
    specs = [
        LayerSpec(x["name"], x.get("args", []), x.get("kwargs", {})) for x in architecture["layers"]
    ]
    try:
        model = build(specs, in_features=None)
    except SpecError as e:
        hint = " (is the plugin that provides it installed?)" if "unknown layer" in str(e) else ""
        raise ModelFileError(f"{directory}: {e}{hint}") from None
    dtype = getattr(torch, str(architecture.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelFileError(f"{directory}: unknown dtype {architecture.get('dtype')!r}")
    model.to(dtype=dtype)
    weights_path = directory / WEIGHTS
    try:
        tensors = load_tensors(weights_path.read_bytes())
    except FileNotFoundError:
        raise ModelFileError(f"{directory}: no {WEIGHTS}") from None
    except Exception as e:
        raise ModelFileError(f"{weights_path}: not a valid safetensors file ({e})") from None
    names = [
        f"{i}.{j}" for i, layer in enumerate(model.layers) for j in range(len(layer.parameters()))
    ]
    if set(names) != set(tensors):
        raise ModelFileError(
            f"{weights_path}: holds tensors {sorted(tensors)}, the architecture needs {names}"
        )
    for name, p in zip(names, model.parameters(), strict=True):
        t = tensors[name]
        if t.shape != p.shape:
            raise ModelFileError(
                f"{weights_path}: tensor {name} has shape {tuple(t.shape)}, expected {tuple(p.shape)}"
            )
        p.data = t.to(p.data.dtype)
    metadata = architecture.get("metadata", {})
    return model, metadata if isinstance(metadata, dict) else {}


# --- checkpoints: what `train --out DIR --resume` continues from ---------------------------

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "minidl-checkpoint"


@dataclass
class Checkpoint:
    """A training run after ``epoch`` epochs: weights, optimizer state, history, config."""

    epoch: int
    history: list[dict[str, Any]]
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor | float | int]


def _parameter_names(model: Module) -> list[str]:
    layers = getattr(model, "layers", None)
    if layers is None:
        return [f"0.{j}" for j in range(len(model.parameters()))]
    return [f"{i}.{j}" for i, layer in enumerate(layers) for j in range(len(layer.parameters()))]


def save_checkpoint(
    path: str | Path,
    model: Module,
    optimizer: Optimizer,
    *,
    epoch: int,
    history: list[dict[str, Any]],
    config: dict[str, Any],
) -> None:
    """One file, written atomically: safetensors holding the weights and the optimizer's
    tensors, with the epoch, history, config and the optimizer's numbers as JSON metadata.
    The optimizer must have ``state_dict()`` (every :class:`minidl.FlatOptimizer` has)."""
    state_dict = getattr(optimizer, "state_dict", None)
    if not callable(state_dict):
        raise ValueError(
            f"optimizer {type(optimizer).__name__} has no state_dict(), so its run cannot be "
            "checkpointed (subclass minidl.FlatOptimizer, or define state_dict and load_state_dict)"
        )
    tensors = {
        f"model.{n}": p.data.detach().to("cpu").contiguous()
        for n, p in zip(_parameter_names(model), model.parameters(), strict=True)
    }
    numbers: dict[str, float | int] = {}
    for key, value in state_dict().items():
        if isinstance(value, torch.Tensor):
            tensors[f"optimizer.{key}"] = value.detach().to("cpu").contiguous()
        else:
            numbers[key] = value
    try:
        state = json.dumps(
            {"epoch": epoch, "history": history, "config": config, "optimizer": numbers}
        )  # NaN allowed: a diagnostic may be NaN while the loss is not
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot checkpoint this run: its state is not JSON data ({e})") from None
    metadata = {"format": CHECKPOINT_FORMAT, "version": str(VERSION), "state": state}
    atomic_write(path, save_tensors(tensors, metadata))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`: data only, never code."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such checkpoint") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        tensors = load_tensors(raw)
        metadata = _safetensors_metadata(raw)
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a {CHECKPOINT_FORMAT} file")
        if metadata.get("version") != str(VERSION):
            raise ValueError(f"format version {metadata.get('version')!r}, expected {VERSION}")
        state = json.loads(metadata["state"])
        epoch, history, config = state["epoch"], state["history"], state["config"]
        numbers = state["optimizer"]
        if not (
            isinstance(epoch, int)
            and epoch >= 1
            and isinstance(history, list)
            and len(history) == epoch
            and all(isinstance(r, dict) for r in history)
            and isinstance(config, dict)
            and isinstance(numbers, dict)
            and all(isinstance(v, int | float) for v in numbers.values())
        ):
            raise ValueError("its epoch, history, config or optimizer state is malformed")
    except Exception as e:
        raise ModelFileError(f"{path}: not a valid checkpoint ({e})") from None
    optimizer: dict[str, torch.Tensor | float | int] = dict(numbers)
    weights = {}
    for name, t in tensors.items():
        if name.startswith("optimizer."):
            optimizer[name.removeprefix("optimizer.")] = t
        elif name.startswith("model."):
            weights[name.removeprefix("model.")] = t
    return Checkpoint(epoch, history, config, weights, optimizer)


def _safetensors_metadata(raw: bytes) -> dict[str, str]:
    if len(raw) < 8:
        raise ValueError("truncated header")
    size = int.from_bytes(raw[:8], "little")
    if size > min(len(raw) - 8, _MAX_JSON):
        raise ValueError("truncated header")
    header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    if not isinstance(metadata, dict):
        raise ValueError("malformed metadata")
    return {str(k): str(v) for k, v in metadata.items()}


def restore(checkpoint: Checkpoint, model: Module, optimizer: Optimizer) -> None:
    """Put a checkpoint's weights and optimizer state into a freshly built model and optimizer."""
    names = _parameter_names(model)
    if set(names) != set(checkpoint.weights):
        raise ModelFileError(
            f"the checkpoint holds weights {sorted(checkpoint.weights)}, the model has {names}"
        )
    for name, p in zip(names, model.parameters(), strict=True):
        t = checkpoint.weights[name]
        if t.shape != p.shape:
            raise ModelFileError(
                f"the checkpoint's tensor {name} has shape {tuple(t.shape)}, the model's {tuple(p.shape)}"
            )
        p.data = t.to(dtype=p.data.dtype, device=p.data.device)
    load_state_dict = getattr(optimizer, "load_state_dict", None)
    if not callable(load_state_dict):
        raise ValueError(f"optimizer {type(optimizer).__name__} has no load_state_dict()")
    device = model.parameters()[0].data.device if model.parameters() else torch.device("cpu")
    try:
        load_state_dict(
            {
                k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in checkpoint.optimizer.items()
            }
        )
    except (KeyError, RuntimeError, ValueError, TypeError, AssertionError) as e:
        raise ModelFileError(
            f"the checkpoint's optimizer state does not fit {type(optimizer).__name__}: "
            f"{type(e).__name__}: {e}"
        ) from None
